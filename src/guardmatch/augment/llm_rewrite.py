"""Task-specific, intent-preserving LLM rewrite (the reference paper's augmentation).

The default prompt (``rewrite`` / ``rewrite_response``) needs **no label**: one instruction asks
the LLM to find the words that carry the text's intent, harmful or benign, and replace them with
different wording that keeps the same intent. So it can augment the unlabeled pool without reading
hidden labels. Label-specific prompts (``rewrite_harmful``/``rewrite_benign`` and their response
variants) are used only with ``use_labels=True`` and only for examples whose ``label`` is set;
``metadata['hidden_label']`` is never read.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from guardmatch.augment.backends import BackendConfig, ChatBackend, GenerationParams, build_backend
from guardmatch.augment.base import Augmenter, AugmenterConfig, Draft, ViewRequest
from guardmatch.augment.postprocess import clean_output
from guardmatch.augment.prompts import PromptTemplate, load_prompt
from guardmatch.augment.registry import AUGMENTERS
from guardmatch.data.example import HARMFUL, Task


class LLMRewriteConfig(AugmenterConfig):
    backend: BackendConfig = Field(default_factory=BackendConfig)
    prompt: str = Field("rewrite", description="label-free template for the prompt task (name or file)")
    response_prompt: str = Field("rewrite_response", description="label-free template for the response task")
    use_labels: bool = Field(False, description="use label-specific templates for labeled examples")
    harmful_prompt: str = "rewrite_harmful"
    benign_prompt: str = "rewrite_benign"
    harmful_response_prompt: str = "rewrite_response_harmful"
    benign_response_prompt: str = "rewrite_response_benign"
    rewrite_prompt_too: bool = Field(False, description="response task: also rewrite the prompt")
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=8)
    length_factor: float = Field(1.5, gt=0, description="max new tokens = factor x source tokens + 32 (capped)")


@AUGMENTERS.register("llm-rewrite")
class LLMRewriteAugmenter(Augmenter):
    """Rewrite each text with a chat LLM; one view per request, seeded per (text, view, attempt)."""

    config_cls = LLMRewriteConfig
    config: LLMRewriteConfig

    def __init__(self, config: LLMRewriteConfig | None = None, backend: ChatBackend | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.backend = backend or build_backend(self.config.backend)
        self._templates: dict[str, PromptTemplate] = {}

    def template(self, name: str) -> PromptTemplate:
        if name not in self._templates:
            self._templates[name] = load_prompt(name)
        return self._templates[name]

    def identity(self) -> dict[str, Any]:
        cfg = self.config
        names = [cfg.prompt, cfg.response_prompt]
        if cfg.use_labels:
            names += [cfg.harmful_prompt, cfg.benign_prompt, cfg.harmful_response_prompt, cfg.benign_response_prompt]
        return {"backend": self.backend.identity(), "prompts": {n: self.template(n).sha for n in names}}

    def prepare(self) -> None:
        self.backend.load()

    def preferred_batch_size(self) -> int:
        return self.backend.preferred_batch_size()

    def _choose(self, req: ViewRequest, response: bool) -> str:
        cfg = self.config
        label = req.example.label if cfg.use_labels else None
        if label is None:
            return cfg.response_prompt if response else cfg.prompt
        if response:
            return cfg.harmful_response_prompt if label == HARMFUL else cfg.benign_response_prompt
        return cfg.harmful_prompt if label == HARMFUL else cfg.benign_prompt

    def _params(self, text: str, seed: int) -> GenerationParams:
        cfg = self.config
        budget = int(cfg.length_factor * self.backend.count_tokens(text)) + 32
        return GenerationParams(max_new_tokens=min(cfg.max_new_tokens, budget), temperature=cfg.temperature,
                                top_p=cfg.top_p, seed=seed)

    def generate(self, requests: list[ViewRequest]) -> list[Draft]:
        convs, params, where = [], [], []
        for i, req in enumerate(requests):
            ex = req.example
            if req.task is Task.PROMPT or self.config.rewrite_prompt_too:
                name = self._choose(req, response=False)
                convs.append(self.template(name).render(text=ex.prompt))
                params.append(self._params(ex.prompt, req.seed))
                where.append((i, "prompt", name))
            if req.task is Task.RESPONSE:
                name = self._choose(req, response=True)
                convs.append(self.template(name).render(prompt=ex.prompt, response=ex.response or ""))
                params.append(self._params(ex.response or "", req.seed + 1))
                where.append((i, "response", name))
        gens = self.backend.chat(convs, params)
        drafts = [Draft(metadata={"backend": self.backend.name, "model": self.backend.config.model})
                  for _ in requests]
        for (i, field, name), gen in zip(where, gens):
            d = drafts[i]
            d.metadata[f"{field}_template"] = name
            d.metadata[f"{field}_finish"] = gen.finish_reason
            if gen.completion_tokens is not None:
                d.metadata[f"{field}_tokens"] = gen.completion_tokens
            if gen.error:
                d.error = gen.error
                continue
            text = clean_output(gen.text)
            if field == "prompt":
                d.prompt = text
            else:
                d.response = text
        return drafts

    def close(self) -> None:
        self.backend.close()
