"""The API's authentication: NOC tokens, subscriber sessions, CSRF, login throttling,
tenant isolation (another account's objects are a 404, as missing ones)."""

from __future__ import annotations

import json
import stat

import pytest

from routing.store import credentials
from tests.api_support import PASSWORD, SEED, Stack, document, stack

__all__ = ["stack"]

BERRY, THAMES = "berry-demo", "thames-support-247"


@pytest.fixture(autouse=True)
def _fresh_throttle(stack: Stack) -> None:
    stack.clear_throttle()


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/accounts"), ("GET", f"/api/accounts/{BERRY}"), ("PUT", f"/api/accounts/{BERRY}"),
    ("GET", f"/api/accounts/{BERRY}/versions"), ("GET", f"/api/accounts/{BERRY}/coverage.png"),
    ("POST", f"/api/accounts/{BERRY}/plan"), ("POST", "/api/logout"),
])
def test_401_without_credentials(stack: Stack, method: str, path: str) -> None:
    reply = stack.anonymous().request(method, path)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_bad_and_revoked_tokens_are_401(stack: Stack) -> None:
    client = stack.anonymous()
    assert client.get("/api/accounts", headers={"Authorization": "Bearer vot_nope"}).status_code == 401
    assert client.get("/api/accounts", headers={"Authorization": "Basic abc"}).status_code == 401
    secret, info = credentials.create_token(stack.redis, "short-lived")
    assert client.get("/api/accounts", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    credentials.revoke_token(stack.redis, info.id)
    reply = client.get("/api/accounts", headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 401
    assert secret not in reply.text
    assert stack.redis.hget(credentials.TOKENS, secret) is None  # stored only as a hash


def test_noc_sees_every_account_subscriber_its_own(stack: Stack) -> None:
    assert {a["account"] for a in stack.noc().get("/api/accounts").json()} >= {BERRY, THAMES}
    client, _ = stack.subscriber(BERRY)
    assert [a["account"] for a in client.get("/api/accounts").json()] == [BERRY]
    assert client.get("/api/whoami").json() == {"role": "subscriber", "account": BERRY, "name": f"api:{BERRY}"}
    assert stack.noc().get("/api/whoami").json()["role"] == "noc"


def test_tenant_isolation_every_object_is_404(stack: Stack) -> None:
    client, csrf = stack.subscriber(BERRY)
    headers = {"X-CSRF-Token": csrf, "If-Match": '"1"'}
    body = json.dumps(document(SEED, THAMES))
    for account in (THAMES, "no-such-account"):
        base = f"/api/accounts/{account}"
        replies = [
            client.get(base), client.put(base, content=body, headers=headers),
            client.post(f"{base}/validate", content=body, headers=headers),
            client.post(f"{base}/plan", content=body, headers=headers),
            client.post(f"{base}/apply", content=body, headers=headers),
            client.get(f"{base}/versions"), client.get(f"{base}/versions/1"),
            client.post(f"{base}/rollback", headers=headers),
            client.get(f"{base}/simulate", params={"number": "+442079460100", "caller": "+79031112233"}),
            client.get(f"{base}/coverage"), client.get(f"{base}/coverage.png"),
        ]
        assert [r.status_code for r in replies] == [404] * len(replies)
        assert {r.json()["detail"] for r in replies} == {f"account {account!r} not found"}  # the same for both


def test_csrf_missing_or_wrong_is_403_bearer_needs_none(stack: Stack) -> None:
    client, csrf = stack.subscriber(BERRY)
    body = json.dumps(document(SEED))
    path = f"/api/accounts/{BERRY}/validate"
    assert client.post(path, content=body).status_code == 403
    assert client.post(path, content=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post(path, content=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get(f"/api/accounts/{BERRY}").status_code == 200  # safe methods need none
    assert stack.noc().post(path, content=body).status_code == 200


def test_login_form_logout_and_new_password_ends_sessions(stack: Stack) -> None:
    credentials.set_password(stack.redis, THAMES, PASSWORD)
    client = stack.anonymous()
    forged = client.post("/api/login", data={"account": THAMES, "password": PASSWORD})  # what another site can post
    assert forged.status_code == 415 and "set-cookie" not in forged.headers
    assert forged.headers["X-Content-Type-Options"] == "nosniff"  # on every answer
    reply = client.post("/api/login", json={"account": THAMES, "password": PASSWORD})
    assert reply.status_code == 200
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=" in cookie
    assert client.get(f"/api/accounts/{THAMES}").status_code == 200
    credentials.set_password(stack.redis, THAMES, PASSWORD + "!")
    assert client.get(f"/api/accounts/{THAMES}").status_code == 401
    client, csrf = stack.subscriber(THAMES)
    assert client.post("/api/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.post("/api/logout", data={"csrf": csrf}).status_code == 200  # a form's field
    assert client.get(f"/api/accounts/{THAMES}").status_code == 401


def test_tampered_cookie_is_401(stack: Stack) -> None:
    client, _ = stack.subscriber(BERRY)
    value = client.cookies["voffice_session"]
    client.cookies.set("voffice_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/api/accounts").status_code == 401


def test_login_throttle_429_same_error_for_unknown_accounts(stack: Stack) -> None:
    from fastapi.testclient import TestClient

    client = stack.anonymous()
    credentials.set_password(stack.redis, BERRY, PASSWORD)
    wrong = client.post("/api/login", json={"account": BERRY, "password": "not it at all"})
    unknown = client.post("/api/login", json={"account": "nobody-here", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    for _ in range(credentials.THROTTLE_LIMIT - 2):  # this client address: 5 failures in all
        assert client.post("/api/login", json={"account": THAMES, "password": "nope nope"}).status_code == 401
    reply = client.post("/api/login", json={"account": BERRY, "password": PASSWORD})  # even the right one
    assert reply.status_code == 429
    assert 0 < int(reply.headers["Retry-After"]) <= credentials.THROTTLE_WINDOW
    assert PASSWORD not in reply.text
    # per account too: from other addresses, berry-demo's 5th failure blocks it for everyone
    for i in range(3):
        other = TestClient(stack.app, client=(f"192.0.2.{i}", 40000))
        assert other.post("/api/login", json={"account": BERRY, "password": "nope nope"}).status_code == 401
    other = TestClient(stack.app, client=("192.0.2.99", 40000))
    assert other.post("/api/login", json={"account": BERRY, "password": "nope nope"}).status_code == 401  # the 5th
    assert other.post("/api/login", json={"account": BERRY, "password": PASSWORD}).status_code == 429
    assert other.post("/api/login", json={"account": THAMES, "password": "x" * 9}).status_code == 401  # not throttled


def test_login_bad_input_is_422(stack: Stack) -> None:
    client = stack.anonymous()
    json_type = {"Content-Type": "application/json"}
    assert client.post("/api/login", content=b"{not json", headers=json_type).status_code == 422
    assert client.post("/api/login", content=b"[" * 100_000, headers=json_type).status_code == 413
    assert client.post("/api/login", content=b"[" * 4000, headers=json_type).status_code == 422  # too deep
    assert "password" in client.post("/api/login", json={"account": BERRY}).json()["detail"]


def test_secret_key_file_is_0600(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    from routing.web.settings import SECRET_FILE, WebSettings, load_secret

    state = tmp_path_factory.mktemp("state")
    key = load_secret(state)
    assert stat.S_IMODE((state / SECRET_FILE).stat().st_mode) == 0o600
    assert load_secret(state) == key
    assert key.decode() not in repr(WebSettings(secret_key=key))


def test_docs_page_offline_and_openapi(stack: Stack) -> None:
    client = stack.anonymous()
    page = client.get("/api/docs")
    assert page.status_code == 200 and "/api/accounts/{account}/plan" in page.text
    assert "cdn" not in page.text.lower() and "<script" not in page.text.lower()
    assert "/api/accounts/{account}/coverage.png" in client.get("/api/openapi.json").json()["paths"]


def test_token_and_password_commands(stack: Stack) -> None:
    from click.testing import CliRunner

    from routing.cli.console import main

    url = ["--redis", stack.server.url]
    made = CliRunner().invoke(main, ["token", "create", "--noc", "--name", "cli-made", *url])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith(credentials.TOKEN_PREFIX)
    assert stack.anonymous().get("/api/accounts", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = CliRunner().invoke(main, ["token", "list", *url])
    line = next(x for x in listed.stdout.splitlines() if x.endswith("cli-made"))
    assert secret not in listed.output
    revoked = CliRunner().invoke(main, ["token", "revoke", line.split()[0], *url])
    assert revoked.exit_code == 0, revoked.output
    assert stack.anonymous().get("/api/accounts", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert CliRunner().invoke(main, ["token", "revoke", "nope", *url]).exit_code == 1

    short = CliRunner().invoke(main, ["password", BERRY, "--stdin", *url], input="short\n")
    assert short.exit_code == 1 and "at least 8" in short.output and "short\n" not in short.output
    assert CliRunner().invoke(main, ["password", "nobody", "--stdin", *url], input="long enough\n").exit_code == 1
    ok = CliRunner().invoke(main, ["password", BERRY, "--stdin", *url], input="a new long one\n")
    assert ok.exit_code == 0, ok.output
    assert (credentials.password_hash(stack.redis, BERRY) or "").startswith("$argon2id$")
    login = stack.anonymous().post("/api/login", json={"account": BERRY, "password": "a new long one"})
    assert login.status_code == 200
