"""storage-policies/: valid JSON, the intended principals and actions, least privilege, no public access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import POLICIES_DIR, Plan, Principals, plan, render, template_variables
from tests.unit.infra.policy_eval import ANONYMOUS, Request, allowed
from tmi.errors import ConfigurationError
from tmi.settings import Settings

ACCOUNT = "111122223333"
WHO = Principals.for_account(ACCOUNT)
OUTSIDER = f"arn:aws:iam::{ACCOUNT}:user/someone-else"


@pytest.fixture(scope="module")
def desired() -> Plan:
    return plan(Settings(), account_id=ACCOUNT, principals=WHO)


def _can(
    desired: Plan, who: str, action: str, bucket_role: str, key: str | None = "x.dcm", *, secure: bool = True
) -> bool:
    bucket = desired.buckets[bucket_role]
    resource = f"arn:aws:s3:::{bucket.name}" + (f"/{key}" if key is not None else "")
    roles = {
        WHO.intake_writer: "intake_writer",
        WHO.pipeline: "pipeline",
        WHO.researcher: "researcher",
        WHO.admin: "admin",
    }
    identity = desired.user_policies.get(roles.get(who, ""), [])
    return allowed(Request(who, action, resource, secure), bucket.policy, identity)


def test_every_file_is_valid_json_and_every_placeholder_is_known() -> None:
    files = sorted(POLICIES_DIR.rglob("*.json"))
    assert len(files) >= 15
    variables = template_variables(
        Settings(), account_id=ACCOUNT, kms_key_arn="arn:aws:kms:us-east-1:1:key/k"
    )
    for path in files:
        json.loads(path.read_text())  # valid before substitution too (placeholders only inside strings)
        render(str(path.relative_to(POLICIES_DIR)), variables)


def test_every_file_is_used_by_the_plan() -> None:
    from adapters import bootstrap as b

    used = {w.policy for w in b.BUCKET_WIRING.values()} | {w.lifecycle for w in b.BUCKET_WIRING.values()}
    used |= {w.object_lock for w in b.BUCKET_WIRING.values() if w.object_lock}
    used |= set(b.ENCRYPTION_FILES.values()) | {b.PUBLIC_ACCESS_BLOCK_FILE, b.NOTIFICATION_FILE}
    used |= {b.QUEUE_FILE, b.DLQ_FILE, b.QUEUE_POLICY_FILE}
    used |= {f for files in b.USER_POLICY_FILES.values() for f in files}
    on_disk = {str(p.relative_to(POLICIES_DIR)) for p in POLICIES_DIR.rglob("*.json")}
    assert on_disk == used


def test_render_refuses_unknown_placeholders_and_unsafe_values(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": "${nope}"}')
    with pytest.raises(ConfigurationError, match="unknown placeholder"):
        render("a.json", {}, tmp_path)
    (tmp_path / "b.json").write_text('{"x": "${v}"}')
    with pytest.raises(ConfigurationError, match="escape"):
        render("b.json", {"v": 'a"b'}, tmp_path)
    assert render("b.json", {"v": "arn:aws:s3:::b/*"}, tmp_path) == {"x": "arn:aws:s3:::b/*"}


@pytest.mark.parametrize("role", ["intake", "research", "quarantine"])
def test_every_bucket_denies_non_tls_access(desired: Plan, role: str) -> None:
    statement = desired.buckets[role].policy["Statement"][0]
    name = desired.buckets[role].name
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert set(statement["Resource"]) == {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"}
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for who in (WHO.pipeline, WHO.researcher, WHO.admin, WHO.intake_writer):
        assert not _can(desired, who, "s3:GetObject", role, secure=False)
        assert not _can(desired, who, "s3:PutObject", role, f"{Settings().intake_prefix}x.dcm", secure=False)


def _allow_statements(desired: Plan) -> list[tuple[str, dict[str, Any]]]:
    found = [(f"bucket:{r}", s) for r, b in desired.buckets.items() for s in b.policy["Statement"]]
    found += [
        (f"user:{w}", s) for w, docs in desired.user_policies.items() for d in docs for s in d["Statement"]
    ]
    return [(where, s) for where, s in found if s["Effect"] == "Allow"]


def test_no_public_access_anywhere(desired: Plan) -> None:
    for where, statement in _allow_statements(desired):
        principal = statement.get("Principal")
        if principal is not None:
            assert principal != "*", where
            assert "*" not in json.dumps(principal), where
    for bucket in desired.buckets.values():
        assert bucket.public_access_block == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
    for role in ("intake", "research", "quarantine"):
        for action in ("s3:GetObject", "s3:PutObject", "s3:ListBucket"):
            assert not _can(desired, ANONYMOUS, action, role)
            assert not _can(desired, OUTSIDER, action, role)


def test_no_wildcard_actions_in_any_allow(desired: Plan) -> None:
    for where, statement in _allow_statements(desired):
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            assert "*" not in action, f"{where} {statement.get('Sid')}: {action}"


def test_intake_is_written_only_by_the_intake_writer_and_read_only_by_the_pipeline(desired: Plan) -> None:
    incoming = f"{Settings().intake_prefix}2026/x.dcm"
    assert _can(desired, WHO.intake_writer, "s3:PutObject", "intake", incoming)
    assert not _can(desired, WHO.intake_writer, "s3:PutObject", "intake", "elsewhere/x.dcm")
    assert not _can(desired, WHO.intake_writer, "s3:GetObject", "intake", incoming)
    assert _can(desired, WHO.pipeline, "s3:GetObject", "intake", incoming)
    assert _can(
        desired, WHO.pipeline, "s3:GetObjectVersion", "intake", incoming
    )  # quarantine copies a version
    assert _can(desired, WHO.pipeline, "s3:ListBucket", "intake", None)  # the reconciler lists intake
    for who in (WHO.pipeline, WHO.researcher, WHO.admin):
        assert not _can(desired, who, "s3:PutObject", "intake", incoming)
    for who in (WHO.researcher, WHO.admin, WHO.intake_writer):
        assert not _can(desired, who, "s3:GetObject", "intake", incoming)
        assert not _can(desired, who, "s3:GetObjectVersion", "intake", incoming)


def test_research_is_read_by_researchers_and_written_only_by_the_pipeline(desired: Plan) -> None:
    key = "TMI-0123456789/1.2/1.3/1.4.dcm"
    assert _can(desired, WHO.researcher, "s3:GetObject", "research", key)
    assert _can(desired, WHO.researcher, "s3:ListBucket", "research", None)
    assert _can(desired, WHO.pipeline, "s3:PutObject", "research", key)
    assert _can(desired, WHO.pipeline, "s3:DeleteObject", "research", key)
    assert _can(desired, WHO.pipeline, "s3:AbortMultipartUpload", "research", key)  # upload_file over 64 MB
    for who in (WHO.researcher, WHO.admin, WHO.intake_writer):
        assert not _can(desired, who, "s3:PutObject", "research", key)
        assert not _can(desired, who, "s3:DeleteObject", "research", key)


def test_quarantine_is_for_admins_and_the_pipeline_only(desired: Plan) -> None:
    assert _can(desired, WHO.pipeline, "s3:PutObject", "quarantine")
    assert _can(desired, WHO.admin, "s3:GetObject", "quarantine")
    assert _can(desired, WHO.admin, "s3:DeleteObject", "quarantine")
    for who in (WHO.researcher, WHO.intake_writer):
        for action in ("s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"):
            assert not _can(
                desired, who, action, "quarantine", None if action == "s3:ListBucket" else "x.dcm"
            )


def test_research_principal_has_no_access_to_phi_buckets_even_by_identity_policy(desired: Plan) -> None:
    intake, quarantine = desired.buckets["intake"].name, desired.buckets["quarantine"].name
    text = json.dumps(desired.user_policies["researcher"])
    assert intake not in text and quarantine not in text


def test_queue_policy_lets_only_the_intake_bucket_send(desired: Plan) -> None:
    policy = json.loads(desired.queues["intake"].attributes["Policy"])
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == desired.queues["intake"].arn
    assert (
        statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        == f"arn:aws:s3:::{desired.buckets['intake'].name}"
    )
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT


def test_queue_settings_follow_the_settings_object() -> None:
    settings = Settings(queue_max_receive_count=3, queue_visibility_timeout_s=300)
    desired = plan(settings, account_id=ACCOUNT)
    attributes = desired.queues["intake"].attributes
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": desired.queues["dlq"].arn, "maxReceiveCount": "3"}
    assert attributes["VisibilityTimeout"] == "300"
    assert int(desired.queues["dlq"].attributes["MessageRetentionPeriod"]) > int(
        attributes["MessageRetentionPeriod"]
    )


def test_notification_is_intake_object_created_under_the_prefix(desired: Plan) -> None:
    [config] = desired.notification["QueueConfigurations"]
    assert desired.notification_bucket == Settings().intake_bucket
    assert config["QueueArn"] == desired.queues["intake"].arn
    assert config["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"]: r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": Settings().intake_prefix, "suffix": ".dcm"}


def test_lifecycle_expires_quarantine_but_retains_current_intake_objects(desired: Plan) -> None:
    for bucket in desired.buckets.values():
        ids = [r["ID"] for r in bucket.lifecycle["Rules"]]
        assert len(ids) == len(set(ids))
        assert all(r["Status"] == "Enabled" for r in bucket.lifecycle["Rules"])
    quarantine = desired.buckets["quarantine"].lifecycle["Rules"]
    assert any(r.get("Expiration", {}).get("Days", 0) > 0 for r in quarantine)
    intake = desired.buckets["intake"].lifecycle["Rules"]
    assert not any("Expiration" in r for r in intake), (
        "republish re-reads intake: never expire current objects"
    )
    assert any("Transitions" in r for r in intake)


def test_encryption_is_sse_s3_by_default_and_sse_kms_with_a_key() -> None:
    default = plan(Settings(), account_id=ACCOUNT).buckets["intake"].encryption["Rules"][0]
    assert default["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    key = "arn:aws:kms:eu-west-1:111122223333:key/abcd"
    kms = plan(Settings(), account_id=ACCOUNT, kms_key_arn=key).buckets["research"].encryption["Rules"][0]
    assert kms["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}


def test_intake_alone_has_object_lock_and_every_bucket_is_versioned(desired: Plan) -> None:
    assert {r for r, b in desired.buckets.items() if b.object_lock} == {"intake"}
    assert desired.buckets["intake"].object_lock["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE"  # type: ignore[index]
    assert all(b.versioning for b in desired.buckets.values())


def test_minio_user_policies_hold_only_s3_actions(desired: Plan) -> None:
    # Terraform's minio example attaches the first file of each principal: it must be S3-only.
    from adapters.bootstrap import USER_POLICY_FILES

    for who, files in USER_POLICY_FILES.items():
        first = render(files[0], desired.variables)
        actions = [a for s in first["Statement"] for a in s["Action"]]
        assert actions and all(a.startswith("s3:") for a in actions), who
