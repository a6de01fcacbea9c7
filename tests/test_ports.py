"""Loopback ports for the stacks tests start: distinct, and out of the kernel's ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

from routing.stack.ports import RANGE_BAND, ephemeral_low, free_port, free_port_block, free_port_range, free_udp_port


def test_ports_are_never_handed_out_twice() -> None:
    """Two ports asked for one after the other (a test's operator gateway, then Kamailio's SIP
    port) once came out equal: the kernel re-offers a just-closed port to the next bind(0)."""
    ports = [free_port() for _ in range(500)] + [free_udp_port() for _ in range(500)]
    for _ in range(100):
        base = free_port_block(2)
        ports += [base, base + 1]
    assert len(set(ports)) == len(ports)


def test_ports_lie_below_the_ephemeral_range() -> None:
    """A Redis client's connection or an unbound UDP socket takes ports of that range at any
    time: a media server's metrics port (its SIP port + 1) was taken so between check and bind."""
    low = ephemeral_low()
    assert all(free_udp_port() < low for _ in range(200))
    first, last = free_port_range(400)
    assert RANGE_BAND[0] <= first and last < low and last - first == 399


def test_a_block_is_free_for_tcp_and_udp() -> None:
    base = free_port_block(3)
    for port in range(base, base + 3):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", port))


def test_ephemeral_low_reads_the_kernels_range(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("40000\t60999\n")
    assert ephemeral_low(tmp_path / "range") == 40000
    assert ephemeral_low(tmp_path / "missing") == 32768
