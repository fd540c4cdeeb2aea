"""The storage bootstrap against a real moto server over HTTP: layout, delivery, redrive, idempotency."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError

from adapters.bootstrap import BootstrapError, BootstrapResult, bootstrap, plan
from tmi.errors import ConfigurationError
from tmi.settings import get_settings

pytestmark = pytest.mark.integration


def _receive_records(sqs: Any, queue_url: str, want: int, attempts: int = 5) -> list[dict[str, Any]]:
    """S3 event records from the queue (test events dropped), until ``want`` arrived or attempts ran out."""
    records: list[dict[str, Any]] = []
    for _ in range(attempts):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            body = json.loads(message["Body"])
            records.extend(body.get("Records", []))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if len(records) >= want:
            break
    return records


def test_bootstrap_creates_buckets_queues_and_hardening(
    bootstrapped_storage: BootstrapResult, s3_client: Any, sqs_client: Any
) -> None:
    result = bootstrapped_storage
    settings = get_settings()
    names = {b["Name"] for b in s3_client.list_buckets()["Buckets"]}
    assert {settings.intake_bucket, settings.research_bucket, settings.quarantine_bucket} <= names
    assert result.intake_queue_arn.endswith(":" + settings.intake_queue)
    assert result.dlq_arn.endswith(":" + settings.intake_dlq)
    # moto ignores Deny conditions, so bootstrap withholds the bucket policies there, and says so.
    assert len(result.warnings) == 3
    assert all(w.startswith("bucket policy not applied to bucket ") for w in result.warnings), result.warnings

    for bucket in (settings.intake_bucket, settings.research_bucket, settings.quarantine_bucket):
        assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        enc = s3_client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        pab = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(pab.values()) and len(pab) == 4
        with pytest.raises(s3_client.exceptions.ClientError, match="NoSuchBucketPolicy"):
            s3_client.get_bucket_policy(Bucket=bucket)
        rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert {r["ID"] for r in rules} == {
            r["ID"] for r in plan(settings).buckets[_role(bucket)].lifecycle["Rules"]
        }

    lock = s3_client.get_object_lock_configuration(Bucket=settings.intake_bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = {k: v for k, v in lock["Rule"]["DefaultRetention"].items() if v}  # moto adds "Years": 0
    assert retention == {"Mode": "GOVERNANCE", "Days": 30}

    attrs = sqs_client.get_queue_attributes(QueueUrl=result.intake_queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == result.dlq_arn
    assert int(redrive["maxReceiveCount"]) == settings.queue_max_receive_count
    assert int(attrs["VisibilityTimeout"]) == settings.queue_visibility_timeout_s
    queue_policy = json.loads(attrs["Policy"])
    statement = queue_policy["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == f"arn:aws:s3:::{settings.intake_bucket}"


def _role(bucket: str) -> str:
    settings = get_settings()
    return {
        settings.intake_bucket: "intake",
        settings.research_bucket: "research",
        settings.quarantine_bucket: "quarantine",
    }[bucket]


def test_notification_delivers_object_created_for_incoming_dcm_only(
    bootstrapped_storage: BootstrapResult, s3_client: Any, sqs_client: Any
) -> None:
    settings = get_settings()
    config = s3_client.get_bucket_notification_configuration(Bucket=settings.intake_bucket)
    [queue_config] = config["QueueConfigurations"]
    assert queue_config["QueueArn"] == bootstrapped_storage.intake_queue_arn
    key = f"{settings.intake_prefix}study 1/instance+1.dcm"
    s3_client.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"DICM")
    # Neither of these matches the filter (wrong prefix / wrong suffix): no event expected.
    s3_client.put_object(Bucket=settings.intake_bucket, Key="other/x.dcm", Body=b"x")
    s3_client.put_object(Bucket=settings.intake_bucket, Key=f"{settings.intake_prefix}x.json", Body=b"x")

    records = _receive_records(sqs_client, bootstrapped_storage.intake_queue_url, want=1)
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in records]
    assert keys == [key]
    assert records[0]["eventName"].startswith("ObjectCreated:")
    assert records[0]["s3"]["bucket"]["name"] == settings.intake_bucket


def test_unprocessed_messages_are_redriven_to_the_dlq(
    bootstrapped_storage: BootstrapResult, sqs_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = bootstrapped_storage.intake_queue_url
    settings = get_settings()
    sqs_client.purge_queue(QueueUrl=url)
    sqs_client.send_message(QueueUrl=url, MessageBody="poison")
    # Receive it maxReceiveCount times without deleting (visibility 0 so it comes back at once).
    for _ in range(settings.queue_max_receive_count):
        got = sqs_client.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=1)
        assert [m["Body"] for m in got.get("Messages", [])] == ["poison"]
    assert sqs_client.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
    dead = sqs_client.receive_message(QueueUrl=bootstrapped_storage.dlq_url, WaitTimeSeconds=1)
    assert [m["Body"] for m in dead.get("Messages", [])] == ["poison"]


def test_second_bootstrap_is_a_no_op(
    bootstrapped_storage: BootstrapResult, s3_client: Any, sqs_client: Any
) -> None:
    first = bootstrapped_storage
    assert first.changed, "the first run must have created things"
    url = first.intake_queue_url
    sqs_client.purge_queue(QueueUrl=url)

    second = bootstrap(get_settings(), s3_client, sqs_client)

    assert second.changed == []
    assert second.warnings == first.warnings
    assert (second.intake_queue_url, second.dlq_url, second.intake_queue_arn) == (
        first.intake_queue_url,
        first.dlq_url,
        first.intake_queue_arn,
    )
    # Re-putting the notification would make S3 send another s3:TestEvent: nothing may arrive.
    assert sqs_client.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []


def test_bootstrap_repairs_drift(
    bootstrapped_storage: BootstrapResult, s3_client: Any, sqs_client: Any
) -> None:
    settings = get_settings()
    s3_client.delete_bucket_encryption(Bucket=settings.research_bucket)
    s3_client.delete_bucket_lifecycle(Bucket=settings.quarantine_bucket)
    sqs_client.set_queue_attributes(
        QueueUrl=bootstrapped_storage.intake_queue_url, Attributes={"VisibilityTimeout": "5"}
    )

    again = bootstrap(settings, s3_client, sqs_client)

    bucket_changes = sorted(c for c in again.changed if c.startswith("bucket "))
    assert bucket_changes == sorted(
        [
            f"bucket {settings.research_bucket}: default encryption",
            f"bucket {settings.quarantine_bucket}: lifecycle",
        ]
    )
    # moto's SetQueueAttributes (the drift we caused) also dropped the queue policy; both are repaired.
    [queue_change] = [c for c in again.changed if c.startswith("queue ")]
    assert queue_change.startswith(f"queue {settings.intake_queue}: attributes [")
    assert "'VisibilityTimeout'" in queue_change
    assert s3_client.get_bucket_encryption(Bucket=settings.research_bucket)[
        "ServerSideEncryptionConfiguration"
    ]
    attrs = sqs_client.get_queue_attributes(
        QueueUrl=bootstrapped_storage.intake_queue_url, AttributeNames=["All"]
    )
    assert attrs["Attributes"]["VisibilityTimeout"] == str(settings.queue_visibility_timeout_s)
    assert "Policy" in attrs["Attributes"]
    assert bootstrap(settings, s3_client, sqs_client).changed == []


class _Refusing:
    """An S3 client that refuses some operations the way MinIO or an older endpoint does."""

    def __init__(self, client: Any, refuse: set[str], create_with_lock: bool = True) -> None:
        self._client = client
        self._refuse = refuse
        self._create_with_lock = create_with_lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name in self._refuse:

            def refuse(**_: Any) -> Any:
                raise ClientError({"Error": {"Code": "NotImplemented", "Message": "not here"}}, name)

            return refuse
        if name == "create_bucket" and not self._create_with_lock:

            def create(**kwargs: Any) -> Any:
                if kwargs.get("ObjectLockEnabledForBucket"):
                    raise ClientError({"Error": {"Code": "InvalidRequest", "Message": "no lock"}}, name)
                return attribute(**kwargs)

            return create
        return attribute


def test_refused_optional_features_are_named_warnings_and_errors_when_strict(
    moto_endpoint: str, s3_client: Any, sqs_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = get_settings()
    refusing = _Refusing(s3_client, {"put_public_access_block"}, create_with_lock=False)

    with caplog.at_level("WARNING", logger="adapters.bootstrap"):
        result = bootstrap(settings, refusing, sqs_client)  # type: ignore[arg-type]

    pab = [w for w in result.warnings if w.startswith("public access block not applied")]
    assert len(pab) == 3 and all("NotImplemented" in w for w in pab)
    assert any(
        w.startswith(f"object lock not applied to bucket {settings.intake_bucket}") for w in result.warnings
    )
    assert any("public access block not applied" in r.getMessage() for r in caplog.records)
    # The rest still happened: the bucket exists (without lock) and the notification is configured.
    assert s3_client.get_bucket_notification_configuration(Bucket=settings.intake_bucket)[
        "QueueConfigurations"
    ]
    # Re-running over a bucket that lacks the lock reports it again rather than passing silently.
    again = bootstrap(settings, s3_client, sqs_client)
    assert any(
        w.startswith(f"object lock not enabled on existing bucket {settings.intake_bucket}")
        for w in again.warnings
    )

    with pytest.raises(BootstrapError, match="public access block"):
        bootstrap(
            settings,
            _Refusing(s3_client, {"put_public_access_block", "get_public_access_block"}),
            sqs_client,
            strict=True,
        )  # type: ignore[arg-type]


def test_required_parts_refused_raise(moto_endpoint: str, s3_client: Any, sqs_client: Any) -> None:
    with pytest.raises(BootstrapError, match="notifications"):
        bootstrap(get_settings(), _Refusing(s3_client, {"put_bucket_notification_configuration"}), sqs_client)  # type: ignore[arg-type]


def test_minio_mode_notifies_a_target_arn_and_creates_no_queues(
    moto_endpoint: str, s3_client: Any, sqs_client: Any
) -> None:
    settings = get_settings()
    # moto only accepts AWS-shaped ARNs (MinIO's is arn:minio:sqs::tmi:webhook); the mechanism is the same.
    target = "arn:aws:sqs:us-east-1:123456789012:external-webhook-target"

    result = bootstrap(settings, s3_client, None, notification_target_arn=target)

    assert (result.intake_queue_url, result.dlq_url) == ("", "")
    assert sqs_client.list_queues().get("QueueUrls", []) == []
    [config] = s3_client.get_bucket_notification_configuration(Bucket=settings.intake_bucket)[
        "QueueConfigurations"
    ]
    assert config["QueueArn"] == target
    assert config["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"].lower(): r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": settings.intake_prefix, "suffix": ".dcm"}
    assert bootstrap(settings, s3_client, None, notification_target_arn=target).changed == []
    with pytest.raises(ConfigurationError, match="notification_target_arn"):
        bootstrap(settings, s3_client, None)
