"""`tmi stack up | down | status [--json] | logs [COMPONENT]`: the local stack (see ``adapters.stack``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``tmi stack``."""
    parser = subparsers.add_parser("stack", help="start, stop and inspect the local stack")
    sub = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start every component (idempotent)")
    up.add_argument("--json", action="store_true", help="print the status as JSON when up")
    up.set_defaults(func=_up)
    down = sub.add_parser("down", help="stop every component by PID")
    down.set_defaults(func=_down)
    status = sub.add_parser("status", help="endpoints and health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)
    logs = sub.add_parser("logs", help="show the last lines of the component logs")
    logs.add_argument("component", nargs="?", help="moto, intake, research, gateway, worker-1, postgres…")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.set_defaults(func=_logs)


def _stack() -> Any:
    from adapters.stack import Stack
    from tmi.settings import get_settings

    return Stack(get_settings())


def _print_status(status: dict[str, Any]) -> None:
    mark = {True: "ok", False: "DOWN", None: "-"}
    print(f"intake    {mark[status['intake']['healthy']]:5} AE {status['intake']['aet']} "
          f"{status['intake']['host']}:{status['intake']['dicom_port']}  {status['intake']['http']}")
    print(f"research  {mark[status['research']['healthy']]:5} {status['research']['explorer']}  "
          f"DICOMweb {status['research']['dicomweb']}")
    gw = status["gateway"]
    print(f"gateway   {mark[gw['healthy']] if gw['enabled'] else 'n/a':5} {gw['http']}")
    print(f"s3/sqs    {mark[status['s3']['healthy']]:5} {status['s3']['endpoint']}")
    print(f"postgres  {mark[status['postgres']['healthy']]:5}")
    for name, ok in status["workers"].items():
        print(f"{name:9} {mark[ok]:5}")
    print(f"healthy: {'yes' if status['healthy'] else 'NO'}")


def _up(args: argparse.Namespace) -> int:
    from adapters.stack import StackError

    stack = _stack()
    try:
        status = stack.up(progress=lambda message: print(f"stack: {message}", file=sys.stderr))
    except StackError as exc:
        print(f"tmi stack up: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0 if status["healthy"] else 1


def _down(args: argparse.Namespace) -> int:
    stopped = _stack().down(progress=lambda message: print(f"stack: {message}", file=sys.stderr))
    if not stopped:
        print("stack: nothing was running", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _stack().status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0 if status["healthy"] else 1


def _logs(args: argparse.Namespace) -> int:
    files = _stack().log_files(args.component)
    shown = 0
    for path in files:
        if not path.exists():
            continue
        with open(path, errors="replace") as handle:
            tail = deque(handle, maxlen=args.lines)
        print(f"==> {path} <==")
        sys.stdout.writelines(tail)
        shown += 1
    if not shown:
        print(f"no logs for {args.component or 'any component'}", file=sys.stderr)
        return 1
    return 0
