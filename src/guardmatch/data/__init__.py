"""Data layer: the example type, loaders for the upstream formats, named datasets and suites,
label-budget splits, and validation (problems, train/test overlap)."""

from guardmatch.data.example import (
    HARMFUL,
    LABEL_NAMES,
    UNHARMFUL,
    Example,
    Task,
    UnknownLabelError,
    labels_of,
    parse_label,
    split_inputs,
    text_hash,
)
from guardmatch.data.loaders import (
    DEFAULT_MAX_TEXT_CHARS,
    LoadResult,
    MissingExtraError,
    dataset_formats,
    detect_dataset_format,
    load_file,
    load_hub,
    load_rows,
    merge_results,
    save_jsonl,
)
from guardmatch.data.overlap import check_overlap, normalize_text, overlap_key, remove_overlap
from guardmatch.data.splits import Split, SplitError, SplitManifest, allocate, make_split
from guardmatch.data.suites import (
    DATASETS,
    SUITES,
    DatasetNotFoundError,
    DatasetSpec,
    HubSource,
    Suite,
    data_dirs,
    describe_datasets,
    find_local,
    load_dataset,
    load_suite,
)
from guardmatch.data.validation import DataError, LoadReport, Problem

__all__ = [
    "HARMFUL", "LABEL_NAMES", "UNHARMFUL", "Example", "Task", "UnknownLabelError", "labels_of", "parse_label",
    "split_inputs", "text_hash",
    "DEFAULT_MAX_TEXT_CHARS", "dataset_formats", "LoadResult", "MissingExtraError", "detect_dataset_format", "load_file",
    "load_hub", "load_rows", "merge_results", "save_jsonl",
    "check_overlap", "normalize_text", "overlap_key", "remove_overlap",
    "Split", "SplitError", "SplitManifest", "allocate", "make_split",
    "DATASETS", "SUITES", "DatasetNotFoundError", "DatasetSpec", "HubSource", "Suite", "data_dirs",
    "describe_datasets", "find_local", "load_dataset", "load_suite",
    "DataError", "LoadReport", "Problem",
]
