"""The accounts API: the same validator, plan, load, rollback, simulate and coverage as the CLI."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from routing.cli.console import main
from tests.api_support import OTHER, SEED, Stack, document, stack

__all__ = ["stack"]

BERRY = "berry-demo"


def test_get_account_gives_the_document_and_version(stack: Stack) -> None:
    reply = stack.noc().get(f"/api/accounts/{BERRY}")
    assert reply.status_code == 200
    assert reply.json() == document(SEED)
    assert reply.headers["ETag"] == '"1"'


def test_validate_422_lists_every_problem(stack: Stack) -> None:
    doc = document(SEED)
    doc["timezone"] = "Mars/Olympus"
    doc["numbers"] = ["not-a-number"]
    doc["rules"][0]["scenario"] = "no-such-scenario"
    doc["operators"][0]["phone"] = "x"
    doc["operators"][1]["phone"] = "y"
    reply = stack.noc().post(f"/api/accounts/{BERRY}/validate", json=doc)
    assert reply.status_code == 422
    pointers = {p["pointer"] for p in reply.json()["problems"]}
    assert {"/timezone", "/numbers/0", "/rules/0/scenario", "/operators/0/phone", "/operators/1/phone"} <= pointers
    assert all(set(p) >= {"pointer", "message"} for p in reply.json()["problems"])


def test_validate_bad_json_and_other_account_id(stack: Stack) -> None:
    client = stack.noc()
    reply = client.post(f"/api/accounts/{BERRY}/validate", content=b'{"account": "a", "account": "b"}')
    assert reply.status_code == 422 and reply.json()["problems"][0]["pointer"] == "/account"
    reply = client.post(f"/api/accounts/{BERRY}/validate", json=document(SEED, "someone-else"))
    assert reply.status_code == 422
    assert any("cannot be changed" in p["message"] for p in reply.json()["problems"])
    assert client.post(f"/api/accounts/{BERRY}/validate", json=document(SEED)).json()["valid"] is True


def test_plan_apply_versions_rollback_round_trip(stack: Stack) -> None:
    client = stack.noc()
    base = "/api/accounts/rt-demo"
    doc = document(SEED, "rt-demo", "+74950000001")
    assert client.put(base, json=doc).status_code == 428
    created = client.put(base, json=doc, headers={"If-None-Match": "*"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.headers["ETag"] == '"1"'

    doc["name"] = "Renamed office"
    plan = client.post(f"{base}/plan", json=doc).json()
    assert plan["planned_against"] == 1 and not plan["unchanged"]
    assert {"pointer": "/name", "label": "", "kind": "change", "old": document(SEED)["name"], "new": "Renamed office"} in plan["changes"]

    stale = client.post(f"{base}/apply", json=doc, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.json()["current"] == 1
    applied = client.post(f"{base}/apply", json=doc, headers={"If-Match": f'"{plan["planned_against"]}"'})
    assert applied.status_code == 200 and applied.json()["version"] == 2
    assert client.get(base).json()["name"] == "Renamed office"
    again = client.put(base, json=doc, headers={"If-Match": '"1"'})  # planned against v1, now at v2
    assert again.status_code == 412

    versions = client.get(f"{base}/versions").json()
    assert versions["current"] == 2
    assert [(e["version"], e["state"]) for e in versions["history"]] == [(2, "current"), (1, "kept")]
    assert versions["history"][0]["user"] == "api:noc:tests"

    rolled = client.post(f"{base}/rollback", params={"to": 1})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 3 and rolled.json()["action"] == "rollback to v1"
    assert client.get(base).json() == document(SEED, "rt-demo", "+74950000001")
    assert client.get(f"{base}/versions/2").json()["document"]["name"] == "Renamed office"
    assert client.post(f"{base}/rollback", params={"to": 3}).status_code == 409  # already current


def test_subscriber_edits_own_account_but_creates_none(stack: Stack) -> None:
    stack.load(document(SEED, "sub-demo", "+74950000002"))
    client, csrf = stack.subscriber("sub-demo")
    doc = document(SEED, "sub-demo", "+74950000002")
    doc["name"] = "Edited by the subscriber"
    reply = client.put("/api/accounts/sub-demo", json=doc, headers={"X-CSRF-Token": csrf, "If-Match": '"1"'})
    assert reply.status_code == 200 and reply.json()["version"] == 2
    taken = document(SEED, "sub-demo", document(OTHER)["numbers"][0])  # another account's number
    reply = client.put("/api/accounts/sub-demo", json=taken, headers={"X-CSRF-Token": csrf, "If-Match": '"2"'})
    assert reply.status_code == 422 and reply.json()["problems"][0]["pointer"] == "/numbers/0"
    assert "thames-support-247" not in reply.text  # a subscriber is not told whose number it is
    reply = stack.noc().post("/api/accounts/sub-demo/plan", json=taken)
    assert reply.status_code == 422 and "thames-support-247" in reply.json()["problems"][0]["message"]


def test_simulate_equals_the_cli_json(stack: Stack) -> None:
    params: dict[str, Any] = {"number": "+74951234567", "caller": "+79031112233", "at": "2026-11-25T11:00",
                              "event": ["timeout", "answer:petrov"]}
    reply = stack.noc().get(f"/api/accounts/{BERRY}/simulate", params=params)
    assert reply.status_code == 200, reply.text
    cli = CliRunner().invoke(main, ["simulate", "--redis", stack.server.url, "--number", params["number"], "--caller",
                                    params["caller"], "--at", params["at"], "--event", "timeout", "--event", "answer:petrov",
                                    "--json"])
    assert cli.exit_code == 0, cli.output
    assert reply.json() == json.loads(cli.output)
    wrong = stack.noc().get(f"/api/accounts/{BERRY}/simulate", params={**params, "number": "+442079460100"})
    assert wrong.status_code == 404
    bad = stack.noc().get(f"/api/accounts/{BERRY}/simulate", params={**params, "at": "yesterday"})
    assert bad.status_code == 422 and "at" in bad.json()["detail"]


def test_coverage_json_equals_the_cli_and_png(stack: Stack) -> None:
    client = stack.noc()
    reply = client.get(f"/api/accounts/{BERRY}/coverage", params={"week": "2026-W48", "slot": 60})
    assert reply.status_code == 200
    cli = CliRunner().invoke(main, ["coverage", BERRY, "--redis", stack.server.url, "--week", "2026-W48", "--slot", "60", "--json"])
    assert cli.exit_code == 0, cli.output
    assert reply.json() == json.loads(cli.output)
    png = client.get(f"/api/accounts/{BERRY}/coverage.png", params={"week": "2026-W48", "slot": 60})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    bad = client.get(f"/api/accounts/{BERRY}/coverage", params={"week": "2026-W99", "slot": 1})
    assert bad.status_code == 422
    assert {p["pointer"] for p in bad.json()["problems"]} == {"/query/slot"}
    assert client.get(f"/api/accounts/{BERRY}/coverage", params={"week": "2026-W99"}).status_code == 422


def test_a_rollback_refused_for_a_taken_number_does_not_name_its_holder(stack: Stack) -> None:
    """A's v1 had a number that A dropped and another tenant took: rolling A back is refused,
    and the refusal does not say which account holds the number (subscriber and NOC alike)."""
    first = document(SEED, "rb-mine", "+74950000041")
    first["numbers"] = ["+74950000041", "+74950000042"]
    stack.load(first)
    stack.load(document(SEED, "rb-mine", "+74950000041"))
    stack.load(document(OTHER, "rb-theirs", "+74950000042"))
    client, csrf = stack.subscriber("rb-mine")
    refused = client.post("/api/accounts/rb-mine/rollback", params={"to": 1, "dry_run": "true"},
                          headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 409, refused.text
    assert "rb-theirs" not in refused.text and "another account" in refused.text
