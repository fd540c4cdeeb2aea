"""The local stack: PostgreSQL, moto (S3 + SQS), storage bootstrap, intake and research Orthanc, gateway
and workers, started as plain processes with PID files, logs and state under ``run_dir`` (``.run/``)."""

from .stack import Stack, StackError

__all__ = ["Stack", "StackError"]
