"""``adapters.db.pipelining.one_transaction`` against a real PostgreSQL: what the crosswalk's
``record_instance`` (one transaction) and the research catalog's upsert (its lock first) rely on.

* an advisory lock queued first is granted *before* the next statement takes its snapshot, so that
  statement sees what the previous lock holder committed (resolve()'s guard, which used to rely on this,
  now takes its locks inside one statement: ``test_guard_sees_what_the_lock_holder_committed``);
* the queued statements are one transaction: a failure in the last one rolls back the first;
* the lock is held until the single commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from adapters.db.pipelining import can_pipeline_transaction, one_transaction

pytestmark = pytest.mark.integration
LOCK = 424242


@pytest.fixture
def dsn(pg_dsn: str) -> Iterator[str]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE rows (n int PRIMARY KEY)")
        conn.execute("CREATE TABLE seen (count int)")
    yield pg_dsn


def test_statement_after_the_lock_sees_what_the_holder_committed(dsn: str) -> None:
    holder = psycopg.connect(dsn)  # a transaction: holds the lock until it commits
    waiter = psycopg.connect(dsn, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        done = threading.Event()

        def queued() -> None:
            with one_transaction(waiter):
                waiter.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
                waiter.execute("INSERT INTO seen SELECT count(*) FROM rows")
            done.set()

        thread = threading.Thread(target=queued)
        thread.start()
        time.sleep(0.5)
        assert not done.is_set()  # blocked on the lock
        holder.execute("INSERT INTO rows VALUES (1)")
        holder.commit()  # releases the lock with the row committed
        thread.join(10)
        assert done.is_set()
        # The insert's snapshot was taken after the lock was granted: it counted the committed row.
        assert waiter.execute("SELECT count FROM seen").fetchall() == [(1,)]
    finally:
        holder.close()
        waiter.close()


def test_queued_statements_commit_or_roll_back_together(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation), one_transaction(conn):
            conn.execute("INSERT INTO rows VALUES (7)")
            conn.execute("INSERT INTO rows VALUES (7)")  # fails: the first insert goes with it
        assert conn.execute("SELECT count(*) FROM rows").fetchone() == (0,)
        assert can_pipeline_transaction(conn)  # back to idle autocommit: usable again
        with one_transaction(conn):
            conn.execute("INSERT INTO rows VALUES (8)")
            conn.execute("INSERT INTO rows VALUES (9)")
        assert conn.execute("SELECT n FROM rows ORDER BY n").fetchall() == [(8,), (9,)]


def test_lock_is_held_until_the_commit(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as other:

        def run() -> None:
            with one_transaction(conn):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
                conn.execute("SELECT pg_sleep(1)")
                conn.execute("INSERT INTO rows VALUES (1)")

        def free() -> bool:
            row = other.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK,)).fetchone()
            return bool(row and row[0])

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 0.8
        held_while_running = False
        while time.monotonic() < deadline and not held_while_running:
            held_while_running = not free()
            time.sleep(0.02)
        thread.join(10)
        assert held_while_running  # taken by the queued statements, not released before the commit
        assert free()  # committed: released
        assert other.execute("SELECT n FROM rows").fetchall() == [(1,)]


def test_refuses_a_connection_inside_a_transaction(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:  # not autocommit
        with pytest.raises(ValueError, match="idle autocommit"), one_transaction(conn):
            pass
