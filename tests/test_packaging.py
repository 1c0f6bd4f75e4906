"""``pyproject.toml`` ships only package data that exists in the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_data_pattern_matches_files():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, patterns in data.items():
        root = REPO / "src" / package.replace(".", "/")
        for pattern in patterns:
            assert [p for p in root.glob(pattern) if p.is_file()], f"{package}: {pattern!r} matches no file in {root}"
