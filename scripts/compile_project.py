#!/usr/bin/env python3
"""Byte-compile the project's own packages (``make install`` and the de-id benchmark run it).

pip compiles what it installs into site-packages, but the project is an editable install: its modules are
compiled on first import, and not at all when ``PYTHONDONTWRITEBYTECODE`` is set (this VM's shells and CI).
Every ``tmi`` start would then recompile about 20 modules (~0.1 s of a one-file ``tmi deid``). compileall
writes regardless of that variable and skips files whose bytecode is current.

The packages are the ones ``pyproject.toml`` installs (``[tool.setuptools.packages.find] include``).
"""

from __future__ import annotations

import compileall
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_packages() -> list[str]:
    """The top-level packages pyproject.toml installs (``"tmi*"`` → ``tmi``)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return [p.rstrip("*").rstrip(".") for p in patterns]


def main() -> int:
    results = [compileall.compile_dir(ROOT / package, quiet=1) for package in project_packages()]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
