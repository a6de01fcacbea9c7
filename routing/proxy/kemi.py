"""Kamailio KEMI adapter: the call path of DESIGN.md section 5, as a list of small steps.

This module only moves data between Kamailio and the engine: every decision is made by
`engine.decide`, `scenario.feed`, `ringing_plan` and `call_step`. A call's state lives in
the transaction's AVPs (account, version, node, ...), never in a global, so every worker
can continue any call, and a config load mid-call leaves running calls on their version.

Request route:   a spiral from ourselves (a wave member under their own ring timer:
                 branch_timer) | admit (ban, flood) -> CANCEL -> within dialog ->
                 scanners -> OPTIONS -> INVITE only -> strip X-VO-* -> number -> account (404 if unknown) ->
                 decide (the account's manual override, if in force, before the rules) -> run(node)
run(node):       ring a wave of operators | relay to a media server with X-VO-Op
branch route:    per branch: rtpengine offer (via-branch), X-VO-* for media branches;
                 operator branches: their own Call-ID, no Require: 100rel, TCP when large
reply route:     rtpengine answer for SDP replies (offer, for an INVITE without SDP: its
                 answer comes in the PRACK or ACK); the first 200 is remembered; a branch
                 that fails releases its own media leg
failure route:   caller cancelled -> missed | media server down -> next one |
                 next wave of the plan | event -> scenario.feed -> run(next node) or end
BYE:             the call record of an answered call, with its talk time
stray reply:     a reply that matches no transaction is dropped, never relayed
several nodes:   KDMQ on the DMQ socket -> dmq; an in-dialog request for another node is
                 relayed to it untouched; an expired answered call is recorded by its owner
                 node, or by one survivor when the owner is dead (docs/cluster.md)

Every entry into Python and every KSR call costs CPU on the SIP path (docs/performance.md),
so the per-call work is kept to what the routing needs: one `$rm`/`$si` read per request,
no JSON in the branch, reply or BYE routes of an operator call, and the call record is
put together by the event-shipping timer process, not by the SIP worker.
"""

from __future__ import annotations

import gc
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import KSR  # provided by Kamailio's app_python3

from routing.core.clock import now
from routing.core.day_type import preload_calendars
from routing.core.engine import CompiledAccount, decide
from routing.core.media_contract import encode_op
from routing.core.scenario import Cursor, EventError, feed, operation_of
from routing.proxy import branch_call_id, branch_timer, call_record, cluster, operator_leg
from routing.proxy.call_step import MediaStep, RingWaves, action_for, event_from_reply, operator_uri
from routing.store.configs import redis_url
from routing.store.node_store import NodeReader, reader_from_env
from routing.store.reader import ConfigReader, StoreUnavailable, cache_limit_from_env, preload_from_env

SCANNERS = re.compile(r"friendly-scanner|sipvicious|sipcli|sip-scan|vaxsipuseragent|sundayddr|iwar|sipsak-scan|pplsip|smap", re.I)
GATEWAY = os.environ.get("VOFFICE_OPERATOR_GATEWAY", "127.0.0.1:5080")
MEDIA_SET = int(os.environ.get("VOFFICE_MEDIA_SET", "1"))
TRUSTED_TRUNKS = frozenset(filter(None, os.environ.get("VOFFICE_TRUSTED_TRUNKS", "").split(",")))
# Every branch its own media leg in rtpengine: the offer (branch route) takes the branch
# ID tm generates for that branch ("next"), a reply the first Via's, which is that branch's
# (`auto` would take the caller's Via branch for both: one leg shared by every branch).
RTP_FLAGS = "via-branch=auto-next replace-origin replace-session-connection"
RTP_BRANCH = "via-branch=1"  # a reply's own branch
RTP_DIALOG = "replace-origin replace-session-connection"  # in-dialog offers and answers
# A transaction flag (kept by tm, seen again in the reply route): the caller's INVITE had no
# SDP, so an SDP reply carries the offer and the caller's PRACK or ACK the answer.
FLAG_DELAYED_OFFER = 5
# RFC 3261 18.1.1: an operator branch that would be larger than this leaves over TCP; set
# (1300) when Kamailio listens on TCP (`voffice up --transport udp,tcp`), else 0: never.
UDP_MAX_BYTES = int(os.environ.get("VOFFICE_UDP_MAX_BYTES", "0") or 0)
EVENTS_STREAM = "voffice:events"
EVENTS_QUEUE = "voevents"  # kamailio.cfg: mqueue + rtimer
ACKED = "|acked"  # vocalls key suffix: the caller ACKed the answer of the call with this Call-ID
MAX_UNSENT = 100_000
MAX_UNCONFIRMED = 3  # ticks a batch is sent again while no replica confirms it (Sentinel only)
NO_RING_FR_MS = 5000  # an operator gateway that does not even answer 100 in time: move on
MEDIA_FR_MS = 2000  # a media server that does not answer 100 in time: the next one
# tm ends an INVITE transaction at its lifetime whatever its branches do, and a whole
# scenario runs in one transaction: each step sets it to what that step may take, from now.
LIFETIME_MARGIN_MS = 2000
NONINV_LIFETIME_MS = 32000  # tm's default
# Several identical nodes (docs/cluster.md): this node's id and its DMQ port (kamailio.cfg
# VO_DMQ_LISTEN); unset: one node, no DMQ, nothing below changes what it does.
NODE = os.environ.get("VOFFICE_NODE", "")
DMQ_PORT = int(os.environ.get("VOFFICE_DMQ_PORT", "0") or 0)


# An rtpengine command that fails at once (no timeout) is a send error, not a dead rtpengine:
# a worker whose last command went to an rtpengine that had died keeps the ICMP "port
# unreachable" pending on its socket, and its first send after the restart fails with it
# (Kamailio logs "can't send command"; the module then disables the instance). One retry
# sends anew; a timeout (a dead rtpengine, >= rtpengine_tout_ms) is not retried.
RTP_FAST_FAILURE_S = 0.2


def rtp(command: Callable[[str], int], flags: str) -> int:
    started = time.monotonic()
    result = command(flags)
    if result < 0 and time.monotonic() - started < RTP_FAST_FAILURE_S:
        result = command(flags)
    return result


def set_call_id(call_id: str) -> None:
    """Replace the Call-ID of the message being relayed (only ever a branch_call_id value)."""
    KSR.hdr.remove("Call-ID")
    KSR.hdr.append(f"Call-ID: {call_id}\r\n")


def rtp_call_id(call_id: str, caller_call_id: str) -> str:
    """rtpengine knows a call by the caller's Call-ID: the flag that says it, for a message
    that carries a branch's (none when the two are the same)."""
    return f" call-id={caller_call_id}" if caller_call_id != call_id else ""


def mod_init() -> VofficeRouting:
    # Before the fork: every worker shares the national calendars' code.
    preload_calendars()
    return VofficeRouting()


def _load() -> dict[str, Any]:
    """The call's state: one JSON AVP of the transaction (one get, not a dozen)."""
    raw = KSR.pv.get("$avp(vo)")
    return json.loads(raw) if raw else {}


def _save(st: dict[str, Any], replace: bool) -> None:
    if replace:
        KSR.pv.unset("$avp(vo)")  # an AVP assignment adds a value; keep exactly one
    KSR.pv.sets("$avp(vo)", json.dumps(st, separators=(",", ":")))


class VofficeRouting:
    def __init__(self) -> None:
        self.reader: ConfigReader | NodeReader | None = None
        # Made before the fork, so every worker knows the spirals of every other one.
        self.spiral_key = secrets.token_hex(16)
        self._events: Any = None
        self._store_warned = 0.0
        self._unsent: list[dict[str, str]] = []  # only in the event-shipping timer process
        self._unconfirmed = 0  # ticks the batch in _unsent went out without a replica's WAIT
        self._ended: list[str] = []  # Call-IDs of ended calls in _unsent whose copies every node keeps

    def child_init(self, rank: int) -> int:
        # Connections are opened lazily by the reader, in this (forked) worker.
        self.reader = reader_from_env(os.environ, redis_url(None), max_accounts=cache_limit_from_env(os.environ))
        if rank > 0:  # a SIP worker: subscribe to config loads now, not on its first call,
            # and read every account if there are few: no cold miss while Redis fails over
            self.reader.warm(preload=preload_from_env(os.environ))
        # Every call allocates a few hundred short-lived objects; with the default
        # thresholds the cyclic GC runs every couple of calls and now and then walks every
        # object of the process (modules, cached configs). Freeze what exists after start-up
        # and collect rarely: reference counting frees almost everything anyway.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        return 0

    # --- request route ------------------------------------------------------------------

    def ksr_request_route(self, msg: Any) -> int:
        source = KSR.pv.get("$si")
        method = KSR.pv.get("$rm")
        if DMQ_PORT and (method == "KDMQ" or KSR.pv.get("$Rp") == DMQ_PORT):
            # the nodes' bus: KDMQ on the DMQ socket only, and nothing else there
            if method == "KDMQ" and KSR.pv.get("$Rp") == DMQ_PORT:
                KSR.dmq.handle_message()
            return 1
        ourselves = KSR.is_myself_suri() is True  # source address and port: one of our sockets
        if ourselves and method == "INVITE" and not KSR.siputils.has_totag() > 0:
            self.ring_one_branch()
            return 1
        if not ourselves and source not in TRUSTED_TRUNKS and not self.admit(source):
            return 1
        in_dialog = KSR.siputils.has_totag() > 0
        if not in_dialog and SCANNERS.search(KSR.pv.get("$ua") or ""):
            return 1  # scanners get no answer at all
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.sanity.sanity_check(17895, 7) < 0:
            return 1
        if method == "CANCEL":
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if in_dialog:
            self.within_dialog(method)
            return 1
        if method == "OPTIONS":
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if method != "INVITE":
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()  # a retransmission: tm resends what it has
            return 1
        KSR.tm.t_check_trans()
        self.strip_internal_headers()
        self.start_call(source)
        return 1

    def admit(self, source: str) -> bool:
        """Flood control for everyone but the trusted trunks (the carrier's SBCs) and our
        media servers, which send many calls from one address by design."""
        if KSR.htable.sht_get("ban", source) is not None:
            return False
        if KSR.dispatcher.ds_is_from_list(MEDIA_SET) > 0:
            return True
        if KSR.pike.pike_check_req() < 0:
            KSR.htable.sht_seti("ban", source, 1)
            KSR.warn(f"voffice: flood from {source}: banned\n")
            return False
        return True

    def within_dialog(self, method: str) -> None:
        if NODE and self.for_another_node():
            return
        branch = KSR.pv.get("$(hdr(Route){nameaddr.uri}{uri.param,vob})")  # an operator's dialog
        if KSR.rr.loose_route() > 0:
            call_id = KSR.pv.get("$ci") or ""
            caller_call_id = branch_call_id.of_caller(call_id)
            # rr's ftag: a request going downstream comes from the caller
            downstream = KSR.rr.is_direction("downstream") > 0 if branch or method == "BYE" else False
            if branch:
                self.map_dialog_call_id(call_id, caller_call_id, branch, downstream)
            if method == "BYE":
                self.end_of_dialog(caller_call_id, call_id, downstream)
            elif method == "ACK":
                # the caller confirmed an answer (a 2xx's ACK is routed; a non-2xx's is hop by hop)
                KSR.htable.sht_seti("vocalls", caller_call_id + ACKED, 1)
                self.media_answer(call_id, caller_call_id)
            elif method == "PRACK":
                self.media_answer(call_id, caller_call_id)
            elif method == "INVITE":
                # rtpengine_manage: an offer here, and (tm flags the transaction) the answer,
                # or for a re-INVITE without SDP the offer, in its reply (ksr_onreply_dialog)
                rtp(KSR.rtpengine.rtpengine_manage, RTP_DIALOG + rtp_call_id(call_id, caller_call_id))
                KSR.tm.t_on_reply("ksr_onreply_dialog")
            self.strip_internal_headers()  # X-VO-* never crosses us, in a dialog either
            KSR.tm.t_relay()
            return
        if method == "ACK":
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return
        KSR.sl.sl_send_reply(404, "Not Here")

    @staticmethod
    def for_another_node() -> bool:
        """With several nodes: an in-dialog request whose first Route names another node (the
        one that record-routed the call; a UA sent it here instead) goes there as it is. That
        node keeps the dialog's state (Call-ID mapping, media, the record at the BYE): doing
        any of it here too would release the call's media twice and emit a second record."""
        route = KSR.pv.get("$(hdr(Route)[0]{nameaddr.uri})")
        if not route or KSR.is_myself(route) is True:
            return False
        if KSR.rr.loose_route() > 0:
            KSR.textops.remove_hf_re("^X-VO-")
            KSR.tm.t_relay()
        else:
            KSR.sl.sl_send_reply(404, "Not Here")
        return True

    @staticmethod
    def media_answer(call_id: str, caller_call_id: str) -> None:
        """The caller's SDP in an ACK or PRACK: its answer to the offer a 200 or a reliable
        183 carried (a delayed offer), for rtpengine to complete that leg."""
        if KSR.textops.has_body_type("application/sdp") > 0:
            rtp(KSR.rtpengine.rtpengine_answer, RTP_DIALOG + rtp_call_id(call_id, caller_call_id))

    def map_dialog_call_id(self, call_id: str, caller_call_id: str, branch: str, downstream: bool) -> None:
        """In an operator's dialog the operator knows the branch's Call-ID, the caller its
        own (branch_call_id): a request from the caller goes on with the branch's, one from
        the operator with the caller's; their replies get back the one they were sent with."""
        if downstream:
            mapped = branch_call_id.for_branch(caller_call_id, branch)
        else:
            mapped = caller_call_id if caller_call_id != call_id else None
        if mapped is not None and mapped != call_id:
            set_call_id(mapped)
            KSR.tm.t_on_reply("ksr_onreply_dialog")

    def strip_internal_headers(self) -> None:
        # The regex costs a compile per call; a substring test on the raw message does not.
        if "x-vo-" in (KSR.pv.get("$mb") or "").lower():
            KSR.textops.remove_hf_re("^X-VO-")

    def start_call(self, source: str) -> None:
        assert self.reader is not None
        dialled = KSR.pv.get("$rU") or ""
        try:
            found = self.reader.lookup(dialled)
        except StoreUnavailable as exc:
            self.warn_store(f"{dialled}: {exc}")
            KSR.sl.sl_send_reply(503, "Service Unavailable")
            return
        if found is None:
            KSR.sl.sl_send_reply(404, "Not Found")  # never relayed: no open relay
            return
        account, number = found
        version = self.reader.version_of(account.id)
        if KSR.textops.has_body_type("application/sdp") < 0:
            KSR.setflag(FLAG_DELAYED_OFFER)  # tm keeps it with the transaction: reply route
        caller = self.caller_number(source)
        decision = decide(account, number, caller, now(), self.reader.override_of(account.id))  # the override first
        st = {
            "acct": account.id,
            "ver": version,
            "did": number,
            "caller": decision.caller or "anonymous",
            "callid": secrets.token_hex(8),
            "sipid": (KSR.pv.get("$ci") or "")[:256],  # the caller's Call-ID, for the record
            "ruri": KSR.pv.get("$ru"),
            "t0": time.time(),
            "rule": decision.rule.id if decision.rule else "",
            "scen": decision.scenario,
            "steps": [],
        }
        self.run(st, account.plain, Cursor(decision.node))

    def warn_store(self, what: str) -> None:
        """Why a call got 503 for want of Redis, at most once a second per worker: with
        Redis down every cold lookup fails, and the log must not drown the SIP path."""
        clock = time.monotonic()
        if clock >= self._store_warned + 1.0:
            self._store_warned = clock
            KSR.warn(f"voffice: no config for {what} (503)\n")

    def caller_number(self, source: str) -> str | None:
        if source in TRUSTED_TRUNKS and KSR.hdr.is_present("P-Asserted-Identity") > 0:
            asserted = KSR.pv.get("$(ai{uri.user})")
            if asserted:
                return str(asserted)
        user = KSR.pv.get("$fU")
        return str(user) if user else None

    # --- running a scenario node --------------------------------------------------------

    def run(self, st: dict[str, Any], plain: dict[str, Any], cursor: Cursor) -> None:
        st["node"], st["ring"], st["wave"] = cursor.node, cursor.ringing, 0
        op_id, op = operation_of(plain, cursor)
        self.round_robin(st, plain, op)
        action = action_for(plain, st["ver"], cursor, st["did"], st["caller"], seed=st["callid"], last_answered=st.get("last"))
        st["steps"].append({"operation": op_id, "type": op["type"], "ringing": cursor.ringing, "event": None})
        if isinstance(action, RingWaves):
            self.ring_wave(st, action.waves[0])
        else:
            self.relay_to_media(st, action)

    @staticmethod
    def round_robin(st: dict[str, Any], plain: dict[str, Any], op: dict[str, Any]) -> None:
        """A round_robin group starts after the member who answered it last: kept in the
        `vorr` htable (this Kamailio's shared memory, all workers), read once per step so
        the step's waves stay the same while it rings (`st["last"]`)."""
        st.pop("rr", None)
        st.pop("last", None)
        if op["type"] != "group" or plain["groups"][op["group"]]["strategy"] != "round_robin":
            return
        st["rr"] = f"{st['acct']}:{op['group']}"
        last = KSR.htable.sht_get("vorr", st["rr"])
        if isinstance(last, str):
            st["last"] = last

    def ring_wave(self, st: dict[str, Any], wave: list[dict[str, Any]]) -> None:
        uris = [operator_uri(ring["phone"], GATEWAY) for ring in wave]
        branches = branch_timer.wave_branches(wave, uris, self.spiral_key)
        # Each appended branch takes the destination set when it is appended: ourselves for
        # a spiral (branch_timer), none (its Request-URI) for the others; the Request-URI's
        # own destination last. A failure route starts from the request as first relayed,
        # whose destination may be the media server of an earlier step: reset it too.
        spiral_to = self.own_uri() if any(b.spiral for b in branches) else ""
        st["kind"] = "ring"
        for branch in branches[1:]:
            self.set_destination(spiral_to if branch.spiral else "")
            KSR.corex.append_branch_uri(branch.uri)
        KSR.pv.sets("$ru", branches[0].uri)
        self.set_destination(spiral_to if branches[0].spiral else "")
        # tm numbers a transaction's branches in the order they are created: the R-URI
        # first, then the appended ones, wave after wave. The reply that answers tells its
        # branch index, so the operator who answered needs no per-branch bookkeeping.
        st["b0"] = st.get("nb", 0)
        st["nb"] = st["b0"] + len(uris)
        st["ops"] = [ring["operator"] for ring in wave]
        KSR.tm.t_set_fr(branch_timer.wave_ring_ms(wave), NO_RING_FR_MS)
        st["life"] = NO_RING_FR_MS + branch_timer.wave_ring_ms(wave) + LIFETIME_MARGIN_MS
        self.relay(st, "ksr_branch_ring")

    @staticmethod
    def set_destination(uri: str) -> None:
        if uri:
            KSR.setdsturi(uri)
        else:
            KSR.resetdsturi()

    @staticmethod
    def own_uri() -> str:
        """This Kamailio's socket the call came in on, where a spiral goes."""
        host, port = KSR.pv.get("$Ri"), KSR.pv.get("$Rp")
        return f"sip:[{host}]:{port}" if ":" in host else f"sip:{host}:{port}"

    def ring_one_branch(self) -> None:
        """A spiral from a wave (branch_timer): ring this one operator under their own
        timer; the call's transaction upstream does everything else (its Record-Route,
        rtpengine, the scenario). Anything else from our own address with an INVITE that is
        not a spiral of ours is refused, never relayed."""
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return
        KSR.tm.t_check_trans()
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return
        branch = branch_timer.unspiral(KSR.pv.get("$ru") or "", self.spiral_key)
        if branch is None:
            KSR.sl.sl_send_reply(403, "Forbidden")
            return
        uri, ring_ms = branch
        KSR.pv.sets("$ru", uri)
        if UDP_MAX_BYTES:  # (its Require was shaped by the call's branch route)
            self.stream_if_large(None)
        KSR.tm.t_set_fr(ring_ms, NO_RING_FR_MS)
        KSR.tm.t_set_max_lifetime(NO_RING_FR_MS + ring_ms + LIFETIME_MARGIN_MS, NONINV_LIFETIME_MS)
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    def relay_to_media(self, st: dict[str, Any], step: MediaStep) -> None:
        st["kind"] = "media"
        st["op"] = encode_op(step.op)
        KSR.pv.sets("$ru", st["ruri"])
        if KSR.dispatcher.ds_select_dst(MEDIA_SET, 4) < 0:
            KSR.err("voffice: no media server is up\n")
            KSR.tm.t_reply(503, "No Media Server")
            self.record_call(st, "failed")
            return
        KSR.tm.t_set_fr(step.max_seconds * 1000, MEDIA_FR_MS)
        st["life"] = MEDIA_FR_MS + step.max_seconds * 1000 + LIFETIME_MARGIN_MS
        self.relay_media(st)

    def relay_media(self, st: dict[str, Any]) -> None:
        st["nb"] = st.get("nb", 0) + 1
        self.relay(st, "ksr_branch_media")

    def relay(self, st: dict[str, Any], branch_route: str) -> None:
        saved = "saved" in st  # the failure route replaces the AVP the request route set
        st["saved"] = 1
        _save(st, replace=saved)
        KSR.tm.t_set_max_lifetime(st["life"], NONINV_LIFETIME_MS)
        KSR.tm.t_on_branch(branch_route)
        KSR.tm.t_on_reply("ksr_onreply_route")
        KSR.tm.t_on_failure("ksr_failure_route")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    # --- per branch and per reply -------------------------------------------------------

    def ksr_sl_reply(self, msg: Any, event_name: str = "") -> int:
        """tm's on_sl_reply: a reply that matches no transaction of ours. Kamailio would relay
        it statelessly to its second Via (RFC 3261 16.7), whatever its top Via says and from
        whoever sent it (replies bypass the request route's flood ban): anyone could make us
        send SIP to any address. Every call is transaction-stateful (a 2xx retransmitted
        while tm holds the transaction is still relayed), and only strays get here: no
        cost on the call path."""
        KSR.set_drop()
        return 1

    def ksr_branch_ring(self, msg: Any) -> int:
        """An operator branch: its own Call-ID (branch_call_id) and Record-Route `;vob=` for
        its dialog; rtpengine keeps the caller's Call-ID (the parsed one)."""
        branch = KSR.pv.get("$T_branch_idx")
        mapped = branch_call_id.for_branch(KSR.pv.get("$ci") or "", branch)
        if mapped is not None:
            KSR.rr.record_route_params(f";vob={branch}")
            set_call_id(mapped)
        else:
            KSR.rr.record_route()
        if KSR.hdr.is_present("Require") > 0:
            self.operator_require()
        if UDP_MAX_BYTES:
            self.stream_if_large(KSR.pv.get("$du"))
        if KSR.textops.has_body_type("application/sdp") > 0:
            rtp(KSR.rtpengine.rtpengine_offer, RTP_FLAGS)
        return 1

    @staticmethod
    def operator_require() -> None:
        """No `Require: 100rel` towards an operator (operator_leg): `Supported` instead."""
        require, dropped = operator_leg.operator_require(KSR.pv.get("$(hdr(Require)[*])") or "")
        if not dropped:
            return
        KSR.hdr.remove("Require")
        if require:
            KSR.hdr.append(f"Require: {require}\r\n")
        supported = operator_leg.option_tags(KSR.pv.get("$(hdr(Supported)[*])") or "")
        if operator_leg.RELIABLE not in (tag.lower() for tag in supported):
            KSR.hdr.append(f"Supported: {operator_leg.RELIABLE}\r\n")

    @staticmethod
    def stream_if_large(destination: str | None) -> None:
        """An operator branch too large for UDP goes over TCP (RFC 3261 18.1.1); a branch
        that already has a destination (a spiral to ourselves) is left alone."""
        if not destination and operator_leg.too_large_for_udp(KSR.pv.get("$ml") or 0, UDP_MAX_BYTES):
            KSR.setdsturi(operator_leg.over_tcp(KSR.pv.get("$ru")))

    def ksr_branch_media(self, msg: Any) -> int:
        KSR.rr.record_route()
        st = _load()
        KSR.hdr.append(f"X-VO-Op: {st['op']}\r\n")
        KSR.hdr.append(f"X-VO-Call: {st['callid']}\r\n")
        if KSR.textops.has_body_type("application/sdp") > 0:
            rtp(KSR.rtpengine.rtpengine_offer, RTP_FLAGS)
        return 1

    def ksr_onreply_route(self, msg: Any) -> int:
        call_id = KSR.pv.get("$ci") or ""
        caller_call_id = branch_call_id.of_caller(call_id)
        rtp_call = rtp_call_id(call_id, caller_call_id)
        if rtp_call:  # an operator branch's: the caller gets its own back
            set_call_id(caller_call_id)
        status = KSR.pv.get("$rs")
        if status >= 300:  # this branch failed (busy, declined, CANCELled, ...): its leg only
            KSR.rtpengine.rtpengine_delete(RTP_BRANCH + rtp_call)
            return 1
        if status == 200 and not self.answer(caller_call_id):  # INVITEs only
            return 1
        if KSR.textops.has_body_type("application/sdp") > 0:
            if KSR.isflagset(FLAG_DELAYED_OFFER) > 0:  # the callee's offer; the answer: PRACK/ACK
                rtp(KSR.rtpengine.rtpengine_offer, RTP_FLAGS + rtp_call)
            else:
                rtp(KSR.rtpengine.rtpengine_answer, RTP_FLAGS + rtp_call)
        return 1

    def ksr_onreply_dialog(self, msg: Any) -> int:
        """A reply in a dialog: in an operator's dialog the Call-ID its request came with
        (within_dialog); a re-INVITE's SDP to rtpengine (answer, or the offer when the
        re-INVITE had none)."""
        sent = KSR.pv.get("$T_req($ci)")
        call_id = KSR.pv.get("$ci") or ""
        if sent and sent != call_id:
            set_call_id(sent)
        if KSR.pv.get("$rm") == "INVITE" and KSR.textops.has_body_type("application/sdp") > 0:
            rtp(KSR.rtpengine.rtpengine_manage, RTP_DIALOG + rtp_call_id(call_id, branch_call_id.of_caller(call_id)))
        return 1

    def answer(self, key: str) -> bool:
        """A 200: remembered when it answers the call; False when it must not be anchored."""
        if (KSR.pv.get("$T_reply_last") or 0) >= 300:
            # A 200 on a branch that had already failed: the operator answered after its
            # ring timer fired (tm cancelled the branch and the plan moved on) or after
            # saying busy. tm discards it ("status rewrite by UAS"): it answers nothing.
            return False
        to_tag = call_record.dialog_tag(KSR.pv.get("$tt"))
        kept = KSR.htable.sht_get("vocalls", key)
        if kept is None:
            # The call's state as it is, for its record at the BYE (a new transaction, no
            # AVPs): an htable entry is far cheaper than tracking a dialog, and no JSON is
            # read or written here. The answering dialog's to-tag tells its BYE from the BYE
            # of a second answer (end_of_dialog).
            state = KSR.pv.get("$avp(vo)")
            branch = KSR.pv.get("$T_branch_idx")
            answered = call_record.answered(time.time(), branch, state)
            KSR.htable.sht_sets("vocalls", key, call_record.kept(to_tag, answered, NODE))
            if '"rr":' in state:  # a round_robin group: who answered it, for its next call
                st = json.loads(state)
                operator = call_record.answering_operator(st, str(branch))
                if operator:
                    KSR.htable.sht_sets("vorr", st["rr"], operator)
            return True
        # The same answer resent, or a second one: an operator whose 200 crossed the CANCEL
        # sent when another answered. tm relays every 2xx (RFC 3261 16.7) and the caller
        # hangs that dialog up; anchoring it would point the caller's media at that operator.
        return isinstance(kept, str) and call_record.unkeep(kept)[0] == to_tag

    # --- failure route: the scenario moves on -----------------------------------------

    def ksr_failure_route(self, msg: Any) -> int:
        st = _load()
        if KSR.tm.t_is_canceled() > 0:
            self.record_call(st, "missed", note="caller hung up")
            return 1
        plain = self.call_account(st)
        if plain is None:
            return 1
        cursor = Cursor(st["node"], 0, st["ring"])
        code = int(KSR.pv.get("$T_reply_code") or 408)
        media = st["kind"] == "media"
        result = KSR.pv.get("$T_rpl($hdr(X-VO-Result))") if media and code not in (408,) else None
        if media and not result and (code == 408 or code >= 500):
            if KSR.dispatcher.ds_next_dst() > 0:
                KSR.info("voffice: media server failed, trying the next\n")
                self.relay_media(st)
                return 1
        if not media:
            action = action_for(plain, st["ver"], cursor, st["did"], st["caller"], seed=st["callid"], last_answered=st.get("last"))
            wave = st["wave"] + 1
            if isinstance(action, RingWaves) and wave < len(action.waves):
                st["wave"] = wave
                self.ring_wave(st, action.waves[wave])
                return 1
        event = event_from_reply(code, result, media)
        st["steps"][-1]["event"] = str(event)
        try:
            outcome = feed(plain, cursor, event)
        except EventError as exc:
            # e.g. voicemail or fax with every media server down: nothing left to try
            KSR.err(f"voffice: {exc}\n")
            self.record_call(st, "failed", note=f"{code} from the media servers")
            KSR.tm.t_reply(503, "Service Unavailable")
            return 1
        if outcome.cursor is not None:
            self.run(st, plain, outcome.cursor)
            return 1
        self.record_call(st, "missed")
        KSR.tm.t_reply(480, "Temporarily Unavailable")
        return 1

    def call_account(self, st: dict[str, Any]) -> dict[str, Any] | None:
        assert self.reader is not None
        try:
            account: CompiledAccount | None = self.reader.account_version(st["acct"], st["ver"])
        except StoreUnavailable as exc:
            self.warn_store(f"{st['acct']} version {st['ver']}: {exc}")
            account = None
        if account is None:
            KSR.tm.t_reply(503, "Service Unavailable")
            return None
        return account.plain

    # --- call records -------------------------------------------------------------------

    def record_call(self, st: dict[str, Any], status: str, note: str = "") -> None:
        """The end of a call nobody answered (missed, failed): its media released, every
        branch of it (a branch whose timer fired sent no reply to release its own), and
        its record, once."""
        KSR.rtpengine.rtpengine_delete0()
        self.emit(call_record.outcome(status, time.time(), note, json.dumps(st, separators=(",", ":"))))

    def end_of_dialog(self, key: str, call_id: str, downstream: bool) -> None:
        """A BYE: an answered call's record, with its talk time, when either side hangs up,
        and its media released.

        A forking proxy relays every 2xx (RFC 3261 16.7): an operator who answers after the
        proxy cancelled its branch because another one answered makes a second dialog of
        the same call, which the caller ACKs and hangs up at once. Its BYE is relayed, but it
        neither ends the call in progress (record, talk time) nor releases that call's
        media: rtpengine's delete with the call's from-tag drops every leg of it. `key` is the
        caller's Call-ID (an operator's BYE carries its branch's, `call_id`)."""
        kept = KSR.htable.sht_get("vocalls", key)
        # else not ours, or a resent BYE (the record is out already, or kept as ended)
        if isinstance(kept, str) and call_record.unkeep_ended(kept) is None:
            to_tag, answered = call_record.unkeep(kept)
            if to_tag and to_tag != call_record.dialog_tag(KSR.pv.get("$tt" if downstream else "$ft")):
                return  # another dialog of this call: the answered one goes on
            acked = KSR.htable.sht_get("vocalls", key + ACKED) is not None
            queued = call_record.ended(time.time(), "caller" if downstream else "callee", answered, acked)
            self.emit(queued)
            if NODE:
                # The record waits up to 100 ms in this node's queue: were the node killed
                # then, it would be lost. Every node keeps it a few seconds; if this node is
                # dead when that copy expires, a survivor sends it (a second copy is one row:
                # the history writer ignores a record it has).
                KSR.htable.sht_setxs("vocalls", key, call_record.ended_kept(NODE, queued), call_record.ENDED_KEEP_S)
            else:
                KSR.htable.sht_rm("vocalls", key)
        KSR.htable.sht_rm("vocalls", key + ACKED)
        KSR.rtpengine.rtpengine_delete(rtp_call_id(call_id, key).strip())

    def ksr_htable_event(self, msg: Any, event_name: str = "") -> int:
        """htable's timer: an answered call's entry expired without a BYE (lost, or a
        call longer than the table's autoexpire): its record goes out all the same."""
        if event_name == "htable:expired:vocalls":
            kept = KSR.pv.get("$shtrecord(value)")
            # Not an ACKED mark (an integer; it expires with its call, maybe first, so it is
            # not read here: an answer never ACKed ends by the callee's BYE after 64*T1,
            # RFC 3261 13.3.1.4, long before its entry could expire).
            ended = call_record.unkeep_ended(kept) if isinstance(kept, str) else None
            if ended is not None:
                # An ended call's record, kept in case its owner died before shipping it (once
                # shipped, the owner removes it: forget_ended). Still here at its expiry, it
                # was not confirmed shipped: the owner sends it (it was restarted since), or,
                # if the owner is dead, one survivor does.
                owner, queued = ended
                if self.emits_expired(owner):
                    self.emit(queued)
            elif isinstance(kept, str):
                owner, _tag, answered = call_record.unkeep_owned(kept)
                if self.emits_expired(owner):
                    self.emit(call_record.expired(time.time(), answered))
        return 1

    def emits_expired(self, owner: str) -> bool:
        """Whether this node sends the record of an expired entry `owner` kept
        (cluster.emits_expired; the heartbeats are read only for another node's entry)."""
        return owner in ("", NODE) or cluster.emits_expired(owner, NODE, self.heartbeats(), time.time())

    @staticmethod
    def heartbeats() -> dict[str, object]:
        """The nodes' last heartbeats as this node's copy of `vonodes` has them (cluster only)."""
        if not NODE:
            return {}
        beats: dict[str, object] = {}
        if KSR.htable.sht_iterator_start("vonodes", "vonodes") < 0:
            return beats
        try:
            while KSR.htable.sht_iterator_next("vonodes") > 0:
                beats[str(KSR.pv.get("$shtitkey(vonodes)"))] = KSR.pv.get("$shtitval(vonodes)")
        finally:
            KSR.htable.sht_iterator_end("vonodes")
        return beats

    def ksr_heartbeat(self, msg: Any, event_name: str = "") -> int:
        """rtimer voheart, every second (cluster only): this node is alive, replicated to all."""
        KSR.htable.sht_seti("vonodes", NODE, int(time.time()))
        return 1

    def emit(self, queued: str) -> None:
        """Queue a record in shared memory; `ksr_flush_events` ships it. A SIP worker never
        waits for Redis, and never formats the record either."""
        if KSR.mqueue.mq_add(EVENTS_QUEUE, "call", queued) < 0:
            KSR.warn("voffice: event queue full, call record dropped\n")

    def ksr_flush_events(self, msg: Any, event_name: str = "") -> int:
        """rtimer, every 100 ms in its own process: the queued events to the Redis stream."""
        while len(self._unsent) < MAX_UNSENT and KSR.mqueue.mq_fetch(EVENTS_QUEUE) > 0:
            queued = KSR.mqueue.mqv_get(EVENTS_QUEUE)
            try:
                self._unsent.append(call_record.record(queued))
            except call_record.RecordError as exc:
                KSR.err(f"voffice: {exc}\n")
                continue
            if NODE and queued.startswith("ended|"):  # its copy kept on every node (end_of_dialog)
                self._ended.append(self._unsent[-1].get("sip_call_id", ""))
        if not self._unsent:
            return 1
        try:
            from routing.store import redis_client

            if self._events is None:
                self._events = redis_client.client(redis_url(None), timeout=1)
            # no cap: routing/records/stream.py trims what is consumed
            on_replica = redis_client.append_replicated(self._events, redis_url(None), EVENTS_STREAM, self._unsent)
            self._unconfirmed = 0 if on_replica else self._unconfirmed + 1
            if on_replica or self._unconfirmed > MAX_UNCONFIRMED:  # no replica at all: the master's copy must do
                self._unsent.clear()
                self._unconfirmed = 0
                self.forget_ended()
        except Exception as exc:  # Redis down: keep them (bounded) and try again next tick
            KSR.warn(f"voffice: {len(self._unsent)} events not shipped yet: {exc}\n")
        return 1

    def forget_ended(self) -> None:
        """The records of calls this node ended are shipped: their copies kept on every node
        (in case this node died first) go, so no survivor sends them again."""
        for key in self._ended:
            kept = KSR.htable.sht_get("vocalls", key) if key else None
            ended = call_record.unkeep_ended(kept) if isinstance(kept, str) else None
            if ended is not None and ended[0] == NODE:
                KSR.htable.sht_rm("vocalls", key)
        self._ended.clear()

    # --- required by app_python3 (see DESIGN.md: without them KSR calls fail later) -----

    def ksr_reply_route(self, msg: Any) -> int:
        return 1

    def ksr_onsend_route(self, msg: Any) -> int:
        return 1
