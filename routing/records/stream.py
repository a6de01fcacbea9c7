"""Reading `voffice:events` durably: a consumer group per kind of consumer (the history
writer, the notifier), so nothing is lost while a consumer is down or restarting.

A consumer reads new entries with XREADGROUP, handles a batch, and XACKs it only once its
effect is durable (rows committed, deliveries queued): a consumer that dies mid-batch leaves
its entries pending, and the next one to start (or any other in the group) takes them over
with XAUTOCLAIM once they have been idle `claim_idle_ms`. Handling is idempotent by entry id
(or call id), so an entry handled twice has one effect.

The producers (Kamailio's event timer, the media servers) no longer cap the stream: it is
trimmed here, with XTRIM MINID, only below the oldest entry some group still needs (its
oldest pending entry, or the first it has not been given yet). With no group at all nothing
is trimmed. When the stream grows past `alarm_length` (a consumer down for long) it is
kept whole and `trim` says so: the NOC sees it in `voffice status` and in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

STREAM = "voffice:events"
ALARM_LENGTH = 100_000  # the old cap: beyond it, unconsumed events are kept and reported
Entry = tuple[str, dict[str, str]]

log = logging.getLogger("voffice.records")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Any) -> list[Entry]:
    out = []
    for entry_id, fields in raw or []:
        if fields is None:  # deleted while pending (XAUTOCLAIM reports it): nothing to handle
            continue
        out.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
    return out


def _id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def next_id(entry_id: str) -> str:
    ms, seq = _id(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass
class Consumer:
    """One member `name` of consumer group `group` on the events stream."""

    client: redis.Redis
    group: str
    name: str
    stream: str = STREAM
    claim_idle_ms: int = 30_000
    batch: int = 500
    _claim_from: str = field(default="0-0", init=False)

    def ensure_group(self) -> None:
        """The group, made at the stream's start when new: every event ever written that is
        still in the stream is handled once (a first start after an upgrade reads the backlog)."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block_ms: int = 1000) -> list[Entry]:
        """What to handle next: entries a dead consumer left pending first, then new ones."""
        claimed = self.claim()
        if claimed:
            return claimed
        raw: Any = self.client.xreadgroup(self.group, self.name, {self.stream: ">"}, count=self.batch, block=block_ms)
        return _entries(raw[0][1]) if raw else []

    def claim(self) -> list[Entry]:
        """Entries pending longer than `claim_idle_ms` in this group (their consumer died or
        is stuck), taken over by this one; their own pending entries after a restart too."""
        reply = self.client.xautoclaim(self.stream, self.group, self.name, self.claim_idle_ms, self._claim_from, count=self.batch)
        cursor = _text(reply[0])
        entries = _entries(reply[1])
        self._claim_from = cursor if entries else "0-0"
        return entries

    def own_pending(self) -> list[Entry]:
        """This consumer's own unacknowledged entries (after a restart under the same name)."""
        raw: Any = self.client.xreadgroup(self.group, self.name, {self.stream: "0"}, count=self.batch)
        return _entries(raw[0][1]) if raw else []

    def ack(self, ids: list[str]) -> None:
        if ids:
            self.client.xack(self.stream, self.group, *ids)


def needed_from(client: redis.Redis, stream: str = STREAM) -> str | None:
    """The oldest entry id some group still needs (None: no group, so nothing may go)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return None
    if not groups:
        return None
    needed: list[tuple[int, int]] = []
    for group in groups:
        name = _text(group["name"])
        oldest = client.xpending(stream, name)["min"] if int(group.get("pending", 0)) else None
        if oldest is not None:  # (None: acknowledged between XINFO and XPENDING)
            needed.append(_id(_text(oldest)))
        else:
            needed.append(_id(next_id(_text(group["last-delivered-id"]))))
    ms, seq = min(needed)
    return f"{ms}-{seq}"


@dataclass
class Trimmer:
    """Trims what every group has acknowledged, at most every `every` seconds."""

    client: redis.Redis
    stream: str = STREAM
    every: float = 5.0
    alarm_length: int = ALARM_LENGTH
    clock: Callable[[], float] = time.monotonic
    _last: float = field(default=-1e9, init=False)
    _alarmed: float = field(default=-1e9, init=False)

    def maybe_trim(self) -> int | None:
        now = self.clock()
        if now - self._last < self.every:
            return None
        self._last = now
        return self.trim()

    def trim(self) -> int:
        """Entries removed; logs an alarm (once a minute) when what is kept is over the alarm length."""
        minimum = needed_from(self.client, self.stream)
        removed = 0
        if minimum is not None:
            removed = int(self.client.xtrim(self.stream, minid=minimum, approximate=False))
        length = int(self.client.xlen(self.stream))
        if length > self.alarm_length and self.clock() - self._alarmed >= 60:
            self._alarmed = self.clock()
            log.warning("%s holds %d events not yet handled by every consumer group: kept, none dropped; "
                        "is a history writer or notifier down? (voffice status)", self.stream, length)
        return removed


def lag(client: redis.Redis, stream: str = STREAM) -> dict[str, int]:
    """Per group: entries not yet acknowledged (pending) plus not yet read (`lag`, Redis 7)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return {}
    out = {}
    for group in groups:
        behind = group.get("lag")
        out[_text(group["name"])] = int(group.get("pending", 0)) + (int(behind) if behind is not None else 0)
    return out
