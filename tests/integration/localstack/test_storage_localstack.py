"""The LocalStack lane: storage-policies applied by the bootstrap, and presigned URLs as AWS treats them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlparse, urlunparse

import boto3
import pytest
import requests
from botocore.config import Config

from adapters.bootstrap import BootstrapResult, bootstrap, plan
from tmi.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.localstack]


def test_bootstrap_applies_every_policy_and_is_idempotent(
    localstack_storage: BootstrapResult, localstack_s3: Any, localstack_sqs: Any
) -> None:
    settings = get_settings()
    assert localstack_storage.warnings == []
    desired = plan(settings, account_id=localstack_storage.dlq_arn.split(":")[4])
    for bucket in desired.buckets.values():
        policy = json.loads(localstack_s3.get_bucket_policy(Bucket=bucket.name)["Policy"])
        assert policy == bucket.policy
        rules = localstack_s3.get_bucket_lifecycle_configuration(Bucket=bucket.name)["Rules"]
        assert sorted(r["ID"] for r in rules) == sorted(r["ID"] for r in bucket.lifecycle["Rules"])
        assert localstack_s3.get_bucket_versioning(Bucket=bucket.name)["Status"] == "Enabled"
        pab = localstack_s3.get_public_access_block(Bucket=bucket.name)["PublicAccessBlockConfiguration"]
        assert pab == bucket.public_access_block
    lock = localstack_s3.get_object_lock_configuration(Bucket=settings.intake_bucket)
    assert lock["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE"

    attrs = localstack_sqs.get_queue_attributes(
        QueueUrl=localstack_storage.intake_queue_url, AttributeNames=["All"]
    )["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == localstack_storage.dlq_arn

    again = bootstrap(settings, localstack_s3, localstack_sqs)
    assert again.changed == []
    assert again.warnings == []


def test_intake_put_reaches_the_queue(
    localstack_storage: BootstrapResult, localstack_s3: Any, localstack_sqs: Any
) -> None:
    settings = get_settings()
    key = f"{settings.intake_prefix}2026/a b+c.dcm"
    localstack_s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"DICM")
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while not records and time.monotonic() < deadline:
        got = localstack_sqs.receive_message(
            QueueUrl=localstack_storage.intake_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2
        )
        for message in got.get("Messages", []):
            records.extend(json.loads(message["Body"]).get("Records", []))
    assert [unquote_plus(r["s3"]["object"]["key"]) for r in records] == [key]


def _tamper(url: str) -> str:
    """The same presigned URL asking for another key (signature unchanged)."""
    parts = urlparse(url)
    return urlunparse(parts._replace(path=parts.path.replace("scan.dcm", "other.dcm")))


def _with_query(url: str, **changes: str) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunparse(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_get_works_and_tampered_or_expired_urls_are_refused(
    localstack_storage: BootstrapResult, localstack_endpoint: str, signature_version: str
) -> None:

    settings = get_settings()
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=localstack_endpoint,
        config=Config(signature_version=signature_version),
    )
    for key in ("P1/scan.dcm", "P1/other.dcm"):
        s3.put_object(Bucket=settings.research_bucket, Key=key, Body=key.encode())
    params = {"Bucket": settings.research_bucket, "Key": "P1/scan.dcm"}

    good = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    response = requests.get(good, timeout=10)
    assert response.status_code == 200
    assert response.content == b"P1/scan.dcm"

    assert requests.get(_tamper(good), timeout=10).status_code == 403
    if signature_version == "s3v4":
        assert requests.get(_with_query(good, **{"X-Amz-Expires": "3600"}), timeout=10).status_code == 403
    else:
        expires = str(int(parse_qs(urlparse(good).query)["Expires"][0]) + 3600)
        assert requests.get(_with_query(good, Expires=expires), timeout=10).status_code == 403

    short = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=1)
    time.sleep(2.5)
    assert requests.get(short, timeout=10).status_code == 403


def test_container_init_hook_applies_the_same_bootstrap(
    localstack_endpoint: str, localstack_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """localstack/init/ready.d/10-tmi-storage.sh (what a LocalStack container runs) calls the bootstrap."""

    root = Path(__file__).resolve().parents[3]
    suffix = secrets.token_hex(3)
    env = {
        **os.environ,
        "TMI_SRC": str(root),
        "TMI_PYTHON": sys.executable,
        "TMI_INTAKE_BUCKET": f"hook-intake-{suffix}",
        "TMI_RESEARCH_BUCKET": f"hook-research-{suffix}",
        "TMI_QUARANTINE_BUCKET": f"hook-quarantine-{suffix}",
        "TMI_INTAKE_QUEUE": f"hook-events-{suffix}",
        "TMI_INTAKE_DLQ": f"hook-dlq-{suffix}",
    }
    done = subprocess.run(
        [str(root / "localstack" / "init" / "ready.d" / "10-tmi-storage.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert result["warnings"] == []
    assert result["intake_queue_arn"].endswith(f":hook-events-{suffix}")
    names = {b["Name"] for b in localstack_s3.list_buckets()["Buckets"]}
    assert {f"hook-intake-{suffix}", f"hook-research-{suffix}", f"hook-quarantine-{suffix}"} <= names


def _socket_table() -> dict[str, tuple[str, str, int, str]]:
    """inode → (table, local address hex, port, state) for every TCP/UDP socket on this host."""
    table: dict[str, tuple[str, str, int, str]] = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{name}") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                table[fields[9]] = (name, address, int(port_hex, 16), fields[3])
    return table


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                continue
    return members


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 as /proc/net prints them


def test_launcher_binds_loopback_only_and_writes_nothing_system_wide(localstack_server: str) -> None:
    port = urlparse(localstack_server).port
    sockets = _socket_table()
    [gateway_inode] = [i for i, (_, _, p, state) in sockets.items() if p == port and state == "0A"]
    [owner] = [
        int(pid.name)
        for pid in Path("/proc").iterdir()
        if pid.name.isdigit() and gateway_inode in _safe_inodes(int(pid.name))
    ]
    assert sockets[gateway_inode][1] == "0100007F", "the gateway must listen on 127.0.0.1"
    # Every listening TCP socket and every bound UDP socket of LocalStack's process group is on loopback
    # (its DNS server, for one, would listen on all interfaces if it were not switched off).
    for pid in _group_members(os.getpgid(owner)):
        for inode in _safe_inodes(pid):
            if inode in sockets:
                kind, address, bound_port, state = sockets[inode]
                # UDP: servers (DNS on 53) use low ports; ephemeral client sockets are not listeners.
                listening = state == "0A" if kind.startswith("tcp") else 0 < bound_port < 1024
                if listening:
                    assert address in LOOPBACK, f"pid {pid} listens on {kind} {address}:{bound_port}"
    assert not Path("/etc/localstack").exists()
    assert not Path("/var/lib/localstack").exists()


def _safe_inodes(pid: int) -> set[str]:
    try:
        return _socket_inodes(pid)
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return set()
