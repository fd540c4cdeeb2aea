"""The intake Orthanc plugin's own decisions, with a stand-in for Orthanc's ``orthanc`` module: which
instances go by reference, and how Orthanc's answers about a stored file are read. (The real plugin in a
real Orthanc is exercised by ``tests/integration/pipeline/test_end_to_end.py``.)"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parents[3] / "orthanc" / "plugin" / "intake_plugin.py"


class FakeOrthancError(Exception):
    """Like ``orthanc.OrthancException``: args are (error code, message)."""


class FakeInstance:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.data_asked = False

    def GetInstanceRemoteAet(self) -> str:  # Orthanc's method names
        return "DEMO_MODALITY"

    def GetInstanceSize(self) -> int:
        return len(self.data)

    def GetInstanceData(self) -> bytes:
        self.data_asked = True
        return self.data


def load_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, compression: bool = False,
                storage: str | None = None, rest: Any = None) -> tuple[types.ModuleType, list[Any]]:
    callbacks: list[Any] = []
    config = {
        "StorageDirectory": storage if storage is not None else str(tmp_path / "storage"),
        "StorageCompression": compression,
        "Tmi": {"Role": "intake", "SysPath": [], "IntakeBucket": "tmi-intake", "IntakePrefix": "incoming/",
                "SpoolDirectory": str(tmp_path / "spool"), "UploadThreads": 0, "SpoolRetrySeconds": 3600,
                "StoredFileAbove": 1000},
    }
    fake = types.ModuleType("orthanc")
    fake.OrthancException = FakeOrthancError  # type: ignore[attr-defined]
    fake.ErrorCode = types.SimpleNamespace(UNKNOWN_RESOURCE=17)  # type: ignore[attr-defined]
    fake.GetConfiguration = lambda: json.dumps(config)  # type: ignore[attr-defined]
    fake.RegisterOnStoredInstanceCallback = callbacks.append  # type: ignore[attr-defined]
    fake.RestApiGet = rest or (lambda uri: (_ for _ in ()).throw(AssertionError(uri)))  # type: ignore[attr-defined]
    for name in ("LogInfo", "LogWarning", "LogError"):
        setattr(fake, name, lambda message: None)
    monkeypatch.setitem(sys.modules, "orthanc", fake)
    spec = importlib.util.spec_from_file_location("tmi_intake_plugin_under_test", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, callbacks


def _spooled(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "spool").iterdir())


@pytest.mark.parametrize(("compression", "storage", "by_reference"), [
    (False, None, True), (True, None, False), (False, "relative/storage", False)])
def test_large_instances_go_by_reference_only_when_orthancs_file_is_usable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compression: bool, storage: str | None,
    by_reference: bool,
) -> None:
    _, [callback] = load_plugin(monkeypatch, tmp_path, compression=compression, storage=storage)
    small, large = FakeInstance(b"D" * 1000), FakeInstance(b"D" * 1001)
    callback(small, "small-id")
    assert small.data_asked
    callback(large, "large-id")
    assert large.data_asked is not by_reference
    names = _spooled(tmp_path)
    data_files = [n for n in names if not n.endswith(".json")]
    assert len(data_files) == (1 if by_reference else 2)
    references = [json.loads((tmp_path / "spool" / n).read_text()) for n in names if n.endswith(".json")]
    assert [r.get("orthanc_instance") for r in references if "orthanc_instance" in r] == (
        ["large-id"] if by_reference else [])


def test_the_stored_file_is_found_where_orthanc_keeps_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uuid = "0a1b2c3d-0000-4000-8000-000000000000"
    stored = tmp_path / "storage" / "0a" / "1b" / uuid
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"D" * 5000)
    asked: list[str] = []

    def rest(uri: str) -> bytes:
        asked.append(uri)
        return json.dumps({"Uuid": uuid, "UncompressedSize": 5000}).encode()

    plugin, _ = load_plugin(monkeypatch, tmp_path, rest=rest)
    assert plugin._stored_file("inst-1", 5000) == stored
    assert asked == ["/instances/inst-1/attachments/dicom/info"]
    from adapters.intake_writer import StoredFileGone

    with pytest.raises(StoredFileGone):  # not the size the callback saw
        plugin._stored_file("inst-1", 4999)
    stored.unlink()
    with pytest.raises(StoredFileGone):  # Orthanc knows it, the file is not there
        plugin._stored_file("inst-1", 5000)


def test_only_unknown_resource_means_gone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from adapters.intake_writer import StoredFileGone

    errors = iter([FakeOrthancError(17, "Unknown resource"), FakeOrthancError(11, "Database plugin error")])

    def rest(uri: str) -> bytes:
        raise next(errors)

    plugin, _ = load_plugin(monkeypatch, tmp_path, rest=rest)
    with pytest.raises(StoredFileGone):
        plugin._stored_file("deleted", 5000)
    with pytest.raises(FakeOrthancError):  # anything else: raised, so the uploader retries
        plugin._stored_file("busy", 5000)
