"""Chat LLM backends behind one interface (:class:`ChatBackend`), built from a :class:`BackendConfig`."""

from __future__ import annotations

from guardmatch.augment.backends.base import (
    BackendConfig,
    ChatBackend,
    Generation,
    GenerationParams,
    Message,
)
from guardmatch.augment.backends.models import ModelNotFoundError, resolve_model


def build_backend(config: BackendConfig) -> ChatBackend:
    """The backend of ``config.kind`` (heavy libraries are imported only when used)."""
    if config.kind == "llama-cpp":
        from guardmatch.augment.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(config)
    if config.kind == "transformers":
        from guardmatch.augment.backends.transformers import TransformersBackend

        return TransformersBackend(config)
    if config.kind == "openai":
        from guardmatch.augment.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(config)
    raise ValueError(f"unknown backend kind {config.kind!r}")


__all__ = ["BackendConfig", "ChatBackend", "Generation", "GenerationParams", "Message", "ModelNotFoundError",
           "build_backend", "resolve_model"]
