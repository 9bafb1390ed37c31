"""Chat messages to the exact tokens a model was trained and served with, with per-token loss
weights, and sampled tokens back to messages."""

from renderers.datum import datum_from_example
from renderers.registry import RENDERERS, get_renderer, recommended_renderer_name
from renderers.types import Message, ParsedResponse, Renderer, ToolCall, ToolSpec, TrainOnWhat

__all__ = [
    "RENDERERS",
    "Message",
    "ParsedResponse",
    "Renderer",
    "ToolCall",
    "ToolSpec",
    "TrainOnWhat",
    "datum_from_example",
    "get_renderer",
    "recommended_renderer_name",
]
