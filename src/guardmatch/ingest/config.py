"""Pydantic configuration of an ingest run (strict: a misspelt key is an error), loadable from YAML
with flag overrides by :func:`guardmatch.config.build_config`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guardmatch.config import StrictModel
from guardmatch.ingest.pii import PiiConfig


class ColumnMapping(StrictModel):
    """Where the text and metadata are in each input record."""

    layout: Literal["auto", "messages", "flat"] = "auto"  # auto: chat if a messages field is present
    messages: str = "messages"  # OpenAI-style [{role, content}] (ShareGPT's `conversations` also read)
    prompt: str = "prompt"
    response: str | None = "response"
    id: str | None = "id"
    conversation_id: str | None = None  # defaults to `id`
    source: str | None = None  # a column naming the source; default: the input file's name
    segments: list[str] | None = None  # metadata kept for slicing; None: every scalar field
    drop: list[str] = Field(default_factory=list)  # metadata fields never stored (e.g. ip, email)
    pseudonymize: list[str] = Field(default_factory=list)  # fields replaced by a keyed hash (e.g. user_id)
    context_turns: int = Field(2, ge=0)  # earlier messages rendered in front of a chat turn
    include_system: bool = False  # system messages count as context
    prompt_examples: bool = True  # each user turn -> a prompt example
    response_examples: bool = True  # each assistant turn -> a response example


class IngestFilterConfig(StrictModel):
    """Length and language filters on ingested records (applied to the redacted text). (Filters on
    generated views: ``guardmatch.augment.filters.ViewFilterConfig``.)"""

    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(20_000, ge=1)
    languages: list[str] | None = None  # ISO 639-1 codes to keep, e.g. ["en"]; None: no filter
    lang_min_chars: int = 20  # shorter texts are too short to identify and are kept


class DedupConfig(StrictModel):
    """Exact (normalized text hash) and near-duplicate (MinHash LSH) removal."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0)  # Jaccard similarity of word shingles
    num_perm: int = Field(128, ge=16, le=512)
    shingle_words: int = Field(3, ge=1)


class IngestConfig(StrictModel):
    """Everything an ingest run needs besides the input and output paths."""

    format: Literal["jsonl", "csv", "parquet"] | None = None  # None: from each file's name
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    filters: IngestFilterConfig = Field(default_factory=IngestFilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    max_line_bytes: int = Field(16 << 20, ge=1024)
    csv_delimiter: str | None = None
    batch_records: int = Field(256, ge=1)
    checkpoint_records: int = Field(20_000, ge=1)
    checkpoint_seconds: float = Field(30.0, gt=0)
    encrypt: bool | None = None  # None: encrypt when GUARDMATCH_ENCRYPTION_KEY is set
