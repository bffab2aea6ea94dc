"""Image retention: which stored images `imagine gc` deletes, and the "last served" day it
decides by.

An image stays while something may still ask for it:
- a live record points at it: a job record (its images, its source, mask or control image)
  or a recalled request. Those records expire with their TTL, so gc finds them by SCAN (gc
  only; never on a hot path) and every image they name is kept, and counted as referenced
  today;
- it was served or referenced within IMAGINE_IMAGE_RETENTION days. IMAGE_SERVED_KEY holds,
  per image name, the day number it was last served; the web records it at most once a day
  per image and process (`ServedDays`), so a hit costs a set lookup, not a Redis write.
An image gc has no day for yet (drawn for Slack or Discord and never served by the web) gets
today's on first sight: its clock starts then, rather than it being deleted at once.

Deleting a prompt URL's image also deletes the cache entries that point at it; the next
request for that URL misses and draws it again (same key, same seed: the same image).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from settings.errors import ImagineError
from settings.i18n import _
from tasks.core.store_base import valid_name
from tasks.names import GC_LOCK_KEY, IMAGE_SERVED_KEY, JOB_KEY, RECALL_KEY, URL_CACHE_KEY

if TYPE_CHECKING:
    from tasks.core.storage import ImageStore

log = logging.getLogger(__name__)

DAY = 86_400.0
BATCH = 500  # names per ZMSCORE / keys per MGET: bounded round trips, bounded memory
GC_LOCK_SECONDS = 3600  # a gc that died holding the lock frees it after this long
GC_INTERVAL = 3600.0  # seconds between collections under `imagine up` and Celery beat
# Names a process remembers as recorded today; past this, it forgets and records again.
SERVED_MEMO_MAX = 500_000

# Remove a name's served day only if it is still older than the cutoff: a hit that
# landed since then keeps the image.
_EXPIRE = """
local day = redis.call('ZSCORE', KEYS[1], ARGV[1])
if day and tonumber(day) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
if not day then return 1 end
return 0
"""
# Delete a prompt URL's cache entry only if it still points at the deleted image.
_FORGET_ENTRY = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['image'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class GcBusy(ImagineError):
    """Another collection holds the lock."""


def day_of(moment: float) -> int:
    """The day number (UTC days since the epoch) of a Unix time."""
    return int(moment // DAY)


class ServedDays:
    """Records that images were served today: once a day per image in this process, written
    to Redis by a background thread in batches, so a hit never waits on Redis."""

    def __init__(self, client: redis.Redis, interval: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.interval = interval
        self.clock = clock
        self._day = -1
        self._seen: set[str] = set()
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def note(self, name: str) -> None:
        """`name` was served now; cheap when it already was today."""
        day = day_of(self.clock())
        if day == self._day and name in self._seen:
            return
        with self._lock:
            if day != self._day or len(self._seen) >= SERVED_MEMO_MAX:
                self._day, self._seen = day, set()
            self._seen.add(name)
            self._pending[name] = max(day, self._pending.get(name, day))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imagine-served",
                                                daemon=True)
                self._thread.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            # GT: a day only moves forward, whichever process writes last.
            self.redis.zadd(IMAGE_SERVED_KEY, pending, gt=True)  # type: ignore[arg-type]
        except redis.RedisError:
            with self._lock:  # keep them for the next flush
                for name, day in pending.items():
                    self._pending[name] = max(day, self._pending.get(name, day))

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


@dataclass
class GcReport:
    """What one collection found (and, unless a dry run, deleted)."""

    retention_days: float
    dry_run: bool
    images: int = 0  # images in storage
    live: int = 0  # kept because a live job or recall names them
    expired: list[str] = field(default_factory=list)  # deleted (or, dry run, would be)
    cache_entries: int = 0  # prompt-URL cache entries deleted with them (or would be)

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (f"{verb} {len(self.expired)} of {self.images} images not served for "
                f"{self.retention_days:g} days and {self.cache_entries} prompt-URL cache "
                f"entries; {self.live} kept for live jobs")


def names_in(value: object) -> Iterator[str]:
    """Every image name anywhere in a decoded JSON record."""
    if isinstance(value, str):
        if valid_name(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from names_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from names_in(item)


def _scan_values(client: redis.Redis, pattern: str) -> Iterator[tuple[bytes, bytes | str]]:
    """(key, value) of every string key matching `pattern`, in batches."""
    keys: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=BATCH):
        keys.append(key)
        if len(keys) >= BATCH:
            yield from _values(client, keys)
            keys = []
    yield from _values(client, keys)


def _values(client: redis.Redis, keys: list[bytes]) -> Iterator[tuple[bytes, bytes | str]]:
    if keys:
        for key, raw in zip(keys, client.mget(keys), strict=True):
            if raw is not None:
                yield key, raw


def live_images(client: redis.Redis) -> set[str]:
    """Image names that job records and recalled requests in Redis point at."""
    live: set[str] = set()
    for pattern in (JOB_KEY.format("*"), RECALL_KEY.format("*")):
        for _key, raw in _scan_values(client, pattern):
            try:
                live.update(names_in(json.loads(raw)))
            except ValueError:
                continue  # not JSON: names nothing we could keep
    return live


def _batches(names: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for name in names:
        batch.append(name)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _sort_batch(client: redis.Redis, batch: list[str], live: set[str], today: int,
                report: GcReport) -> dict[str, int]:
    """Adds the batch's expired names to the report; returns the days to record."""
    days = client.zmscore(IMAGE_SERVED_KEY, batch)  # type: ignore[arg-type]
    record: dict[str, int] = {}
    for name, day in zip(batch, days, strict=True):
        report.images += 1
        if name in live:
            report.live += 1
            record[name] = today  # referenced today
        elif day is None:
            record[name] = today  # first sight: its clock starts now
        elif today - int(day) > report.retention_days:
            report.expired.append(name)
    return record


def collect(client: redis.Redis, store: ImageStore, retention_days: float, *,
            now: float | None = None, dry_run: bool = False) -> GcReport:
    """Delete the images not served for more than `retention_days` that no live record
    needs, with their prompt-URL cache entries; `dry_run` only lists them."""
    today = day_of(time.time() if now is None else now)
    report = GcReport(retention_days=retention_days, dry_run=dry_run)
    live = live_images(client)
    for batch in _batches(store.names()):
        record = _sort_batch(client, batch, live, today, report)
        if record and not dry_run:
            client.zadd(IMAGE_SERVED_KEY, record, gt=True)  # type: ignore[arg-type]
    if dry_run:
        report.cache_entries = sum(1 for _ in _entries_of(client, set(report.expired)))
        return report
    expire = client.register_script(_EXPIRE)
    cutoff = today - retention_days
    # Listing a large bucket takes a while: a job submitted meanwhile may name an image.
    live = live_images(client)
    deleted = [name for name in report.expired
               if name not in live and expire(keys=[IMAGE_SERVED_KEY], args=[name, cutoff])]
    for name in deleted:
        store.delete(name)
    report.expired = deleted
    report.cache_entries = _forget_entries(client, set(deleted))
    # Days of images no longer in storage (deleted by hand, or by another store's gc).
    client.zremrangebyscore(IMAGE_SERVED_KEY, "-inf", f"({cutoff}")
    return report


def _entries_of(client: redis.Redis, images: set[str]) -> Iterator[tuple[bytes, str]]:
    """(key, image) of the prompt-URL cache entries that point at one of `images`."""
    if not images:
        return
    for key, raw in _scan_values(client, URL_CACHE_KEY.format("*")):
        try:
            image = json.loads(raw).get("image")
        except (ValueError, AttributeError):
            continue
        if image in images:
            yield key, image


def _forget_entries(client: redis.Redis, images: set[str]) -> int:
    forget = client.register_script(_FORGET_ENTRY)
    return sum(int(forget(keys=[key], args=[image]))
               for key, image in list(_entries_of(client, images)))


def collect_locked(client: redis.Redis, store: ImageStore, retention_days: float, *,
                   now: float | None = None, dry_run: bool = False) -> GcReport:
    """`collect`, one at a time across every host (a dry run needs no lock)."""
    if dry_run:
        return collect(client, store, retention_days, now=now, dry_run=True)
    token = f"{time.time()}:{threading.get_ident()}"
    if not client.set(GC_LOCK_KEY, token, nx=True, ex=GC_LOCK_SECONDS):
        raise GcBusy(_("Another image collection is running (Redis key {GC_LOCK_KEY}); try "
                       "again when it has finished.").format(GC_LOCK_KEY=GC_LOCK_KEY))
    try:
        return collect(client, store, retention_days, now=now)
    finally:
        if client.get(GC_LOCK_KEY) == token.encode():
            client.delete(GC_LOCK_KEY)
