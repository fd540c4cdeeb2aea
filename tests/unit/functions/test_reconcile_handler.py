"""The reconcile Lambda handler is thin: settings in, one reconcile call, the report out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from adapters.pipeline import reconcile as reconcile_module
from adapters.pipeline.reconcile import ReconcileReport
from functions import reconcile_handler


def _ctx() -> Any:
    return SimpleNamespace(
        s3="s3-client", sqs="sqs-client", claims="claims",
        settings=SimpleNamespace(intake_bucket="tmi-intake", intake_prefix="incoming/",
                                 intake_queue="tmi-intake"),
        pipeline=SimpleNamespace(reconcile_min_age_s=300.0, reconcile_lookback_days=7),
    )


@pytest.mark.parametrize(("event", "age", "days"), [
    ({}, 300.0, 7), ({"min_age_s": 0}, 0.0, 7), (None, 300.0, 7), ({"all": True}, 300.0, None)])
def test_handler_reconciles_with_the_settings(
    monkeypatch: pytest.MonkeyPatch, event: Any, age: float, days: int | None
) -> None:
    calls: list[dict[str, Any]] = []

    def fake(s3: Any, sqs: Any, claims: Any, **kwargs: Any) -> ReconcileReport:
        calls.append({"clients": (s3, sqs, claims), **kwargs})
        return ReconcileReport(listed=3, finished=2, enqueued=["incoming/2026/11/22/x.dcm"])

    monkeypatch.setattr(reconcile_module, "reconcile", fake)
    monkeypatch.setattr(reconcile_handler, "_context", _ctx)
    result = reconcile_handler.handler(event, None)
    assert calls == [{"clients": ("s3-client", "sqs-client", "claims"), "bucket": "tmi-intake",
                      "prefix": "incoming/", "queue_name": "tmi-intake", "min_age_s": age, "dry_run": False,
                      "lookback_days": days, "start_after": None, "should_stop": None}]
    assert result == {"listed": 3, "finished": 2, "too_young": 0, "enqueued": 1,
                      "keys": ["incoming/2026/11/22/x.dcm"], "complete": True, "next_start_after": None}


class _LambdaContext:
    def __init__(self, remaining_ms: list[int]) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms.pop(0)


def test_a_full_sweep_stops_before_the_lambda_timeout_and_continues_from_its_key(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def fake(s3: Any, sqs: Any, claims: Any, **kwargs: Any) -> ReconcileReport:
        stop = kwargs["should_stop"]
        # Asked after each listed page: plenty of time left, then inside the margin.
        seen.append({"start_after": kwargs["start_after"], "stops": [stop(), stop()]})
        return ReconcileReport(listed=2000, next_start_after="incoming/2026/01/05/k.dcm")

    monkeypatch.setattr(reconcile_module, "reconcile", fake)
    monkeypatch.setattr(reconcile_handler, "_context", _ctx)
    margin_ms = int(reconcile_handler.STOP_MARGIN_S * 1000)
    result = reconcile_handler.handler({"all": True, "start_after": "incoming/2026/01/01/a.dcm"},
                                       _LambdaContext([margin_ms + 60_000, margin_ms - 1]))
    assert seen == [{"start_after": "incoming/2026/01/01/a.dcm", "stops": [False, True]}]
    assert result["complete"] is False and result["next_start_after"] == "incoming/2026/01/05/k.dcm"


def test_a_start_key_without_a_full_sweep_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile_handler, "_context", _ctx)
    with pytest.raises(ValueError, match="full sweep"):
        reconcile_handler.handler({"start_after": "incoming/2026/01/01/a.dcm"}, None)
