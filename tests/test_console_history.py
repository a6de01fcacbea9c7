"""The console's call history and inbox pages (server-rendered, over the records API's
functions): filters, the CSV link, players and PDF links pointing at the API, delivery states,
both languages; another account's pages are the API's 404. The browser test is
tests/test_console_inbox_browser.py."""

from __future__ import annotations

import re

import pytest

from tests.test_api_records import BERRY, THAMES, Records, records

__all__ = ["records"]

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def test_calls_page_filters_and_csv_link(records: Records) -> None:
    client, _ = records.stack.subscriber(BERRY)
    page = client.get(f"/console/{BERRY}/calls?lang=en")
    assert page.status_code == 200 and "Call history" in page.text
    assert len(re.findall(r'<tr class="call"', page.text)) == 10
    missed = client.get(f"/console/{BERRY}/calls", params={"status": "missed", "lang": "en"})
    assert len(re.findall(r'<tr class="call"', missed.text)) == 1
    assert "=cmd|&#39; /C calc&#39;!A0" in missed.text  # escaped, shown as text
    assert 'href="/api/accounts/berry-demo/calls.csv?status=missed"' in missed.text
    assert client.get("/api/accounts/berry-demo/calls.csv?status=missed").text.count("\r\n") == 2
    bad = client.get(f"/console/{BERRY}/calls", params={"from": "yesterday", "lang": "en"})
    assert bad.status_code == 200 and "from: " in bad.text and "ISO 8601" in bad.text
    ru = client.get(f"/console/{BERRY}/calls", params={"lang": "ru"})
    assert "История звонков" in ru.text and "пропущен" in ru.text
    paged = client.get(f"/console/{BERRY}/calls", params={"limit": 4, "lang": "en"})
    following = re.search(r'id="next-page" href="([^"]+)"', paged.text)
    assert following is not None
    rest = client.get(following.group(1).replace("&amp;", "&"))
    assert len(re.findall(r'<tr class="call"', rest.text)) == 4


def test_inbox_page_players_pdf_and_deliveries(records: Records) -> None:
    client, _ = records.stack.subscriber(BERRY)
    page = client.get(f"/console/{BERRY}/inbox?lang=en")
    assert page.status_code == 200
    assert '<audio controls preload="metadata" src="/api/accounts/berry-demo/voicemail/c000000000000006"' in page.text
    assert 'href="/api/accounts/berry-demo/faxes/c000000000000007.pdf"' in page.text
    assert "https://hooks.example/v" in page.text and "s3cret" not in page.text
    assert 'class="delivery failed"' in page.text
    assert client.get("/api/accounts/berry-demo/voicemail/c000000000000006").content == records.berry_wav
    assert str(records.media) not in page.text


def test_another_accounts_pages_are_404(records: Records) -> None:
    thames, _ = records.stack.subscriber(THAMES)
    for path in ("calls", "inbox"):
        reply = thames.get(f"/console/{BERRY}/{path}")
        assert reply.status_code == 404 and "berry-demo" in reply.text and "c0000000000000" not in reply.text
    assert records.stack.anonymous().get(f"/console/{BERRY}/inbox", follow_redirects=False).status_code == 303
