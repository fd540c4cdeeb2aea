"""Lambda-shaped handler for the reconciler: re-enqueue intake objects whose notification was lost.

Deployed on a schedule (Terraform: ``module.functions``, ``reconcile_schedule``, every 10 minutes); locally
the workers run the same reconciler themselves (``tmi worker``) and operators have ``tmi reconcile``. A run
lists the intake day folders of the last ``TMI_PIPELINE_RECONCILE_LOOKBACK_DAYS`` days (see
:mod:`adapters.pipeline.reconcile`). The event may carry ``{"min_age_s": seconds}`` (otherwise
``TMI_PIPELINE_RECONCILE_MIN_AGE_S`` applies) and ``{"all": true}`` for a sweep of the whole intake prefix.
Returns the report (counts and the PHI-free object keys it re-enqueued).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _context() -> Any:
    from adapters.pipeline.wiring import build_context

    return build_context()


def run(ctx: Any, min_age_s: float | None = None, *, dry_run: bool = False, sweep_all: bool = False,
        ) -> dict[str, Any]:
    """Reconcile the intake bucket with ``ctx`` (``dry_run``: list only; ``sweep_all``: the whole prefix,
    not just the look-back days); return the report as a dict."""
    from adapters.pipeline.reconcile import reconcile

    age = ctx.pipeline.reconcile_min_age_s if min_age_s is None else float(min_age_s)
    days = int(ctx.pipeline.reconcile_lookback_days)
    report = reconcile(ctx.s3, ctx.sqs, ctx.claims, bucket=ctx.settings.intake_bucket,
                       prefix=ctx.settings.intake_prefix, queue_name=ctx.settings.intake_queue, min_age_s=age,
                       dry_run=dry_run, lookback_days=None if sweep_all or days <= 0 else days)
    result = report.to_dict()
    if report.enqueued and not dry_run:
        logger.warning("reconciler re-enqueued intake objects whose notification was lost",
                       extra={"tmi": result})
    return result


def handler(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point (EventBridge schedule): see the module docstring."""
    event = event or {}
    min_age = event.get("min_age_s")
    return run(_context(), None if min_age is None else float(min_age), sweep_all=bool(event.get("all")))
