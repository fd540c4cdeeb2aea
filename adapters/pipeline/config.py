"""Pipeline-specific settings (env prefix ``TMI_PIPELINE_``), next to the shared ``tmi.settings``."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class PipelineSettings(BaseSettings):
    """How many workers/threads process the queue, and how they poll it."""

    model_config = SettingsConfigDict(env_prefix="TMI_PIPELINE_", extra="ignore")

    workers: int = 2  # worker processes `tmi stack up` starts
    threads: int = 4  # messages processed concurrently per worker process
    batch_size: int = 10  # SQS MaxNumberOfMessages (1..10): messages per handler invocation
    wait_time_s: int = 1  # SQS long-poll seconds (short keeps latency low on an idle queue)
    # Like Lambda's MaximumBatchingWindowInSeconds: when a receive returns fewer than batch_size messages,
    # wait this long and top the batch up once. Under load, batches of 1–2 messages cost a ReceiveMessage
    # and a DeleteMessageBatch each; fuller batches amortize them. 0 turns it off.
    batch_window_s: float = 0.2
    claim_ttl_s: int = 300  # an IN_PROGRESS claim older than this may be taken over
    db_pool_size: int = 8
    republish_interval_s: float = 2.0  # how often a worker drains republish work items
    # The reconciler (``tmi reconcile``) run by the workers themselves: every reconcile_interval_s one
    # worker (a PostgreSQL advisory lock elects it) re-enqueues intake objects older than
    # reconcile_min_age_s that have no finished record, so a lost notification is recovered without an
    # operator. 0 turns it off (then run ``tmi reconcile`` from cron).
    reconcile_interval_s: float = 600.0
    reconcile_min_age_s: float = 300.0
    # How many days back (intake keys carry the UTC day of arrival) a scheduled reconcile lists; the intake
    # bucket keeps every instance, so a full sweep grows with the archive. 0 sweeps everything every time.
    # ``tmi reconcile --all`` (or the reconcile Lambda invoked with {"all": true}) sweeps everything once.
    reconcile_lookback_days: int = 7


@lru_cache(maxsize=1)
def get_pipeline_settings() -> PipelineSettings:
    """Process-wide pipeline settings (cached; ``get_pipeline_settings.cache_clear()`` to reload)."""
    return PipelineSettings()
