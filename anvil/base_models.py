"""Which base models this server offers, and where each one's files are.

A name resolves to a local Hugging Face model folder: the built-in tiny model, a folder named on
the command line (`--model Qwen/Qwen3-8B=/models/tiny` lets scripts that use real model ids run on
small local models), or a folder path given directly as the base model.
"""

from dataclasses import dataclass, field
from pathlib import Path

from anvil.tiny_qwen3 import TINY_QWEN3_NAME, ensure_tiny_qwen3


class UnknownBaseModel(LookupError):
    pass


@dataclass
class BaseModelRegistry:
    cache_dir: Path
    named: dict[str, Path] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [TINY_QWEN3_NAME, *self.named]

    def resolve(self, name: str) -> Path:
        if name in self.named:
            return self.named[name]
        if name == TINY_QWEN3_NAME:
            return ensure_tiny_qwen3(self.cache_dir)
        path = Path(name)
        if path.is_absolute() and (path / "config.json").is_file():
            return path
        known = ", ".join(self.names())
        raise UnknownBaseModel(
            f"base_model {name!r} is not served here; served models: {known} "
            "(or give an absolute path to a local Hugging Face model folder)"
        )


def parse_model_flag(flag: str) -> tuple[str, Path]:
    """`NAME=PATH` from `anvil serve --model`."""
    name, sep, path = flag.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--model expects NAME=PATH, got {flag!r}")
    folder = Path(path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ValueError(f"--model {name}: {folder} is not a Hugging Face model folder (no config.json)")
    return name, folder
