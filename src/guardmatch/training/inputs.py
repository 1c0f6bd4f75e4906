"""How a batch of examples becomes logits: the seam between the trainer and the feature source.

``TextInputs`` tokenizes and runs the whole encoder (full fine-tuning, the GPU path). The CPU
fast modes (cached lower-layer states, frozen embeddings) provide the same two methods, so the
trainer and every algorithm stay one copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

import torch
from torch import nn

from guardmatch.data.example import Example, Task

if TYPE_CHECKING:
    from guardmatch.model import GuardClassifier


class InputPipeline(Protocol):
    def encode(self, examples: Sequence[Example]) -> Any:
        """Model-ready inputs for ``examples`` (texts or cached features)."""

    def logits(self, module: nn.Module, batch: Any) -> torch.Tensor:
        """``[H, N, C']`` logits of ``module`` on an encoded batch."""


class TextInputs:
    """Tokenize (prompt-first pair truncation for responses) and run the full model."""

    def __init__(self, model: GuardClassifier, task: Task | str, device: torch.device | None = None):
        self.model = model
        self.task = Task(task)
        self.device = device or torch.device("cpu")

    def encode(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        prompts = [ex.prompt for ex in examples]
        responses = [ex.response or "" for ex in examples] if self.task is Task.RESPONSE else None
        enc = self.model.tokenize(prompts, responses)
        return {k: v.to(self.device) for k, v in enc.items()}

    def logits(self, module: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return module(**batch)


class CachedInputs:
    """Inputs read from a :class:`guardmatch.features.FeatureStore` (top-layer or frozen mode)."""

    def __init__(self, store: Any, device: torch.device | None = None):
        self.store = store
        self.device = device or torch.device("cpu")

    def encode(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        return self.store.batch(examples, self.device)

    def logits(self, module: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return module(**batch)
