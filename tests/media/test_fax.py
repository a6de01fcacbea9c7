"""Two spandsp fax sessions back to back through G.711 A-law, frame by frame, as the media
server's ticker would drive one of them against a real fax machine."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from voffice_media import fax
from voffice_media.fax import FaxSession, make_test_tiff, tiff_to_pdf
from voffice_media.recording import RecordingStore

if not fax.spandsp_available():
    pytest.skip("libspandsp.so.2 cannot be loaded", allow_module_level=True)

MAX_FRAMES = 60 * 50  # a minute of audio: a 2-page fax needs about 25 s


# --- a tiny local A-law codec (ITU-T G.711), so this test needs nothing else -----------------


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256) ^ 0x55
    segment = (codes >> 4) & 7
    mantissa = codes & 0x0F
    magnitude = np.where(segment == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    linear = np.arange(-32768, 32768)
    magnitude = np.minimum(np.abs(linear), 32767) >> 3  # 13-bit magnitude
    segment = np.zeros_like(magnitude)
    for s in range(1, 8):
        segment[magnitude >= (16 << s)] = s
    mantissa = np.where(segment == 0, magnitude >> 1, magnitude >> np.maximum(segment, 1)) & 0x0F
    code = (segment << 4) | mantissa | np.where(linear >= 0, 0x80, 0)
    return (code ^ 0x55).astype(np.uint8)


ALAW_DECODE = _alaw_decode_table()
ALAW_ENCODE = _alaw_encode_table()


def through_alaw(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    return ALAW_DECODE[ALAW_ENCODE[samples.astype(np.int32) + 32768]]


def test_alaw_helper_is_a_g711_codec() -> None:
    codes = np.arange(256, dtype=np.int32)
    assert np.array_equal(ALAW_ENCODE[ALAW_DECODE[codes].astype(np.int32) + 32768], codes)
    assert ALAW_DECODE[0xD5] == 8 and ALAW_DECODE[0x55] == -8  # the two codes nearest zero
    ramp = np.arange(-32768, 32768, 7, dtype=np.int16)
    error = np.abs(through_alaw(ramp).astype(np.int32) - ramp)
    assert np.all(error <= np.maximum(16, np.abs(ramp.astype(np.int32)) // 16))


# --- helpers -------------------------------------------------------------------------------


def run_call(
    sender: FaxSession, receiver: FaxSession, *, stop_sender_after_pages: int | None = None, hangup: bool = True
) -> int:
    """Drive both sessions until both reach phase E; returns the frames exchanged.

    With `stop_sender_after_pages`, the sender vanishes once the receiver holds that many
    pages: then the receiver gets a BYE (`hangup`) or silence until it gives up."""
    to_receiver = np.zeros(fax.FRAME_SAMPLES, dtype=np.int16)
    to_sender = np.zeros(fax.FRAME_SAMPLES, dtype=np.int16)
    sender_gone = False
    for frame in range(1, MAX_FRAMES + 1):
        if stop_sender_after_pages is not None and receiver.progress().pages_received >= stop_sender_after_pages:
            sender_gone = True
            if hangup:
                receiver.hangup()
                return frame
        if sender_gone:
            receiver.process(np.zeros(fax.FRAME_SAMPLES, dtype=np.int16))
            if receiver.done:
                return frame
            continue
        sent = sender.process(through_alaw(to_sender))
        answered = receiver.process(through_alaw(to_receiver))
        to_receiver, to_sender = sent, answered
        if sender.done and receiver.done:
            return frame
    raise AssertionError(f"fax did not finish within {MAX_FRAMES} frames")


def page_arrays(path: Path) -> list[npt.NDArray[np.bool_]]:
    pages = []
    with Image.open(path) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            pages.append(np.asarray(image.convert("1"), dtype=bool))
    return pages


def pdf_page_count(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))


# --- tests ---------------------------------------------------------------------------------


def test_make_test_tiff_pages_are_fax_g4_and_distinct(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    images = make_test_tiff(path, pages=3)
    with Image.open(path) as tiff:
        assert tiff.n_frames == 3
        for index in range(3):
            tiff.seek(index)
            assert tiff.size[0] == 1728 and tiff.mode == "1"
            assert tiff.info["compression"] == "group4"
            assert tuple(round(v) for v in tiff.info["dpi"]) == (204, 196)
    arrays = page_arrays(path)
    assert all(np.array_equal(np.asarray(img, dtype=bool), arr) for img, arr in zip(images, arrays, strict=True))
    assert not np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[1], arrays[2])


def test_two_page_fax_crosses_g711(tmp_path: Path) -> None:
    sent = tmp_path / "sent.tif"
    received = tmp_path / "received.tif"
    make_test_tiff(sent, pages=2)
    started = time.perf_counter()
    with (
        FaxSession(True, rx_file=None, tx_file=sent, local_ident="+7 495 1111111") as sender,
        FaxSession(False, rx_file=received, tx_file=None, local_ident="+7 495 2222222") as receiver,
    ):
        frames = run_call(sender, receiver)
        wall = time.perf_counter() - started
        audio = frames * fax.FRAME_SAMPLES / fax.SAMPLE_RATE
        print(f"2-page fax: {audio:.1f} s of audio in {wall:.2f} s wall")
        assert sender.result is not None and receiver.result is not None
        assert (sender.result.code, sender.result.error, sender.result.pages) == (fax.T30_ERR_OK, "OK", 2)
        assert (receiver.result.code, receiver.result.pages) == (fax.T30_ERR_OK, 2)
        assert receiver.result.ok and sender.result.ok
        assert receiver.result.remote_ident == "+7 495 1111111"
        assert sender.result.remote_ident == "+7 495 2222222"
        assert 10 < audio < 40 and wall < 20
        assert receiver.seconds == pytest.approx(frames * 0.02)

    sent_pages, received_pages = page_arrays(sent), page_arrays(received)
    assert len(received_pages) == 2
    for index, (want, got) in enumerate(zip(sent_pages, received_pages, strict=True)):
        assert got.shape[1] == 1728
        assert abs(got.shape[0] - want.shape[0]) <= 2, f"page {index + 1} length"
        rows = min(got.shape[0], want.shape[0])
        assert np.mean(want[:rows] != got[:rows]) < 0.001, f"page {index + 1} differs"
    # Each received page is the one sent in that place, not the other one.
    assert np.mean(sent_pages[0] != received_pages[1][: sent_pages[0].shape[0]]) > 0.01

    pdf = tmp_path / "received.pdf"
    assert tiff_to_pdf(received, pdf) == 2
    assert pdf_page_count(pdf) == 2


@pytest.mark.parametrize("hangup", [True, False], ids=["bye", "line-dead"])
def test_sender_gone_after_first_page_keeps_one_page_as_partial(tmp_path: Path, hangup: bool) -> None:
    """The sender disappears after page 1: with a BYE the receiver is told at once; with a
    dead line it gives up by itself. Either way phase E reports an error and one page, and
    the media server stores that page as a partial fax."""
    sent = tmp_path / "sent.tif"
    make_test_tiff(sent, pages=2)
    store = RecordingStore(tmp_path / "recordings")
    writer = store.open("fax", "berry-demo", "0123456789abcdef", meta={"caller": "+79161230001"})
    sender = FaxSession(True, rx_file=None, tx_file=sent)
    receiver = FaxSession(False, rx_file=writer.part_path, tx_file=None)
    try:
        run_call(sender, receiver, stop_sender_after_pages=1, hangup=hangup)
        result = receiver.result
        assert result is not None and not result.ok
        assert result.pages == 1
        if hangup:
            assert (result.code, result.error) == (fax.T30_ERR_CALLDROPPED, "The call dropped prematurely")
        else:
            assert result.code != fax.T30_ERR_CALLDROPPED and result.error
    finally:
        sender.close()
        receiver.close()
    stored = writer.finish(partial=not result.ok, duration_seconds=receiver.seconds)
    assert stored is not None and stored.partial and stored.pages == 1 and stored.path.suffix == ".tif"
    # The page that was complete is kept, readable, and is page 1.
    pages = page_arrays(stored.path)
    assert len(pages) == 1
    want = page_arrays(sent)[0]
    rows = min(want.shape[0], pages[0].shape[0])
    assert np.mean(want[:rows] != pages[0][:rows]) < 0.001
    pdf = store.derive(stored, ".pdf", lambda tmp: tiff_to_pdf(stored.path, tmp))
    assert pdf_page_count(pdf) == 1
    assert list((tmp_path / "recordings" / "incoming").iterdir()) == []


def test_silence_then_hangup_before_any_page_writes_no_file(tmp_path: Path) -> None:
    received = tmp_path / "received.tif"
    with FaxSession(False, rx_file=received, tx_file=None) as receiver:
        silence = np.zeros(fax.FRAME_SAMPLES, dtype=np.int16)
        for _ in range(100):
            out = receiver.process(silence)
            assert out.dtype == np.int16 and out.shape == (fax.FRAME_SAMPLES,)
        assert not receiver.done
        result = receiver.hangup()
        assert receiver.done and result.code == fax.T30_ERR_CALLDROPPED and result.pages == 0
    assert not received.exists()


def test_answering_side_sends_ced_tone(tmp_path: Path) -> None:
    with FaxSession(False, rx_file=tmp_path / "rx.tif", tx_file=None) as receiver:
        frames = [receiver.process(np.zeros(fax.FRAME_SAMPLES, dtype=np.int16)) for _ in range(150)]
    audio = np.concatenate(frames).astype(np.float64)
    assert np.sqrt(np.mean(audio**2)) > 1000  # the 2100 Hz answer tone is on the line
    spectrum = np.abs(np.fft.rfft(audio[8000:16000]))
    assert abs(np.argmax(spectrum) * fax.SAMPLE_RATE / 8000 - 2100) < 10


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FaxSession(False, rx_file=None, tx_file=None)
    with pytest.raises(ValueError):
        FaxSession(False, rx_file=tmp_path / "rx.tif", tx_file=None, local_ident="evil\r\nident")
    with pytest.raises(FileNotFoundError):
        FaxSession(True, rx_file=None, tx_file=tmp_path / "missing.tif")
    with pytest.raises(ValueError):
        FaxSession(False, rx_file=tmp_path / ("x" * 300) / "rx.tif", tx_file=None)
    session = FaxSession(False, rx_file=tmp_path / "rx.tif", tx_file=None)
    with pytest.raises(ValueError):
        session.process(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]
    session.close()
    session.close()  # idempotent
    with pytest.raises(RuntimeError):
        session.process(np.zeros(160, dtype=np.int16))
