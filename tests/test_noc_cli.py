"""The NOC's account commands beyond load (issue: the NOC workflow): list, delete (numbers
released at once, history kept, confirmation), Redis URLs that never show their password,
--version. Real redis-server, the installed `voffice`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from routing.store import configs
from routing.store.reader import ConfigReader

from .conftest import SEED
from .test_cli import voffice

pytestmark = pytest.mark.redis


def test_list_shows_every_account_its_numbers_and_last_change(redis_server: Any) -> None:
    assert "no accounts loaded" in voffice("list", redis_url=redis_server.url).stdout
    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0
    listed = voffice("list", redis_url=redis_server.url)
    assert listed.returncode == 0 and "berry-demo" in listed.stdout and "+74951234567" in listed.stdout
    assert "1 account(s), 1 number(s)" in listed.stdout
    [row] = json.loads(voffice("list", "--json", redis_url=redis_server.url).stdout)
    assert (row["version"], row["numbers"], row["action"]) == (1, ["+74951234567"], "load")


def test_delete_releases_the_numbers_at_once_and_keeps_the_history(redis_server: Any, tmp_path: Any, seed_doc: dict[str, Any]) -> None:
    """An account loaded under a mistyped id: deleted, its number is free for the right one."""
    typo = {**seed_doc, "account": "berry-typo"}
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(typo, ensure_ascii=False))
    assert voffice("load", str(path), redis_url=redis_server.url).returncode == 0
    refused = voffice("load", str(SEED), redis_url=redis_server.url)
    assert refused.returncode == 1 and "already belongs to loaded account 'berry-typo'" in refused.stdout + refused.stderr
    reader = ConfigReader(redis_server.url, check_interval=0.0)
    reader.warm()
    assert reader.lookup("+74951234567") is not None
    unconfirmed = voffice("delete", "berry-typo", redis_url=redis_server.url)  # no terminal to ask on
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    wrong = voffice("delete", "berry-typo", "--yes", "--expect-version", "7", redis_url=redis_server.url)
    assert wrong.returncode == 1 and "at version 1, not 7; nothing was deleted" in wrong.stderr
    done = voffice("delete", "berry-typo", "--yes", redis_url=redis_server.url)
    assert done.returncode == 0 and "released +74951234567" in done.stdout
    assert reader.lookup("+74951234567") is None  # a running worker sees it at once (pub/sub)
    history = voffice("history", "berry-typo", "--json", redis_url=redis_server.url)
    entries = json.loads(history.stdout)
    assert entries[0]["action"] == "delete" and entries[0]["numbers"] == ["+74951234567"] and entries[1]["action"] == "load"
    assert voffice("load", str(SEED), redis_url=redis_server.url).returncode == 0  # the number is free now
    assert "not loaded" in voffice("delete", "berry-typo", "--yes", redis_url=redis_server.url).stderr
    assert [a["account"] for a in configs.accounts(redis.Redis.from_url(redis_server.url))] == ["berry-demo"]


def test_redis_urls_never_show_their_password() -> None:
    down = voffice("list", "--redis", "redis://:hunter2-secret@127.0.0.1:1/0")
    assert down.returncode == 1 and "hunter2-secret" not in down.stderr and ":***@127.0.0.1:1" in down.stderr
    wrong = voffice("list", "--redis", "http://user:hunter2-secret@example.org/")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr and "not a Redis URL" in wrong.stderr
    assert "hunter2-secret" not in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_version() -> None:
    result = voffice("--version")
    assert result.returncode == 0 and result.stdout.startswith("voffice, version ")
