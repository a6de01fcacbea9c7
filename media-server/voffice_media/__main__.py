"""`python -m voffice_media` (and `voffice media-server`): run one media server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .server import ServerConfig, configure_logging, run


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW-HIGH (UDP ports)")
    return int(low), int(high)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voffice media-server", description=__doc__)
    p.add_argument("--listen", type=_addr, default=("127.0.0.1", 5070), help="SIP HOST:PORT (default 127.0.0.1:5070)")
    p.add_argument("--kamailio", action="append", default=[], help="Address INVITEs are accepted from (repeatable; default 127.0.0.1)")
    p.add_argument("--data-dir", type=Path, default=Path(".run/media"), help="Recordings and the prompt cache")
    p.add_argument("--sounds-dir", type=Path, default=Path(__file__).resolve().parents[2] / "sounds", help="Where sound files of the configs are")
    p.add_argument("--rtp-ports", type=_range, default=(40000, 49999))
    p.add_argument("--rtp-source", action="append", default=[], help="Another address RTP may come from (an rtpengine host; repeatable)")
    p.add_argument("--metrics", type=_addr, default=None, help="Serve Prometheus /metrics on HOST:PORT")
    p.add_argument("--redis", default=os.environ.get("VOFFICE_REDIS_URL") or None,
                   help="Redis URL (configs and events); default VOFFICE_REDIS_URL")
    p.add_argument("--silence-seconds", type=int, default=10, help="Voicemail stops after this much silence")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    configure_logging(args.log_level)
    config = ServerConfig(
        host=args.listen[0],
        port=args.listen[1],
        kamailio=frozenset(args.kamailio or ["127.0.0.1"]),
        data_dir=args.data_dir,
        sounds_dir=args.sounds_dir,
        rtp_ports=args.rtp_ports,
        rtp_sources=frozenset(args.rtp_source),
        redis_url=args.redis,
        metrics=args.metrics,
        silence_seconds=args.silence_seconds,
    )
    run(config)


if __name__ == "__main__":
    main(sys.argv[1:])
