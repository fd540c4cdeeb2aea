"""The shape of the tree: the pure core imports no adapter and performs no I/O library imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {
    "adapters", "functions", "gateway",  # adapters
    "boto3", "botocore", "psycopg", "psycopg_pool", "requests", "httpx", "dicomweb_client", "pyorthanc",
    "fastapi", "mangum", "orthanc", "socket", "urllib.request", "subprocess",
}


SOURCE_DIRS = (
    "tmi", "adapters", "functions", "gateway", "orthanc", "scripts", "bench", "localstack", "tests",
)


def _project_sources() -> list[Path]:
    """The project's own Python files (never the virtualenvs under .venv, .run or bench/.venv-tools)."""
    return [
        path
        for top in SOURCE_DIRS
        for path in sorted((ROOT / top).rglob("*.py"))
        if not any(part.startswith(".venv") or part in {".run", "__pycache__"} for part in path.parts)
    ]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_imports_no_adapter_or_io_library() -> None:
    offenders = []
    for path in sorted((ROOT / "tmi").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN_IN_CORE or name in FORBIDDEN_IN_CORE:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_orthanc_module_imported_in_one_entry_file_only() -> None:
    users = [
        str(p.relative_to(ROOT))
        for p in _project_sources()
        if "orthanc" in {n.split(".")[0] for n in _imports(p)}
    ]
    assert users == ["orthanc/plugin/intake_plugin.py"]
