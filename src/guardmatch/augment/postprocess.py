"""Clean what an instruct LLM returns down to the rewritten/translated text itself."""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_TAGS = re.compile(r"</?(?:text|response|request|rewritten(?:_text)?|translation)>", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^\s*(?:sure[,!.]?\s*)?(?:here(?:'s| is| are)\b[^\n:]{0,80}:|"
    r"(?:the )?(?:rewritten|paraphrased|translated|revised)(?: text| version| response| prompt| translation)?\s*:|"
    r"(?:translation|rewrite|paraphrase|output|answer)\s*:)\s*",
    re.IGNORECASE,
)
_NOTE = re.compile(r"\n\s*(?:\(?note|explanation|changes made|i (?:replaced|changed|kept))\b.*$",
                   re.IGNORECASE | re.DOTALL)
_QUOTES = ('"', "'", "\u201c", "\u201d", "`")


def clean_output(text: str) -> str:
    """Strip think blocks, preambles ("Here is the rewritten text:"), tags, fences, quotes, notes."""
    out = _THINK.sub("", text or "").strip()
    fence = re.match(r"^```[\w-]*\n(.*?)\n```\s*$", out, re.DOTALL)
    if fence:
        out = fence.group(1).strip()
    for _ in range(2):
        out = _PREAMBLE.sub("", out, count=1).strip()
    out = _TAGS.sub("", out).strip()
    out = _NOTE.sub("", out).strip()
    if len(out) >= 2 and out[0] in _QUOTES and out[-1] in _QUOTES and out.count(out[0]) == 2:
        out = out[1:-1].strip()
    return out
