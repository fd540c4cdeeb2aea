"""One transaction in one round trip, on an autocommit psycopg connection.

In PostgreSQL's extended query protocol the statements sent before a ``Sync`` share one transaction,
committed at the ``Sync`` (or rolled back whole when one fails). psycopg's pipeline mode sends a single
``Sync`` when its block exits, so on an idle autocommit connection the statements queued inside
:func:`one_transaction` run as one transaction without ``BEGIN``/``COMMIT`` statements — and, unlike
``conn.transaction()``, without a round trip each for them. Results are read after the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq


def can_pipeline_transaction(conn: psycopg.Connection[Any]) -> bool:
    """True when ``conn`` is in autocommit mode and outside a transaction (what the trick needs)."""
    return bool(conn.autocommit) and conn.info.transaction_status == pq.TransactionStatus.IDLE


@contextmanager
def one_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run the statements queued in the block as ONE transaction, sent and committed in ONE round trip.

    Statements must not be fetched inside the block (a fetch syncs, ending the transaction early); an
    advisory ``pg_advisory_xact_lock`` queued first is held until the commit.
    """
    if not can_pipeline_transaction(conn):
        raise ValueError("one_transaction needs an idle autocommit connection")
    with conn.pipeline():
        yield
