"""The de-identification secret: loading it, creating it, and where it lives.

The key feeds every keyed hash of the core: research UIDs (``2.25.`` + HMAC-SHA256), offline
pseudonyms and date shifts. Whoever holds it can re-derive the mapping for a *known* identifier, so it
is as confidential as the crosswalk. See ``docs/keys.md`` for custody and rotation.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from pathlib import Path

from tmi.errors import ConfigurationError

log = logging.getLogger(__name__)

KEY_BYTES = 32
MIN_KEY_BYTES = 16
ENV_VAR = "TMI_DEID_KEY"
KEY_FILE_ENV_VAR = "TMI_DEID_KEY_FILE"


def default_key_path() -> Path:
    """Where ``tmi deid`` creates a key when none is configured: ``<run_dir>/deid.key`` (``.run/deid.key``).

    The run directory is the project's local state folder (git-ignored), next to the private PostgreSQL
    cluster, so one checkout keeps one key; ``TMI_RUN_DIR`` moves it.
    """
    run_dir = os.environ.get("TMI_RUN_DIR") or ".run"
    return Path(run_dir) / "deid.key"


def parse_key(text: str) -> bytes:
    """Decode key material given as hex (preferred) or base64; raise ``ConfigurationError`` if too short."""
    value = text.strip()
    key: bytes | None = None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        try:
            key = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None:
        raise ConfigurationError("de-identification key is neither hex nor base64")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"de-identification key too short ({len(key)} bytes; need >= {MIN_KEY_BYTES})"
        )
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"key file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"key file {path} cannot be read: {exc.__class__.__name__}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Not fatal (shared service accounts exist), but worth a loud line in the operator's log.
        log.warning("key file %s is readable by group/others; chmod 600 it", path)
    return parse_key(text)


def load_key(key_file: str | os.PathLike[str] | None = None) -> bytes:
    """Return the de-identification key: ``key_file``, else ``TMI_DEID_KEY_FILE``, else ``TMI_DEID_KEY``.

    Raises ``ConfigurationError`` when none is configured or the material is invalid; callers that may
    create a key (the CLI) use ``load_or_create_key``.
    """
    if key_file is not None:
        return _read_key_file(Path(key_file))
    env_file = os.environ.get(KEY_FILE_ENV_VAR)
    if env_file:
        return _read_key_file(Path(env_file))
    env_key = os.environ.get(ENV_VAR)
    if env_key:
        return parse_key(env_key)
    raise ConfigurationError(
        f"no de-identification key: pass a key file, or set {KEY_FILE_ENV_VAR} or {ENV_VAR} "
        "(see docs/keys.md)"
    )


def create_key_file(path: str | os.PathLike[str]) -> bytes:
    """Create a new random key at ``path`` with 0600 permissions (never overwrites) and return it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: two workers racing to create the key must not end up with different keys.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    os.chmod(target, 0o600)
    return key


def load_or_create_key(key_file: str | os.PathLike[str] | None = None) -> tuple[bytes, Path | None, bool]:
    """Like ``load_key`` but create ``default_key_path()`` when nothing is configured.

    Returns ``(key, path or None when it came from the environment, created)``.
    """
    if key_file is not None:
        return _read_key_file(Path(key_file)), Path(key_file), False
    if os.environ.get(KEY_FILE_ENV_VAR) or os.environ.get(ENV_VAR):
        env_file = os.environ.get(KEY_FILE_ENV_VAR)
        return load_key(None), Path(env_file) if env_file else None, False
    path = default_key_path()
    if path.exists():
        return _read_key_file(path), path, False
    try:
        return create_key_file(path), path, True
    except FileExistsError:
        return _read_key_file(path), path, False
