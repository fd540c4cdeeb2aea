"""`tmi demo` (``make demo``): the whole pipeline, end to end, on the local stack, in under three minutes.

1. ``tmi stack up`` (idempotent: a running stack is reused);
2. generate the synthetic mammography population (``tmi.synthetic.demo``) under ``run_dir/demo``;
3. send it like a modality: dcmtk ``storescu -aet DEMO_MODALITY -aec INTAKE`` over C-STORE. The corrupt
   file cannot travel over C-STORE (storescu refuses to parse it), so it is put straight into the intake
   bucket, as a broken modality-side upload would land, and the summary says so;
4. wait, with a progress bar, until every instance is published or quarantined;
5. print a summary: counts, pseudonyms, review flags, quarantined items with reasons, the research Orthanc
   Explorer URL and one presigned download URL.

A second run on a running stack works: the demo first removes its own synthetic patients from the intake
Orthanc (so C-STORE really stores again), and the pipeline's idempotency turns the repeated notifications
into no-ops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEMO_AET = "DEMO_MODALITY"


def register(subparsers: Any) -> None:
    """Add ``tmi demo``."""
    parser = subparsers.add_parser("demo", help="run the pipeline end to end on synthetic mammography")
    parser.add_argument("--timeout-s", type=float, default=150.0, help="give up waiting after this long")
    parser.add_argument("--seed", type=int, default=7, help="synthetic population seed")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.set_defaults(func=run)


def _say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def _intake_admin(stack: Any) -> Any:
    from pyorthanc import Orthanc

    return Orthanc(stack.intake_http, username="tmi-admin", password=stack.secrets().intake_admin_password,
                   timeout=30)


def _forget_demo_patients(stack: Any, patient_ids: set[str]) -> int:
    """Delete the demo's patients from the intake Orthanc so a re-run stores (and notifies) again."""
    client = _intake_admin(stack)
    removed = 0
    for patient_id in sorted(patient_ids):
        query = {"Level": "Patient", "Query": {"PatientID": patient_id}}
        for orthanc_id in client.post_tools_find(json=query):
            client.delete_patients_id(orthanc_id)
            removed += 1
    return removed


def _send_cstore(stack: Any, paths: list[Path]) -> None:
    """storescu over one association per batch, like a modality."""
    if shutil.which("storescu") is None:
        raise SystemExit("demo: dcmtk's storescu is missing; run `make install` (apt-get install dcmtk)")
    settings = stack.settings
    for start in range(0, len(paths), 50):
        chunk = paths[start:start + 50]
        result = subprocess.run(
            ["storescu", "-aet", DEMO_AET, "-aec", settings.intake_aet, "127.0.0.1",
             str(settings.intake_dicom_port), *map(str, chunk)],
            capture_output=True, text=True, check=False, env={**os.environ, "TCP_NODELAY": "1"},
        )
        if result.returncode != 0:
            raise SystemExit(f"demo: storescu failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def _put_corrupt(stack: Any, path: Path) -> str:
    """Put a file C-STORE cannot carry straight into the intake bucket (as a broken upload would)."""
    from adapters.intake_writer import CALLING_AET_METADATA, IntakeWriter

    data = path.read_bytes()
    writer = IntakeWriter(stack.settings.intake_bucket, stack.settings.intake_prefix, stack.run_dir / "spool")
    key = writer.key_for(hashlib.sha256(data).hexdigest()[:40])
    stack.s3_client().put_object(Bucket=stack.settings.intake_bucket, Key=key, Body=data,
                                 ContentType="application/dicom", Metadata={CALLING_AET_METADATA: DEMO_AET})
    return key


def intake_names(manifest: Any, corrupt_key: str | None) -> list[str]:
    """File names (``<orthanc id>.dcm``) the demo's instances get in the intake bucket."""
    from adapters.intake_writer import orthanc_instance_id

    names = [f"{orthanc_instance_id(i.patient_id, i.study_uid, i.series_uid, i.sop_uid)}.dcm"
             for i in manifest.instances if i.sendable_by_cstore]
    if corrupt_key:
        names.append(corrupt_key.rsplit("/", 1)[-1])
    return names


def _progress(conn: Any, names: list[str]) -> tuple[int, int]:
    """(published, quarantined) among the demo's intake objects, from the pipeline's claim table."""
    rows = conn.execute(
        "SELECT state, count(DISTINCT substring(object_key from '[^/]+$')) FROM pipeline_objects "
        "WHERE substring(object_key from '[^/]+$') = ANY(%s) AND state IN ('COMPLETED', 'QUARANTINED') "
        "GROUP BY state", (names,)).fetchall()
    counts = {str(r[0]): int(r[1]) for r in rows}
    return counts.get("COMPLETED", 0), counts.get("QUARANTINED", 0)


def _summary(stack: Any, conn: Any, manifest: Any, corrupt_key: str | None, seconds: float) -> dict[str, Any]:
    settings = stack.settings
    sops = [i.sop_uid for i in manifest.instances if not i.corrupt]
    persons = conn.execute(
        "SELECT p.pseudonym, count(DISTINCT st.id), count(i.id) FILTER (WHERE i.state = 'published'), "
        "array_agg(DISTINCT i.original_sop_uid) "
        "FROM instance i JOIN person p ON p.id = i.person_id JOIN series se ON se.id = i.series_id "
        "JOIN study st ON st.id = se.study_id WHERE i.original_sop_uid = ANY(%s) "
        "GROUP BY p.pseudonym ORDER BY p.pseudonym", (sops,)).fetchall()
    label = {p.key: f"demo person #{n}" for n, p in enumerate(manifest.persons, start=1)}
    by_sop = {i.sop_uid: i.person for i in manifest.instances}
    pseudonyms = []
    for pseudonym, studies, published, sop_list in persons:
        who = sorted({label[by_sop[s]] for s in sop_list if s in by_sop})
        pseudonyms.append({"pseudonym": pseudonym, "studies": int(studies), "published": int(published),
                           "demo_person": ", ".join(who)})
    flags = conn.execute(
        "SELECT f.kind, p.pseudonym, op.pseudonym, f.status FROM review_flag f "
        "JOIN person p ON p.id = f.person_id "
        "LEFT JOIN person op ON op.id = f.other_person_id "
        "WHERE f.person_id IN (SELECT person_id FROM instance WHERE original_sop_uid = ANY(%s)) "
        "ORDER BY f.id", (sops,)).fetchall()
    quarantined = conn.execute(
        "SELECT object_key, reason, quarantine_bucket, quarantine_key FROM pipeline_quarantine "
        "WHERE substring(object_key from '[^/]+$') = ANY(%s) ORDER BY id",
        (intake_names(manifest, corrupt_key),)).fetchall()
    published_key = conn.execute(
        "SELECT research_key FROM instance WHERE original_sop_uid = ANY(%s) AND state = 'published' "
        "ORDER BY research_key LIMIT 1", (sops,)).fetchone()
    url = None
    if published_key:
        url = stack.s3_client().generate_presigned_url(
            "get_object", Params={"Bucket": settings.research_bucket, "Key": published_key[0]},
            ExpiresIn=settings.presign_expiry_s)
    published, n_quarantined = _progress(conn, intake_names(manifest, corrupt_key))
    qido = _qido_count(stack, [p["pseudonym"] for p in pseudonyms])
    return {
        "seconds": round(seconds, 1),
        "counts": {"files": len(manifest.instances),
                   "sent_cstore": sum(1 for i in manifest.instances if i.sendable_by_cstore),
                   "put_directly": sum(1 for i in manifest.instances if not i.sendable_by_cstore),
                   "published": published, "quarantined": n_quarantined,
                   "expected_published": len(manifest.expected_written),
                   "expected_quarantined": len(manifest.expected_quarantined),
                   "research_orthanc_instances": qido},
        "pseudonyms": pseudonyms,
        "flags": [{"kind": k, "pseudonym": p, "other_pseudonym": o, "status": s} for k, p, o, s in flags],
        "quarantined": [{"object_key": k, "reason": r, "quarantine": f"s3://{b}/{q}"}
                        for k, r, b, q in quarantined],
        "research_explorer": f"{stack.research_http}/app/explorer.html",
        "research_login": f"user 'researcher', password in {stack.run_dir / 'secrets.json'} (read-only)",
        "presigned_url": url,
    }


def _qido_count(stack: Any, pseudonyms: list[str]) -> int:
    from adapters.pipeline.research import ResearchOrthanc

    archive = ResearchOrthanc(stack.research_http, stack.settings.research_orthanc_user,
                              stack.secrets().research_pipeline_password)
    return sum(len(archive.search_instances(PatientID=p)) for p in pseudonyms)


def _print_summary(summary: dict[str, Any]) -> None:
    c = summary["counts"]
    print()
    print(f"TMI demo finished in {summary['seconds']} s")
    print(f"  files generated       {c['files']}  ({c['sent_cstore']} sent by storescu over C-STORE as "
          f"{DEMO_AET}; {c['put_directly']} corrupt file put straight into the intake bucket, since C-STORE "
          "cannot carry it)")
    print(f"  published             {c['published']} (expected {c['expected_published']}); "
          f"research Orthanc QIDO finds {c['research_orthanc_instances']}")
    print(f"  quarantined           {c['quarantined']} (expected {c['expected_quarantined']})")
    print("  pseudonyms:")
    for p in summary["pseudonyms"]:
        print(f"    {p['pseudonym']}  {p['studies']} study(ies), {p['published']} published  "
              f"<- {p['demo_person']}")
    print("  review flags raised:")
    for f in summary["flags"] or [{"kind": "none", "pseudonym": "", "other_pseudonym": None, "status": ""}]:
        other = f" / {f['other_pseudonym']}" if f["other_pseudonym"] else ""
        print(f"    {f['kind']:22} {f['pseudonym']}{other}  [{f['status']}]")
    print("  quarantined items:")
    for q in summary["quarantined"]:
        print(f"    {q['reason']:28} {q['object_key']}  -> {q['quarantine']}")
    print(f"  research Orthanc Explorer: {summary['research_explorer']}")
    print(f"    login: {summary['research_login']}")
    print(f"  presigned download URL (expires in 1 h):\n    {summary['presigned_url']}")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tmi demo``."""
    import psycopg
    from tqdm import tqdm

    from adapters.stack import Stack, StackError
    from tmi.settings import get_settings
    from tmi.synthetic.demo import generate_demo

    started = time.monotonic()
    stack = Stack(get_settings())
    _say("bringing the stack up (reused when already running)")
    try:
        status = stack.up(progress=_say)
    except StackError as exc:
        _say(f"the stack did not start: {exc}")
        return 1
    if not all(status[k]["healthy"] for k in ("intake", "research", "s3", "postgres")):
        _say("the stack is not healthy; see `tmi stack status` and `tmi stack logs`")
        return 1
    out = stack.run_dir / "demo"
    files = out / "files"
    if files.exists():
        shutil.rmtree(files)
    manifest = generate_demo(files, seed=args.seed)
    manifest.write_json(out / "manifest.json")  # confidential: synthetic PHI + ground truth
    _say(f"generated {len(manifest.instances)} synthetic mammography files under {files}")
    removed = _forget_demo_patients(stack, {i.patient_id for i in manifest.instances})
    if removed:
        _say(f"removed {removed} demo patient(s) left in the intake Orthanc by an earlier run")
    cstore = [i.path for i in manifest.instances if i.sendable_by_cstore]
    _say(f"sending {len(cstore)} instances with storescu -aet {DEMO_AET} -aec {stack.settings.intake_aet} "
         f"127.0.0.1 {stack.settings.intake_dicom_port}")
    _send_cstore(stack, cstore)
    corrupt_key = None
    for inst in manifest.instances:
        if not inst.sendable_by_cstore:
            corrupt_key = _put_corrupt(stack, inst.path)
            _say("corrupt file cannot travel over C-STORE; put straight into the intake bucket as "
                 f"{corrupt_key}")
    total = len(manifest.instances)
    names = intake_names(manifest, corrupt_key)
    deadline = time.monotonic() + args.timeout_s
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        with tqdm(total=total, desc="published or quarantined", unit="inst", file=sys.stderr) as bar:
            while True:
                published, quarantined = _progress(conn, names)
                bar.n = published + quarantined
                bar.set_postfix(published=published, quarantined=quarantined)
                bar.refresh()
                if published + quarantined >= total or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        summary = _summary(stack, conn, manifest, corrupt_key, time.monotonic() - started)
    _print_summary(summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    done = summary["counts"]["published"] + summary["counts"]["quarantined"]
    if done < total:
        _say(f"timed out: {done}/{total} finished; see `tmi stack logs worker-1`")
        return 1
    return 0
