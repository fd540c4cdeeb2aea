"""Terraform and the local bootstrap describe the same storage: same files, same rendered documents.

Three layers: (1) the per-role wiring declared in ``terraform/modules/policies`` equals
``adapters.bootstrap``'s; (2) Terraform's own ``templatefile()`` rendering (the provider-free policies
module, applied offline) equals :func:`adapters.bootstrap.plan` for the same inputs — buckets, policies,
lifecycle rules, object lock, encryption, notification (events, prefix/suffix), queues, user policies;
(3) every feature the bootstrap applies has its resource in the AWS modules and the examples wire them to
the policies module, and every rule kind in the lifecycle files is translated by the Terraform modules.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from adapters import bootstrap as b
from adapters.bootstrap import Plan, Principals, plan
from tests.unit.infra.terraform_tools import EXAMPLES, MODULES, blocks, load_hcl, resources, run_terraform
from tmi.settings import Settings

ACCOUNT = "444455556666"
REGION = "eu-central-1"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000-1111"
PRINCIPALS = Principals(
    intake_writer=f"arn:aws:iam::{ACCOUNT}:role/orthanc-intake",
    pipeline=f"arn:aws:iam::{ACCOUNT}:role/tmi-pipeline",
    researcher=f"arn:aws:iam::{ACCOUNT}:role/tmi-gateway",
    admin=f"arn:aws:iam::{ACCOUNT}:role/it-admins",
)
# Non-default values everywhere, so a hard-coded name on either side shows up.
SETTINGS = Settings(
    intake_bucket="c-intake",
    research_bucket="c-research",
    quarantine_bucket="c-quarantine",
    intake_prefix="arrivals/",
    intake_queue="c-events",
    intake_dlq="c-dead",
    queue_max_receive_count=7,
    queue_visibility_timeout_s=45,
)


def _policies_locals() -> dict[str, Any]:
    return blocks(load_hcl(MODULES / "policies" / "main.tf"), "locals")


def test_bucket_wiring_is_the_same_on_both_sides() -> None:
    buckets = _policies_locals()["buckets"]
    assert set(buckets) == set(b.BUCKET_WIRING)
    for role, wiring in b.BUCKET_WIRING.items():
        tf = buckets[role]
        assert tf["name"] == f"${{var.{role}_bucket}}"
        assert (tf["policy"], tf["lifecycle"], tf["versioning"], tf["object_lock"]) == (
            wiring.policy,
            wiring.lifecycle,
            wiring.versioning,
            wiring.object_lock,
        ), role


def test_user_policy_and_other_files_are_the_same_on_both_sides() -> None:
    local = _policies_locals()
    assert local["user_policy_files"] == {k: list(v) for k, v in b.USER_POLICY_FILES.items()}
    text = (MODULES / "policies" / "main.tf").read_text()
    for path in [*b.ENCRYPTION_FILES.values(), b.PUBLIC_ACCESS_BLOCK_FILE, b.NOTIFICATION_FILE, b.QUEUE_FILE]:
        assert path in text, path
    for path in (b.DLQ_FILE, b.QUEUE_POLICY_FILE):
        assert path in text, path


@pytest.fixture(scope="module")
def terraform_rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Apply a root module that only calls modules/policies (no provider, no network); return its outputs."""
    root = tmp_path_factory.mktemp("tf-policies")
    source = os.path.relpath(MODULES / "policies", root)  # a relative source is used in place, not copied
    principals = ", ".join(f'{k} = "{v}"' for k, v in vars(PRINCIPALS).items())
    (root / "main.tf").write_text(
        f"""
module "p" {{
  source                     = "{source}"
  account_id                 = "{ACCOUNT}"
  region                     = "{REGION}"
  intake_bucket              = "{SETTINGS.intake_bucket}"
  research_bucket            = "{SETTINGS.research_bucket}"
  quarantine_bucket          = "{SETTINGS.quarantine_bucket}"
  intake_prefix              = "{SETTINGS.intake_prefix}"
  intake_queue               = "{SETTINGS.intake_queue}"
  intake_dlq                 = "{SETTINGS.intake_dlq}"
  queue_visibility_timeout_s = {SETTINGS.queue_visibility_timeout_s}
  queue_max_receive_count    = {SETTINGS.queue_max_receive_count}
  kms_key_arn                = "{KMS}"
  principals                 = {{ {principals} }}
}}

output "p" {{
  value = module.p
}}
"""
    )
    data = root / ".tfdata"
    state = str(root / "terraform.tfstate")
    for args in (
        ["init", "-input=false", "-no-color"],
        ["apply", "-auto-approve", "-input=false", "-no-color", f"-state={state}"],
    ):
        done = run_terraform(args, root, data)
        assert done.returncode == 0, done.stdout + done.stderr
    done = run_terraform(["output", "-json", "-no-color", f"-state={state}"], root, data)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["p"]["value"])


@pytest.fixture(scope="module")
def python_plan() -> Plan:
    return plan(SETTINGS, account_id=ACCOUNT, region=REGION, principals=PRINCIPALS, kms_key_arn=KMS)


def test_template_variables_are_identical(terraform_rendered: dict[str, Any], python_plan: Plan) -> None:
    assert terraform_rendered["template_variables"] == python_plan.variables


def test_buckets_and_bucket_documents_are_identical(
    terraform_rendered: dict[str, Any], python_plan: Plan
) -> None:
    tf = terraform_rendered
    assert set(tf["buckets"]) == set(python_plan.buckets)
    for role, bucket in python_plan.buckets.items():
        assert tf["buckets"][role] == {
            "name": bucket.name,
            "versioning": bucket.versioning,
            "object_lock": bucket.object_lock is not None,
        }
        assert json.loads(tf["bucket_policies"][role]) == bucket.policy, role
        assert json.loads(tf["lifecycle_rules"][role]) == bucket.lifecycle["Rules"], role
        assert tf["encryption"] == bucket.encryption["Rules"][0]
        assert tf["public_access_block"] == bucket.public_access_block
    object_lock = {r: json.loads(doc) for r, doc in tf["object_lock"].items()}
    assert object_lock == {r: x.object_lock for r, x in python_plan.buckets.items() if x.object_lock}


def test_notification_is_identical(terraform_rendered: dict[str, Any], python_plan: Plan) -> None:
    expected = []
    for config in python_plan.notification["QueueConfigurations"]:
        rules = {r["Name"].lower(): r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
        expected.append(
            {
                "id": config["Id"],
                "queue_arn": config["QueueArn"],
                "events": config["Events"],
                "filter_prefix": rules.get("prefix"),
                "filter_suffix": rules.get("suffix"),
            }
        )
    assert terraform_rendered["notification"] == expected
    assert expected[0]["filter_prefix"] == SETTINGS.intake_prefix


def test_queues_are_identical(terraform_rendered: dict[str, Any], python_plan: Plan) -> None:
    tf_queue, tf_dlq = terraform_rendered["intake_queue"], terraform_rendered["intake_dlq"]
    queue, dlq = python_plan.queues["intake"], python_plan.queues["dlq"]
    assert (tf_queue["name"], tf_queue["arn"]) == (queue.name, queue.arn)
    assert (tf_dlq["name"], tf_dlq["arn"], tf_dlq["attributes"]) == (dlq.name, dlq.arn, dlq.attributes)
    plain = {k: v for k, v in queue.attributes.items() if k not in {"RedrivePolicy", "Policy"}}
    assert tf_queue["attributes"] == plain
    assert json.loads(tf_queue["redrive_policy"]) == json.loads(queue.attributes["RedrivePolicy"])
    assert json.loads(tf_queue["policy"]) == json.loads(queue.attributes["Policy"])


def test_user_policies_are_identical(terraform_rendered: dict[str, Any], python_plan: Plan) -> None:
    for who, docs in python_plan.user_policies.items():
        merged = json.loads(terraform_rendered["user_policies"][who])
        assert merged["Statement"] == [s for d in docs for s in d["Statement"]], who
        assert json.loads(terraform_rendered["minio_user_policies"][who]) == docs[0], who


# Each feature the bootstrap applies (adapters/bootstrap.py) → the AWS resource that applies it in Terraform.
FEATURE_RESOURCES = {
    "bucket": ("storage", "aws_s3_bucket.this"),
    "public access block": ("storage", "aws_s3_bucket_public_access_block.this"),
    "versioning": ("storage", "aws_s3_bucket_versioning.this"),
    "object lock default retention": ("storage", "aws_s3_bucket_object_lock_configuration.this"),
    "default encryption": ("storage", "aws_s3_bucket_server_side_encryption_configuration.this"),
    "bucket policy": ("storage", "aws_s3_bucket_policy.this"),
    "lifecycle": ("storage", "aws_s3_bucket_lifecycle_configuration.this"),
    "dead-letter queue": ("queue", "aws_sqs_queue.dlq"),
    "intake queue": ("queue", "aws_sqs_queue.intake"),
    "queue policy": ("queue", "aws_sqs_queue_policy.intake"),
    "notification": ("queue", "aws_s3_bucket_notification.intake"),
}


def test_every_bootstrap_feature_has_its_terraform_resource_and_nothing_else() -> None:
    found: dict[str, set[str]] = {}
    for module in ("storage", "queue"):
        found[module] = set(resources(load_hcl(MODULES / module / "main.tf")))
    for feature, (module, address) in FEATURE_RESOURCES.items():
        assert address in found[module], f"{feature}: {module} lacks {address}"
    expected = {(m, a) for m, a in FEATURE_RESOURCES.values()}
    extra = {(m, a) for m, addrs in found.items() for a in addrs} - expected
    assert extra == set(), f"Terraform resources with no bootstrap counterpart: {extra}"
    source = Path(b.__file__).read_text()
    for feature in (
        "versioning",
        "object lock default retention",
        "default encryption",
        "public access block",
        "bucket policy",
        "lifecycle",
    ):
        assert f'"{feature}"' in source, f"bootstrap does not apply {feature}"


def test_storage_and_queue_resources_take_their_documents_from_the_module_inputs() -> None:
    storage = resources(load_hcl(MODULES / "storage" / "main.tf"))
    assert storage["aws_s3_bucket.this"]["for_each"] == "${var.buckets}"
    assert storage["aws_s3_bucket_policy.this"]["policy"] == "${var.bucket_policies[each.key]}"
    assert storage["aws_s3_bucket_lifecycle_configuration.this"]["for_each"] == "${var.lifecycle_rules}"
    assert storage["aws_s3_bucket_object_lock_configuration.this"]["for_each"] == "${var.object_lock}"
    queue = resources(load_hcl(MODULES / "queue" / "main.tf"))
    assert queue["aws_sqs_queue.intake"]["redrive_policy"] == "${var.intake_queue.redrive_policy}"
    assert queue["aws_sqs_queue_policy.intake"]["policy"] == "${var.intake_queue.policy}"
    [dynamic] = queue["aws_s3_bucket_notification.intake"]["dynamic"]
    content = dynamic["queue"]["content"][0]
    assert dynamic["queue"]["for_each"] == "${var.notification}"
    for field in ("id", "queue_arn", "events", "filter_prefix", "filter_suffix"):
        assert content[field] == f"${{queue.value.{field}}}", field


def _rule_keys(python: Plan) -> set[str]:
    return {k for bucket in python.buckets.values() for rule in bucket.lifecycle["Rules"] for k in rule}


def test_every_lifecycle_rule_kind_is_translated_by_terraform(python_plan: Plan) -> None:
    storage = (MODULES / "storage" / "main.tf").read_text()
    minio = (EXAMPLES / "minio" / "main.tf").read_text()
    for key in _rule_keys(python_plan) - {"Status"}:
        assert re.search(rf"\b{key}\b", storage), f"modules/storage ignores lifecycle {key}"
    # MinIO: abort-only rules are not persisted by MinIO and transitions need a tier (both documented).
    for key in _rule_keys(python_plan) - {"Status", "AbortIncompleteMultipartUpload"}:
        assert re.search(rf"\b{key}\b", minio), f"examples/minio ignores lifecycle {key}"


@pytest.mark.parametrize("example", ["aws", "localstack"])
def test_aws_examples_feed_every_module_input_from_the_policies_module(example: str) -> None:
    modules = blocks(load_hcl(EXAMPLES / example / "main.tf"), "module")
    storage, queue = modules["storage"], modules["queue"]
    for name in (
        "buckets",
        "bucket_policies",
        "lifecycle_rules",
        "object_lock",
        "encryption",
        "public_access_block",
    ):
        assert storage[name] == f"${{module.policies.{name}}}", (example, name)
    for name in ("intake_queue", "intake_dlq", "notification"):
        assert queue[name] == f"${{module.policies.{name}}}", (example, name)
    assert queue["intake_bucket_id"] == "${module.storage.intake_bucket_id}"


def test_minio_example_applies_the_same_documents() -> None:
    found = resources(load_hcl(EXAMPLES / "minio" / "main.tf"))
    assert found["minio_s3_bucket.this"]["for_each"] == "${module.policies.buckets}"
    assert found["minio_ilm_policy.this"]["for_each"] == "${module.policies.lifecycle_rules}"
    assert found["minio_iam_policy.this"]["for_each"] == "${module.policies.minio_user_policies}"
    assert (
        found["minio_s3_bucket_object_lock_configuration.this"]["for_each"]
        == "${module.policies.object_lock}"
    )
    [dynamic] = found["minio_s3_bucket_notification.intake"]["dynamic"]
    assert dynamic["queue"]["for_each"] == "${module.policies.notification}"
    content = dynamic["queue"]["content"][0]
    for field in ("events", "filter_prefix", "filter_suffix"):
        assert content[field] == f"${{queue.value.{field}}}", field
    assert "/events/s3" in found["minio_notify_webhook.tmi"]["endpoint"]
