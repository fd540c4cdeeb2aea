"""``tmi download MANIFEST --to DIR [--parallel N]``: fetch a cohort manifest's instances, verified.

- Parallel downloads (``--parallel``, default 8) with one progress bar over the cohort's bytes.
- Resume: a file already in ``DIR`` with the right SHA-256 is skipped; an interrupted download continues
  from its ``.part`` file with an HTTP range request; nothing unverified ever gets its final name.
- Every file's SHA-256 is checked against the manifest; a mismatch is downloaded again, then reported.
- Presigned URLs that have expired (known from their ``X-Amz-Date``/``X-Amz-Expires``, or refused with 403)
  are presigned again through the gateway (``POST /research/presign``, ``--api`` or the manifest's
  ``api_url``, token from ``--token`` or ``TMI_API_TOKEN``), in batches.
- A summary at the end; exit status 1 when any instance failed (the summary names them), 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    import requests


logger = logging.getLogger(__name__)

CHUNK = 1 << 20
EXPIRY_MARGIN = timedelta(seconds=30)
PRESIGN_BATCH = 1000


class ManifestError(ValueError):
    """The manifest cannot be read (format, missing columns)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One instance to download."""

    key: str
    size: int
    sha256: str
    url: str


@dataclass
class Summary:
    """What a download run did."""

    total: int = 0
    downloaded: int = 0
    skipped: int = 0
    resumed: int = 0
    represigned: int = 0
    bytes_fetched: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every instance is present and verified."""
        return not self.failed and self.downloaded + self.skipped == self.total


def load_manifest(path: Path) -> tuple[list[Item], str | None]:
    """Read a JSON or CSV manifest; return its items and the gateway URL it names (JSON only)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        document = json.loads(text)
        rows = document.get("instances")
        if not isinstance(rows, list):
            raise ManifestError("JSON manifest has no 'instances' list")
        api_url = document.get("api_url")
    else:
        rows = list(csv.DictReader(text.splitlines()))
        api_url = None
    items = []
    for row in rows:
        try:
            items.append(
                Item(
                    key=str(row["key"]),
                    size=int(row["size"]),
                    sha256=str(row["sha256"]).lower(),
                    url=str(row["url"]),
                )
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ManifestError(f"manifest row without key/size/sha256/url: {exc}") from exc
    return items, api_url


def url_expires_at(url: str) -> datetime | None:
    """When a SigV4 presigned URL expires (``None`` if the URL does not say)."""
    query = parse_qs(urlsplit(url).query)
    try:
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
    except (KeyError, ValueError):
        return None


def safe_destination(root: Path, key: str) -> Path:
    """Where ``key`` goes under ``root``; refuses absolute keys and ``..`` (a manifest cannot escape DIR)."""
    parts = PurePosixPath(key).parts
    if not parts or PurePosixPath(key).is_absolute() or any(p in ("..", "") for p in parts) or "\\" in key:
        raise ManifestError(f"unsafe key in manifest: {key!r}")
    return root.joinpath(*parts)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class UrlBook:
    """The current presigned URL of every key; re-presigns through the gateway in batches when needed."""

    def __init__(
        self, items: list[Item], api_url: str | None, token: str | None, timeout: float = 60
    ) -> None:
        self._urls = {item.key: item.url for item in items}
        self._pending = list(self._urls)
        self._done: set[str] = set()
        self._api_url = api_url.rstrip("/") if api_url else None
        self._token = token
        self._timeout = timeout
        self._lock = threading.Lock()
        self.represigned = 0

    def url(self, key: str) -> str:
        """The URL to use for ``key`` now (presigned again first when it is about to expire)."""
        current = self._urls[key]
        expires = url_expires_at(current)
        if expires is not None and expires - EXPIRY_MARGIN <= datetime.now(UTC):
            return self.refresh(key, current)
        return current

    def mark_done(self, key: str) -> None:
        """``key`` needs no URL any more (it is not included in later batches)."""
        with self._lock:
            self._done.add(key)

    def refresh(self, key: str, stale_url: str) -> str:
        """Presign ``key`` again, with up to ``PRESIGN_BATCH`` other pending keys, unless done meanwhile."""
        import requests  # lazily: keeps `tmi` start-up fast for every other command

        with self._lock:
            if self._urls[key] != stale_url:
                return self._urls[key]
            if not self._api_url or not self._token:
                raise PermissionError(
                    "the URL expired; give --api and --token (or TMI_API_TOKEN) to presign again"
                )
            others = [k for k in self._pending if k != key and k not in self._done]
            batch = [key, *others[: PRESIGN_BATCH - 1]]
            response = requests.post(
                f"{self._api_url}/research/presign",
                json={"keys": batch},
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
            if response.status_code in (401, 403):
                raise PermissionError(
                    f"the gateway refused to presign ({response.status_code}); check the token"
                )
            response.raise_for_status()
            fresh = response.json()["urls"]
            self._urls.update(fresh)
            self.represigned += len(fresh)
            logger.info("presigned %d URLs again", len(fresh))
            if key not in fresh:
                raise PermissionError("the gateway no longer publishes this object")
            return self._urls[key]


class Downloader:
    """Downloads manifest items into a folder with resume, verification and re-presigning."""

    def __init__(
        self, root: Path, book: UrlBook, *, retries: int = 3, progress: Any = None, timeout: float = 60
    ) -> None:
        self.root = root
        self.book = book
        self.retries = retries
        self.progress = progress
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self.summary = Summary()

    def _session(self) -> requests.Session:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _advance(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress.update(n)

    def fetch(self, item: Item) -> str:
        """Make ``item`` present and verified; return ``"skipped"``, ``"downloaded"`` or ``"resumed"``."""
        import requests

        dest = safe_destination(self.root, item.key)
        if dest.exists() and dest.stat().st_size == item.size and sha256_of(dest) == item.sha256:
            self._advance(item.size)
            return "skipped"
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        resumed = part.exists() and 0 < part.stat().st_size < item.size
        last_error = "unknown error"
        for attempt in range(1, self.retries + 1):
            try:
                self._fetch_part(item, part)
            except PermissionError:
                raise
            except (requests.RequestException, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"[:300]
                logger.info("attempt %d for %s failed: %s", attempt, item.key, last_error)
                time.sleep(min(0.2 * 2**attempt, 5))
                continue
            if part.stat().st_size == item.size and sha256_of(part) == item.sha256:
                os.replace(part, dest)
                return "resumed" if resumed else "downloaded"
            last_error = "checksum mismatch"
            self._advance(-part.stat().st_size)
            part.unlink()
            resumed = False
        raise OSError(last_error)

    def _fetch_part(self, item: Item, part: Path) -> None:
        import requests

        have = part.stat().st_size if part.exists() else 0
        if have > item.size:
            part.unlink()
            have = 0
        if have == item.size:
            return
        url = self.book.url(item.key)
        for _ in range(2):
            headers = {"Range": f"bytes={have}-"} if have else {}
            response = self._session().get(url, headers=headers, stream=True, timeout=self.timeout)
            if response.status_code in (400, 403) and url_expires_at(url) is not None:
                response.close()
                url = self.book.refresh(item.key, url)  # expired or refused signature: presign again
                continue
            break
        with response:
            if response.status_code == 200 and have:
                have = 0  # the server ignored the range: start over
                self._advance(-part.stat().st_size)
            elif response.status_code not in (200, 206):
                raise requests.HTTPError(f"HTTP {response.status_code} for {item.key}")
            with part.open("ab" if have else "wb") as handle:
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    with self._lock:
                        self.summary.bytes_fetched += len(chunk)
                    self._advance(len(chunk))

    def run(self, items: list[Item], parallel: int) -> Summary:
        """Download every item with ``parallel`` threads; return the summary."""
        import requests

        start = time.monotonic()
        summary = self.summary
        summary.total = len(items)
        for item in items:  # an already-resumable .part counts towards the bar from the start
            try:
                dest = safe_destination(self.root, item.key)
            except ManifestError:
                continue  # reported as a failure by fetch()
            part = dest.with_name(dest.name + ".part")
            if part.exists() and part.stat().st_size <= item.size:
                self._advance(part.stat().st_size)
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="tmi-download") as pool:
            futures = {pool.submit(self.fetch, item): item for item in items}
            try:
                for future in as_completed(futures):
                    item = futures[future]
                    try:
                        outcome = future.result()
                    except (OSError, PermissionError, ManifestError, requests.RequestException) as exc:
                        summary.failed[item.key] = str(exc)[:300] or type(exc).__name__
                        continue
                    self.book.mark_done(item.key)
                    if outcome == "skipped":
                        summary.skipped += 1
                    else:
                        summary.downloaded += 1
                        summary.resumed += outcome == "resumed"
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                raise
        summary.represigned = self.book.represigned
        summary.seconds = time.monotonic() - start
        return summary


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def format_summary(summary: Summary, root: Path) -> Iterator[str]:
    """Human-readable lines summarizing a run."""
    yield f"tmi download: {summary.total} instances in {root}"
    yield (
        f"  downloaded  {summary.downloaded} ({summary.resumed} resumed), {_human(summary.bytes_fetched)} "
        f"in {summary.seconds:.1f} s"
    )
    yield f"  already ok  {summary.skipped} (present with the right SHA-256)"
    if summary.represigned:
        yield f"  re-signed   {summary.represigned} expired URLs through the gateway"
    if summary.failed:
        yield f"  FAILED      {len(summary.failed)}:"
        for key, reason in list(summary.failed.items())[:20]:
            yield f"    {key}: {reason}"
        if len(summary.failed) > 20:
            yield f"    … and {len(summary.failed) - 20} more"
        yield "  run the same command again to retry only what is missing"
    else:
        yield "  all instances present and verified"


def register(subparsers: Any) -> None:
    """Add ``tmi download``."""
    parser = subparsers.add_parser(
        "download",
        help="download a cohort manifest's instances (verified, resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, help="manifest file (JSON or CSV) from POST /research/cohorts")
    parser.add_argument("--to", dest="to", type=Path, required=True, help="destination folder")
    parser.add_argument("--parallel", type=int, default=8, help="concurrent downloads (default 8)")
    parser.add_argument("--api", default=None, help="gateway URL for re-presigning (default: the manifest's)")
    parser.add_argument(
        "--token",
        default=None,
        help="API token for re-presigning (default: $TMI_API_TOKEN; prefer the variable)",
    )
    parser.add_argument("--retries", type=int, default=3, help="attempts per instance (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tmi download``."""
    from tqdm import tqdm

    try:
        items, manifest_api = load_manifest(args.manifest)
    except (OSError, ValueError) as exc:
        print(f"tmi download: cannot read {args.manifest}: {exc}", file=sys.stderr)
        return 2
    root: Path = args.to
    root.mkdir(parents=True, exist_ok=True)
    token = args.token or os.environ.get("TMI_API_TOKEN")
    book = UrlBook(items, args.api or manifest_api, token)
    total = sum(item.size for item in items)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="tmi download",
        disable=True if args.no_progress else None,
        file=sys.stderr,
    ) as bar:
        downloader = Downloader(root, book, retries=max(1, args.retries), progress=bar)
        summary = downloader.run(items, args.parallel)
    for line in format_summary(summary, root):
        print(line)
    return 0 if summary.ok else 1
