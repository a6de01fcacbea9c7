"""Each operator of a parallel wave rings for their own ring time.

Kamailio's tm keeps one final-response timer per transaction (`t_set_fr` sets it for every
branch) and has no call to cancel one branch from a timer. So a wave whose members' ring
times differ rings its longest members directly, under the wave's timer, and relays each
shorter member to this Kamailio itself (a spiral): that second transaction has the member's
own timer, CANCELs the operator when it fires and answers 408 up, which fails only that
branch of the call. The spiral carries no Record-Route and touches no media: in-dialog
requests and RTP go straight between the caller's side and the operator.

The member's ring time rides in a Request-URI parameter with a per-start secret, and the
spiral's Request-URI is relayed only when that secret matches and what is left is an
operator URI as `operator_uri` makes them: a request from outside cannot borrow the spiral
to reach any address. Pure: no SIP, no Kamailio.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from routing.core.numbers import E164, SIP_URI
from routing.core.ringing_plan import Wave
from routing.proxy.call_step import GATEWAY

PARAM = ";vo-ring="
MIN_RING_MS, MAX_RING_MS = 1000, 600_000
_TAIL = re.compile(r"([0-9]{4,6})\.([0-9a-f]{32})")


@dataclass(frozen=True, slots=True)
class Branch:
    uri: str  # the Request-URI of the branch
    spiral: bool  # relayed to ourselves for a ring timer of its own


def wave_ring_ms(wave: Wave) -> int:
    """The wave's own timer: its longest member's ring time."""
    return max(int(ring["ring_seconds"]) for ring in wave) * 1000


def wave_branches(wave: Wave, uris: list[str], key: str) -> list[Branch]:
    """The wave's branches in order (tm numbers them so): a member who rings shorter than
    the wave goes through the spiral with their ring time; the others go directly."""
    longest = wave_ring_ms(wave)
    out = []
    for ring, uri in zip(wave, uris, strict=True):
        ring_ms = int(ring["ring_seconds"]) * 1000
        out.append(Branch(spiral_uri(uri, ring_ms, key), True) if ring_ms < longest else Branch(uri, False))
    return out


def spiral_uri(uri: str, ring_ms: int, key: str) -> str:
    if not MIN_RING_MS <= ring_ms <= MAX_RING_MS:
        raise ValueError(f"ring time {ring_ms} ms out of range")
    return f"{uri}{PARAM}{ring_ms}.{key}"


def unspiral(request_uri: str, key: str) -> tuple[str, int] | None:
    """The operator URI and ring time of a spiral's Request-URI; None unless it is one of
    ours: the secret matches, the time is in range, the rest is a plain operator URI."""
    uri, sep, tail = request_uri.rpartition(PARAM)
    match = _TAIL.fullmatch(tail) if sep else None
    if match is None or not hmac.compare_digest(match.group(2), key):
        return None
    ring_ms = int(match.group(1))
    if not MIN_RING_MS <= ring_ms <= MAX_RING_MS or not is_operator_uri(uri):
        return None
    return uri, ring_ms


def is_operator_uri(uri: str) -> bool:
    """What `operator_uri` returns: sip:<E.164>@<gateway>, or a plain sip:user@host[:port]."""
    if SIP_URI.fullmatch(uri):
        return True
    user, at, host = uri.removeprefix("sip:").partition("@")
    return uri.startswith("sip:") and bool(at) and bool(E164.fullmatch(user)) and bool(GATEWAY.fullmatch(host))
