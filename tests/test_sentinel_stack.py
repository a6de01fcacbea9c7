"""The whole stack on a Redis with Sentinel (`voffice up --redis redis+sentinel://...`):
the Redis master killed with -9 under calls. Kamailio routes from its caches meanwhile, every
call record reaches the history once, and a load made after the failover is what the next
calls get. Real Kamailio, rtpengine, media server, sipp, PostgreSQL, 3 redis + 3 sentinels."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from routing.stack.redis_sentinel import SentinelCluster

from .callpath import STACK_TESTS, StackFactory, caller, operator, short_ring_config
from .test_cli import voffice
from .test_notifications import history, wait_for

pytestmark = [*STACK_TESTS, pytest.mark.postgres, pytest.mark.redis]
NUMBER = "+74951234567"
LUNCH = "2026-11-25T13:30:00+03:00"  # the secretary answers through the operator gateway
CALLS = 30


def test_calls_and_records_survive_the_redis_master_killed(tmp_path: Path, seed_doc: dict[str, Any], database_url: str,
                                                           sentinels: SentinelCluster) -> None:
    factory = StackFactory(tmp_path, short_ring_config(seed_doc), redis_external=sentinels.url)
    try:
        stack = factory(LUNCH, database_url=database_url)
        gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port, calls=CALLS).start()
        calls = caller(tmp_path, stack, NUMBER, "+79031112233", calls=CALLS, extra=["-r", "2", "-l", "10"]).start()
        time.sleep(5)  # about 10 calls in
        old = sentinels.master()
        assert old is not None
        sentinels.process(old).kill()
        assert calls.wait(150) == 0  # every call answered, through the failover too
        assert gateway.wait(60) == 0
        assert sentinels.master() not in (None, old)

        rows = wait_for(lambda: len(history(database_url)) >= CALLS and history(database_url), seconds=60,
                        what=f"{CALLS} history rows")
        assert len(rows) == CALLS and len({r["call_id"] for r in rows}) == CALLS  # each call once, none lost
        assert {r["status"] for r in rows} == {"answered"}

        doc = json.loads(json.dumps(short_ring_config(seed_doc)))
        secretary = next(op for op in doc["operators"] if op["phone"] == "+79161230004")
        secretary["phone"] = "+79161230044"
        path = tmp_path / "moved.json"
        path.write_text(json.dumps(doc, ensure_ascii=False))
        assert voffice("load", str(path), redis_url=sentinels.url).returncode == 0  # through the new master
        time.sleep(1.0)
        moved = operator(tmp_path, "gateway-after", "answer", stack.gateway_port, calls=4).start()
        after = caller(tmp_path, stack, NUMBER, "+79031112233", calls=4, name="after", extra=["-r", "4"]).start()
        assert after.wait(60) == 0 and moved.wait(60) == 0
        invites = [line for line in moved.messages().splitlines() if line.startswith("INVITE sip:")]
        assert len(invites) == 4 and all("+79161230044@" in line for line in invites)  # every worker has the load
    finally:
        factory.stop()
