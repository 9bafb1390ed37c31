"""Where trainer workers and sampler engines run on a Ray cluster: `anvil serve --placement FILE`.

The file (YAML or JSON) names, per base model, how many trainer workers and sampler engines it
gets; base models it does not name share the `default` group. For example:

    default: {trainers: 1, samplers: 1}
    base_models:
      anvil/tiny-qwen3: {trainers: 1, samplers: 2}
      Qwen/Qwen3-8B: {trainers: 2, samplers: 4}
      Qwen/Qwen3-32B: {trainers: 1, samplers: 2, shards: 4}   # one trainer worker over 4 actors

A bad file stops the server at start with pydantic's message, which names the field.
"""

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class GroupPlacement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trainers: int = Field(1, ge=1, le=1024, description="trainer worker actors of this group")
    samplers: int = Field(1, ge=1, le=1024, description="sampler engine actors of this group")
    shards: int = Field(
        1, ge=1, le=1024,
        description="actors each trainer worker spans, its base model's decoder layers sharded over them (FSDP2)",
    )


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: GroupPlacement = Field(default_factory=GroupPlacement)
    base_models: dict[str, GroupPlacement] = Field(default_factory=dict)

    def group_of(self, base_model: str) -> str | None:
        """The group a base model's work runs in: its own name if listed, else None (default)."""
        return base_model if base_model in self.base_models else None

    def of(self, group: str | None) -> GroupPlacement:
        return self.default if group is None else self.base_models[group]


class PlacementError(ValueError):
    pass


def load_placement(path: Path) -> Placement:
    """Read and validate a placement file; PlacementError names the file and the bad field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlacementError(f"--placement {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PlacementError(f"--placement {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    try:
        return Placement.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        )
        raise PlacementError(f"--placement {path}: {problems}") from None
