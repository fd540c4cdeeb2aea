"""A small, strict evaluator of the IAM/S3 policy subset storage-policies/ uses (for the unit tests).

It understands Allow/Deny, Action/Resource wildcards, ``Principal`` ``"*"`` / ``{"AWS": [...]}`` /
``{"Service": ...}`` and the condition operators ``Bool``, ``ArnEquals``, ``ArnNotEquals``,
``StringEquals``. Anything else raises, so a policy change the tests cannot judge fails loudly instead
of being waved through.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Request:
    """One S3 request: who (principal ARN or ANONYMOUS), what, on which ARN, over TLS or not."""

    principal: str
    action: str
    resource: str
    secure: bool = True


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in _as_list(patterns))


def _principal_matches(principal: Any, who: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise ValueError(f"unsupported Principal {principal!r}")
    unknown = set(principal) - {"AWS", "Service"}
    if unknown:
        raise ValueError(f"unsupported Principal keys {unknown}")
    return who != ANONYMOUS and (
        "*" in _as_list(principal.get("AWS", [])) or who in _as_list(principal.get("AWS", []))
    )


def _condition_holds(condition: dict[str, Any], request: Request) -> bool:
    context = {
        "aws:SecureTransport": "true" if request.secure else "false",
        "aws:PrincipalArn": request.principal,
    }
    for operator, tests in condition.items():
        for key, expected in tests.items():
            if key not in context:
                raise ValueError(f"unsupported condition key {key}")
            actual = context[key]
            expected_values = [str(v).lower() if operator == "Bool" else v for v in _as_list(expected)]
            if operator in {"Bool", "StringEquals", "ArnEquals"}:
                ok = actual in expected_values
            elif operator == "ArnNotEquals":
                ok = actual not in expected_values
            else:
                raise ValueError(f"unsupported condition operator {operator}")
            if not ok:
                return False
    return True


def statement_applies(statement: dict[str, Any], request: Request, *, identity_policy: bool) -> bool:
    """Whether the statement covers the request (its Effect is the caller's business)."""
    if "NotAction" in statement or "NotResource" in statement or "NotPrincipal" in statement:
        raise ValueError("Not* elements are not used by TMI's policies")
    if not identity_policy and not _principal_matches(statement["Principal"], request.principal):
        return False
    if not _matches(statement["Action"], request.action):
        return False
    if not _matches(statement["Resource"], request.resource):
        return False
    return _condition_holds(statement.get("Condition", {}), request)


def allowed(request: Request, bucket_policy: dict[str, Any], identity_policies: list[dict[str, Any]]) -> bool:
    """Same-account evaluation: an explicit Deny anywhere wins; otherwise any Allow grants."""
    statements = [(s, False) for s in bucket_policy["Statement"]]
    statements += [(s, True) for doc in identity_policies for s in doc["Statement"]]
    applicable = [
        (s, ident) for s, ident in statements if statement_applies(s, request, identity_policy=ident)
    ]
    if any(s["Effect"] == "Deny" for s, _ in applicable):
        return False
    return any(s["Effect"] == "Allow" for s, _ in applicable)
