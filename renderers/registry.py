"""Renderers by name, and which one each known model family was trained with."""

import re
from collections.abc import Callable
from functools import partial

from renderers.hf_template import make_hf_template_renderer
from renderers.llama3 import make_llama3_renderer
from renderers.phi3 import make_phi3_renderer
from renderers.qwen2_5 import make_qwen2_5_renderer
from renderers.qwen3 import make_qwen3_renderer
from renderers.role_colon import make_role_colon_renderer
from renderers.types import Renderer

RENDERERS: dict[str, Callable[..., Renderer]] = {
    "qwen3": partial(make_qwen3_renderer, thinking="hybrid"),
    "qwen3_disable_thinking": partial(make_qwen3_renderer, thinking="disabled"),
    "qwen3_instruct": partial(make_qwen3_renderer, thinking="absent"),
    "qwen2_5": make_qwen2_5_renderer,
    "phi3": make_phi3_renderer,
    "llama3": make_llama3_renderer,
    "role_colon": make_role_colon_renderer,
    "hf_template": make_hf_template_renderer,
}

# (pattern on the lower-cased model name, renderer); the first match wins, so the more specific
# patterns come first. Base (non-chat) checkpoints get the plain-text format.
_RECOMMENDATIONS: list[tuple[str, str]] = [
    (r"qwen3.*-base\b", "role_colon"),
    (r"qwen3.*instruct-2507", "qwen3_instruct"),
    (r"qwen3", "qwen3"),
    (r"qwen2\.5.*instruct", "qwen2_5"),
    (r"qwen2\.5", "role_colon"),
    (r"phi-3", "phi3"),
    (r"llama-3.*instruct", "llama3"),
    (r"llama-3", "role_colon"),
]


def get_renderer(name: str, tokenizer) -> Renderer:
    try:
        make = RENDERERS[name]
    except KeyError:
        raise ValueError(f"unknown renderer {name!r}; known renderers: {', '.join(RENDERERS)}") from None
    return make(tokenizer)


def recommended_renderer_name(model_name: str) -> str:
    """The renderer matching how `model_name` (e.g. "Qwen/Qwen3-8B") was trained."""
    lowered = model_name.lower()
    for pattern, renderer_name in _RECOMMENDATIONS:
        if re.search(pattern, lowered):
            return renderer_name
    families = "Qwen3, Qwen3-Instruct-2507, Qwen2.5, Phi-3/3.5, Llama 3 (and their base models)"
    raise ValueError(
        f"no recommended renderer for {model_name!r}; known families: {families}. "
        "For another chat model, 'hf_template' follows its tokenizer's own chat template."
    )
