"""The media server's SIP side: UAS transactions and dialogs (RFC 3261 8.2, 12, 13.3, 15, 17.2).

Rule 1: everything that affects the state of a call lives in this module: the `TRANSITIONS`
table below and the `UAS` methods that feed it. The asyncio server owns the socket and the
clock; this object owns no I/O and reads no clock.

Theory of operation. The server feeds every datagram to `receive(data, addr, now)` and calls
`tick(now)` from its 20 ms ticker (or at `next_deadline()`); the application answers calls
with `provisional`, `answer`, `reject` and `hangup`. Every method returns a list of actions
to carry out in order: `Send(data, addr)` for the socket, and the events `IncomingCall`,
`CallCancelled`, `CallEnded` and `Acked` for the application. Application methods run at the
time of the last `receive`/`tick` unless given `now=`.

One `_Call` is one INVITE server transaction together with the dialog it creates, keyed by
Call-ID for the application and by transaction key (top Via branch + sent-by, or the RFC 2543
fields when the branch lacks the z9hG4bK cookie) for retransmissions, CANCEL and ACK:

    PROCEEDING --answer--> ACCEPTED --ACK--> ESTABLISHED --hangup--> CLOSING --BYE answered--> gone
        |                     |  no ACK in 64*T1: BYE, CallEnded(no-ack)      ^
        |                     '-- BYE: 200, CallEnded(bye) --> gone           | Timer F
        '--reject / hangup(480) / CANCEL(487) / BYE(487)--> COMPLETED --ACK--> CONFIRMED --Timer I--> gone
                                                              '--Timer H: CallEnded(no-ack)--> gone

Final responses (and 2xx until ACKed) are retransmitted on Timer G (T1 doubling up to T2);
a retransmitted INVITE gets the last response again, except once the 2xx is ACKed. Requests
other than INVITE and ACK get their answer at once, remembered for 64*T1 (Timer J) so
retransmissions get the same bytes. Requests are accepted only from `allowed_sources`
(Kamailio): an INVITE from elsewhere gets a stateless 403, anything else nothing.

Checks before a request reaches the application, in RFC 3261 8.2 order: malformed or missing
From/To/Call-ID/CSeq/Via, duplicated single headers, CSeq method mismatch -> 400 (no Via that
parses: dropped); unknown SIP version -> 505; other methods -> 405 (known) or 501; Request-URI
not sip/sips -> 416; merged INVITE -> 482; Require other than 100rel -> 420; INVITE body not application/sdp
-> 415; Accept without SDP -> 406. A re-INVITE inside a dialog gets 488 (the session stays
as it is), one for an unknown dialog 481. An INVITE without Contact (RFC 2543) uses the From
URI as the remote target.

Public API:

    UAS(local_addr, allowed_sources, *, t1=0.5, t2=4.0, t4=5.0, new_token=None)
    .receive(data, addr, now) -> list[Action]
    .tick(now) -> list[Action];  .next_deadline() -> float | None
    .provisional(call_id, status=183, sdp=b"", *, headers=(), now=None) -> list[Action]
    .answer(call_id, status=200, sdp=b"", *, headers=(), now=None) -> list[Action]
    .reject(call_id, status, reason=None, headers=(), *, now=None) -> list[Action]
    .hangup(call_id, *, now=None) -> list[Action]
    .call_state(call_id) -> str | None
    Send, IncomingCall, CallCancelled, CallEnded, Acked, InfoDigit, MediaAnswer, Action, UasError

Reliable provisionals (RFC 3262): when the INVITE requires or supports 100rel, every
provisional the application sends carries Require: 100rel and an RSeq and is resent from T1,
doubling, until its PRACK (answered 200; a PRACK acknowledging nothing outstanding 481); none
for 64*T1: 504 and CallEnded("no-prack"). A final response stops the resending.

Delayed offer (an INVITE without SDP, RFC 3261 13.2.1, RFC 3262 5): the application sends its
offer in a reliable provisional (only when the caller takes 100rel: an offer in an unreliable
one raises UasError) or in the 2xx; the caller's answer, in the PRACK or the ACK, comes back as
`MediaAnswer`, once.

Events: `IncomingCall` first; then `Acked` when our final response (2xx or not) is ACKed;
`MediaAnswer` with the caller's SDP answer to our offer (delayed offer only);
`InfoDigit` for each DTMF key the caller sends as SIP INFO (application/dtmf-relay or
application/dtmf) in the early or confirmed dialog;
`CallCancelled` (CANCEL before a final response) or `CallEnded("bye")` (the peer's BYE) or
`CallEnded("no-ack")` (our final response never ACKed; for a 2xx the UAS then sends BYE)
when the peer ends it. Nothing follows CallCancelled or CallEnded. Calls the peer has already
ended take the application methods as no-ops, and `hangup` is a no-op on a call already
ending, so the application needs no lock against those races; other misuse (answer after
reject, unknown status class) raises UasError.
"""

from __future__ import annotations

import enum
import heapq
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .dtmf import INFO_TYPES, DtmfInfoError, info_digit
from .sipmsg import (
    CSeq,
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    Via,
    make_response,
    param,
    parse,
    response_address,
    with_received,
)

__all__ = [
    "TRANSITIONS",
    "UAS",
    "Acked",
    "Action",
    "CallCancelled",
    "CallEnded",
    "IncomingCall",
    "InfoDigit",
    "MediaAnswer",
    "Send",
    "State",
    "Trigger",
    "UasError",
]

Addr = tuple[str, int]


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    addr: Addr


@dataclass(frozen=True, slots=True)
class IncomingCall:
    call_id: str
    request: Request
    offer_sdp: bytes  # empty: a delayed offer, ours goes in a reliable 183 or the 200
    remote: Addr
    reliable: bool = False  # the caller requires or supports 100rel (RFC 3262)


@dataclass(frozen=True, slots=True)
class CallCancelled:
    call_id: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    reason: str  # "bye": the peer sent BYE; "no-ack": our final response was never ACKed


@dataclass(frozen=True, slots=True)
class Acked:
    call_id: str


@dataclass(frozen=True, slots=True)
class InfoDigit:
    """A DTMF key the caller sent as SIP INFO in the (early) dialog."""

    call_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """The caller's SDP answer to the offer we sent for its INVITE without SDP."""

    call_id: str
    sdp: bytes


Action = Send | IncomingCall | CallCancelled | CallEnded | Acked | InfoDigit | MediaAnswer


class UasError(Exception):
    """The application asked for something the call's state does not allow."""


# ------------------------------------------------------------------------ the state table


class State(enum.Enum):
    PROCEEDING = "proceeding"  # INVITE received, no final response yet
    COMPLETED = "completed"  # non-2xx final sent, waiting for ACK (Timer G, H)
    CONFIRMED = "confirmed"  # non-2xx ACKed, absorbing ACK retransmissions (Timer I)
    ACCEPTED = "accepted"  # 2xx sent, waiting for ACK (2xx retransmitted like Timer G)
    ESTABLISHED = "established"  # 2xx ACKed: dialog confirmed
    CLOSING = "closing"  # our BYE sent (Timer E, F)
    TERMINATED = "terminated"


class Trigger(enum.Enum):
    PROVISIONAL = "provisional"  # application
    ANSWER = "answer"
    REJECT = "reject"
    HANGUP = "hangup"
    CANCEL = "cancel"  # peer
    BYE = "bye"
    ACK = "ack"
    BYE_ANSWERED = "bye-answered"
    RETRANSMIT = "retransmit"  # timers
    TIMEOUT = "timeout"


S, T = State, Trigger
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (S.PROCEEDING, T.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, T.ANSWER): S.ACCEPTED,
    (S.PROCEEDING, T.REJECT): S.COMPLETED,
    (S.PROCEEDING, T.HANGUP): S.COMPLETED,  # an unanswered call ends with 480
    (S.PROCEEDING, T.CANCEL): S.COMPLETED,  # 487
    (S.PROCEEDING, T.BYE): S.COMPLETED,  # BYE on the early dialog: 200, and 487 for the INVITE
    (S.COMPLETED, T.RETRANSMIT): S.COMPLETED,  # Timer G
    (S.COMPLETED, T.ACK): S.CONFIRMED,
    (S.COMPLETED, T.TIMEOUT): S.TERMINATED,  # Timer H
    (S.CONFIRMED, T.ACK): S.CONFIRMED,
    (S.CONFIRMED, T.TIMEOUT): S.TERMINATED,  # Timer I
    (S.ACCEPTED, T.RETRANSMIT): S.ACCEPTED,
    (S.ACCEPTED, T.ACK): S.ESTABLISHED,
    (S.ACCEPTED, T.BYE): S.TERMINATED,
    (S.ACCEPTED, T.HANGUP): S.ACCEPTED,  # the BYE waits for the ACK (RFC 3261 15)
    (S.ACCEPTED, T.TIMEOUT): S.CLOSING,  # no ACK in 64*T1: BYE (RFC 3261 13.3.1.4)
    (S.ESTABLISHED, T.ACK): S.ESTABLISHED,
    (S.ESTABLISHED, T.BYE): S.TERMINATED,
    (S.ESTABLISHED, T.HANGUP): S.CLOSING,
    (S.CLOSING, T.ACK): S.CLOSING,
    (S.CLOSING, T.BYE): S.CLOSING,  # BYEs crossed: answer theirs, keep ours going
    (S.CLOSING, T.RETRANSMIT): S.CLOSING,  # Timer E
    (S.CLOSING, T.BYE_ANSWERED): S.TERMINATED,
    (S.CLOSING, T.TIMEOUT): S.TERMINATED,  # Timer F
}
del S, T

# RFC 3261 21 reason phrases for what this module sends.
REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
}
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, PRACK"
EXTENSIONS = frozenset({"100rel"})  # what a Require may name (RFC 3262 reliable provisionals)
KNOWN_METHODS = frozenset({"REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"})
SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type")
REQUIRED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
SDP = "application/sdp"
_CALL_ID = re.compile(r"\S+")
_MAX_FORWARDS = re.compile(r"[0-9]{1,5}")
_DATE = re.compile(r"[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT")
_COOKIE = "z9hG4bK"

TxKey = tuple[str, ...]
Problem = tuple[int, str, tuple[tuple[str, str], ...]]


def reason_for(status: int) -> str:
    return REASONS.get(
        status, {1: "Progress", 2: "OK", 3: "Redirect", 4: "Request Failure"}.get(status // 100, "Failure")
    )


@dataclass(eq=False, slots=True)
class _Call:
    call_id: str
    invite: Request  # top Via already stamped with received/rport
    key: TxKey
    reply_to: Addr
    local_tag: str
    detached: bool = False  # no events: refused INVITEs, re-INVITEs, superseded calls
    state: State = State.PROCEEDING
    closed_by_peer: bool = False
    last_response: bytes = b""
    retransmit_at: float | None = None
    interval: float = 0.0
    give_up_at: float | None = None
    hangup_pending: bool = False
    # dialog: what a BYE needs (RFC 3261 12.1.1)
    remote_tag: str = ""
    route_set: tuple[str, ...] = ()
    remote_target: str = ""
    bye: bytes = b""
    bye_branch: str = ""
    bye_addr: Addr = ("", 0)
    # RFC 3262: the caller supports or requires 100rel, so provisionals go reliably
    reliable: bool = False
    rseq: int = 0  # the last RSeq sent
    unpracked: bytes = b""  # the reliable provisional waiting for its PRACK (retransmitted)
    prack_at: float | None = None
    prack_interval: float = 0.0
    prack_give_up: float | None = None
    # delayed offer: the INVITE had no SDP; our offer went out, its answer has not come yet
    delayed_offer: bool = False
    offer_sent: bool = False

    def next_deadline(self) -> float | None:
        times = [t for t in (self.retransmit_at, self.give_up_at, self.prack_at, self.prack_give_up) if t is not None]
        return min(times) if times else None


@dataclass(eq=False, slots=True)
class _Answered:
    """A non-INVITE server transaction after its final response (Timer J)."""

    key: tuple[TxKey, str]
    response: bytes
    addr: Addr
    expires_at: float


class UAS:
    def __init__(
        self,
        local_addr: Addr,
        allowed_sources: Iterable[str],
        *,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        new_token: Callable[[], str] | None = None,
    ) -> None:
        self.local_addr = local_addr
        self.allowed_sources = frozenset(allowed_sources)
        self.t1, self.t2, self.t4 = t1, t2, t4
        self._token = new_token or (lambda: secrets.token_hex(8))
        host = f"[{local_addr[0]}]" if ":" in local_addr[0] else local_addr[0]
        self._hostport = f"{host}:{local_addr[1]}"
        self.contact = f"<sip:{self._hostport}>"
        self._now = 0.0
        self._calls: dict[str, _Call] = {}
        self._invites: dict[TxKey, _Call] = {}
        self._answered: dict[tuple[TxKey, str], _Answered] = {}
        self._byes: dict[str, _Call] = {}
        self._timers: list[tuple[float, int, _Call | _Answered]] = []
        self._timer_seq = 0

    # ----------------------------------------------------------------- network input

    def receive(self, data: bytes, addr: Addr, now: float) -> list[Action]:
        """Handle one datagram from `addr`."""
        self._now = now
        allowed = addr[0] in self.allowed_sources
        try:
            message = parse(data)
        except SipParseError as exc:
            return self._unparsable(exc, addr) if allowed else []
        if isinstance(message, Response):
            return self._on_response(message) if allowed else []
        try:
            request = with_received(message, addr)
            via = Via.parse(request.headers.values("Via")[0])
        except SipParseError:
            return self._bad_via(message, addr) if allowed else []
        reply_to = response_address(via, addr)
        if not allowed:
            if request.method != "INVITE":
                return []
            response = make_response(request, 403, reason_for(403), to_tag=self._token())
            return [Send(response.serialize(), reply_to)]
        return self._on_request(request, _tx_key(via, request), reply_to, addr)

    def tick(self, now: float) -> list[Action]:
        """Fire the timers that are due at `now`."""
        self._now = now
        actions: list[Action] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, owner = heapq.heappop(self._timers)
            if isinstance(owner, _Answered):
                if self._answered.get(owner.key) is owner and owner.expires_at <= now:
                    del self._answered[owner.key]
                continue
            if owner.state is State.TERMINATED:
                continue
            if owner.prack_at is not None and owner.state is State.PROCEEDING:
                actions += self._reliable_timer(owner, now)
                continue
            if owner.give_up_at is not None and owner.give_up_at <= now:
                actions += self._fire(owner, Trigger.TIMEOUT)
            elif owner.retransmit_at is not None and owner.retransmit_at <= now:
                actions += self._fire(owner, Trigger.RETRANSMIT)
        return actions

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (possibly earlier), or None."""
        return self._timers[0][0] if self._timers else None

    def call_state(self, call_id: str) -> str | None:
        call = self._calls.get(call_id)
        return None if call is None else call.state.value

    # --------------------------------------------------------------- application input

    def provisional(
        self,
        call_id: str,
        status: int = 183,
        sdp: bytes = b"",
        *,
        headers: Iterable[tuple[str, str]] = (),
        now: float | None = None,
    ) -> list[Action]:
        """Send a 101-199 response on the call, with `sdp` (early media) when given."""
        if not 100 < status < 200:
            raise UasError("provisional status must be 101-199")
        return self._app(call_id, Trigger.PROVISIONAL, now, status, reason_for(status), tuple(headers), sdp)

    def answer(
        self,
        call_id: str,
        status: int = 200,
        sdp: bytes = b"",
        *,
        headers: Iterable[tuple[str, str]] = (),
        now: float | None = None,
    ) -> list[Action]:
        """Accept the call with a 2xx carrying `sdp`; retransmitted until ACKed."""
        if not 200 <= status < 300:
            raise UasError("answer status must be 2xx")
        return self._app(call_id, Trigger.ANSWER, now, status, reason_for(status), tuple(headers), sdp)

    def reject(
        self,
        call_id: str,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        *,
        now: float | None = None,
    ) -> list[Action]:
        """End an unanswered call with a 3xx-6xx (e.g. 480 + `X-VO-Result: key=1`)."""
        if not 300 <= status < 700:
            raise UasError("reject status must be 300-699")
        return self._app(call_id, Trigger.REJECT, now, status, reason or reason_for(status), tuple(headers), b"")

    def hangup(self, call_id: str, *, now: float | None = None) -> list[Action]:
        """End the call: BYE when answered (after its ACK), 480 when not yet answered."""
        return self._app(call_id, Trigger.HANGUP, now, 480, reason_for(480), (), b"")

    # ------------------------------------------------------------------- transitions

    def _app(
        self,
        call_id: str,
        trigger: Trigger,
        now: float | None,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...],
        sdp: bytes,
    ) -> list[Action]:
        if now is not None:
            self._now = now
        call = self._calls.get(call_id)
        if call is None:
            return []
        if (call.state, trigger) not in TRANSITIONS:
            if call.closed_by_peer or trigger is Trigger.HANGUP or call.state in (State.CLOSING, State.TERMINATED):
                return []  # the call is already ending
            raise UasError(f"{trigger.value} not allowed in state {call.state.value}")
        if trigger is Trigger.HANGUP and call.state is State.ACCEPTED:
            call.hangup_pending = True
            return []
        if trigger is Trigger.HANGUP and call.state is State.ESTABLISHED:
            return self._fire(call, Trigger.HANGUP)
        extra = headers
        reliable = trigger is Trigger.PROVISIONAL and call.reliable
        if sdp and call.delayed_offer:
            if trigger is Trigger.PROVISIONAL and not reliable:
                raise UasError("an offer in a provisional needs 100rel (RFC 3262 5)")
            if call.offer_sent:
                raise UasError("our offer is already out (RFC 3264: one at a time)")
            call.offer_sent = True
        if reliable:
            call.rseq += 1
            headers = (("Require", "100rel"), ("RSeq", str(call.rseq)), *headers)
        if status < 300:
            extra = (("Contact", self.contact), *(() if status < 200 else (("Allow", ALLOW), ("Supported", "100rel"))), *headers)
        response = make_response(
            call.invite,
            status,
            reason,
            to_tag=call.local_tag,
            headers=extra,
            body=sdp,
            content_type=SDP if sdp else None,
        ).serialize()
        if reliable:  # retransmitted from T1, doubling, until its PRACK (RFC 3262 3)
            call.unpracked = response
            call.prack_interval = self.t1
            call.prack_at = self._now + self.t1
            call.prack_give_up = self._now + 64 * self.t1
            self._schedule(call)
        return self._fire(call, trigger, response)

    def _fire(self, call: _Call, trigger: Trigger, response: bytes = b"") -> list[Action]:
        """Move `call` along TRANSITIONS and return what that transition does."""
        old = call.state
        new = TRANSITIONS[(old, trigger)]
        call.state = new
        now = self._now
        if new is not State.PROCEEDING:  # a final response ends the PRACK wait (RFC 3262 3)
            self._stop_reliable(call)
        actions: list[Action] = []
        if trigger is Trigger.RETRANSMIT:
            if old is State.CLOSING:
                actions.append(Send(call.bye, call.bye_addr))
            else:
                actions.append(Send(call.last_response, call.reply_to))
            call.interval = min(call.interval * 2, self.t2)
            call.retransmit_at = now + call.interval
            self._schedule(call)
            return actions
        if response:
            call.last_response = response
            actions.append(Send(response, call.reply_to))
            if new in (State.COMPLETED, State.ACCEPTED):  # a final response: Timer G and H
                call.interval = self.t1
                call.retransmit_at = now + self.t1
                call.give_up_at = now + 64 * self.t1
                self._schedule(call)
        if new is State.CONFIRMED and old is State.COMPLETED:  # Timer I
            call.retransmit_at = None
            call.give_up_at = now + self.t4
            self._schedule(call)
            if not call.closed_by_peer:  # the application saw CallCancelled or CallEnded
                actions += self._event(call, Acked(call.call_id))
        elif new is State.ESTABLISHED and old is State.ACCEPTED:
            call.retransmit_at = call.give_up_at = None
            actions += self._event(call, Acked(call.call_id))
            if call.hangup_pending:
                actions += self._fire(call, Trigger.HANGUP)
        elif new is State.CLOSING and old is not State.CLOSING:
            if old is State.ACCEPTED:
                actions += self._event(call, CallEnded(call.call_id, "no-ack"))
            actions += self._send_bye(call)
        elif new is State.TERMINATED:
            if old is State.COMPLETED and trigger is Trigger.TIMEOUT and not call.closed_by_peer:
                actions += self._event(call, CallEnded(call.call_id, "no-ack"))
            self._forget(call)
        return actions

    def _reliable_timer(self, call: _Call, now: float) -> list[Action]:
        """A reliable provisional still without its PRACK: resend it, or after 64*T1 give the
        call up with 504 (RFC 3262 3: "SHOULD reject the original request with a 5xx")."""
        assert call.prack_at is not None and call.prack_give_up is not None
        if call.prack_give_up <= now:
            self._stop_reliable(call)
            call.closed_by_peer = True
            response = make_response(call.invite, 504, "No PRACK", to_tag=call.local_tag).serialize()
            return self._fire(call, Trigger.REJECT, response) + self._event(call, CallEnded(call.call_id, "no-prack"))
        if call.prack_at > now:
            return []  # an older timer entry: the current one is still queued
        call.prack_interval *= 2
        call.prack_at = now + call.prack_interval
        self._schedule(call)
        return [Send(call.unpracked, call.reply_to)]

    @staticmethod
    def _stop_reliable(call: _Call) -> None:
        call.prack_at = call.prack_give_up = None

    def _event(self, call: _Call, event: Action) -> list[Action]:
        return [] if call.detached else [event]

    def _schedule(self, owner: _Call | _Answered) -> None:
        deadline = owner.expires_at if isinstance(owner, _Answered) else owner.next_deadline()
        if deadline is not None:
            self._timer_seq += 1
            heapq.heappush(self._timers, (deadline, self._timer_seq, owner))

    def _forget(self, call: _Call) -> None:
        call.retransmit_at = call.give_up_at = None
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        if self._invites.get(call.key) is call:
            del self._invites[call.key]
        self._byes.pop(call.bye_branch, None)

    # ------------------------------------------------------------------ requests

    def _on_request(self, request: Request, key: TxKey, reply_to: Addr, source: Addr) -> list[Action]:
        method = request.method
        if method == "ACK":
            return self._on_ack(request, key)
        if method == "INVITE":
            call = self._invites.get(key)
            if call is not None:  # a retransmission
                if call.state in (State.ESTABLISHED, State.CLOSING) or not call.last_response:
                    return []
                return [Send(call.last_response, call.reply_to)]
        else:
            done = self._answered.get((key, method))
            if done is not None:
                return [Send(done.response, done.addr)]
        problem = _syntax_problem(request) or _method_problem(method) or _header_problem(request)
        if problem is not None:
            return self._refuse(request, key, reply_to, problem)
        if method == "INVITE":
            return self._on_invite(request, key, reply_to, source)
        if method == "CANCEL":
            return self._on_cancel(request, key, reply_to)
        if method == "BYE":
            return self._on_bye(request, key, reply_to)
        if method == "INFO":
            return self._on_info(request, key, reply_to)
        if method == "PRACK":
            return self._on_prack(request, key, reply_to)
        # OPTIONS
        return self._answer(request, key, reply_to, 200, (("Allow", ALLOW), ("Accept", SDP)))

    def _on_invite(self, request: Request, key: TxKey, reply_to: Addr, source: Addr) -> list[Action]:
        headers = request.headers
        call_id = headers.get("Call-ID") or ""
        to = NameAddr.parse(headers.get("To") or "")
        existing = self._calls.get(call_id)
        if to.tag is not None:  # re-INVITE
            known = existing is not None and existing.local_tag == to.tag
            return self._refuse(request, key, reply_to, (488 if known else 481, reason_for(488 if known else 481), ()))
        if existing is not None:
            if existing.state not in (State.COMPLETED, State.CONFIRMED):
                return self._refuse(request, key, reply_to, (482, reason_for(482), ()))
            existing.detached = True  # Kamailio relays the same call again: the old one is done
            del self._calls[call_id]
        from_ = NameAddr.parse(headers.get("From") or "")
        contacts = headers.values("Contact")
        call = _Call(
            call_id=call_id,
            invite=request,
            key=key,
            reply_to=reply_to,
            local_tag=self._token(),
            remote_tag=from_.tag or "",
            route_set=tuple(headers.values("Record-Route")),
            remote_target=NameAddr.parse(contacts[0]).uri if contacts else from_.uri,
        )
        call.reliable = "100rel" in _option_tags(headers, "Require") | _option_tags(headers, "Supported")
        offer = request.body if request.body and _is_sdp(headers.get("Content-Type")) else b""
        call.delayed_offer = not offer
        self._calls[call_id] = call
        self._invites[key] = call
        trying = make_response(request, 100, reason_for(100)).serialize()
        call.last_response = trying
        return [Send(trying, reply_to), IncomingCall(call_id, request, offer, source, call.reliable)]

    def _on_cancel(self, request: Request, key: TxKey, reply_to: Addr) -> list[Action]:
        call = self._invites.get(key)
        if call is None:
            return self._answer(request, key, reply_to, 481)
        actions = self._answer(request, key, reply_to, 200, to_tag=call.local_tag)
        if call.state is State.PROCEEDING:
            call.closed_by_peer = True
            response = make_response(call.invite, 487, reason_for(487), to_tag=call.local_tag)
            actions += self._fire(call, Trigger.CANCEL, response.serialize())
            actions += self._event(call, CallCancelled(call.call_id))
        return actions

    def _on_bye(self, request: Request, key: TxKey, reply_to: Addr) -> list[Action]:
        call = self._dialog(request)
        if call is None or (call.state, Trigger.BYE) not in TRANSITIONS:
            return self._answer(request, key, reply_to, 481)
        actions = self._answer(request, key, reply_to, 200)
        if call.state is State.CLOSING:
            return actions
        was = call.state
        call.closed_by_peer = True
        response = b""
        if was is State.PROCEEDING:
            response = make_response(call.invite, 487, reason_for(487), to_tag=call.local_tag).serialize()
        actions += self._fire(call, Trigger.BYE, response)
        return actions + self._event(call, CallEnded(call.call_id, "bye"))

    def _on_prack(self, request: Request, key: TxKey, reply_to: Addr) -> list[Action]:
        """PRACK of our reliable provisional (RAck: RSeq, the INVITE's CSeq and method): 200,
        and no more retransmissions; one that acknowledges nothing outstanding: 481."""
        call = self._dialog(request)
        rack = (request.headers.get("RAck") or "").split()
        invite_cseq = CSeq.parse(call.invite.headers.get("CSeq") or "") if call is not None else None
        if (
            call is None
            or invite_cseq is None
            or not call.unpracked
            or len(rack) != 3
            or rack != [str(call.rseq), str(invite_cseq.number), invite_cseq.method]
        ):
            return self._answer(request, key, reply_to, 481)
        call.unpracked = b""
        self._stop_reliable(call)
        return self._answer(request, key, reply_to, 200) + self._media_answer(call, request)

    def _media_answer(self, call: _Call, request: Request) -> list[Action]:
        """The answer to our offer, in the PRACK or the ACK that must carry it (RFC 3262 5,
        RFC 3261 13.2.1); one without SDP comes as an empty answer, which the application
        refuses like a bad one (no media was agreed: the call must not wait for it)."""
        if not call.offer_sent:
            return []
        call.offer_sent = call.delayed_offer = False
        answer = request.body if request.body and _is_sdp(request.headers.get("Content-Type")) else b""
        return self._event(call, MediaAnswer(call.call_id, answer))

    def _on_info(self, request: Request, key: TxKey, reply_to: Addr) -> list[Action]:
        """DTMF as SIP INFO (application/dtmf-relay or application/dtmf) in the early or
        confirmed dialog: 200 and the key; an empty INFO (a keep-alive) 200; any other body 415."""
        call = self._dialog(request)
        if call is None or call.state not in (State.PROCEEDING, State.ACCEPTED, State.ESTABLISHED):
            return self._answer(request, key, reply_to, 481)
        if not request.body:
            return self._answer(request, key, reply_to, 200)
        content_type = (request.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if content_type not in INFO_TYPES:
            return self._answer(request, key, reply_to, 415, (("Accept", ", ".join(INFO_TYPES)),))
        try:
            digit = info_digit(content_type, request.body)
        except DtmfInfoError:
            return self._answer(request, key, reply_to, 400, reason="Bad DTMF")
        return self._answer(request, key, reply_to, 200) + self._event(call, InfoDigit(call.call_id, digit))

    def _on_ack(self, request: Request, key: TxKey) -> list[Action]:
        if _syntax_problem(request) is not None:
            return []
        call = self._invites.get(key)
        if call is None or call.state not in (State.COMPLETED, State.CONFIRMED):
            call = self._dialog(request)  # ACK for a 2xx is a transaction of its own
        if call is None or (call.state, Trigger.ACK) not in TRANSITIONS:
            return []
        answer = self._media_answer(call, request) if call.state is State.ACCEPTED else []
        return answer + self._fire(call, Trigger.ACK)

    def _dialog(self, request: Request) -> _Call | None:
        """The call whose dialog `request` belongs to (Call-ID, To tag, From tag), if any."""
        call = self._calls.get(request.headers.get("Call-ID") or "")
        if call is None:
            return None
        try:
            to_tag = NameAddr.parse(request.headers.get("To") or "").tag
            from_tag = NameAddr.parse(request.headers.get("From") or "").tag or ""
        except SipParseError:
            return None
        if to_tag != call.local_tag or from_tag != call.remote_tag:
            return None
        return call

    def _answer(
        self,
        request: Request,
        key: TxKey,
        reply_to: Addr,
        status: int,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        to_tag: str | None = None,
        reason: str | None = None,
    ) -> list[Action]:
        """Answer a non-INVITE request and remember the answer for its retransmissions."""
        response = make_response(
            request, status, reason or reason_for(status), to_tag=to_tag or self._token(), headers=headers
        )
        done = _Answered((key, request.method), response.serialize(), reply_to, self._now + 64 * self.t1)
        self._answered[done.key] = done
        self._schedule(done)
        return [Send(done.response, reply_to)]

    def _refuse(self, request: Request, key: TxKey, reply_to: Addr, problem: Problem) -> list[Action]:
        """Answer a request that does not reach the application; an INVITE's answer is a
        real INVITE server transaction (Timer G/H), detached from any call."""
        status, reason, headers = problem
        if request.method != "INVITE":
            return self._answer(request, key, reply_to, status, headers, reason=reason)
        call = _Call(request.headers.get("Call-ID") or "", request, key, reply_to, self._token(), detached=True)
        self._invites[key] = call
        response = make_response(request, status, reason, to_tag=call.local_tag, headers=headers)
        return self._fire(call, Trigger.REJECT, response.serialize())

    def _unparsable(self, exc: SipParseError, source: Addr) -> list[Action]:
        """Answer a request that failed to parse, when its header lines could be read."""
        if exc.headers is None or exc.method is None:
            return []
        return self._bad_via(Request(exc.method, "sip:invalid", exc.headers), source, exc.status, exc.reason)

    def _bad_via(self, request: Request, source: Addr, status: int = 400, reason: str = "Bad Via") -> list[Action]:
        """Statelessly answer a broken request (never an ACK) that has some Via: to the
        stamped top Via's address when it parses, else straight back to the source."""
        if request.method == "ACK" or "Via" not in request.headers:
            return []
        reply_to = source
        try:
            request = with_received(request, source)
            reply_to = response_address(Via.parse(request.headers.values("Via")[0]), source)
        except SipParseError:
            pass
        response = make_response(request, status, reason, to_tag=self._token())
        return [Send(response.serialize(), reply_to)]

    # ------------------------------------------------------------------ our BYE

    def _send_bye(self, call: _Call) -> list[Action]:
        """Build and send the in-dialog BYE (RFC 3261 12.2.1.1), start Timers E and F."""
        invite = call.invite.headers
        routes = [NameAddr.parse(value) for value in call.route_set]
        target = call.remote_target
        route_values = [r.serialize() for r in routes]
        if routes and param(SipUri.parse(routes[0].uri).params, "lr") is None:  # strict router
            request_uri = _strip_uri_params(routes[0].uri)
            route_values = [*route_values[1:], f"<{target}>"]
            next_hop = SipUri.parse(request_uri).target()
        else:
            request_uri = target
            next_hop = SipUri.parse(routes[0].uri if routes else target).target()
        call.bye_branch = _COOKIE + self._token()
        fields: list[tuple[str, str]] = [
            ("Via", f"SIP/2.0/UDP {self._hostport};branch={call.bye_branch};rport"),
            ("Max-Forwards", "70"),
            *(("Route", value) for value in route_values),
            ("From", f"{invite.get('To')};tag={call.local_tag}"),
            ("To", invite.get("From") or ""),
            ("Call-ID", call.call_id),
            ("CSeq", CSeq(1, "BYE").serialize()),
        ]
        call.bye = Request("BYE", request_uri, Headers(tuple(fields))).serialize()
        call.bye_addr = next_hop
        self._byes[call.bye_branch] = call
        call.interval = self.t1
        call.retransmit_at = self._now + self.t1
        call.give_up_at = self._now + 64 * self.t1
        self._schedule(call)
        return [Send(call.bye, call.bye_addr)]

    def _on_response(self, response: Response) -> list[Action]:
        vias = response.headers.values("Via")
        try:
            branch = Via.parse(vias[0]).branch if vias else None
        except SipParseError:
            return []
        call = self._byes.get(branch or "")
        if call is None or response.status < 200 or call.state is not State.CLOSING:
            return []
        return self._fire(call, Trigger.BYE_ANSWERED)


# ------------------------------------------------------------------------ checks


def _tx_key(via: Via, request: Request) -> TxKey:
    """RFC 3261 17.2.3: branch + sent-by, or the RFC 2543 fields without the magic cookie."""
    branch = via.branch or ""
    if branch.startswith(_COOKIE) and len(branch) > len(_COOKIE):
        return ("3261", branch, via.sent_by)
    headers = request.headers
    try:
        from_tag = NameAddr.parse(headers.get("From") or "").tag or ""
        number = str(CSeq.parse(headers.get("CSeq") or "").number)
    except SipParseError:
        from_tag, number = "", ""
    return ("2543", headers.get("Call-ID") or "", from_tag, number, via.sent_by)


def _syntax_problem(request: Request) -> Problem | None:
    headers = request.headers
    for name in REQUIRED_HEADERS:
        if name not in headers:
            return (400, f"Missing {name}", ())
    for name in SINGLE_HEADERS:
        if len(headers.get_all(name)) > 1:
            return (400, f"Duplicate {name}", ())
    try:
        for name in ("From", "To"):
            NameAddr.parse(headers.get(name) or "")
        cseq = CSeq.parse(headers.get("CSeq") or "")
    except SipParseError as exc:
        return (400, exc.reason, ())
    if cseq.method != request.method:
        return (400, "CSeq method mismatch", ())
    if _CALL_ID.fullmatch(headers.get("Call-ID") or "") is None:
        return (400, "Bad Call-ID", ())
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and (_MAX_FORWARDS.fullmatch(max_forwards) is None or int(max_forwards) > 255):
        return (400, "Bad Max-Forwards", ())
    date = headers.get("Date")
    if date is not None and _DATE.fullmatch(date) is None:
        return (400, "Bad Date", ())
    return None


def _method_problem(method: str) -> Problem | None:
    if method in ("INVITE", "CANCEL", "BYE", "OPTIONS", "INFO", "PRACK"):
        return None
    if method in KNOWN_METHODS:
        return (405, reason_for(405), (("Allow", ALLOW),))
    return (501, reason_for(501), ())


def _header_problem(request: Request) -> Problem | None:
    headers = request.headers
    scheme = request.uri.partition(":")[0].lower()
    if scheme not in ("sip", "sips"):
        return (416, reason_for(416), ())
    try:
        uri = SipUri.parse(request.uri)
    except SipParseError:
        return (400, "Bad Request-URI", ())
    if uri.headers:
        return (400, "Headers in Request-URI", ())
    if request.method != "CANCEL":
        unsupported = sorted(_option_tags(headers, "Require") - EXTENSIONS)
        if unsupported:
            return (420, reason_for(420), (("Unsupported", ", ".join(unsupported)),))
    if request.method != "INVITE":
        return None
    try:
        contacts = headers.values("Contact")
        if len(contacts) > 1:
            return (400, "Multiple Contact", ())
        for value in contacts + headers.values("Record-Route"):
            SipUri.parse(NameAddr.parse(value).uri)
    except SipParseError:
        return (400, "Bad Contact or Record-Route", ())
    if request.body and not _is_sdp(headers.get("Content-Type")):
        return (415, reason_for(415), (("Accept", SDP),))
    encoding = headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() != "identity":
        return (415, reason_for(415), (("Accept-Encoding", "identity"),))
    accept = [value.split(";")[0].strip().lower() for value in headers.values("Accept")]
    if "Accept" in headers and not {SDP, "application/*", "*/*"} & set(accept):
        return (406, reason_for(406), (("Accept", SDP),))
    return None


def _option_tags(headers: Headers, name: str) -> set[str]:
    """The option tags of every `name` header (Require, Supported), lower case."""
    return {tag.strip().lower() for value in headers.values(name) for tag in value.split(",") if tag.strip()}


def _is_sdp(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";")[0].strip().lower() == SDP


def _strip_uri_params(uri: str) -> str:
    parsed = SipUri.parse(uri)
    allowed = tuple((n, v) for n, v in parsed.params if n.lower() not in ("lr", "maddr", "ttl", "method"))
    user = f"{parsed.user}@" if parsed.user is not None else ""
    port = "" if parsed.port is None else f":{parsed.port}"
    params = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in allowed)
    return f"{parsed.scheme}:{user}{parsed.host}{port}{params}"
