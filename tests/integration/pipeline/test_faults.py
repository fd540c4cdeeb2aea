"""Faults and recovery on a real stack: duplicates, research Orthanc down, runner SIGKILLed mid-batch,
poison input, a lost notification, a malformed message reaching the DLQ, merge/split republish."""

from __future__ import annotations

import json
import signal
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.fixtures.stack import StackHarness, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _write_instances(folder: Path, seed: str, count: int, patients: int | None = None) -> list[Path]:
    from tmi.synthetic.dicom import small_instance, write_dataset

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        ds = small_instance(index, seed=seed, rows=32, columns=32, modality="MG", patients=patients)
        path = folder / f"{seed}-{index}.dcm"
        write_dataset(ds, path)
        paths.append(path)
    return paths


def _sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _crosswalk(h: StackHarness, sops: list[str]) -> dict[str, dict[str, Any]]:
    with h.db() as conn:
        rows = conn.execute(
            "SELECT i.original_sop_uid, i.anon_sop_uid, i.research_key, p.pseudonym, p.id::text, "
            "i.identity_id, i.state FROM instance i JOIN person p ON p.id = i.person_id "
            "WHERE i.original_sop_uid = ANY(%s)",
            (sops,)).fetchall()
    return {r[0]: {"anon_sop": r[1], "research_key": r[2], "pseudonym": r[3], "person_id": r[4],
                   "identity_id": r[5], "state": r[6]} for r in rows}


def _research_keys(h: StackHarness) -> list[str]:
    pages = h.s3().get_paginator("list_objects_v2").paginate(Bucket=h.settings.research_bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _queue_drained(h: StackHarness) -> bool:
    sqs = h.sqs()
    url = sqs.get_queue_url(QueueName=h.settings.intake_queue)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    visible, hidden = attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]
    return int(visible) + int(hidden) == 0


def _stop_workers(h: StackHarness) -> None:
    for name in h.stack.worker_names():
        h.stack.stop_component(name)


def _start_workers(h: StackHarness) -> None:
    h.stack.start_component("worker-1")


def test_same_instance_twice_and_same_event_twice_give_one_research_instance(
        pipeline_stack: StackHarness, tmp_path: Path) -> None:
    h = pipeline_stack
    [path] = _write_instances(tmp_path, "dup", 1)
    name = h.intake_key(path)
    assert h.storescu([path]).returncode == 0
    h.wait_finished([name])
    # The same instance again: once as Orthanc sees it (already stored), once after Orthanc forgot it
    # (a new put of the same bytes → a second notification for the same object version).
    assert h.storescu([path]).returncode == 0
    h.forget_in_intake_orthanc([path])
    assert h.storescu([path]).returncode == 0
    # The same event delivered twice more.
    key = next(k for k in h.s3().list_objects_v2(Bucket=h.settings.intake_bucket,
                                                 Prefix=h.settings.intake_prefix)["Contents"]
               if k["Key"].endswith(name))
    from functions.events import s3_event_document

    sqs = h.sqs()
    url = sqs.get_queue_url(QueueName=h.settings.intake_queue)["QueueUrl"]
    body = json.dumps(s3_event_document(h.settings.intake_bucket, key["Key"], key["ETag"].strip('"')))
    sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.send_message(QueueUrl=url, MessageBody=body)
    wait_for(lambda: _queue_drained(h), 30, "the queue to drain")
    row = _crosswalk(h, [_sop(path)])[_sop(path)]
    assert [k for k in _research_keys(h) if row["anon_sop"] in k] == [row["research_key"]]
    assert len(h.research().search_instances(SOPInstanceUID=row["anon_sop"])) == 1
    with h.db() as conn:
        claims = conn.execute("SELECT count(*), max(attempts) FROM pipeline_objects WHERE object_key LIKE %s",
                              (f"%{name}",)).fetchone()
    assert claims == (1, 1)  # one claim, processed once


def test_research_orthanc_down_then_back_is_retried_then_published(
        pipeline_stack: StackHarness, tmp_path: Path) -> None:
    h = pipeline_stack
    paths = _write_instances(tmp_path, "down", 3)
    names = [h.intake_key(p) for p in paths]
    h.stack.stop_component("research")
    try:
        assert h.storescu(paths).returncode == 0
        # Each object is attempted and released for retry (state FAILED) while research is down.
        wait_for(lambda: (s := h.states(names)) and len(s) == 3 and all(v == "FAILED" for v in s.values()),
                 30, "retryable failures while research Orthanc is down")
        assert not any(v == "COMPLETED" for v in h.states(names).values())
    finally:
        h.stack.start_component("research")
    states = h.wait_finished(names, timeout_s=60)
    assert set(states.values()) == {"COMPLETED"}
    rows = _crosswalk(h, [_sop(p) for p in paths])
    for row in rows.values():
        assert len(h.research().search_instances(SOPInstanceUID=row["anon_sop"])) == 1
    with h.db() as conn:
        attempts = conn.execute("SELECT min(attempts) FROM pipeline_objects WHERE "
                                "substring(object_key from '[^/]+$') = ANY(%s)", (names,)).fetchone()
    assert attempts is not None and attempts[0] >= 2


def test_runner_killed_mid_batch_loses_nothing_and_duplicates_nothing(
        pipeline_stack: StackHarness, tmp_path: Path) -> None:
    h = pipeline_stack
    paths = _write_instances(tmp_path, "kill", 80)
    names = [h.intake_key(p) for p in paths]
    _stop_workers(h)
    # SIGTERM (stop_component) is a clean shutdown: the worker logs it and exits by itself.
    assert '"msg": "worker stopped"' in h.stack.process("worker-1").log_file.read_text()
    try:
        assert h.storescu(paths).returncode == 0
        wait_for(lambda: len(_intake_names(h) & set(names)) == len(names), 30,
                 "all objects in the intake bucket")
    finally:
        _start_workers(h)
    # Kill every worker with SIGKILL as soon as they are in the middle of the work.
    in_flight = wait_for(lambda: _mid_batch(h, names), 60, "workers to be mid-batch", interval_s=0.02)
    for name in h.stack.worker_names():
        h.stack.process(name).signal(signal.SIGKILL)
    assert in_flight["IN_PROGRESS"] >= 1 and in_flight["finished"] < len(names)
    wait_for(lambda: not any(h.stack.process(n).alive() for n in h.stack.worker_names()), 10,
             "workers to die")
    _start_workers(h)
    states = h.wait_finished(names, timeout_s=120)
    assert set(states.values()) == {"COMPLETED"}
    rows = _crosswalk(h, [_sop(p) for p in paths])
    assert len(rows) == len(paths)
    keys = _research_keys(h)
    research = h.research()
    for row in rows.values():
        assert [k for k in keys if row["anon_sop"] in k] == [row["research_key"]]
        assert len(research.search_instances(SOPInstanceUID=row["anon_sop"])) == 1


def _intake_keys(h: StackHarness) -> list[str]:
    pages = h.s3().get_paginator("list_objects_v2").paginate(Bucket=h.settings.intake_bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _intake_names(h: StackHarness) -> set[str]:
    return {key.rsplit("/", 1)[-1] for key in _intake_keys(h)}


def _mid_batch(h: StackHarness, names: list[str]) -> dict[str, int] | None:
    states = h.states(names)
    in_progress = sum(1 for s in states.values() if s == "IN_PROGRESS")
    finished = sum(1 for s in states.values() if s in ("COMPLETED", "QUARANTINED"))
    if in_progress and finished < len(names) - 10:
        return {"IN_PROGRESS": in_progress, "finished": finished}
    return None


def test_poison_file_is_quarantined_with_reason_and_others_flow(
        pipeline_stack: StackHarness, tmp_path: Path) -> None:
    h = pipeline_stack
    poison_key = f"{h.settings.intake_prefix}2026/01/01/poison-{time.time_ns()}.dcm"
    h.s3().put_object(Bucket=h.settings.intake_bucket, Key=poison_key, Body=b"\x00not dicom at all" * 64)
    paths = _write_instances(tmp_path, "poison-neighbours", 2)
    assert h.storescu(paths).returncode == 0
    names = [h.intake_key(p) for p in paths] + [poison_key.rsplit("/", 1)[-1]]
    states = h.wait_finished(names)
    assert states[poison_key.rsplit("/", 1)[-1]] == "QUARANTINED"
    assert [states[n] for n in names[:2]] == ["COMPLETED", "COMPLETED"]
    with h.db() as conn:
        reason = conn.execute("SELECT reason FROM pipeline_quarantine WHERE object_key = %s",
                              (poison_key,)).fetchone()
        attempts = conn.execute("SELECT attempts FROM pipeline_objects WHERE object_key = %s",
                                (poison_key,)).fetchone()
    assert reason is not None and reason[0].startswith("dicom.")
    assert attempts == (1,)  # quarantined at the first attempt, never retried
    head = h.s3().head_object(Bucket=h.settings.quarantine_bucket, Key=poison_key)
    assert head["Metadata"]["tmi-reason"] == reason[0]


def test_malformed_message_ends_in_the_dead_letter_queue(pipeline_stack: StackHarness) -> None:
    h = pipeline_stack
    sqs = h.sqs()
    url = sqs.get_queue_url(QueueName=h.settings.intake_queue)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=h.settings.intake_dlq)["QueueUrl"]
    marker = f"not-an-s3-event-{time.time_ns()}"
    sqs.send_message(QueueUrl=url, MessageBody=marker)

    def in_dlq() -> bool:
        for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     VisibilityTimeout=1).get("Messages", []):
            if m["Body"] == marker:
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
                return True
        return False

    # maxReceiveCount (5) deliveries × visibility timeout (4 s) in the test stack.
    wait_for(in_dlq, 60, "the malformed message to reach the DLQ", interval_s=0.5)


def _send_and_lose_the_notification(h: StackHarness, folder: Path, seed: str) -> str:
    """Send one instance with the workers stopped, purge its notification from the queue (checked
    empty), restart a worker; return the intake object's name."""
    [path] = _write_instances(folder, seed, 1)
    name = h.intake_key(path)
    _stop_workers(h)
    try:
        assert h.storescu([path]).returncode == 0
        wait_for(lambda: name in _intake_names(h), 20, "the object in the intake bucket")
        time.sleep(0.5)
        sqs = h.sqs()
        queue_url = sqs.get_queue_url(QueueName=h.settings.intake_queue)["QueueUrl"]
        sqs.purge_queue(QueueUrl=queue_url)  # the notification is lost
        time.sleep(1.0)
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    finally:
        _start_workers(h)
    return name


def _tmi_reconcile(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    """Run ``tmi reconcile --json ARGS`` in-process (the real parser and command); its report and stderr."""
    from adapters.cli import build_parser

    capsys.readouterr()
    parsed = build_parser().parse_args(["reconcile", "--json", *args])
    assert parsed.func(parsed) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_lost_notification_is_recovered_by_reconcile(pipeline_stack: StackHarness, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``tmi reconcile`` against the real S3 endpoint. Before the recovery, the resumable full sweep
    (one lost notification serves both: SQS allows one purge a minute): ``--start-after`` continues
    after the key, so the lost object right at it is not listed again; ``--max-seconds`` stops after a
    listed page and reports where to continue."""
    h = pipeline_stack
    name = _send_and_lose_the_notification(h, tmp_path, "lost")
    time.sleep(3)
    assert h.states([name]) == {}
    [key] = [k for k in _intake_keys(h) if k.endswith("/" + name)]
    after_it, _ = _tmi_reconcile(capsys, "--all", "--min-age-s", "0", "--dry-run", "--start-after", key)
    assert key not in after_it["keys"] and after_it["complete"] is True, after_it
    day_folder = key.rsplit("/", 1)[0] + "/"
    stopped, err = _tmi_reconcile(capsys, "--all", "--min-age-s", "0", "--dry-run",
                                  "--start-after", day_folder, "--max-seconds", "0")
    assert key in stopped["keys"], stopped
    assert stopped["complete"] is False and stopped["next_start_after"] >= key, stopped
    assert "continue with tmi reconcile --all --start-after" in err
    assert h.states([name]) == {}  # dry runs: nothing was enqueued

    report, _ = _tmi_reconcile(capsys, "--min-age-s", "0")  # the scheduled kind: the look-back days
    assert key in report["keys"], report
    assert h.wait_finished([name]) == {name: "COMPLETED"}


def test_merge_and_split_move_research_data_to_the_new_pseudonym(
        pipeline_stack: StackHarness, tmp_path: Path) -> None:
    from adapters.db.crosswalk import CrosswalkService
    from tmi.crosswalk.model import Actor

    h = pipeline_stack
    # Two instances of two different invented patients (patients=2: instance 0 and 4 differ).
    paths = _write_instances(tmp_path, "merge", 8, patients=2)
    chosen = [paths[0], paths[4]]
    assert h.storescu(chosen).returncode == 0
    h.wait_finished([h.intake_key(p) for p in chosen])
    sops = [_sop(p) for p in chosen]
    before = _crosswalk(h, sops)
    a, b = before[sops[0]], before[sops[1]]
    assert a["pseudonym"] != b["pseudonym"]
    admin = Actor(name="test-admin", role="admin")
    with CrosswalkService.connect(h.stack.database_url) as crosswalk:
        crosswalk.merge(a["person_id"], [b["person_id"]], actor=admin, reason="same person (test)")
        after = wait_for(lambda: _republished(h, sops, {a["pseudonym"]}), 60, "republish after merge")
        assert after[sops[1]]["research_key"].startswith(a["pseudonym"] + "/")
        assert h.research().search_instances(PatientID=b["pseudonym"]) == []
        assert len(h.research().search_instances(PatientID=a["pseudonym"])) == 2
        assert not [k for k in _research_keys(h) if k.startswith(b["pseudonym"] + "/")]
        _assert_no_phi(h, after[sops[1]]["research_key"], chosen[1])
        # Split B's identity off again: a new person, a new pseudonym; research follows.
        crosswalk.split(a["person_id"], [b["identity_id"]], actor=admin, reason="not the same (test)")
        split = wait_for(lambda: _republished(h, sops, None), 60, "republish after split")
    new_pseudonym = split[sops[1]]["pseudonym"]
    assert new_pseudonym not in (a["pseudonym"], b["pseudonym"])
    assert split[sops[0]]["pseudonym"] == a["pseudonym"]
    found = h.research().search_instances(SOPInstanceUID=split[sops[1]]["anon_sop"])
    assert [f["00100020"]["Value"][0] for f in found] == [new_pseudonym], h.tail_logs(40)
    assert len(h.research().search_instances(PatientID=new_pseudonym)) == 1
    assert len(h.research().search_instances(PatientID=a["pseudonym"])) == 1
    assert split[sops[1]]["research_key"].startswith(new_pseudonym + "/")
    with h.db() as conn:
        catalog = conn.execute("SELECT pseudonym FROM research_instance WHERE sop_instance_uid = %s",
                               (split[sops[1]]["anon_sop"],)).fetchone()
    assert catalog == (new_pseudonym,)
    _assert_no_phi(h, split[sops[1]]["research_key"], chosen[1])


def _republished(h: StackHarness, sops: list[str], pseudonyms: set[str] | None) -> dict[str, Any] | None:
    rows = _crosswalk(h, sops)
    if any(r["state"] != "published" for r in rows.values()):
        return None
    if pseudonyms is not None and {r["pseudonym"] for r in rows.values()} != pseudonyms:
        return None
    if pseudonyms is None and len({r["pseudonym"] for r in rows.values()}) != 2:
        return None
    with h.db() as conn:
        pending = conn.execute("SELECT count(*) FROM republish_item WHERE status <> 'done'").fetchone()
    if pending != (0,):
        return None
    keys = set(_research_keys(h))
    if not all(r["research_key"] in keys for r in rows.values()):
        return None
    return rows


def _assert_no_phi(h: StackHarness, research_key: str, original: Path) -> None:
    src = pydicom.dcmread(original, stop_before_pixels=True)
    tokens = {str(src.PatientID), str(src.PatientName).split("^")[0], str(src.StudyInstanceUID),
              str(src.SOPInstanceUID), str(getattr(src, "AccessionNumber", "")), str(src.PatientBirthDate)}
    tokens = {t.upper() for t in tokens if len(t) >= 4}
    body = h.s3().get_object(Bucket=h.settings.research_bucket, Key=research_key)["Body"].read()
    ds = pydicom.dcmread(BytesIO(body), stop_before_pixels=True)
    text = " ".join(str(e.value) for e in ds.iterall() if e.VR not in ("SQ", "OB", "OW", "UN")).upper()
    assert [t for t in tokens if t in text] == []


def test_workers_reconcile_a_lost_notification_by_themselves(tmp_path: Path) -> None:
    """With the workers' own reconciler on (here every second, no minimum age), an instance whose
    notification was lost is published without anyone running ``tmi reconcile``."""
    from tests.fixtures.stack import running_stack

    with running_stack({"TMI_PIPELINE_RECONCILE_INTERVAL_S": "1",
                        "TMI_PIPELINE_RECONCILE_MIN_AGE_S": "0"}) as h:
        name = _send_and_lose_the_notification(h, tmp_path, "self-reconcile")
        assert h.wait_finished([name], timeout_s=60) == {name: "COMPLETED"}
        logs = "".join(p.read_text() for p in h.stack.log_dir.glob("worker-*.log"))
        assert "reconciler re-enqueued" in logs, logs[-3000:]


def test_a_large_instance_deleted_from_the_intake_orthanc_before_its_upload_is_set_aside(
        tmp_path: Path) -> None:
    """The intake plugin hands instances above 16 MB over by reference: the uploader reads Orthanc's stored
    file. When S3 is down and the instance is deleted from the intake Orthanc meanwhile (an admin, or
    Orthanc's storage recycling), the uploader must not retry forever: the reference goes to the spool's
    ``failed/`` folder with an error in the intake log, ``tmi stack status`` counts it, and when S3 is back
    nothing loops and nothing half-made reaches the bucket. A worker (re)started during the outage waits
    for the queue instead of exiting, and works once S3 and SQS are back. Its own stack: moto is stopped
    and restarted."""
    from adapters.intake_writer import spool_counts
    from tests.fixtures.stack import running_stack
    from tmi.synthetic.dicom import large_mg_instance, write_dataset

    path = tmp_path / "large.dcm"
    write_dataset(large_mg_instance(seed="gone-before-upload"), path)
    assert path.stat().st_size > 16 * 1024 * 1024
    with running_stack() as h:
        spool = h.stack.intake_spool_dir
        [intake_log] = h.stack.log_files("intake")
        assert h.stack.stop_component("moto")
        assert h.stack.stop_component("worker-1")
        h.stack.start_component("worker-1")  # its queue lookup meets the stopped endpoint
        assert h.storescu([path]).returncode == 0
        wait_for(lambda: "intake upload failed, retrying" in intake_log.read_text(errors="replace"), 60,
                 "the uploader to fail against the stopped S3 endpoint")
        assert spool_counts(spool) == {"pending": 1, "failed": 0}
        h.forget_in_intake_orthanc([path])
        wait_for(lambda: spool_counts(spool)["failed"] == 1, 60, "the reference set aside",
                 on_timeout=lambda: {"spool": spool_counts(spool), "log": h.tail_logs(30)})
        log = intake_log.read_text(errors="replace")
        assert "is gone (StoredFileGone)" in log, log[-3000:]
        assert spool_counts(spool) == {"pending": 0, "failed": 1}
        assert h.stack.status()["intake"]["spool"] == {"pending": 0, "failed": 1}

        h.stack.start_component("moto")
        retries = log.count("intake upload failed, retrying")
        time.sleep(8)  # longer than the uploader's retry interval (SpoolRetrySeconds, 5 s)
        assert intake_log.read_text(errors="replace").count("intake upload failed, retrying") == retries
        assert _intake_keys(h) == []
        [worker_log] = h.stack.log_files("worker-1")
        assert "intake queue not reachable; retrying" in worker_log.read_text(errors="replace")
        assert h.stack.status()["workers"] == {"worker-1": True, "worker-2": True}
        assert h.stack.stop_component("worker-2")  # what is published next went through worker-1
        [small] = _write_instances(tmp_path, "after-the-outage", 1)
        assert h.storescu([small]).returncode == 0
        name = h.intake_key(small)
        assert h.wait_finished([name]) == {name: "COMPLETED"}
