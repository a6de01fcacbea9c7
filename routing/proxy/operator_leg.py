"""What an operator's branch carries that the caller's INVITE did not, and what it leaves out.

A carrier trunk's INVITE is shaped for the media server: `Require: 100rel` so prompts come in
reliable provisionals, a size that fits its own path. An operator's phone or gateway is
another device: one that does not do 100rel answers a `Require: 100rel` with 420 and is never
rung (the issue's 480 in 8 ms), so the tag goes out as `Supported` instead (the caller
required it, so it takes reliable provisionals; an operator that also does them still may,
RFC 3262 4); and an INVITE that grew past what UDP carries safely goes over TCP (RFC 3261
18.1.1). Pure functions; routing/proxy/kemi.py applies them in the operator branch route.
"""

from __future__ import annotations

import re

RELIABLE = "100rel"
_TAG = re.compile(r"[A-Za-z0-9.!%*_+`'~-]{1,64}")  # RFC 3261 25.1 token
UDP_LIMIT = 1300  # RFC 3261 18.1.1: larger, with the path MTU unknown, MUST go congestion-controlled
# What the branch adds to the caller's INVITE before it leaves (our Via, one or two
# Record-Routes, the branch's Call-ID, rtpengine's SDP): the limit is checked on the
# received size plus this, since tm builds the branch after the branch route has run.
BRANCH_GROWTH = 300


def option_tags(value: str) -> list[str]:
    """The option tags of a Require/Supported value (all its headers joined by commas);
    anything that is not a token is dropped (it never reaches a header we write)."""
    tags = [tag.strip() for tag in value.split(",")]
    return [tag for tag in tags if _TAG.fullmatch(tag)]


def operator_require(require: str) -> tuple[str | None, bool]:
    """The Require value an operator branch gets (None: no Require header) and whether 100rel
    was taken out of it (then the branch says `Supported: 100rel`)."""
    tags = option_tags(require)
    kept = [tag for tag in tags if tag.lower() != RELIABLE]
    return (", ".join(kept) or None), len(kept) != len(tags)


def too_large_for_udp(received_bytes: int, limit: int = UDP_LIMIT) -> bool:
    """Whether a branch of a request of `received_bytes` must leave over TCP (limit 0: never)."""
    return limit > 0 and received_bytes + BRANCH_GROWTH > limit


def over_tcp(uri: str) -> str:
    """The destination that sends a request for operator URI `uri` over TCP (operator URIs
    carry no parameters: routing/core/numbers.SIP_URI, call_step.operator_uri)."""
    return f"{uri};transport=tcp"
