"""Apply ``storage-policies/`` to an S3 + SQS endpoint with boto3: buckets, queues, policies, notifications.

The files under ``storage-policies/`` are the single source of the storage rules; Terraform reads the same
files with ``templatefile()``. This module has two halves:

- :func:`plan` is pure: it renders every document for the given settings and returns the desired
  resources (:class:`Plan`). The Terraform consistency test compares it with the ``.tf`` files.
- :func:`bootstrap` reconciles an endpoint (moto's server, LocalStack, MinIO, AWS) with that plan. Each
  step reads the current state first and writes only what differs, so a second run changes nothing (and,
  in particular, does not re-put the notification configuration, which makes S3 emit an ``s3:TestEvent``).

Required features (buckets, queues, dead-letter redrive, the queue policy, the intake notification) raise
:class:`BootstrapError` when the endpoint refuses them. Optional hardening that some endpoints do not
implement (object lock, default encryption, public access block, lifecycle, bucket policy) is applied when
possible; a refusal is logged as a warning naming the feature and recorded in
:attr:`BootstrapResult.warnings` — or raised when ``strict=True`` (use that against AWS).

Command line: ``python -m adapters.bootstrap [--strict] [--json]`` against the endpoint given by
``AWS_ENDPOINT_URL*`` and the bucket/queue names from ``TMI_*`` settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from tmi.errors import ConfigurationError, TmiError
from tmi.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

POLICIES_DIR = Path(__file__).resolve().parents[1] / "storage-policies"
LOCAL_ACCOUNT_ID = "000000000000"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/*@+=,-]*$")


class BootstrapError(TmiError):
    """The endpoint refused a required part of the storage layout, or a policy file is invalid."""


@dataclass(frozen=True)
class Principals:
    """ARNs of the four principals the policies name (IAM roles/users on AWS, users on MinIO).

    The intake writer is the intake Orthanc's identity; the pipeline runs the functions, the worker and
    the reconciler; researchers read de-identified data (the gateway signs presigned URLs with this
    identity); admins review the quarantine.
    """

    intake_writer: str
    pipeline: str
    researcher: str
    admin: str

    @classmethod
    def for_account(cls, account_id: str, partition: str = "aws") -> Principals:
        """Conventional IAM user ARNs in ``account_id`` (what the local emulators and examples create)."""
        base = f"arn:{partition}:iam::{account_id}:user"
        return cls(
            intake_writer=f"{base}/tmi-intake-writer",
            pipeline=f"{base}/tmi-pipeline",
            researcher=f"{base}/tmi-researcher",
            admin=f"{base}/tmi-admin",
        )


@dataclass(frozen=True)
class BucketWiring:
    """Which storage-policies files apply to one bucket role (Terraform's storage module mirrors this)."""

    policy: str
    lifecycle: str
    versioning: bool
    object_lock: str | None


# The per-role wiring. terraform/modules/storage/main.tf declares the same map in `locals.buckets`;
# tests/unit/infra/test_consistency.py fails when the two drift apart.
BUCKET_WIRING: dict[str, BucketWiring] = {
    "intake": BucketWiring(
        policy="bucket-policies/intake.json",
        lifecycle="lifecycle/intake.json",
        versioning=True,
        object_lock="object-lock/intake.json",
    ),
    "research": BucketWiring(
        policy="bucket-policies/research.json",
        lifecycle="lifecycle/research.json",
        versioning=True,
        object_lock=None,
    ),
    "quarantine": BucketWiring(
        policy="bucket-policies/quarantine.json",
        lifecycle="lifecycle/quarantine.json",
        versioning=True,
        object_lock=None,
    ),
}
PUBLIC_ACCESS_BLOCK_FILE = "public-access-block.json"
ENCRYPTION_FILES = {"sse-s3": "encryption/sse-s3.json", "sse-kms": "encryption/sse-kms.json"}
NOTIFICATION_FILE = "notifications/intake.json"
QUEUE_FILE = "queues/intake.json"
DLQ_FILE = "queues/intake-dlq.json"
QUEUE_POLICY_FILE = "queues/intake-queue-policy.json"
USER_POLICY_FILES: dict[str, tuple[str, ...]] = {
    "intake_writer": ("user-policies/intake-writer.json",),
    "pipeline": ("user-policies/pipeline.json", "user-policies/pipeline-queue.json"),
    "researcher": ("user-policies/researcher.json",),
    "admin": ("user-policies/admin.json", "user-policies/admin-queue.json"),
}


@dataclass(frozen=True)
class BucketPlan:
    """The desired state of one bucket, every document rendered."""

    role: str
    name: str
    policy: dict[str, Any]
    lifecycle: dict[str, Any]
    encryption: dict[str, Any]
    public_access_block: dict[str, Any]
    versioning: bool
    object_lock: dict[str, Any] | None


@dataclass(frozen=True)
class QueuePlan:
    """The desired state of one queue: its attributes as SQS takes them (strings, policies as JSON)."""

    role: str
    name: str
    arn: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class Plan:
    """Everything :func:`bootstrap` will apply, rendered for one account/region/settings."""

    variables: dict[str, str]
    buckets: dict[str, BucketPlan]
    queues: dict[str, QueuePlan]
    notification_bucket: str
    notification: dict[str, Any]
    user_policies: dict[str, list[dict[str, Any]]]


@dataclass
class BootstrapResult:
    """What :func:`bootstrap` found or created, and what it changed on this run."""

    intake_bucket: str
    research_bucket: str
    quarantine_bucket: str
    intake_queue_url: str
    intake_queue_arn: str
    dlq_url: str
    dlq_arn: str
    changed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (used by ``python -m adapters.bootstrap --json``)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------- rendering


def template_variables(
    settings: Settings,
    *,
    account_id: str = LOCAL_ACCOUNT_ID,
    region: str | None = None,
    partition: str = "aws",
    principals: Principals | None = None,
    kms_key_arn: str | None = None,
) -> dict[str, str]:
    """The values substituted for ``${name}`` placeholders (Terraform passes the same names)."""
    region = region or settings.aws_region
    who = principals or Principals.for_account(account_id, partition)
    sqs_arn = f"arn:{partition}:sqs:{region}:{account_id}"
    return {
        "partition": partition,
        "account_id": account_id,
        "region": region,
        "intake_bucket": settings.intake_bucket,
        "research_bucket": settings.research_bucket,
        "quarantine_bucket": settings.quarantine_bucket,
        "intake_prefix": settings.intake_prefix,
        "intake_queue": settings.intake_queue,
        "intake_queue_arn": f"{sqs_arn}:{settings.intake_queue}",
        "intake_dlq": settings.intake_dlq,
        "intake_dlq_arn": f"{sqs_arn}:{settings.intake_dlq}",
        "queue_visibility_timeout_s": str(settings.queue_visibility_timeout_s),
        "queue_max_receive_count": str(settings.queue_max_receive_count),
        "intake_writer_principal_arn": who.intake_writer,
        "pipeline_principal_arn": who.pipeline,
        "researcher_principal_arn": who.researcher,
        "admin_principal_arn": who.admin,
        "kms_key_arn": kms_key_arn or "",
    }


def render(relative_path: str, variables: Mapping[str, str], policies_dir: Path = POLICIES_DIR) -> Any:
    """Load one storage-policies file, substitute ``${name}`` placeholders, and parse the JSON.

    Values are inserted into JSON strings, so they are restricted to characters that need no escaping;
    an unknown placeholder is an error rather than an empty string.
    """
    path = policies_dir / relative_path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"storage policy file missing: {path}") from exc

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise ConfigurationError(f"{relative_path}: unknown placeholder ${{{name}}}")
        value = variables[name]
        if not _SAFE_VALUE.match(value):
            raise ConfigurationError(
                f"{relative_path}: value for ${{{name}}} has characters JSON would escape"
            )
        return value

    try:
        return json.loads(_PLACEHOLDER.sub(substitute, text))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{relative_path}: invalid JSON after substitution: {exc}") from exc


def plan(
    settings: Settings,
    *,
    account_id: str = LOCAL_ACCOUNT_ID,
    region: str | None = None,
    partition: str = "aws",
    principals: Principals | None = None,
    kms_key_arn: str | None = None,
    policies_dir: Path = POLICIES_DIR,
) -> Plan:
    """Render the desired storage layout for ``settings`` without touching any endpoint.

    ``kms_key_arn`` selects SSE-KMS default encryption; without it buckets use SSE-S3.
    """
    variables = template_variables(
        settings,
        account_id=account_id,
        region=region,
        partition=partition,
        principals=principals,
        kms_key_arn=kms_key_arn,
    )
    encryption = render(ENCRYPTION_FILES["sse-kms" if kms_key_arn else "sse-s3"], variables, policies_dir)
    public_access_block = render(PUBLIC_ACCESS_BLOCK_FILE, variables, policies_dir)
    names = {
        "intake": settings.intake_bucket,
        "research": settings.research_bucket,
        "quarantine": settings.quarantine_bucket,
    }
    buckets = {
        role: BucketPlan(
            role=role,
            name=names[role],
            policy=render(wiring.policy, variables, policies_dir),
            lifecycle=render(wiring.lifecycle, variables, policies_dir),
            encryption=encryption,
            public_access_block=public_access_block,
            versioning=wiring.versioning,
            object_lock=render(wiring.object_lock, variables, policies_dir) if wiring.object_lock else None,
        )
        for role, wiring in BUCKET_WIRING.items()
    }
    dlq_doc = render(DLQ_FILE, variables, policies_dir)
    queue_doc = render(QUEUE_FILE, variables, policies_dir)
    queue_attributes = dict(queue_doc["Attributes"])
    queue_attributes["RedrivePolicy"] = _canonical_json(queue_doc["RedrivePolicy"])
    queue_attributes["Policy"] = _canonical_json(render(QUEUE_POLICY_FILE, variables, policies_dir))
    queues = {
        "dlq": QueuePlan(
            "dlq", settings.intake_dlq, variables["intake_dlq_arn"], dict(dlq_doc["Attributes"])
        ),
        "intake": QueuePlan("intake", settings.intake_queue, variables["intake_queue_arn"], queue_attributes),
    }
    user_policies = {
        principal: [render(f, variables, policies_dir) for f in files]
        for principal, files in USER_POLICY_FILES.items()
    }
    return Plan(
        variables=variables,
        buckets=buckets,
        queues=queues,
        notification_bucket=settings.intake_bucket,
        notification=render(NOTIFICATION_FILE, variables, policies_dir),
        user_policies=user_policies,
    )


def _canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------------------ reconciling


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Reconciler:
    """Applies a :class:`Plan`; keeps the change log and the warnings for :class:`BootstrapResult`."""

    def __init__(self, s3: S3Client, sqs: SQSClient | None, *, strict: bool) -> None:
        self.s3 = s3
        self.sqs = sqs
        self.strict = strict
        self.changed: list[str] = []
        self.warnings: list[str] = []

    def optional(self, feature: str, bucket: str, step: Callable[..., None], *args: Any) -> None:
        """Run the optional hardening ``step(*args)``; a refusal by the endpoint becomes a named warning."""
        try:
            step(*args)
        except ClientError as exc:
            message = (
                f"{feature} not applied to bucket {bucket}: endpoint refused it ({_error_code(exc)}: {exc})"
            )
            if self.strict:
                raise BootstrapError(message) from exc
            log.warning(message)
            self.warnings.append(message)

    # ---- queues

    def ensure_queue(self, name: str, attributes: Mapping[str, str]) -> tuple[str, str]:
        """Create the queue or bring its attributes to ``attributes``; return (url, arn)."""
        if self.sqs is None:
            raise ConfigurationError(f"queue {name} needs an SQS client")
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if _error_code(exc) not in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
                raise BootstrapError(f"cannot look up queue {name}: {exc}") from exc
            try:
                url = self.sqs.create_queue(QueueName=name, Attributes=cast(Any, dict(attributes)))[
                    "QueueUrl"
                ]
            except ClientError as create_exc:
                raise BootstrapError(f"cannot create queue {name}: {create_exc}") from create_exc
            self.changed.append(f"queue {name}: created")
        else:
            reply = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            current = cast(dict[str, str], reply.get("Attributes", {}))
            drift = {k: v for k, v in attributes.items() if not _same_attribute(k, current.get(k), v)}
            if drift:
                update = dict(drift)
                if "Policy" in attributes:
                    # moto's SetQueueAttributes drops the queue policy when the call omits it; sending it
                    # every time keeps one run enough to converge (and is harmless elsewhere).
                    update["Policy"] = attributes["Policy"]
                try:
                    self.sqs.set_queue_attributes(QueueUrl=url, Attributes=cast(Any, update))
                except ClientError as exc:
                    raise BootstrapError(
                        f"cannot set attributes {sorted(drift)} on queue {name}: {exc}"
                    ) from exc
                self.changed.append(f"queue {name}: attributes {sorted(drift)}")
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    # ---- buckets

    def ensure_bucket(self, name: str, region: str, *, object_lock: bool) -> None:
        """Create the bucket when missing (with the object-lock flag if wanted); warn when lock is absent."""
        try:
            self.s3.head_bucket(Bucket=name)
        except ClientError as exc:
            if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise BootstrapError(f"cannot inspect bucket {name}: {exc}") from exc
        else:
            if object_lock and not self._object_lock_enabled(name):
                message = (
                    f"object lock not enabled on existing bucket {name}: S3 enables it only at bucket "
                    "creation (recreate the bucket, or enable it on AWS via put_object_lock_configuration "
                    "after versioning)"
                )
                log.warning(message)
                self.warnings.append(message)
            return
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if object_lock:
            try:
                self.s3.create_bucket(**kwargs, ObjectLockEnabledForBucket=True)
            except ClientError as exc:
                if self.strict:
                    raise BootstrapError(f"object lock refused when creating bucket {name}: {exc}") from exc
                message = (
                    f"object lock not applied to bucket {name}: endpoint refused the creation flag ({exc})"
                )
                log.warning(message)
                self.warnings.append(message)
            else:
                self.changed.append(f"bucket {name}: created with object lock")
                return
        try:
            self.s3.create_bucket(**kwargs)
        except ClientError as exc:
            raise BootstrapError(f"cannot create bucket {name}: {exc}") from exc
        self.changed.append(f"bucket {name}: created")

    def _object_lock_enabled(self, name: str) -> bool:
        try:
            config = self.s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
        except ClientError:
            return False
        return config.get("ObjectLockEnabled") == "Enabled"

    def ensure_versioning(self, name: str) -> None:
        """Turn versioning on (object lock needs it; lifecycle rules expire noncurrent versions)."""
        status = self.s3.get_bucket_versioning(Bucket=name).get("Status")
        if status != "Enabled":
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            self.changed.append(f"bucket {name}: versioning enabled")

    def ensure_object_lock(self, name: str, desired: Mapping[str, Any]) -> None:
        """Set the default retention when the bucket has object lock enabled."""
        if not self._object_lock_enabled(name):
            return  # already reported by ensure_bucket
        current = self.s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
        if _normalise_object_lock(current) != _normalise_object_lock(desired):
            self.s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=dict(desired))  # type: ignore[arg-type]
            self.changed.append(f"bucket {name}: object lock default retention")

    def ensure_encryption(self, name: str, desired: Mapping[str, Any]) -> None:
        """Default server-side encryption (SSE-S3 or SSE-KMS)."""
        current: Mapping[str, Any]
        try:
            current = self.s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
        except ClientError as exc:
            if _error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            current = {}
        if _normalise_encryption(current) != _normalise_encryption(desired):
            self.s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=dict(desired))  # type: ignore[arg-type]
            self.changed.append(f"bucket {name}: default encryption")

    def ensure_public_access_block(self, name: str, desired: Mapping[str, bool]) -> None:
        """Block every form of public access."""
        try:
            current = self.s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if _error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            current = {}
        if dict(current) != dict(desired):
            self.s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=dict(desired))  # type: ignore[arg-type]
            self.changed.append(f"bucket {name}: public access block")

    def endpoint_evaluates_policy_conditions(self, probe_prefix: str, region: str) -> bool:
        """Whether the endpoint honours the ``Condition`` of a bucket-policy ``Deny`` statement.

        moto evaluates bucket-policy statements whose principal is ``*`` but ignores most conditions, so
        TMI's conditional denies (non-TLS, "everyone except the pipeline") would refuse every object
        request there. A throw-away bucket with a Deny whose condition can never hold tells the two
        behaviours apart. AWS itself is not probed.
        """
        endpoint = str(getattr(self.s3.meta, "endpoint_url", "") or "")
        if not endpoint or endpoint.rstrip("/").endswith(".amazonaws.com"):
            return True
        probe = f"{probe_prefix}-policy-probe-{secrets.token_hex(4)}"[:63]
        kwargs: dict[str, Any] = {"Bucket": probe}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "NeverMatches",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": f"arn:aws:s3:::{probe}/*",
                    "Condition": {"StringEquals": {"aws:PrincipalTag/tmi-policy-probe": "never-set"}},
                }
            ],
        }
        self.s3.create_bucket(**kwargs)
        try:
            self.s3.put_bucket_policy(Bucket=probe, Policy=json.dumps(document))
            try:
                self.s3.put_object(Bucket=probe, Key="probe", Body=b"")
            except ClientError as exc:
                if _error_code(exc) not in {"403", "AccessDenied"}:
                    raise
                return False
            return True
        finally:
            self._remove_probe(probe)

    def _remove_probe(self, probe: str) -> None:
        """Delete the probe bucket whatever state the probe left it in; warn if it cannot be removed."""
        steps: list[Callable[[], object]] = [
            lambda: self.s3.delete_bucket_policy(Bucket=probe),
            lambda: self.s3.delete_object(Bucket=probe, Key="probe"),
        ]
        for step in steps:
            try:
                step()
            except ClientError as exc:
                log.debug("probe clean-up step on %s: %s", probe, exc)
        try:
            self.s3.delete_bucket(Bucket=probe)
        except ClientError as exc:
            message = f"could not delete the policy probe bucket {probe}: {exc}"
            log.warning(message)
            self.warnings.append(message)

    def ensure_policy(self, name: str, desired: Mapping[str, Any]) -> None:
        """The bucket policy (deny non-TLS, least-privilege principals)."""
        try:
            current = json.loads(self.s3.get_bucket_policy(Bucket=name)["Policy"])
        except ClientError as exc:
            if _error_code(exc) != "NoSuchBucketPolicy":
                raise
            current = None
        if current is None or _canonical_json(current) != _canonical_json(desired):
            self.s3.put_bucket_policy(Bucket=name, Policy=_canonical_json(desired))
            self.changed.append(f"bucket {name}: policy")

    def ensure_lifecycle(self, name: str, desired: Mapping[str, Any]) -> None:
        """Lifecycle rules (intake transition/noncurrent expiry, quarantine expiry, multipart cleanup)."""
        try:
            current = {"Rules": self.s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]}
        except ClientError as exc:
            if _error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
            current = {"Rules": []}
        if _normalise_lifecycle(current) != _normalise_lifecycle(desired):
            self.s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=dict(desired))  # type: ignore[arg-type]
            self.changed.append(f"bucket {name}: lifecycle")

    def ensure_notification(self, name: str, desired: Mapping[str, Any]) -> None:
        """The intake bucket's ObjectCreated → queue notification (required: the pipeline depends on it)."""
        current = self.s3.get_bucket_notification_configuration(Bucket=name)
        current.pop("ResponseMetadata", None)  # type: ignore[misc]
        if _normalise_notification(current) != _normalise_notification(desired):
            try:
                self.s3.put_bucket_notification_configuration(
                    Bucket=name,
                    NotificationConfiguration=dict(desired),  # type: ignore[arg-type]
                )
            except ClientError as exc:
                raise BootstrapError(f"cannot configure notifications on bucket {name}: {exc}") from exc
            self.changed.append(f"bucket {name}: notification")


def _same_attribute(name: str, current: str | None, desired: str) -> bool:
    if current is None:
        return False
    if name in {"Policy", "RedrivePolicy", "RedriveAllowPolicy"}:
        try:
            return _canonical_json(_stringify(json.loads(current))) == _canonical_json(
                _stringify(json.loads(desired))
            )
        except json.JSONDecodeError:
            return False
    return current == desired


def _stringify(value: Any) -> Any:
    """Compare JSON documents modulo number/string spelling (SQS returns maxReceiveCount as a number)."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _normalise_object_lock(config: Mapping[str, Any]) -> str:
    # Some endpoints (moto) report the unused period as 0 ("Years": 0): treat zero as absent.
    retention = {k: v for k, v in config.get("Rule", {}).get("DefaultRetention", {}).items() if v}
    return _canonical_json({"Enabled": config.get("ObjectLockEnabled"), "Retention": retention})


def _normalise_encryption(config: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    rules = []
    for rule in config.get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        rules.append(
            (
                str(default.get("SSEAlgorithm", "")),
                str(default.get("KMSMasterKeyID", "")),
                bool(rule.get("BucketKeyEnabled", False)),
            )
        )
    return sorted(rules)


def _normalise_lifecycle(config: Mapping[str, Any]) -> str:
    rules = []
    for rule in config.get("Rules", []):
        rule = {k: v for k, v in rule.items() if v not in (None, {}, [])}
        rule_filter = rule.pop("Filter", None) or {}
        prefix = rule.pop("Prefix", None) or rule_filter.get("Prefix", "")
        rule["Filter"] = {"Prefix": prefix, **{k: v for k, v in rule_filter.items() if k != "Prefix"}}
        rules.append(_stringify(rule))
    return _canonical_json(sorted(rules, key=lambda r: str(r.get("ID"))))


def _normalise_notification(config: Mapping[str, Any]) -> str:
    queues = []
    for item in config.get("QueueConfigurations", []):
        rules = item.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        queues.append(
            {
                "Id": item.get("Id", ""),
                "QueueArn": item["QueueArn"],
                "Events": sorted(item["Events"]),
                "Filter": sorted((r["Name"].lower(), r["Value"]) for r in rules),
            }
        )
    other = {k: v for k, v in config.items() if k != "QueueConfigurations" and v}
    return _canonical_json({"Queues": sorted(queues, key=lambda q: q["Id"]), "Other": other})


def _arn_parts(arn: str) -> tuple[str, str, str]:
    """(partition, region, account) of an ARN."""
    parts = arn.split(":")
    if len(parts) < 6:
        raise BootstrapError(f"unexpected ARN {arn!r}")
    return parts[1], parts[3], parts[4]


def bootstrap(
    settings: Settings,
    s3_client: S3Client,
    sqs_client: SQSClient | None,
    *,
    principals: Principals | None = None,
    kms_key_arn: str | None = None,
    strict: bool = False,
    policies_dir: Path = POLICIES_DIR,
    notification_target_arn: str | None = None,
    account_id: str = LOCAL_ACCOUNT_ID,
) -> BootstrapResult:
    """Create or update TMI's buckets, queues, policies and notification from ``storage-policies/``.

    Idempotent: a second run with the same inputs changes nothing (``result.changed == []``). The account,
    region and partition come from the queue ARNs the endpoint reports, so the same call works against
    moto (account 123456789012), LocalStack (000000000000) and AWS. ``principals`` defaults to
    :meth:`Principals.for_account`; pass real role ARNs on AWS. See the module docstring for how refusals
    of optional features are reported.

    MinIO has no SQS: pass ``sqs_client=None`` and ``notification_target_arn`` (e.g.
    ``arn:minio:sqs::tmi:webhook``, a target configured on the server — see terraform/examples/minio); the
    queues are skipped (their result fields are empty) and the intake notification points at the target
    with the same events and filters. ``account_id`` then names the principals' account.
    """
    rec = _Reconciler(s3_client, sqs_client, strict=strict)

    if sqs_client is None:
        if not notification_target_arn:
            raise ConfigurationError("without an SQS client, give notification_target_arn (MinIO target)")
        desired = plan(
            settings,
            account_id=account_id,
            principals=principals,
            kms_key_arn=kms_key_arn,
            policies_dir=policies_dir,
        )
        region = settings.aws_region
        dlq_url = dlq_arn = queue_url = queue_arn = ""
    else:
        # The dead-letter queue first: its ARN tells us the account/region/partition everything else names.
        draft = plan(settings, principals=principals, kms_key_arn=kms_key_arn, policies_dir=policies_dir)
        dlq_url, dlq_arn = rec.ensure_queue(draft.queues["dlq"].name, draft.queues["dlq"].attributes)
        partition, region, found_account = _arn_parts(dlq_arn)
        desired = plan(
            settings,
            account_id=found_account,
            region=region,
            partition=partition,
            principals=principals,
            kms_key_arn=kms_key_arn,
            policies_dir=policies_dir,
        )
        if desired.queues["dlq"].arn != dlq_arn:
            raise BootstrapError(
                f"dead-letter queue ARN {dlq_arn} differs from the expected {desired.queues['dlq'].arn}"
            )
        queue_url, queue_arn = rec.ensure_queue(
            desired.queues["intake"].name, desired.queues["intake"].attributes
        )

    policies_evaluable = True
    try:
        policies_evaluable = rec.endpoint_evaluates_policy_conditions(settings.intake_bucket, region)
    except ClientError as exc:
        message = f"bucket policy probe failed ({_error_code(exc)}); applying bucket policies anyway"
        log.warning(message)
        rec.warnings.append(message)

    for bucket in desired.buckets.values():
        rec.ensure_bucket(bucket.name, region, object_lock=bucket.object_lock is not None)
        if bucket.versioning:
            rec.optional("versioning", bucket.name, rec.ensure_versioning, bucket.name)
        if bucket.object_lock is not None:
            rec.optional(
                "object lock default retention",
                bucket.name,
                rec.ensure_object_lock,
                bucket.name,
                bucket.object_lock,
            )
        rec.optional("default encryption", bucket.name, rec.ensure_encryption, bucket.name, bucket.encryption)
        rec.optional(
            "public access block",
            bucket.name,
            rec.ensure_public_access_block,
            bucket.name,
            bucket.public_access_block,
        )
        if policies_evaluable:
            rec.optional("bucket policy", bucket.name, rec.ensure_policy, bucket.name, bucket.policy)
        else:
            message = (
                f"bucket policy not applied to bucket {bucket.name}: this endpoint (moto) ignores the "
                "conditions of Deny statements, so the policy would refuse every object request"
            )
            if strict:
                raise BootstrapError(message)
            log.warning(message)
            rec.warnings.append(message)
        rec.optional("lifecycle", bucket.name, rec.ensure_lifecycle, bucket.name, bucket.lifecycle)

    notification = desired.notification
    if notification_target_arn:
        notification = {
            **notification,
            "QueueConfigurations": [
                {**q, "QueueArn": notification_target_arn} for q in notification["QueueConfigurations"]
            ],
        }
    rec.ensure_notification(desired.notification_bucket, notification)

    result = BootstrapResult(
        intake_bucket=settings.intake_bucket,
        research_bucket=settings.research_bucket,
        quarantine_bucket=settings.quarantine_bucket,
        intake_queue_url=queue_url,
        intake_queue_arn=queue_arn,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        changed=rec.changed,
        warnings=rec.warnings,
    )
    log.info("storage bootstrap done: %d change(s), %d warning(s)", len(result.changed), len(result.warnings))
    return result


def clients(settings: Settings) -> tuple[S3Client, SQSClient]:
    """boto3 S3 and SQS clients for the endpoints in ``settings`` (``AWS_ENDPOINT_URL*``)."""
    import boto3

    s3 = boto3.client("s3", region_name=settings.aws_region, endpoint_url=settings.s3_endpoint_url)
    sqs = boto3.client("sqs", region_name=settings.aws_region, endpoint_url=settings.sqs_endpoint_url)
    return s3, sqs


def main(argv: list[str] | None = None) -> int:
    """``python -m adapters.bootstrap``: apply storage-policies to the configured endpoint."""
    parser = argparse.ArgumentParser(prog="python -m adapters.bootstrap", description=main.__doc__)
    parser.add_argument("--strict", action="store_true", help="fail instead of warning on refused features")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--kms-key-arn", default=None, help="use SSE-KMS with this key instead of SSE-S3")
    parser.add_argument(
        "--notification-target-arn",
        default=None,
        help="MinIO: notify this target (e.g. arn:minio:sqs::tmi:webhook) and create no SQS queues",
    )
    for role in ("intake-writer", "pipeline", "researcher", "admin"):
        parser.add_argument(f"--{role}-principal-arn", default=None, help=f"ARN of the {role} principal")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = get_settings()
    s3, sqs_client = clients(settings)
    sqs = None if args.notification_target_arn else sqs_client
    given = {
        "intake_writer": args.intake_writer_principal_arn,
        "pipeline": args.pipeline_principal_arn,
        "researcher": args.researcher_principal_arn,
        "admin": args.admin_principal_arn,
    }
    principals: Principals | None = None
    if any(given.values()):
        if not all(given.values()):
            parser.error("give all four --*-principal-arn options, or none")
        principals = Principals(**given)
    try:
        result = bootstrap(
            settings,
            s3,
            sqs,
            principals=principals,
            kms_key_arn=args.kms_key_arn,
            strict=args.strict,
            notification_target_arn=args.notification_target_arn,
        )
    except TmiError as exc:
        log.error("storage bootstrap failed: %s", exc)
        return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.changed:
            print(f"changed: {line}")
        for line in result.warnings:
            print(f"WARNING: {line}")
        print(f"intake queue: {result.intake_queue_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
