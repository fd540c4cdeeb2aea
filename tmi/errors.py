"""One error hierarchy for TMI.

Two families matter to every adapter: *retryable* errors (a dependency is down: retry later, the input
is fine) and *poison input* (the input itself is bad: quarantine it with a machine-readable reason and
never retry it). Handlers map the first to a batch item failure and the second to a quarantine record.
"""

from __future__ import annotations


class TmiError(Exception):
    """Base class of every error TMI raises on purpose."""


class ConfigurationError(TmiError):
    """Settings, profile or key material are missing or invalid; fix the configuration and restart."""


class RetryableError(TmiError):
    """A dependency (database, object store, Orthanc) failed; the same input may succeed later."""


class PoisonInputError(TmiError):
    """The input can never be processed as it is; it must be quarantined with ``reason``.

    ``reason`` is a stable machine-readable code (for example ``"dicom.unparseable"``), ``detail`` a
    human-readable explanation that never contains PHI.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
