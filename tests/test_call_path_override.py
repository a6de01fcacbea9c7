"""The manual override through the real call path: set in Redis with no config load, the
node store's mirror passes it to Kamailio's workers and the next call follows it, its call
record saying the override decided."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from routing.core.engine import OVERRIDE_RULE_ID
from routing.stack.local import node_store_status
from routing.store import configs
from routing.store.overrides import set_override

from .callpath import STACK_TESTS, CallStack, caller, operator, short_ring_config

pytestmark = STACK_TESTS

NUMBER = "+74951234567"
WEDNESDAY_MORNING = "2026-11-25T10:30:00+03:00"  # rule r2: the workday menu (a media server, not started here)


def test_an_override_routes_the_next_call_without_a_load(tmp_path: Path, seed_doc: dict[str, Any]) -> None:
    with CallStack(tmp_path, WEDNESDAY_MORNING, short_ring_config(seed_doc), with_media=False) as stack:
        assert stack.config is not None
        r = configs.connect(stack.config.redis_url)
        set_override(r, "berry-demo", "lunch", None, "noc", at=datetime.fromisoformat(WEDNESDAY_MORNING) - timedelta(hours=1))
        deadline = time.monotonic() + 10
        while not node_store_status(stack.config)[0]:  # the mirror has applied it
            assert time.monotonic() < deadline, node_store_status(stack.config)[1]
            time.sleep(0.05)
        gateway = operator(tmp_path, "gateway", "answer", stack.gateway_port).start()
        call = caller(tmp_path, stack, NUMBER, "+79031112233").start()
        assert call.wait() == 0 and gateway.wait() == 0
        assert "INVITE sip:+79161230004@127.0.0.1" in gateway.messages()  # lunch: the secretary
        [record] = [e for e in stack.events() if e["type"] == "call"]
        assert (record["rule"], record["scenario"], record["status"]) == (OVERRIDE_RULE_ID, "lunch", "answered")
        assert configs.current_version(r, "berry-demo") == 1
