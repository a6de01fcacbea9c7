"""A loopback UDP relay that impairs what it forwards: loss, jitter (and so reordering), duplication.

`tc netem` needs the sch_netem kernel module, which containers often lack; this relay gives a
test the same impairments on loopback, in the test process, reproducibly.

    caller  <-->  [caller_side]  ImpairmentProxy  [server_side]  <-->  media server
                  caller sends here               the SDP names this address

Whatever arrives on `caller_side` from the caller is forwarded out of `server_side` to the
server, and whatever arrives on `server_side` from the server is forwarded out of
`caller_side` to the caller: the server sees one symmetric-RTP peer, the proxy, and latches
onto it. Each party's address is given with `connect()` or learned from the first datagram
on its side; datagrams from anyone else are counted (`strangers`) and dropped.

Each direction has its own `Impairment` and its own `random.Random(seed)`, which draws the
same four numbers for every packet whatever the settings (lost?, delay, duplicated?, the
copy's delay): which packets of a direction are lost, and by how much each is delayed,
depends only on the seed and the packet's position in that direction. Delays are uniform in
[delay, delay + jitter]; a packet delayed more than its successor is overtaken by it, so
jitter above the packet interval reorders. A duplicate is an extra copy with its own delay.

    proxy = ImpairmentProxy(Impairment(loss=0.1, jitter=0.04, duplicate=0.02, seed=7))
    with proxy:                       # a thread; stopped (and the sockets closed) on exit
        proxy.connect(caller=..., server=...)
        ...
    proxy.stats["caller->server"]     # LinkStats: received, dropped, duplicated, sent, ...

`python tests/media/impair.py --caller-side 127.0.0.1:7000 --server-side 127.0.0.1:7002
--server HOST:PORT --loss 0.05 --jitter-ms 40` runs it by hand (Ctrl-C prints the counts).
"""

from __future__ import annotations

import argparse
import heapq
import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

Addr = tuple[str, int]
TO_SERVER = "caller->server"
TO_CALLER = "server->caller"


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0  # probability that a packet is dropped
    jitter: float = 0.0  # seconds: each packet (and each copy) is delayed by uniform(0, jitter) ...
    delay: float = 0.0  # ... on top of this fixed delay
    duplicate: float = 0.0  # probability that a packet is also sent a second time
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.loss <= 1 and 0 <= self.duplicate <= 1 and self.jitter >= 0 and self.delay >= 0):
            raise ValueError(f"bad impairment {self}")


@dataclass
class LinkStats:
    """What one direction did. `dropped_rtp`: (sequence, timestamp) of the RTP packets dropped."""

    received: int = 0
    dropped: int = 0
    duplicated: int = 0
    sent: int = 0
    reordered: int = 0  # sent after a packet that had arrived later than them
    strangers: int = 0  # datagrams from an address that is not this side's party
    unroutable: int = 0  # arrived before the other side's address was known
    max_delay: float = 0.0  # the longest a packet actually spent in the proxy (seconds)
    max_lateness: float = 0.0  # how far behind its due time the proxy sent a packet (its own scheduling)
    dropped_rtp: list[tuple[int, int]] = field(default_factory=list)


def rtp_fields(data: bytes) -> tuple[int, int] | None:
    """(sequence, timestamp) of an RTP version 2 packet, None for anything else."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    sequence, timestamp = struct.unpack_from("!HI", data, 2)
    return sequence, timestamp


class _Direction:
    def __init__(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self.random = random.Random(impairment.seed)
        self.stats = LinkStats()
        self.index = 0  # arrival position of the next packet
        self.highest_sent = -1

    def decide(self) -> tuple[bool, float, float | None]:
        """(lost, delay, delay of a duplicate or None): four draws per packet, always."""
        imp, rng = self.impairment, self.random
        lost = rng.random() < imp.loss
        delay = imp.delay + rng.uniform(0, imp.jitter)
        duplicated = rng.random() < imp.duplicate
        copy_delay = imp.delay + rng.uniform(0, imp.jitter)
        return lost, delay, (copy_delay if duplicated else None)


class ImpairmentProxy:
    """See the module docstring. `to_caller` defaults to the same impairment as `to_server`
    with the seed + 1."""

    def __init__(self, to_server: Impairment, to_caller: Impairment | None = None, *,
                 caller_side: Addr = ("127.0.0.1", 0), server_side: Addr = ("127.0.0.1", 0)) -> None:
        if to_caller is None:
            to_caller = Impairment(to_server.loss, to_server.jitter, to_server.delay, to_server.duplicate,
                                   to_server.seed + 1)
        self._directions = {TO_SERVER: _Direction(to_server), TO_CALLER: _Direction(to_caller)}
        self.caller_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock, bind in ((self.caller_sock, caller_side), (self.server_sock, server_side)):
            sock.bind(bind)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.caller_side: Addr = self.caller_sock.getsockname()
        self.server_side: Addr = self.server_sock.getsockname()
        self.caller: Addr | None = None
        self.server: Addr | None = None
        self._queue: list[tuple[float, int, str, bytes, float, int]] = []  # due, tie, direction, data, arrival, index
        self._tie = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def stats(self) -> dict[str, LinkStats]:
        return {name: direction.stats for name, direction in self._directions.items()}

    def connect(self, *, caller: Addr | None = None, server: Addr | None = None) -> None:
        """Set the parties' addresses (instead of learning them from their first datagram)."""
        with self._lock:
            if caller is not None:
                self.caller = caller
            if server is not None:
                self.server = server

    def start(self) -> ImpairmentProxy:
        self._thread = threading.Thread(target=self._run, name="impairment-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop forwarding (packets still queued are dropped) and close the sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.caller_sock.close()
        self.server_sock.close()

    def __enter__(self) -> ImpairmentProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.caller_sock, selectors.EVENT_READ, TO_SERVER)
                selector.register(self.server_sock, selectors.EVENT_READ, TO_CALLER)
                while not self._stop.is_set():
                    timeout = 0.05
                    if self._queue:
                        timeout = min(timeout, max(0.0, self._queue[0][0] - time.monotonic()))
                    for key, _events in selector.select(timeout):
                        self._read(key.fileobj, key.data)  # type: ignore[arg-type]
                    self._send_due()
        except BaseException as exc:  # reported to the test through `error`
            self.error = exc

    def _read(self, sock: socket.socket, name: str) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            self._arrived(name, data, addr, time.monotonic())

    def _arrived(self, name: str, data: bytes, addr: Addr, now: float) -> None:
        direction = self._directions[name]
        with self._lock:
            if name == TO_SERVER:
                if self.caller is None:
                    self.caller = addr
                source, target = self.caller, self.server
            else:
                if self.server is None:
                    self.server = addr
                source, target = self.server, self.caller
        if addr != source:
            direction.stats.strangers += 1
            return
        if target is None:
            direction.stats.unroutable += 1
            return
        stats = direction.stats
        stats.received += 1
        index = direction.index
        direction.index += 1
        lost, delay, copy_delay = direction.decide()
        if lost:
            stats.dropped += 1
            fields = rtp_fields(data)
            if fields is not None:
                stats.dropped_rtp.append(fields)
        else:
            self._push(now + delay, name, data, now, index)
        if copy_delay is not None:
            stats.duplicated += 1
            self._push(now + copy_delay, name, data, now, index)

    def _push(self, due: float, name: str, data: bytes, arrival: float, index: int) -> None:
        self._tie += 1
        heapq.heappush(self._queue, (due, self._tie, name, data, arrival, index))

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now:
            due, _tie, name, data, arrival, index = heapq.heappop(self._queue)
            direction = self._directions[name]
            sock, target = (self.server_sock, self.server) if name == TO_SERVER else (self.caller_sock, self.caller)
            assert target is not None
            try:
                sock.sendto(data, target)
            except OSError:
                continue  # the party has gone (ICMP port unreachable): like a loss
            stats = direction.stats
            stats.sent += 1
            if index < direction.highest_sent:
                stats.reordered += 1
            direction.highest_sent = max(direction.highest_sent, index)
            sent_at = time.monotonic()
            stats.max_delay = max(stats.max_delay, sent_at - arrival)
            stats.max_lateness = max(stats.max_lateness, sent_at - due)


# --- by hand ----------------------------------------------------------------------------------


def _addr(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="A UDP relay with loss, jitter and duplication (see the docstring).")
    p.add_argument("--caller-side", type=_addr, default=("127.0.0.1", 0), help="bind: the caller sends here")
    p.add_argument("--server-side", type=_addr, default=("127.0.0.1", 0), help="bind: put this in the SDP")
    p.add_argument("--server", type=_addr, default=None, help="the far party (default: learned)")
    p.add_argument("--loss", type=float, default=0.05)
    p.add_argument("--jitter-ms", type=float, default=40.0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    impairment = Impairment(args.loss, args.jitter_ms / 1000, args.delay_ms / 1000, args.duplicate, args.seed)
    proxy = ImpairmentProxy(impairment, caller_side=args.caller_side, server_side=args.server_side)
    proxy.connect(server=args.server)
    print(f"caller side {proxy.caller_side[0]}:{proxy.caller_side[1]}, "
          f"server side {proxy.server_side[0]}:{proxy.server_side[1]}", flush=True)
    with proxy:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    for name, stats in proxy.stats.items():
        print(name, stats)


if __name__ == "__main__":
    main()
