"""Prompt templates for the LLM augmenters: plain-text files, packaged or user-supplied.

Format: sections introduced by ``### system``, ``### user`` and ``### assistant`` lines, in chat
order (system optional and first; user/assistant pairs are few-shot turns; the last is a user turn
holding the placeholders). A file without section lines is one user message. Placeholders
``{text}``, ``{prompt}``, ``{response}``, ``{source_lang}``, ``{target_lang}`` are substituted; any
other braces are left alone, so texts and templates may contain code. A name without a path
separator and without ``.txt`` is looked up in the packaged ``guardmatch/prompts/`` directory.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from guardmatch.errors import ConfigError

_SECTION = re.compile(r"^###\s*(system|user|assistant)\s*$", re.MULTILINE | re.IGNORECASE)
_FIELD = re.compile(r"\{(text|prompt|response|source_lang|target_lang)\}")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    turns: tuple[tuple[str, str], ...]  # (role, content) in chat order

    @classmethod
    def parse(cls, name: str, raw: str) -> "PromptTemplate":
        parts = _SECTION.split(raw)
        if len(parts) == 1:
            return cls(name, (("user", raw.strip()),))
        turns = tuple((head.lower(), body.strip()) for head, body in zip(parts[1::2], parts[2::2]))
        roles = [r for r, _ in turns]
        if roles[-1] != "user":
            raise ConfigError(f"prompt template {name!r}: the last section must be '### user'")
        if "system" in roles[1:]:
            raise ConfigError(f"prompt template {name!r}: '### system' may only come first")
        return cls(name, turns)

    @property
    def system(self) -> str | None:
        return self.turns[0][1] if self.turns[0][0] == "system" else None

    @property
    def user(self) -> str:
        return self.turns[-1][1]

    @property
    def sha(self) -> str:
        return hashlib.sha256("\x00".join(f"{r}\x01{c}" for r, c in self.turns).encode()).hexdigest()[:16]

    def fields(self) -> set[str]:
        return {f for _, c in self.turns for f in _FIELD.findall(c)}

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages with the placeholders filled."""
        missing = self.fields() - set(values)
        if missing:
            raise KeyError(f"prompt template {self.name!r} needs {sorted(missing)}")
        return [{"role": r, "content": _FIELD.sub(lambda m: values[m.group(1)], c)} for r, c in self.turns]


def packaged_prompts() -> list[str]:
    root = resources.files("guardmatch") / "prompts"
    return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".txt"))


def load_prompt(name_or_path: str) -> PromptTemplate:
    """A packaged template by name (``rewrite``) or a template file by path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return PromptTemplate.parse(str(path), path.read_text(encoding="utf-8"))
    res = resources.files("guardmatch") / "prompts" / f"{name_or_path}.txt"
    if res.is_file():
        return PromptTemplate.parse(name_or_path, res.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"prompt template {name_or_path!r}: no such file and not a packaged prompt "
                            f"(packaged: {', '.join(packaged_prompts())})")
