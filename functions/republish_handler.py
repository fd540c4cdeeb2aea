"""Lambda-shaped handler for the crosswalk's republish work items (merge / split / PHI correction).

Deployed on a schedule (or invoked by ``tmi worker`` between queue polls, or ``tmi republish``): it claims
pending items from the crosswalk and republishes each affected instance (``adapters.pipeline.republish``).
Returns counts; items that failed stay claimed and are handed out again after the stale timeout.
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


def drain(ctx: Any) -> int:
    """Process every pending republish item with ``ctx``; return how many items were handled."""
    from adapters.pipeline.republish import RepublishService

    outcomes = RepublishService(ctx).drain()
    return len(outcomes)


def handler(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point: drain the republish queue; return ``{"handled": n}``."""
    from adapters.pipeline.republish import RepublishService

    outcomes = RepublishService(_context()).drain()
    summary: dict[str, int] = {}
    for outcome in outcomes:
        summary[outcome.outcome] = summary.get(outcome.outcome, 0) + 1
    return {"handled": len(outcomes), **summary}
