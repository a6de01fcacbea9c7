"""The manual override through the API: the NOC and the account's subscriber set it, simulate
follows it at once (no load), DELETE goes back to the rules; another tenant gets 404; a bad
scenario or time is a 422 pointing at its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api_support import OTHER, SEED, Stack, document, stack

__all__ = ["stack"]

ACCOUNT, NUMBER = "ovr-demo", "+74950000031"


def test_set_show_simulate_clear(stack: Stack) -> None:
    stack.load(document(SEED, ACCOUNT, NUMBER))
    client, csrf = stack.subscriber(ACCOUNT)
    base = f"/api/accounts/{ACCOUNT}"
    assert client.get(f"{base}/override").json()["override"] is None
    # an instant after the override is set (it is in force from then on), and the week after
    later = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()
    year, week_number, _ = (datetime.now(UTC) + timedelta(days=7)).isocalendar()
    before = client.get(f"{base}/simulate", params={"number": NUMBER, "caller": "+79031112233", "at": later}).json()
    assert before["rule"]["id"] != "(override)"

    without_csrf = client.put(f"{base}/override", json={"scenario": "weekend"})
    assert without_csrf.status_code == 403
    reply = client.put(f"{base}/override", json={"scenario": "weekend", "until": None}, headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 200, reply.text
    shown = reply.json()
    assert shown["override"]["scenario"] == "weekend" and shown["status"] == "active"
    assert shown["override"]["set_by"] == f"api:{ACCOUNT}"

    after = client.get(f"{base}/simulate", params={"number": NUMBER, "caller": "+79031112233", "at": later}).json()
    assert after["rule"]["id"] == "(override)" and after["scenario"]["id"] == "weekend", after
    week = client.get(f"{base}/coverage", params={"week": f"{year}-W{week_number:02d}"}).json()
    assert "(override)" in str(week), "coverage shows the override"

    cleared = client.delete(f"{base}/override", headers={"X-CSRF-Token": csrf})
    assert cleared.json() == {"account": ACCOUNT, "cleared": True}
    again = client.get(f"{base}/simulate", params={"number": NUMBER, "caller": "+79031112233", "at": later}).json()
    assert again["rule"] == before["rule"]


def test_bad_scenario_and_time_point_at_their_fields(stack: Stack) -> None:
    stack.load(document(SEED, "ovr-bad", "+74950000032"))
    client = stack.noc()
    unknown = client.put("/api/accounts/ovr-bad/override", json={"scenario": "nope"})
    assert unknown.status_code == 422 and unknown.json()["problems"][0]["pointer"] == "/scenario"
    garbled = client.put("/api/accounts/ovr-bad/override", json={"scenario": "weekend", "until": "tomorrowish"})
    assert garbled.status_code == 422 and garbled.json()["problems"][0]["pointer"] == "/until"
    past = client.put("/api/accounts/ovr-bad/override", json={"scenario": "weekend", "until": "2020-01-01T00:00:00+03:00"})
    assert past.status_code == 422 and past.json()["problems"][0]["pointer"] == "/until"


def test_another_tenant_gets_404_and_no_credentials_401(stack: Stack) -> None:
    stack.load(document(SEED, "ovr-mine", "+74950000033"))
    stack.load(document(OTHER, "ovr-theirs", "+74950000034"))
    client, csrf = stack.subscriber("ovr-theirs")
    for method in ("get", "delete"):
        assert getattr(client, method)("/api/accounts/ovr-mine/override", headers={"X-CSRF-Token": csrf}).status_code == 404
    put = client.put("/api/accounts/ovr-mine/override", json={"scenario": "weekend"}, headers={"X-CSRF-Token": csrf})
    assert put.status_code == 404
    assert stack.anonymous().get("/api/accounts/ovr-mine/override").status_code == 401


def test_dates_at_the_calendars_edge_are_422_not_500(stack: Stack) -> None:
    stack.load(document(SEED, "ovr-edge", "+74950000035"))
    client = stack.noc()
    base = "/api/accounts/ovr-edge"
    assert client.put(f"{base}/override", json={"scenario": "weekend", "until": "9999-12-31T23:59-12:00"}).status_code == 422
    assert client.get(f"{base}/simulate", params={"number": "+74950000035", "caller": "+79031112233",
                                                  "at": "9999-12-31T23:59-12:00"}).status_code == 422
    assert client.get(f"{base}/coverage", params={"week": "9999-W52"}).status_code == 422
    assert client.put(base, json=document(SEED, "ovr-edge", "+74950000035"), headers={"If-Match": '"²"'.encode("latin-1")}).status_code == 400
