"""Loopback ports for the stacks that tests and benchmarks start side by side.

Nothing holds a port between finding it free and the server binding it, so two dangers:
the kernel readily re-offers a just-closed port to the next bind(0) (a test's operator gateway
and Kamailio's SIP port once came out equal), and any outgoing connection (a Redis client) or
unbound UDP socket may take a port of the kernel's ephemeral range in the meantime (a media
server's metrics port once was). So ports come from below the ephemeral range, single ports
and blocks from one band, RTP ranges from another, and never twice from one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

SINGLE_BAND = (10000, 20000)  # free_port, free_udp_port, free_port_block
RANGE_BAND = (20000, 32768)  # free_port_range (rtpengine's and the media servers' RTP ports)
_handed_out: set[int] = set()


def ephemeral_low(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, host: str, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _take_block(size: int, host: str, kinds: tuple[int, ...]) -> int:
    low, high = SINGLE_BAND[0], min(SINGLE_BAND[1], ephemeral_low())
    if len(_handed_out) > (high - low) // 2:  # a long run: start over rather than run out
        _handed_out.clear()
    for _ in range(1000):
        base = random.randrange(low, high - size + 1)
        block = range(base, base + size)
        if any(p in _handed_out for p in block):
            continue
        if all(_bindable(p, host, kinds) for p in block):
            _handed_out.update(block)
            return base
    raise OSError(f"no {size} consecutive free ports on {host} in {low}-{high - 1}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on loopback now, below the ephemeral range, not handed out before."""
    return _take_block(1, host, (socket.SOCK_STREAM,))


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP (Redis) and UDP (SIP, rtpengine's ng) on loopback."""
    return _take_block(1, host, (socket.SOCK_STREAM, socket.SOCK_DGRAM))


def free_port_block(size: int, host: str = "127.0.0.1") -> int:
    """The first of `size` consecutive ports free for UDP and TCP: each media server takes two
    (SIP, metrics on the next one), the second server the two after."""
    return _take_block(size, host, (socket.SOCK_STREAM, socket.SOCK_DGRAM))


def free_port_range(size: int) -> tuple[int, int]:
    """A span for a server's RTP ports, in its own band; servers bind inside it on demand."""
    low, high = RANGE_BAND[0], min(RANGE_BAND[1], ephemeral_low())
    base = random.randrange(low, high - size)
    return base, base + size - 1
