"""Log ingestion: chat logs -> an unlabeled, PII-redacted, de-duplicated pool.

``guardmatch ingest LOGS... --out pool.jsonl`` / :func:`guardmatch.ingest.pipeline.ingest`.

Modules (one concept each):

* ``readers``   streaming JSONL / CSV / Parquet (+ ``.gz``) with resume positions; bad lines
                become problems (file + line), over-long lines are skipped in bounded memory.
* ``chatlogs``  OpenAI ``messages`` (and ShareGPT) records -> prompt examples (user turns, with up
                to ``context_turns`` earlier messages) and response examples (assistant turns);
                flat records via a column mapping; segment metadata kept.
* ``pii``       redaction with typed placeholders: Presidio recognizers (email, phone, credit card,
                IBAN, IP) + URL/secret patterns + optional spaCy NER for names.
* ``filters``   length and language (py3langid) filters.
* ``dedup``     exact + MinHash-LSH near duplicates (datasketch), state in SQLite.
* ``pipeline``  the resumable run: checkpoints, manifest, error log, audit record.
* ``config``    pydantic ``IngestConfig`` (YAML-loadable).

Everything written goes through :mod:`guardmatch.storage` (0600 files, optional encryption,
audit log, purge). Heavy dependencies are in the ``ingest`` extra.
"""

from guardmatch.ingest.config import ColumnMapping, DedupConfig, IngestConfig, IngestFilterConfig
from guardmatch.ingest.pii import PiiConfig, PiiRedactor

__all__ = ["ColumnMapping", "DedupConfig", "IngestConfig", "IngestFilterConfig", "PiiConfig", "PiiRedactor"]
