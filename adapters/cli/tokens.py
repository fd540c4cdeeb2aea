"""``tmi tokens create|revoke|list``: the gateway's API tokens.

``create`` prints the new token once (on stdout, alone on its line, so scripts can capture it) and never
again: only its SHA-256 is stored. ``list`` prints ids, names, roles and timestamps, never tokens.
The database is ``TMI_DATABASE_URL`` (or the local stack's private cluster); migrations are applied first.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``tmi tokens`` and its subcommands."""
    parser = subparsers.add_parser(
        "tokens",
        help="create, revoke and list the gateway's API tokens",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: settings)")
    sub = parser.add_subparsers(dest="tokens_command", metavar="ACTION")
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=("researcher", "admin", "service"))
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.add_argument("--json", action="store_true", help="print id, name, role and token as JSON")
    create.set_defaults(func=run_create)
    revoke = sub.add_parser("revoke", help="revoke a token by id (its browser sessions end too)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=run_revoke)
    listing = sub.add_parser("list", help="list tokens (never prints the tokens)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _connect(args: argparse.Namespace) -> Any:
    import psycopg

    from adapters.db.migrate import migrate
    from tmi.settings import get_settings

    dsn = args.database_url or get_settings().effective_database_url
    migrate(dsn)
    return psycopg.connect(dsn, autocommit=True)


def run_create(args: argparse.Namespace) -> int:
    """Create a token; print it once."""
    from adapters.db import tokens

    with _connect(args) as conn:
        info, token = tokens.create_token(conn, name=args.name, role=args.role)
    if args.json:
        print(json.dumps({"id": info.id, "name": info.name, "role": info.role, "token": token}))
    else:
        print(f"created token {info.id} ({info.role}, {info.name}); it is shown only now:", file=sys.stderr)
        print(token)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke a token by id."""
    from adapters.db import tokens

    with _connect(args) as conn, conn.transaction():
        revoked = tokens.revoke_token(conn, args.id)
    if not revoked:
        print(f"tmi tokens: no live token with id {args.id}", file=sys.stderr)
        return 1
    print(f"revoked token {args.id}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """List tokens without their values."""
    from adapters.db import tokens

    with _connect(args) as conn:
        records = tokens.list_tokens(conn)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "role": r.role,
                        "created_at": r.created_at.isoformat(),
                        "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                        "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return 0
    print(f"{'ID':>5}  {'ROLE':<10}  {'STATE':<8}  {'CREATED':<16}  {'LAST USED':<16}  NAME")
    for r in records:
        state = "revoked" if r.revoked_at else "active"
        used = r.last_used_at.strftime("%Y-%m-%d %H:%M") if r.last_used_at else "never"
        print(f"{r.id:>5}  {r.role:<10}  {state:<8}  {r.created_at:%Y-%m-%d %H:%M}  {used:<16}  {r.name}")
    return 0
