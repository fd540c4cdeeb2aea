"""Lambda-shaped handler for the reconciler: re-enqueue intake objects whose notification was lost.

Deployed on a schedule (Terraform: ``module.functions``, ``reconcile_schedule``, every 10 minutes); locally
the workers run the same reconciler themselves (``tmi worker``) and operators have ``tmi reconcile``. A run
lists the intake day folders of the last ``TMI_PIPELINE_RECONCILE_LOOKBACK_DAYS`` days (see
:mod:`adapters.pipeline.reconcile`). The event may carry ``{"min_age_s": seconds}`` (otherwise
``TMI_PIPELINE_RECONCILE_MIN_AGE_S`` applies) and ``{"all": true}`` for a sweep of the whole intake prefix.
Returns the report (counts and the PHI-free object keys it re-enqueued).

A full sweep stops :data:`STOP_MARGIN_S` seconds before the function's timeout, after the page it is on,
and returns ``"complete": false`` with ``next_start_after``; invoking it again with
``{"all": true, "start_after": <that key>}`` continues where it stopped (docs/operations.md has the loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

STOP_MARGIN_S = 30.0  # a listed page (1,000 keys: one lookup, up to 100 SQS batches) takes a few seconds


@lru_cache(maxsize=1)
def _context() -> Any:
    from adapters.pipeline.wiring import build_context

    return build_context()


def run(ctx: Any, min_age_s: float | None = None, *, dry_run: bool = False, sweep_all: bool = False,
        start_after: str | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Reconcile the intake bucket with ``ctx`` (``dry_run``: list only; ``sweep_all``: the whole prefix,
    not just the look-back days, resumable with ``start_after`` / ``should_stop``); return the report as a
    dict."""
    from adapters.pipeline.reconcile import reconcile

    age = ctx.pipeline.reconcile_min_age_s if min_age_s is None else float(min_age_s)
    days = int(ctx.pipeline.reconcile_lookback_days)
    report = reconcile(ctx.s3, ctx.sqs, ctx.claims, bucket=ctx.settings.intake_bucket,
                       prefix=ctx.settings.intake_prefix, queue_name=ctx.settings.intake_queue, min_age_s=age,
                       dry_run=dry_run, lookback_days=None if sweep_all or days <= 0 else days,
                       start_after=start_after or None, should_stop=should_stop)
    result = report.to_dict()
    if report.enqueued and not dry_run:
        logger.warning("reconciler re-enqueued intake objects whose notification was lost",
                       extra={"tmi": result})
    if not report.complete:
        logger.warning("full reconcile stopped before the end of the intake prefix; continue it with "
                       "start_after", extra={"tmi": {"next_start_after": report.next_start_after}})
    return result


def handler(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule): see the module docstring."""
    event = event or {}
    min_age = event.get("min_age_s")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    should_stop = None if remaining is None else (lambda: remaining() < STOP_MARGIN_S * 1000)
    return run(_context(), None if min_age is None else float(min_age), sweep_all=bool(event.get("all")),
               start_after=event.get("start_after") or None, should_stop=should_stop)
