"""Kamailio KEMI adapter: the call path of DESIGN.md section 5, as a list of small steps.

This module only moves data between Kamailio and the engine: every decision is made by
`engine.decide`, `scenario.feed`, `ringing_plan` and `call_step`. A call's state lives in
the transaction's AVPs (account, version, node, ...), never in a global, so every worker
can continue any call, and a config load mid-call leaves running calls on their version.

Request route:   reqinit -> CANCEL -> within dialog -> OPTIONS -> INVITE only ->
                 strip X-VO-* -> number -> account (404 if unknown) -> decide -> run(node)
run(node):       ring a wave of operators | relay to a media server with X-VO-Op
branch route:    per branch: rtpengine offer (via-branch), X-VO-* for media branches
reply route:     rtpengine answer for SDP replies; the first 200 is recorded
failure route:   caller cancelled -> missed | media server down -> next one |
                 next wave of the plan | event -> scenario.feed -> run(next node) or end
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from typing import Any

import KSR  # provided by Kamailio's app_python3

from .call_step import MediaStep, RingWaves, action_for, event_from_reply, operator_uri
from .clock import now
from .engine import CompiledAccount, decide
from .media_contract import encode_op
from .reader import ConfigReader, StoreUnavailable
from .scenario import Cursor, EventError, feed, operation_of
from .store import redis_url

SCANNERS = re.compile(r"friendly-scanner|sipvicious|sipcli|sip-scan|vaxsipuseragent|sundayddr|iwar|sipsak-scan|pplsip|smap", re.I)
GATEWAY = os.environ.get("VOFFICE_OPERATOR_GATEWAY", "127.0.0.1:5080")
MEDIA_SET = int(os.environ.get("VOFFICE_MEDIA_SET", "1"))
TRUSTED_TRUNKS = frozenset(filter(None, os.environ.get("VOFFICE_TRUSTED_TRUNKS", "").split(",")))
RTP_FLAGS = "via-branch=auto replace-origin replace-session-connection"
EVENTS_STREAM = "voffice:events"
EVENTS_QUEUE = "voevents"  # kamailio.cfg: mqueue + rtimer
MAX_UNSENT = 100_000
NO_RING_FR_MS = 5000  # an operator gateway that does not even answer 100 in time: move on
MEDIA_FR_MS = 2000  # a media server that does not answer 100 in time: the next one


def mod_init() -> VofficeRouting:
    return VofficeRouting()


def _avp(name: str) -> Any:
    return KSR.pv.get(f"$avp({name})")


def _set(name: str, value: str | int) -> None:
    if isinstance(value, int):
        KSR.pv.seti(f"$avp({name})", value)
    else:
        KSR.pv.sets(f"$avp({name})", value)


class VofficeRouting:
    def __init__(self) -> None:
        self.reader: ConfigReader | None = None
        self._events: Any = None
        self._unsent: list[dict[str, str]] = []  # only in the event-shipping timer process

    def child_init(self, rank: int) -> int:
        # Connections are opened lazily by the reader, in this (forked) worker.
        self.reader = ConfigReader(redis_url(None), check_interval=0.1)
        return 0

    # --- request route ------------------------------------------------------------------

    def ksr_request_route(self, msg: Any) -> int:
        if not self.reqinit():
            return 1
        if KSR.is_method("CANCEL"):
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if self.within_dialog():
            return 1
        if KSR.is_method("OPTIONS"):
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if not KSR.is_method("INVITE"):
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()  # a retransmission: tm resends what it has
            return 1
        KSR.tm.t_check_trans()
        self.strip_internal_headers()
        self.start_call()
        return 1

    def reqinit(self) -> bool:
        source = KSR.pv.get("$si")
        if KSR.htable.sht_get("ban", source) is not None:
            return False
        # Trusted trunks (the carrier's SBCs) and our media servers send many calls from
        # one address by design; flood control is for everyone else.
        trusted = source in TRUSTED_TRUNKS or KSR.dispatcher.ds_is_from_list(MEDIA_SET) > 0
        if not trusted and KSR.pike.pike_check_req() < 0:
            KSR.htable.sht_seti("ban", source, 1)
            KSR.warn(f"voffice: flood from {source}: banned\n")
            return False
        if SCANNERS.search(KSR.pv.get("$ua") or ""):
            return False  # scanners get no answer at all
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return False
        if KSR.sanity.sanity_check(17895, 7) < 0:
            return False
        return True

    def within_dialog(self) -> bool:
        if KSR.siputils.has_totag() < 0:
            return False
        if KSR.rr.loose_route() > 0:
            if KSR.is_method("BYE"):
                KSR.rtpengine.rtpengine_delete0()
                self.record_end_of_answered_call()
            elif KSR.is_method("INVITE"):
                KSR.rtpengine.rtpengine_manage("replace-origin replace-session-connection")
            KSR.tm.t_relay()
            return True
        if KSR.is_method("ACK"):
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return True
        KSR.sl.sl_send_reply(404, "Not Here")
        return True

    def strip_internal_headers(self) -> None:
        KSR.textops.remove_hf_re("^X-VO-")

    def start_call(self) -> None:
        assert self.reader is not None
        dialled = KSR.pv.get("$rU") or ""
        try:
            found = self.reader.lookup(dialled)
        except StoreUnavailable:
            KSR.sl.sl_send_reply(503, "Service Unavailable")
            return
        if found is None:
            KSR.sl.sl_send_reply(404, "Not Found")  # never relayed: no open relay
            return
        account, number = found
        version = self.reader.version_of(account.id)
        caller = self.caller_number()
        decision = decide(account, number, caller, now())
        KSR.rr.record_route()
        KSR.dialog.dlg_manage()
        _set("vo_acct", account.id)
        _set("vo_ver", version)
        _set("vo_did", number)
        _set("vo_caller", decision.caller or "anonymous")
        _set("vo_callid", secrets.token_hex(8))
        _set("vo_ruri", KSR.pv.get("$ru"))
        _set("vo_t0", str(time.time()))
        _set("vo_rule", decision.rule.id if decision.rule else "")
        _set("vo_scen", decision.scenario)
        _set("vo_steps", "[]")
        self.run(account.plain, version, Cursor(decision.node))

    def caller_number(self) -> str | None:
        if KSR.pv.get("$si") in TRUSTED_TRUNKS and KSR.hdr.is_present("P-Asserted-Identity") > 0:
            asserted = KSR.pv.get("$(ai{uri.user})")
            if asserted:
                return str(asserted)
        user = KSR.pv.get("$fU")
        return str(user) if user else None

    # --- running a scenario node --------------------------------------------------------

    def run(self, plain: dict[str, Any], version: int, cursor: Cursor) -> None:
        _set("vo_node", cursor.node)
        _set("vo_ring", cursor.ringing or "")
        _set("vo_wave", 0)
        action = action_for(plain, version, cursor, _avp("vo_did"), _avp("vo_caller"), seed=_avp("vo_callid"))
        self.add_step(plain, cursor)
        if isinstance(action, RingWaves):
            _set("vo_kind", "ring")
            self.ring_wave(action.waves[0])
        else:
            _set("vo_kind", "media")
            self.relay_to_media(action)

    def ring_wave(self, wave: list[dict[str, Any]]) -> None:
        uris = {operator_uri(ring["phone"], GATEWAY): ring["operator"] for ring in wave}
        first, *rest = uris
        KSR.resetdsturi()
        KSR.pv.sets("$ru", first)
        for uri in rest:
            KSR.corex.append_branch_uri(uri)
        _set("vo_wave_ops", json.dumps(uris))
        ring_ms = max(ring["ring_seconds"] for ring in wave) * 1000
        KSR.tm.t_set_fr(ring_ms, NO_RING_FR_MS)
        self.relay()

    def relay_to_media(self, step: MediaStep) -> None:
        _set("vo_op", encode_op(step.op))
        KSR.pv.sets("$ru", _avp("vo_ruri"))
        if KSR.dispatcher.ds_select_dst(MEDIA_SET, 4) < 0:
            KSR.err("voffice: no media server is up\n")
            KSR.tm.t_reply(503, "No Media Server")
            self.record_call("failed")
            return
        KSR.tm.t_set_fr(step.max_seconds * 1000, MEDIA_FR_MS)
        self.relay()

    def relay(self) -> None:
        KSR.tm.t_on_branch("ksr_branch_route")
        KSR.tm.t_on_reply("ksr_onreply_route")
        KSR.tm.t_on_failure("ksr_failure_route")
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    # --- per branch and per reply -------------------------------------------------------

    def ksr_branch_route(self, msg: Any) -> int:
        if _avp("vo_kind") == "media":
            KSR.hdr.append(f"X-VO-Op: {_avp('vo_op')}\r\n")
            KSR.hdr.append(f"X-VO-Call: {_avp('vo_callid')}\r\n")
        else:
            # Remember which operator this branch rings, for the reply that answers it.
            operator = json.loads(_avp("vo_wave_ops") or "{}").get(KSR.pv.get("$ru"))
            if operator:
                KSR.htable.sht_sets("vobranch", f"{KSR.pv.get('$ci')}:{KSR.pv.get('$T_branch_idx')}", operator)
        if KSR.textops.has_body_type("application/sdp") > 0:
            KSR.rtpengine.rtpengine_offer(RTP_FLAGS)
        return 1

    def ksr_onreply_route(self, msg: Any) -> int:
        code = KSR.pv.get("$rs")
        if KSR.textops.has_body_type("application/sdp") > 0:
            KSR.rtpengine.rtpengine_answer(RTP_FLAGS)
        if code == 200 and KSR.pv.get("$rm") == "INVITE":
            key = KSR.pv.get("$ci")
            if KSR.htable.sht_get("vocalls", key) is None:
                KSR.htable.sht_seti("vocalls", key, 1)
                self.on_answered()
        return 1

    def on_answered(self) -> None:
        # Kept in the dialog so the BYE (a new transaction, no AVPs) can close the record.
        KSR.dialog.var_sets("vo_callid", _avp("vo_callid") or "")
        KSR.dialog.var_sets("vo_acct", _avp("vo_acct") or "")
        KSR.dialog.var_sets("vo_answered_at", f"{time.time():.3f}")
        KSR.dialog.var_sets("vo_ftag", KSR.pv.get("$ft") or "")
        if _avp("vo_kind") == "media":
            op = (_avp("vo_op") or "").split(";")
            kind = next((p.split("=", 1)[1] for p in op if p.startswith("type=")), "media")
            self.record_call(kind)
            return
        operator = KSR.htable.sht_get("vobranch", f"{KSR.pv.get('$ci')}:{KSR.pv.get('$T_branch_idx')}")
        self.record_call("answered", answered_by=operator)

    # --- failure route: the scenario moves on -----------------------------------------

    def ksr_failure_route(self, msg: Any) -> int:
        if KSR.tm.t_is_canceled() > 0:
            self.record_call("missed", note="caller hung up")
            return 1
        assert self.reader is not None
        plain = self.call_account()
        if plain is None:
            return 1
        version = int(_avp("vo_ver"))
        cursor = Cursor(int(_avp("vo_node")), 0, _avp("vo_ring") or None)
        code = int(KSR.pv.get("$T_reply_code") or 408)
        media = _avp("vo_kind") == "media"
        result = KSR.pv.get("$T_rpl($hdr(X-VO-Result))") if media and code not in (408,) else None
        if media and not result and (code == 408 or code >= 500):
            if KSR.dispatcher.ds_next_dst() > 0:
                KSR.info("voffice: media server failed, trying the next\n")
                self.relay()
                return 1
        if not media:
            action = action_for(plain, version, cursor, _avp("vo_did"), _avp("vo_caller"), seed=_avp("vo_callid"))
            wave = int(_avp("vo_wave")) + 1
            if isinstance(action, RingWaves) and wave < len(action.waves):
                _set("vo_wave", wave)
                self.ring_wave(action.waves[wave])
                return 1
        event = event_from_reply(code, result, media)
        self.note_event(str(event))
        try:
            outcome = feed(plain, cursor, event)
        except EventError as exc:
            # e.g. voicemail or fax with every media server down: nothing left to try
            KSR.err(f"voffice: {exc}\n")
            self.record_call("failed", note=f"{code} from the media servers")
            KSR.tm.t_reply(503, "Service Unavailable")
            return 1
        if outcome.cursor is not None:
            self.run(plain, version, outcome.cursor)
            return 1
        self.record_call("missed")
        KSR.tm.t_reply(480, "Temporarily Unavailable")
        return 1

    def call_account(self) -> dict[str, Any] | None:
        assert self.reader is not None
        try:
            account: CompiledAccount | None = self.reader.account_version(_avp("vo_acct"), int(_avp("vo_ver")))
        except StoreUnavailable:
            account = None
        if account is None:
            KSR.tm.t_reply(503, "Service Unavailable")
            return None
        return account.plain

    # --- call records -------------------------------------------------------------------

    def add_step(self, plain: dict[str, Any], cursor: Cursor) -> None:
        steps = json.loads(_avp("vo_steps") or "[]")
        op_id, op = operation_of(plain, cursor)
        steps.append({"operation": op_id, "type": op["type"], "ringing": cursor.ringing, "event": None})
        _set("vo_steps", json.dumps(steps))

    def note_event(self, event: str) -> None:
        steps = json.loads(_avp("vo_steps") or "[]")
        if steps:
            steps[-1]["event"] = event
        _set("vo_steps", json.dumps(steps))

    def record_call(self, status: str, answered_by: str | None = None, note: str | None = None) -> None:
        """One call record per call on the events stream; `missed` exactly once."""
        t0 = float(_avp("vo_t0") or time.time())
        event = {
            "type": "call",
            "status": status,
            "account": _avp("vo_acct") or "",
            "number": _avp("vo_did") or "",
            "caller": _avp("vo_caller") or "",
            "call_id": _avp("vo_callid") or "",
            "rule": _avp("vo_rule") or "",
            "scenario": _avp("vo_scen") or "",
            "steps": _avp("vo_steps") or "[]",
            "answered_by": answered_by or "",
            "setup_seconds": f"{time.time() - t0:.3f}",
            "note": note or "",
        }
        self.emit(event)

    def record_end_of_answered_call(self) -> None:
        """The talk time of an answered call, when either side hangs up."""
        answered_at = KSR.dialog.var_get("vo_answered_at")
        if not answered_at:
            return
        KSR.dialog.var_sets("vo_answered_at", "")  # once, even if the BYE is retransmitted
        self.emit({
            "type": "call-end",
            "account": KSR.dialog.var_get("vo_acct") or "",
            "call_id": KSR.dialog.var_get("vo_callid") or "",
            "talk_seconds": f"{time.time() - float(answered_at):.3f}",
            "hung_up_by": "caller" if KSR.pv.get("$ft") == KSR.dialog.var_get("vo_ftag") else "callee",
        })

    def emit(self, event: dict[str, str]) -> None:
        """Queue an event in shared memory; `ksr_flush_events` ships it. A SIP worker never
        waits for Redis."""
        if KSR.mqueue.mq_add(EVENTS_QUEUE, event["type"], json.dumps(event)) < 0:
            KSR.warn("voffice: event queue full, call record dropped\n")

    def ksr_flush_events(self, msg: Any, event_name: str = "") -> int:
        """rtimer, every 100 ms in its own process: the queued events to the Redis stream."""
        while len(self._unsent) < MAX_UNSENT and KSR.mqueue.mq_fetch(EVENTS_QUEUE) > 0:
            self._unsent.append(json.loads(KSR.mqueue.mqv_get(EVENTS_QUEUE)))
        if not self._unsent:
            return 1
        try:
            if self._events is None:
                import redis

                self._events = redis.Redis.from_url(redis_url(None), socket_timeout=1, socket_connect_timeout=1)
            pipe = self._events.pipeline(transaction=False)
            for event in self._unsent:
                pipe.xadd(EVENTS_STREAM, event, maxlen=100_000, approximate=True)
            pipe.execute()
            self._unsent.clear()
        except Exception as exc:  # Redis down: keep them (bounded) and try again next tick
            KSR.warn(f"voffice: {len(self._unsent)} events not shipped yet: {exc}\n")
        return 1

    # --- required by app_python3 (see DESIGN.md: without them KSR calls fail later) -----

    def ksr_reply_route(self, msg: Any) -> int:
        return 1

    def ksr_onsend_route(self, msg: Any) -> int:
        return 1
