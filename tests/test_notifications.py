"""What a call leaves reaches people: the seed's cases through the whole stack (Kamailio,
rtpengine, the media server, Redis) with the history writer and the notifier writing to a
real PostgreSQL, mail into the stack's Maildir or a real SMTP server (aiosmtpd), and
signed webhooks to a real HTTP receiver on loopback."""

from __future__ import annotations

import copy
import email
import email.policy
import json
import mailbox
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routing.records import database, webhook
from routing.stack.ports import free_port

from .callpath import (
    STACK_TESTS,
    CallStack,
    StackFactory,
    caller,
    dtmf_caller,
    operator,
    pcap_alaw_audio,
    short_ring_config,
)

pytestmark = [*STACK_TESTS, pytest.mark.postgres]
NUMBER = "+74951234567"
LUNCH = "2026-11-25T13:30:00+03:00"
SATURDAY = "2026-11-28T13:00:00+03:00"


class Receiver:
    """A webhook receiver on loopback: answers the statuses in `answers` in turn, then 200,
    and keeps every request (headers, body)."""

    def __init__(self, answers: list[int] | None = None):
        self.answers = list(answers or [])
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/voffice"

    def delivered(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [r for r in self.requests if r[2] == 200]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def stacks(tmp_path: Path, seed_doc: dict[str, Any]) -> Iterator[StackFactory]:
    factory = StackFactory(tmp_path, short_ring_config(seed_doc))
    yield factory
    factory.stop()


def with_webhook(seed_doc: dict[str, Any], url: str) -> dict[str, Any]:
    doc = copy.deepcopy(short_ring_config(seed_doc))
    doc["notifications"]["webhooks"] = [url]
    return doc


def wait_for(condition: Callable[[], Any], seconds: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def mails(stack: CallStack) -> list[EmailMessage]:
    assert stack.config is not None
    folder = stack.config.run_dir / "mail"
    if not folder.exists():
        return []
    box = mailbox.Maildir(folder, create=False)
    return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]  # type: ignore[misc]


def secret_of(stack: CallStack, account: str = "berry-demo") -> bytes:
    value = stack.redis().get(f"voffice:webhook-secret:{account}")
    assert value is not None
    return value.encode() if isinstance(value, str) else bytes(value)


def history(url: str, status: str | None = None) -> list[dict[str, Any]]:
    with database.connect(url) as conn:
        return database.calls(conn, account="berry-demo", status=status)


def deliveries(url: str) -> list[dict[str, Any]]:
    with database.connect(url) as conn:
        return database.deliveries(conn, account="berry-demo")


def decoded_mp3(data: bytes, workdir: Path) -> np.ndarray:
    mp3, wav = workdir / "got.mp3", workdir / "got.wav"
    mp3.write_bytes(data)
    subprocess.run(["lame", "--quiet", "--decode", str(mp3), str(wav)], check=True, timeout=60)
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)


def correlation(recorded: np.ndarray, sent: np.ndarray) -> float:
    window = sent[8000:24000]  # 2 s from the middle of what the caller said
    corr = np.correlate(recorded, window, mode="valid")
    energy = np.sqrt(np.convolve(recorded**2, np.ones(len(window)), mode="valid") * np.sum(window**2))
    return float(np.max(corr / np.maximum(energy, 1e-9)))


def test_a_voicemail_reaches_the_office_by_mail_and_webhook_and_the_history(
        tmp_path: Path, stacks: Any, seed_doc: dict[str, Any], receiver: Receiver, database_url: str) -> None:
    """The seed's lunch case, secretary busy, key 1, a 7 s message: one mail to the office
    (Russian, the message attached as MP3, decoded and compared with what the caller said),
    one webhook whose signature verifies, one history row with the voicemail it left."""
    stack = stacks(LUNCH, with_webhook(seed_doc, receiver.url), database_url=database_url)
    gateway = operator(tmp_path, "gateway", "busy", stack.gateway_port, calls=2).start()
    call = dtmf_caller(tmp_path, stack, NUMBER, "+79031112233", "1", message_after_ms=6000, talk_ms=8000).start()
    assert call.wait(120) == 0
    gateway.stop()
    [mail] = wait_for(lambda: mails(stack), what="the voicemail mail")
    [(headers, body, _)] = wait_for(receiver.delivered, what="the webhook")
    rows = wait_for(lambda: history(database_url), what="the history row")
    assert mail["To"] == "office@berry-demo.ru" and "Голосовое сообщение" in mail["Subject"]
    [audio] = [part for part in mail.iter_attachments() if part.get_content_type() == "audio/mpeg"]
    heard = decoded_mp3(audio.get_content(), tmp_path)
    assert correlation(heard, pcap_alaw_audio(Path("/usr/share/sip-tester/g711a.pcap")).astype(np.float64)) > 0.8
    assert webhook.verify(secret_of(stack), headers[webhook.SIGNATURE_HEADER], body, time.time())
    sent = json.loads(body)
    assert (sent["type"], sent["account"], sent["caller"], sent["number"]) == ("voicemail", "berry-demo", "+79031112233", NUMBER)
    [row] = rows
    assert (row["status"], row["rule"], row["left_kind"], row["call_id"]) == ("voicemail", "r1", "voicemail", sent["call_id"])
    time.sleep(1.0)  # nothing more comes: one mail, one webhook, no missed-call notice
    assert len(mails(stack)) == 1 and len(receiver.requests) == 1
    assert sorted((d["channel"], d["status"], d["attempts"]) for d in deliveries(database_url)) == [
        ("email", "sent", 1), ("webhook", "sent", 1)]


def test_a_missed_call_notifies_once_and_is_one_row(tmp_path: Path, stacks: Any, seed_doc: dict[str, Any],
                                                     receiver: Receiver, database_url: str) -> None:
    """Saturday: the greeting, then the call ends unanswered: one notice per call (never per
    ringing leg), one row."""
    stack = stacks(SATURDAY, with_webhook(seed_doc, receiver.url), database_url=database_url)
    call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario="caller-unanswered.xml").start()
    assert call.wait(60) == 0
    [mail] = wait_for(lambda: mails(stack), what="the missed-call mail")
    wait_for(receiver.delivered, what="the webhook")
    [row] = wait_for(lambda: history(database_url), what="the history row")
    assert row["status"] == "missed" and "Пропущенный" in mail["Subject"]
    assert not list(mail.iter_attachments())
    time.sleep(1.0)
    assert len(mails(stack)) == 1 and len(receiver.requests) == 1


def test_failing_receivers_get_it_once_when_they_are_back(tmp_path: Path, stacks: Any, seed_doc: dict[str, Any],
                                                          database_url: str) -> None:
    """The webhook receiver answers 500 three times, then 200: delivered once, four attempts
    recorded. The SMTP relay is down when the call ends and up later: the mail arrives once."""
    from aiosmtpd.controller import Controller

    failing = Receiver([500, 500, 500])
    smtp_port = free_port()
    got: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(envelope.content)
            return "250 OK"

    stacks.overrides["smtp_url"] = f"smtp://127.0.0.1:{smtp_port}"
    try:
        stack = stacks(SATURDAY, with_webhook(seed_doc, failing.url), database_url=database_url)
        call = caller(tmp_path, stack, NUMBER, "+79031112233", scenario="caller-unanswered.xml").start()
        assert call.wait(60) == 0
        wait_for(failing.delivered, what="the webhook after three 500s")
        first = wait_for(lambda: [d for d in deliveries(database_url) if d["channel"] == "email" and d["attempts"] >= 2],
                         what="failed mail attempts")
        assert first[0]["status"] == "pending" and first[0]["last_error"]  # kept trying, the reason recorded
        relay = Controller(Handler(), hostname="127.0.0.1", port=smtp_port)
        relay.start()
        try:
            wait_for(lambda: got, seconds=60, what="the mail once the relay is back")
            time.sleep(2.0)
        finally:
            relay.stop()
        assert len(got) == 1 and b"berry-demo" in got[0]
        assert [r[2] for r in failing.requests] == [500, 500, 500, 200]
        by_channel = {d["channel"]: d for d in deliveries(database_url)}
        assert (by_channel["webhook"]["status"], by_channel["webhook"]["attempts"]) == ("sent", 4)
        assert by_channel["email"]["status"] == "sent" and by_channel["email"]["attempts"] >= 2
    finally:
        failing.close()


def test_a_fax_is_mailed_as_pdf_with_its_page_count(tmp_path: Path, stacks: Any, database_url: str) -> None:
    """A fax event as the media server emits it (a real two-page TIFF made into a PDF by the
    media server's own code) put on the stack's stream: the mail carries the PDF, the text
    its page count; the history has the recording."""
    from voffice_media.fax import make_test_tiff, tiff_to_pdf

    stack = stacks(SATURDAY, database_url=database_url)
    tiff, pdf = tmp_path / "fax.tif", tmp_path / "fax.pdf"
    make_test_tiff(tiff, pages=2)
    tiff_to_pdf(tiff, pdf)
    stack.redis().xadd("voffice:events", {
        "v": "1", "type": "fax", "account": "berry-demo", "number": NUMBER, "caller": "+79031112233",
        "call_id": "fa0000000000fa01", "path": str(tiff), "pdf": str(pdf), "pages": "2", "status": "stored",
        "duration": "41.000", "sha256": "ab" * 32, "bytes": str(tiff.stat().st_size)})
    [mail] = wait_for(lambda: mails(stack), what="the fax mail")
    [attached] = list(mail.iter_attachments())
    assert attached.get_content_type() == "application/pdf" and attached.get_content() == pdf.read_bytes()
    assert "Факс" in mail["Subject"] and "2" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    with database.connect(database_url) as conn:
        [row] = wait_for(lambda: conn.execute("SELECT kind, pages, pdf FROM recordings").fetchall(), what="the recording row")
    assert (row["kind"], row["pages"], row["pdf"]) == ("fax", 2, str(pdf))


def test_a_vip_fax_on_saturday_reaches_the_office_as_pdf(tmp_path: Path, stacks: Any, database_url: str) -> None:
    """The seed's weekend-VIP case through the whole stack: a caller (a real T.30 sender,
    spandsp) dials, keys 2 in the menu (in-band), the media server receives two pages
    through rtpengine; the office gets one mail with the fax as PDF and its page count, the
    history a fax call with the fax it left."""
    from voffice_media.dtmf import dtmf_tone
    from voffice_media.fax import FaxSession, make_test_tiff, spandsp_available
    from voffice_media.operations import FRAME

    from .stack_peer import StackCaller

    if not spandsp_available():
        pytest.skip("libspandsp2 is installed by `make install`")
    stack = stacks(SATURDAY, database_url=database_url)
    tiff = tmp_path / "sent.tif"
    make_test_tiff(tiff, pages=2)
    peer = StackCaller(("127.0.0.1", stack.sip_port), "+79161112233")
    session = FaxSession(calling=True, rx_file=None, tx_file=tiff)
    try:
        peer.dial(NUMBER)
        peer.early_media(10)  # the menu's 183
        key = iter(np.concatenate([np.zeros(FRAME * 25, dtype=np.int16), dtmf_tone("2", 200),
                                   np.zeros(FRAME * 10, dtype=np.int16)]).reshape(-1, FRAME))
        peer.media(3.0, lambda _rx: next(key, np.zeros(FRAME, dtype=np.int16)), stop=lambda: bool(peer.finals()))
        answer = peer.final(20)
        assert answer.status == 200, answer.status  # the fax operation answers
        peer.ack(answer)
        finished: list[float] = []

        def produce(rx: np.ndarray) -> np.ndarray:
            out: np.ndarray = session.process(rx)
            if session.done and not finished:
                finished.append(time.monotonic())
            return out

        peer.media(120, produce, stop=lambda: bool(finished) and (peer.bye_received or time.monotonic() - finished[0] > 3))
        assert session.result is not None and session.result.ok, session.result
        if not peer.bye_received:
            peer.bye()
    finally:
        session.close()
        peer.close()
    [mail] = wait_for(lambda: mails(stack), seconds=30, what="the fax mail")
    [pdf] = list(mail.iter_attachments())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content().startswith(b"%PDF")
    assert "Факс" in mail["Subject"] and "2" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [row] = wait_for(lambda: history(database_url), what="the history row")
    assert (row["status"], row["rule"], row["left_kind"], row["left_pages"]) == ("fax", "r3", "fax", 2)
