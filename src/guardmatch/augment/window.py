"""Augment only what the encoder reads: cut each source text to the classifier's token window.

A classifier with ``max_length=128`` never sees token 129 of a prompt, so rewriting it costs LLM
time for nothing (long role-play prompts are 3-10x longer than the window). :class:`SourceWindow`
cuts the source the way :func:`guardmatch.model.tokenize_inputs` does, with the encoder's own
tokenizer: a prompt keeps its first ``max_length - 2`` tokens; a (prompt, response) pair is cut
*prompt first* (the response keeps what fits, the prompt gets the rest). The cut is part of the
augmenter config, so of the cache fingerprint, and every view records it in its metadata
(``window``: tokenizer, max_length, characters kept of each field, whether anything was cut).

The view cache stays keyed by the *uncut* text's hash, so training finds the views of the texts it
holds; the weak view (the text itself) is cut by the tokenizer at training time to the same window.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

from pydantic import Field

from guardmatch.config import StrictModel
from guardmatch.data.example import Example, Task


class SourceWindow(StrictModel):
    """Cut sources to ``max_length`` tokens of ``tokenizer`` (an encoder alias, path or Hub id)."""

    tokenizer: str = Field("minilm", description="encoder alias, directory or Hub id whose tokenizer counts")
    max_length: int = Field(128, ge=8, description="the classifier's max_length (special tokens included)")
    pair_max_length: int | None = Field(None, ge=8, description=(
        "max_length for (prompt, response) pairs (default: max_length); one window config then serves "
        "both tasks, so both share one view cache"))

    def cut(self, example: Example, task: Task | str) -> tuple[Example, dict[str, Any]]:
        """The example with its text(s) cut to the window, and the metadata that records the cut.

        A text that fits is returned unchanged (not even trailing spaces are dropped)."""
        from guardmatch.model import cut_pairs

        task = Task(task)
        tok = _tokenizer(self.tokenizer)
        prompt, response = example.prompt, example.response
        if task is Task.PROMPT:
            offsets = tok([prompt], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"][0]
            keep = self.max_length - tok.num_special_tokens_to_add(pair=False)
            if len(offsets) > keep:
                prompt = prompt[: offsets[keep - 1][1]]
        else:
            (cut_p,), (cut_r,) = cut_pairs(tok, [prompt], [response or ""], self.pair_max_length or self.max_length)
            prompt = cut_p if len(cut_p.rstrip()) < len(prompt.rstrip()) else prompt
            response = cut_r if len(cut_r.rstrip()) < len((response or "").rstrip()) else response
        length = self.max_length if task is Task.PROMPT else self.pair_max_length or self.max_length
        meta: dict[str, Any] = {"tokenizer": self.tokenizer, "max_length": length,
                                "prompt_chars": len(prompt), "prompt_chars_source": len(example.prompt)}
        cut = prompt != example.prompt
        if task is Task.RESPONSE:
            meta["response_chars"] = len(response or "")
            meta["response_chars_source"] = len(example.response or "")
            cut = cut or response != example.response
        meta["cut"] = cut
        return replace(example, prompt=prompt, response=response), meta


@lru_cache(maxsize=4)
def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from guardmatch.encoders import resolve_encoder

    return AutoTokenizer.from_pretrained(resolve_encoder(name))
