"""Chat LLM backends behind one interface (:class:`ChatBackend`), built from a :class:`BackendConfig`."""

from __future__ import annotations

from guardmatch.augment.backends.base import (
    BACKENDS,
    BackendConfig,
    ChatBackend,
    Generation,
    GenerationParams,
    Message,
)
from guardmatch.augment.backends.models import ModelNotFoundError, resolve_model


def build_backend(config: BackendConfig) -> ChatBackend:
    """The backend of ``config.kind`` (:data:`BACKENDS`; heavy libraries are imported when it loads)."""
    return BACKENDS.get(config.kind)(config)


__all__ = ["BACKENDS", "BackendConfig", "ChatBackend", "Generation", "GenerationParams", "Message", "ModelNotFoundError",
           "build_backend", "resolve_model"]
