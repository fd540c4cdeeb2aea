"""The LocalStack lane: the same stack code with S3 + SQS on LocalStack (signatures checked) instead of moto.

``tmi stack`` sees ``AWS_ENDPOINT_URL`` pointing at LocalStack, so it starts no moto server and bootstraps
LocalStack from ``storage-policies/``; the intake plugin, the workers and the research side are unchanged.
Bucket and queue names are unique to this module (LocalStack state is shared by the session).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from tests.fixtures.stack import StackHarness, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.localstack, pytest.mark.slow]


@pytest.fixture(scope="module")
def localstack_stack(localstack_server: str) -> Iterator[StackHarness]:
    """A full stack whose object store and queues are LocalStack's."""
    suffix = secrets.token_hex(3)
    env = {
        "AWS_ENDPOINT_URL": localstack_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TMI_INTAKE_BUCKET": f"tmi-intake-{suffix}", "TMI_RESEARCH_BUCKET": f"tmi-research-{suffix}",
        "TMI_QUARANTINE_BUCKET": f"tmi-quarantine-{suffix}",
        "TMI_INTAKE_QUEUE": f"tmi-intake-events-{suffix}", "TMI_INTAKE_DLQ": f"tmi-intake-dlq-{suffix}",
    }
    with running_stack(env) as harness:
        yield harness


def test_demo_flows_through_localstack_and_presigned_urls_are_enforced(
        localstack_stack: StackHarness, tmp_path: Path) -> None:
    from tmi.synthetic.demo import generate_demo

    h = localstack_stack
    assert not h.stack.manages_s3 and h.stack.s3_endpoint.startswith("http://127.0.0.1:")
    assert not h.stack.process("moto").alive()
    manifest = generate_demo(tmp_path / "demo", seed=5)
    sendable = [i for i in manifest.instances if i.sendable_by_cstore]
    result = h.storescu([i.path for i in sendable])
    assert result.returncode == 0, result.stderr
    names = [h.intake_key(i.path) for i in sendable]
    states = h.wait_finished(names, timeout_s=180)
    expected = {h.intake_key(i.path): ("COMPLETED" if i.expected_outcome == "written" else "QUARANTINED")
                for i in sendable}
    assert states == expected
    with h.db() as conn:
        key = conn.execute("SELECT research_key FROM pipeline_objects WHERE state = 'COMPLETED' "
                           "ORDER BY research_key LIMIT 1").fetchone()[0]
    s3 = h.s3()
    url = s3.generate_presigned_url("get_object", Params={"Bucket": h.settings.research_bucket, "Key": key},
                                    ExpiresIn=300)
    assert requests.get(url, timeout=30).status_code == 200
    # Tampered signature → refused (LocalStack checks signatures; moto does not).
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature_field = "X-Amz-Signature" if "X-Amz-Signature" in query else "Signature"
    query[signature_field] = ("0" if query[signature_field][0] != "0" else "1") + query[signature_field][1:]
    tampered = urlunsplit(parts._replace(query=urlencode(query)))
    assert requests.get(tampered, timeout=30).status_code == 403
    # Another object under the same signature → refused.
    other = url.replace(key.rsplit("/", 1)[-1], "0" + key.rsplit("/", 1)[-1])
    assert requests.get(other, timeout=30).status_code == 403
