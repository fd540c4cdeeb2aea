"""storescu → intake Orthanc → intake bucket → notification → queue → worker → research bucket + Orthanc.

One stack for the module (``pipeline_stack``); the demo population (synthetic mammography with a two-ID
person, a typo, a burned-in instance and a corrupt file) is sent once and checked from several angles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

from tests.fixtures.stack import StackHarness, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(pipeline_stack: StackHarness, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Send the demo population once: C-STORE for the sendable files, a direct put for the corrupt one."""
    from adapters.intake_writer import CALLING_AET_METADATA, IntakeWriter
    from tmi.synthetic.demo import generate_demo

    h = pipeline_stack
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), seed=11)
    sendable = [i for i in manifest.instances if i.sendable_by_cstore]
    result = h.storescu([i.path for i in sendable])
    assert result.returncode == 0, result.stderr
    names = [h.intake_key(i.path) for i in sendable]
    corrupt = next(i for i in manifest.instances if not i.sendable_by_cstore)
    writer = IntakeWriter(h.settings.intake_bucket, h.settings.intake_prefix, Path("/nonexistent"))
    corrupt_key = writer.key_for("corrupt-demo-file")
    h.s3().put_object(Bucket=h.settings.intake_bucket, Key=corrupt_key, Body=corrupt.path.read_bytes(),
                      Metadata={CALLING_AET_METADATA: "DEMO_MODALITY"})
    names.append(corrupt_key.rsplit("/", 1)[-1])
    states = h.wait_finished(names, timeout_s=120)
    return {"manifest": manifest, "names": names, "states": states, "corrupt_key": corrupt_key,
            "by_name": dict(zip(names, [*sendable, corrupt], strict=True))}


def _crosswalk_instances(h: StackHarness, sop_uids: list[str]) -> dict[str, dict[str, Any]]:
    with h.db() as conn:
        rows = conn.execute(
            "SELECT i.original_sop_uid, i.anon_sop_uid, i.state, i.research_key, i.state_detail, p.pseudonym "
            "FROM instance i JOIN person p ON p.id = i.person_id WHERE i.original_sop_uid = ANY(%s)",
            (sop_uids,)).fetchall()
    return {r[0]: {"anon_sop": r[1], "state": r[2], "research_key": r[3], "detail": r[4], "pseudonym": r[5]}
            for r in rows}


def test_every_instance_is_published_or_quarantined_with_the_expected_reason(
        pipeline_stack: StackHarness, demo: dict[str, Any]) -> None:
    h = pipeline_stack
    manifest = demo["manifest"]
    expected = {name: inst.expected_outcome for name, inst in demo["by_name"].items()}
    got = {name: ("written" if state == "COMPLETED" else "quarantined")
           for name, state in demo["states"].items()}
    assert got == expected
    with h.db() as conn:
        reasons = dict(conn.execute(
            "SELECT substring(object_key from '[^/]+$'), reason FROM pipeline_quarantine "
            "WHERE substring(object_key from '[^/]+$') = ANY(%s)", (demo["names"],)).fetchall())
    assert reasons == {name: inst.expected_reason for name, inst in demo["by_name"].items()
                       if inst.expected_outcome == "quarantined"}
    # The quarantined copies exist in the quarantine bucket with their reason as metadata.
    for name, reason in reasons.items():
        key = next(k for k in _intake_keys(h) if k.endswith(name))
        head = h.s3().head_object(Bucket=h.settings.quarantine_bucket, Key=key)
        assert head["Metadata"]["tmi-reason"] == reason
    assert len(manifest.expected_written) == sum(1 for s in demo["states"].values() if s == "COMPLETED")


def _intake_keys(h: StackHarness) -> list[str]:
    pages = h.s3().get_paginator("list_objects_v2").paginate(Bucket=h.settings.intake_bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_qido_finds_every_published_instance_under_its_pseudonym(
        pipeline_stack: StackHarness, demo: dict[str, Any]) -> None:
    h = pipeline_stack
    manifest = demo["manifest"]
    rows = _crosswalk_instances(h, [i.sop_uid for i in manifest.expected_written])
    assert len(rows) == len(manifest.expected_written)
    assert all(r["state"] == "published" for r in rows.values())
    research = h.research()
    for pseudonym in {r["pseudonym"] for r in rows.values()}:
        found = research.search_instances(PatientID=pseudonym)
        found_sops = {item["00080018"]["Value"][0] for item in found}
        expected_sops = {r["anon_sop"] for r in rows.values() if r["pseudonym"] == pseudonym}
        assert found_sops == expected_sops
    # The research bucket holds exactly the published keys.
    pages = h.s3().get_paginator("list_objects_v2").paginate(Bucket=h.settings.research_bucket)
    bucket_keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    assert {r["research_key"] for r in rows.values()} <= bucket_keys
    for key in bucket_keys:
        pseudonym, study, _series, sop = key.removesuffix(".dcm").split("/")
        assert pseudonym.startswith("TMI-") and study.startswith("2.25.") and sop.startswith("2.25.")


def _phi_tokens(manifest: Any) -> set[str]:
    tokens: set[str] = set()
    for values in manifest.phi_tokens.values():
        tokens.update(v for v in values if len(v) >= 4)
    for inst in manifest.instances:
        tokens.update({inst.study_uid, inst.series_uid, inst.sop_uid, inst.accession, inst.patient_id})
        tokens.update(part for part in inst.patient_name.replace("^", " ").split() if len(part) >= 4)
    for clinic in manifest.clinics:
        tokens.update(v for v in (clinic.institution, clinic.issuer) if v and len(v) >= 4)
    return {t.upper() for t in tokens if t}


def _values(ds: pydicom.Dataset) -> list[str]:
    out: list[str] = []
    for elem in ds.iterall():
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "UN") or elem.tag == 0x7FE00010:
            continue
        if elem.VR == "SQ":
            continue
        value = elem.value
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        out.append(str(value))
    return out


def test_no_phi_reaches_the_research_side(pipeline_stack: StackHarness, demo: dict[str, Any]) -> None:
    h = pipeline_stack
    tokens = _phi_tokens(demo["manifest"])
    assert len(tokens) > 30  # names, IDs, dates, addresses, phones, accessions, original UIDs, clinics
    s3 = h.s3()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=h.settings.research_bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys
    leaks = []
    for key in keys:
        obj = s3.get_object(Bucket=h.settings.research_bucket, Key=key)
        from io import BytesIO

        ds = pydicom.dcmread(BytesIO(obj["Body"].read()))
        texts = [key, json.dumps(obj.get("Metadata", {})), *_values(ds), *_values(ds.file_meta)]
        for text in texts:
            upper = text.upper()
            leaks.extend((key, t) for t in tokens if t in upper)
    # What researchers see through DICOMweb (QIDO JSON of every instance).
    research = h.research()
    qido = json.dumps(research.search_instances()).upper()
    leaks.extend(("qido", t) for t in tokens if t in qido)
    assert leaks == []


def test_crosswalk_flags_the_typo_and_the_two_ids_cases(pipeline_stack: StackHarness,
                                                        demo: dict[str, Any]) -> None:
    h = pipeline_stack
    manifest = demo["manifest"]
    typo_sops = [i.sop_uid for i in manifest.instances if i.person == manifest.typo.person and not i.corrupt]
    two_ids_sops = [i.sop_uid for i in manifest.instances
                    if i.person == manifest.two_ids.person and not i.corrupt]
    rows = _crosswalk_instances(h, typo_sops + two_ids_sops)
    typo_pseudonyms = {rows[s]["pseudonym"] for s in typo_sops}
    two_ids_pseudonyms = {rows[s]["pseudonym"] for s in two_ids_sops}
    # Typo: same clinic + ID, one field differs → linked to the same person, flagged possible_typo.
    assert len(typo_pseudonyms) == 1
    # Two IDs at two clinics: never auto-merged → two persons, flagged possible_same_person.
    assert len(two_ids_pseudonyms) == 2
    with h.db() as conn:
        flags = conn.execute(
            "SELECT f.kind, p.pseudonym, op.pseudonym FROM review_flag f JOIN person p ON p.id = f.person_id "
            "LEFT JOIN person op ON op.id = f.other_person_id").fetchall()
    kinds = {(k, p) for k, p, _ in flags}
    assert ("possible_typo", next(iter(typo_pseudonyms))) in kinds
    same = [(p, o) for k, p, o in flags if k == "possible_same_person"]
    assert any({p, o} == two_ids_pseudonyms for p, o in same)
    # Every other person got exactly one pseudonym for all their visits (repeat visits weeks apart).
    for person in manifest.persons:
        if person.key in (manifest.two_ids.person,):
            continue
        sops = [i.sop_uid for i in manifest.instances if i.person == person.key and not i.corrupt]
        assert len({_crosswalk_instances(h, sops)[s]["pseudonym"] for s in sops}) == 1


def test_researcher_account_is_read_only(pipeline_stack: StackHarness, demo: dict[str, Any]) -> None:
    h = pipeline_stack
    auth = ("researcher", h.stack.secrets().researcher_password)
    base = h.stack.research_http
    assert requests.get(f"{base}/dicom-web/studies", auth=auth, timeout=10).status_code == 200
    assert requests.post(f"{base}/tools/find", json={"Level": "Study", "Query": {}}, auth=auth,
                         timeout=10).status_code == 200
    studies = requests.get(f"{base}/studies", auth=auth, timeout=10).json()
    assert studies
    assert requests.delete(f"{base}/studies/{studies[0]}", auth=auth, timeout=10).status_code in (401, 403)
    blob = demo["manifest"].expected_written[0].path.read_bytes()
    assert requests.post(f"{base}/instances", data=blob, auth=auth, timeout=10).status_code in (401, 403)
    # Anonymous access is refused.
    assert requests.get(f"{base}/dicom-web/studies", timeout=10).status_code == 401
    # The pipeline account may write (it is how STOW-RS works).
    assert requests.get(f"{base}/studies/{studies[0]}", auth=(
        h.settings.research_orthanc_user, h.stack.secrets().research_pipeline_password), timeout=10).ok


def test_intake_refuses_unknown_calling_ae_titles(pipeline_stack: StackHarness, demo: dict[str, Any]) -> None:
    h = pipeline_stack
    result = h.storescu([demo["manifest"].expected_written[0].path], aet="ROGUE_SCU")
    assert result.returncode != 0


def test_stack_status_json_and_idempotent_up(pipeline_stack: StackHarness) -> None:
    stack = pipeline_stack.stack
    status = stack.status()
    assert status["healthy"] is True
    for key in ("aet", "host", "dicom_port", "http"):
        assert status["intake"][key]
    assert status["intake"]["spool"] == {"pending": 0, "failed": 0}  # everything received was uploaded
    assert status["research"]["http"] and status["research"]["dicomweb"]
    assert "http" in status["gateway"] and status["s3"]["endpoint"]
    pids = {name: stack.process(name).read_pid() for name in ("moto", "intake", "research", "worker-1")}
    stack.up()
    assert {name: stack.process(name).read_pid() for name in pids} == pids
    json.dumps(status)


def test_a_large_mammogram_flows_through_with_its_pixels_intact(
        pipeline_stack: StackHarness, tmp_path: Path) -> None:
    """A ~27 MB instance (above the STOW-RS streaming threshold, and above the intake plugin's 16 MB
    hand-over-by-reference size) goes storescu → … → research unchanged in its pixels: the intake object is
    the intake Orthanc's stored file, and the research bucket's copy and the research Orthanc's copy are the
    same bytes."""
    from adapters.pipeline import research as research_module
    from tmi.synthetic.dicom import large_mg_instance, write_dataset

    h = pipeline_stack
    path = tmp_path / "large.dcm"
    write_dataset(large_mg_instance(seed="e2e-large"), path)
    assert path.stat().st_size > research_module.STREAM_ABOVE
    result = h.storescu([path])
    assert result.returncode == 0, result.stderr
    name = h.intake_key(path)
    assert h.wait_finished([name], timeout_s=120) == {name: "COMPLETED"}
    (intake_key,) = [o["Key"] for page in h.s3().get_paginator("list_objects_v2").paginate(
        Bucket=h.settings.intake_bucket, Prefix=h.settings.intake_prefix) for o in page.get("Contents", [])
        if o["Key"].endswith("/" + name)]
    received = h.s3().get_object(Bucket=h.settings.intake_bucket, Key=intake_key)["Body"].read()
    intake_auth = ("tmi-admin", h.stack.secrets().intake_admin_password)
    in_orthanc = requests.get(f"{h.stack.intake_http}/instances/{name.removesuffix('.dcm')}/file",
                              auth=intake_auth, timeout=60).content
    assert len(received) > 16 * 1024 * 1024 and received == in_orthanc
    spool = h.stack.intake_spool_dir
    wait_for(lambda: not list(spool.glob("**/*.json")), 10, "the spooled reference removed after its upload")
    original = pydicom.dcmread(path)
    (row,) = _crosswalk_instances(h, [original.SOPInstanceUID]).values()
    assert row["state"] == "published"
    stored = h.s3().get_object(Bucket=h.settings.research_bucket, Key=row["research_key"])["Body"].read()
    published = pydicom.dcmread(pydicom.filebase.DicomBytesIO(stored))
    assert published.PixelData == original.PixelData
    assert published.PatientID == row["pseudonym"]
    auth = (h.settings.research_orthanc_user, h.stack.secrets().research_pipeline_password)
    base = h.stack.research_http
    found = requests.post(f"{base}/tools/lookup", data=row["anon_sop"], auth=auth, timeout=10).json()
    (instance,) = [f for f in found if f["Type"] == "Instance"]
    served = requests.get(f"{base}/instances/{instance['ID']}/file", auth=auth, timeout=60).content
    assert served == stored
