"""The linter and the type checker are part of the suite: ruff covers `src/`, `tests/`, `benchmarks/` and
`scripts/`, mypy covers `src/`.

Both are configured in pyproject.toml (`[tool.ruff]`, `[tool.mypy]`) and installed by the dev extra.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_is_clean():
    res = _run("ruff", "check", "src", "tests", "benchmarks", "scripts")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_is_clean_on_src():
    res = _run("mypy")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
