"""What an OpenAI `model` names, the models a caller may use, and each base model's tokenizer and
renderers (loaded once, off the event loop).

A model is a base model's name, or the `tinker://<model_id>/<kind>/<name>` path of a checkpoint
the caller owns or one that is published: the same checkpoints, and the same ownership checks,
as a Tinker sampling client's `model_path`.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from anvil.types import AdapterRef
from gateway.checkpoint_expiry import is_expired
from gateway.errors import UserError
from gateway.openai_errors import OpenAIError
from gateway.openai_wire import ModelCard, ModelList
from gateway.sampling_weights import checkpoint_adapter
from gateway.service import BaseModelInfo, Service
from renderers import get_renderer, recommended_renderer_name
from renderers.types import Renderer
from gateway.openai_text import TokenTexts
from sampler.torch_engine import eos_token_ids

# sampler checkpoints listed by GET /v1/models, newest first
LISTED_CHECKPOINTS = 1000


@dataclass(frozen=True)
class ServedModel:
    name: str  # as the request named it
    base: BaseModelInfo
    adapter: AdapterRef | None  # None: the base model itself


async def resolve_model(service: Service, owner: str, model: str) -> ServedModel:
    """The weights `model` names, if the caller may sample them; otherwise a 404 naming it."""
    try:
        if model.startswith("tinker://"):
            checkpoint = await service.readable_checkpoint(owner, model)
            run = await service.store.training_run(checkpoint.model_id)
            base = await service.base_model(run.base_model)
            return ServedModel(model, base, checkpoint_adapter(model, checkpoint))
        return ServedModel(model, await service.base_model(model), None)
    except UserError as exc:
        raise OpenAIError(
            f"model {model!r} not found: {exc.message}", status=404, param="model", code="model_not_found"
        ) from None


async def list_models(service: Service, owner: str, texts: "ModelTexts", started: int) -> ModelList:
    """The base models (created: when the server started), then the caller's sampler checkpoints
    and the published ones, newest first."""
    cards = [
        ModelCard(id=name, created=started, owned_by="anvil", base_model=name, renderer=texts.default_renderer_name(name))
        for name in service.registry.names()
    ]
    for checkpoint, base_model, checkpoint_owner in await service.store.checkpoints_readable_by(
        owner, "sampler_weights", LISTED_CHECKPOINTS
    ):
        if is_expired(checkpoint):
            continue
        cards.append(
            ModelCard(
                id=checkpoint.tinker_path,
                created=int(datetime.fromisoformat(checkpoint.created).timestamp()),
                owned_by="you" if checkpoint_owner == owner else "public",
                base_model=base_model,
                renderer=texts.default_renderer_name(base_model),
            )
        )
    return ModelList(data=cards)


@dataclass(frozen=True)
class BaseModelText:
    """A base model's tokenizer, the tokens that end its documents, and each token's text."""

    tokenizer: object
    eos_ids: tuple[int, ...]
    token_texts: TokenTexts


@dataclass
class ModelTexts:
    """Tokenizers and renderers of the base models, built on first use."""

    _texts: dict[str, BaseModelText] = field(default_factory=dict)
    _renderers: dict[tuple[str, str], Renderer] = field(default_factory=dict)
    _loading: dict[str, asyncio.Future] = field(default_factory=dict)

    async def text_of(self, base: BaseModelInfo) -> BaseModelText:
        if base.name not in self._texts:
            if base.name not in self._loading:
                self._loading[base.name] = asyncio.ensure_future(asyncio.to_thread(_load_text, base.path))
            try:
                self._texts[base.name] = await asyncio.shield(self._loading[base.name])
            finally:
                self._loading.pop(base.name, None)
        return self._texts[base.name]

    def default_renderer_name(self, base_model: str) -> str | None:
        """The renderer a chat request on `base_model` gets when it names none."""
        try:
            return recommended_renderer_name(base_model)
        except ValueError:
            text = self._texts.get(base_model)
            if text is not None and getattr(text.tokenizer, "chat_template", None):
                return "hf_template"
            return None

    async def renderer(self, base: BaseModelInfo, name: str | None) -> Renderer:
        text = await self.text_of(base)
        if name is None:
            name = self.default_renderer_name(base.name)
            if name is None:
                raise OpenAIError(
                    f"no chat format is known for {base.name!r} and its tokenizer has no chat template; "
                    "name a renderer in the request's 'renderer' field",
                    param="renderer",
                )
        key = (base.name, name)
        if key not in self._renderers:
            try:
                self._renderers[key] = get_renderer(name, text.tokenizer)
            except ValueError as exc:
                raise OpenAIError(str(exc), param="renderer") from None
        return self._renderers[key]


def _load_text(path: Path) -> BaseModelText:
    tokenizer = AutoTokenizer.from_pretrained(path)
    eos_ids = tuple(eos_token_ids(path, tokenizer, AutoConfig.from_pretrained(path)))
    return BaseModelText(tokenizer, eos_ids, TokenTexts(tokenizer))
