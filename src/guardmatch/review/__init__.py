"""The review loop: route an unlabeled pool to people, store their decisions, retrain.

seed labels -> train -> ``guardmatch review route`` (score the pool; pseudo-label the confident,
queue the most useful N for review, leave the rest) -> people label the queue (``review serve``
page, or ``review export`` / ``review import`` as JSONL, CSV, Argilla v2 records, Label Studio
tasks) -> ``guardmatch retrain`` (seed + human labels, recorded round) -> route again.

Modules: :mod:`~guardmatch.review.loop` (``route_store``: one routing round from Python, what
``review route`` runs), :mod:`~guardmatch.review.routing` (``score_pool``, strategies, ``route``,
APM from a run), :mod:`~guardmatch.review.store` (the SQLite queue store: items, predictions, reviews,
label provenance, conflicts, imports, rounds), :mod:`~guardmatch.review.exchange` (files),
:mod:`~guardmatch.review.server` (the page), :mod:`~guardmatch.review.retrain` (``retrain``, ``base_config``),
:mod:`~guardmatch.review.sources` (filling a store from a run). The simulation benchmark is
``benchmarks/review_simulation.py``.
"""
