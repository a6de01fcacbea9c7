"""T.30 fax over G.711 audio, with spandsp 0.0.6 through ctypes.

Theory of operation: one `FaxSession` per fax call owns one spandsp `fax_state_t`
(`fax_init(NULL, calling)`), which holds the modems (V.21 for signalling, V.27ter/V.29/V.17
for the image) and the T.30 protocol engine. The media server's 20 ms ticker hands it the
caller's decoded audio and sends back what it returns: `process()` runs `fax_rx` on the
160 received samples, then `fax_tx` for the 160 samples to send. Nothing here touches a
socket or a clock: spandsp's T.30 timers advance by the samples it is given, so a test can
push 25 s of fax audio through two sessions in a fraction of a second.

Facts this module relies on (measured on Debian 12, libspandsp2 0.0.6, see DESIGN.md §5):
- `fax_set_transmit_on_idle(s, 1)` is required: without it `fax_tx` returns short buffers
  between modem phases and the far end never trains (T30_ERR_TX_PHBDEAD).
- The phase E handler is called from inside `fax_rx`/`fax_tx`/`t30_terminate`, on the
  caller's thread; it only records the outcome. Its CFUNCTYPE object must outlive the state
  (ctypes does not keep it alive), so it is stored together with the state pointer.
- `t30_terminate` is what a BYE means: a receiver then reports T30_ERR_CALLDROPPED and
  closes the TIFF, keeping the pages that were complete. No page, no file.
- `fax_free` runs `t30_release` itself, then frees; calling `fax_release` first would release
  twice, so `close()` calls only `fax_free`.
- spandsp keeps file names in 256-byte buffers and silently truncates longer ones: rejected.

Only the runtime library (libspandsp.so.2) is needed, never its headers; the few structures
and constants used are restated here from spandsp 0.0.6's public headers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160

# T.30 completion codes (spandsp/t30.h); the full text of any code comes from
# t30_completion_code_to_str.
T30_ERR_OK = 0
T30_ERR_RETRYDCN = 48
T30_ERR_CALLDROPPED = 49

# t30_set_supported_compressions bits (spandsp/t30.h).
T30_SUPPORT_T4_1D_COMPRESSION = 0x02
T30_SUPPORT_T4_2D_COMPRESSION = 0x04
T30_SUPPORT_T6_COMPRESSION = 0x08

# span_log levels and flags (spandsp/logging.h).
SPAN_LOG_FLOW = 5
SPAN_LOG_SHOW_PROTOCOL = 0x0800
SPAN_LOG_SHOW_TAG = 0x2000

# T.30 station identity (TSI/CSI): up to 20 of digits, '+' and space (ITU-T T.30 5.3.6.2.4).
IDENT = re.compile(r"[0-9+ ]{0,20}")
_MAX_SPANDSP_PATH = 255
_PHASE_E = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
_MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p)

Samples = npt.NDArray[np.int16]


class SpandspUnavailable(RuntimeError):
    """libspandsp.so.2 cannot be loaded (package libspandsp2 not installed)."""


class _Stats(ctypes.Structure):
    """t30_stats_t of spandsp 0.0.6, plus spare room in case a build adds fields at the end."""

    _fields_ = [
        ("bit_rate", ctypes.c_int),
        ("error_correcting_mode", ctypes.c_int),
        ("pages_tx", ctypes.c_int),
        ("pages_rx", ctypes.c_int),
        ("pages_in_file", ctypes.c_int),
        ("x_resolution", ctypes.c_int),
        ("y_resolution", ctypes.c_int),
        ("width", ctypes.c_int),
        ("length", ctypes.c_int),
        ("image_size", ctypes.c_int),
        ("encoding", ctypes.c_int),
        ("bad_rows", ctypes.c_int),
        ("longest_bad_row_run", ctypes.c_int),
        ("error_correcting_mode_retries", ctypes.c_int),
        ("current_status", ctypes.c_int),
        ("_spare", ctypes.c_int * 32),
    ]


def _declare(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> None:
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)


@functools.cache
def load_spandsp() -> ctypes.CDLL:
    """The spandsp runtime library with the prototypes this module uses declared."""
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise SpandspUnavailable(f"cannot load spandsp ({name}): {exc}; install libspandsp2") from exc
    p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    _declare(lib, "fax_init", p, p, i)
    _declare(lib, "fax_free", i, p)
    _declare(lib, "fax_rx", i, p, p, i)
    _declare(lib, "fax_tx", i, p, p, i)
    _declare(lib, "fax_set_transmit_on_idle", None, p, i)
    _declare(lib, "fax_get_t30_state", p, p)
    _declare(lib, "fax_get_logging_state", p, p)
    _declare(lib, "t30_get_logging_state", p, p)
    _declare(lib, "t30_set_tx_file", None, p, s, i, i)
    _declare(lib, "t30_set_rx_file", None, p, s, i)
    _declare(lib, "t30_set_tx_ident", i, p, s)
    _declare(lib, "t30_get_rx_ident", s, p)
    _declare(lib, "t30_set_ecm_capability", i, p, i)
    _declare(lib, "t30_set_supported_compressions", i, p, i)
    _declare(lib, "t30_set_phase_e_handler", None, p, _PHASE_E, p)
    _declare(lib, "t30_get_transfer_statistics", None, p, ctypes.POINTER(_Stats))
    _declare(lib, "t30_terminate", None, p)
    _declare(lib, "t30_call_active", i, p)
    _declare(lib, "t30_completion_code_to_str", s, i)
    _declare(lib, "span_log_set_level", i, p, i)
    _declare(lib, "span_log_set_message_handler", None, p, _MESSAGE)
    return lib


def spandsp_available() -> bool:
    try:
        load_spandsp()
    except SpandspUnavailable:
        return False
    return True


def completion_text(code: int) -> str:
    """spandsp's own words for a T.30 completion code."""
    raw = load_spandsp().t30_completion_code_to_str(code)
    return raw.decode("ascii", "replace") if raw else f"T.30 completion code {code}"


def _printable(raw: bytes | None) -> str:
    """The far end's ident is remote data: keep printable ASCII only (it ends up in events)."""
    if not raw:
        return ""
    return "".join(ch for ch in raw.decode("ascii", "replace") if " " <= ch <= "~").strip()


@dataclass(frozen=True)
class FaxResult:
    """How a fax call ended (T.30 phase E)."""

    code: int  # T.30 completion code, T30_ERR_OK when every page got through
    error: str  # t30_completion_code_to_str(code): "OK" or what went wrong
    pages: int  # pages sent (calling/transmitting side) or received
    remote_ident: str  # the far end's TSI/CSI, printable ASCII
    bit_rate: int
    ecm: bool

    @property
    def ok(self) -> bool:
        return self.code == T30_ERR_OK


@dataclass
class _Outcome:
    """Filled in by the phase E callback; shared with it instead of the session, so the
    callback (kept alive by the finalizer) never keeps the session itself alive."""

    result: FaxResult | None = None


@dataclass(frozen=True)
class FaxProgress:
    pages_sent: int
    pages_received: int
    bit_rate: int
    ecm: bool


def _phase_e_handler(lib: ctypes.CDLL, outcome: _Outcome) -> Any:
    def on_phase_e(t30: int | None, _user_data: int | None, code: int) -> None:
        stats = _Stats()
        lib.t30_get_transfer_statistics(t30, ctypes.byref(stats))
        outcome.result = FaxResult(
            code=code,
            error=completion_text(code),
            pages=max(stats.pages_tx, stats.pages_rx),
            remote_ident=_printable(lib.t30_get_rx_ident(t30)),
            bit_rate=stats.bit_rate,
            ecm=bool(stats.error_correcting_mode),
        )

    return _PHASE_E(on_phase_e)


def _free_state(lib: ctypes.CDLL, state: int, _keep_alive: object) -> None:
    lib.fax_free(state)


def _spandsp_path(path: Path) -> bytes:
    raw = os.fsencode(path)
    if len(raw) > _MAX_SPANDSP_PATH or b"\0" in raw:
        raise ValueError(f"fax file path too long for spandsp (max {_MAX_SPANDSP_PATH} bytes): {path}")
    return raw


@functools.cache
def _message_handler() -> Any:
    spandsp_log = logging.getLogger(__name__ + ".spandsp")

    def on_message(_level: int, text: bytes | None) -> None:
        if text:
            spandsp_log.debug("%s", text.decode("ascii", "replace").rstrip())

    return _MESSAGE(on_message)


class FaxSession:
    """One side of a fax call: G.711-decoded audio in, audio out, 160 samples at a time.

    `calling=True` is the side that dialled (sends CNG); the media server answers faxes, so it
    runs `calling=False` with `rx_file`. The TIFF named by `rx_file` is written by spandsp
    while pages arrive (Group 3/4 compressed, 1728 pixels wide) and is closed at phase E.
    `local_ident` is our TSI/CSI; `ecm` offers error correction (and T.6), which keeps pages
    intact over a lossy RTP path; `trace` sends spandsp's protocol log to the logger
    `voffice_media.fax.spandsp` at DEBUG.
    """

    def __init__(
        self,
        calling: bool,
        *,
        rx_file: Path | None,
        tx_file: Path | None,
        local_ident: str = "",
        ecm: bool = True,
        trace: bool = False,
    ) -> None:
        if rx_file is None and tx_file is None:
            raise ValueError("a fax session needs rx_file (to receive) or tx_file (to send)")
        if not IDENT.fullmatch(local_ident):
            raise ValueError(f"fax ident must be up to 20 digits, '+' or spaces: {local_ident!r}")
        tx_raw = None if tx_file is None else _spandsp_path(tx_file)
        rx_raw = None if rx_file is None else _spandsp_path(rx_file)
        if tx_file is not None and not tx_file.is_file():
            raise FileNotFoundError(f"fax to send not found: {tx_file}")
        if rx_file is not None and not rx_file.parent.is_dir():
            raise FileNotFoundError(f"directory for the received fax not found: {rx_file.parent}")

        lib = load_spandsp()
        state = lib.fax_init(None, 1 if calling else 0)
        if not state:
            raise MemoryError("fax_init failed")
        self._outcome = _Outcome()
        handler = _phase_e_handler(lib, self._outcome)
        # Frees the state if the session is dropped without close(); holds the callback
        # object until then so spandsp never calls into a collected trampoline.
        self._finalizer = weakref.finalize(self, _free_state, lib, state, handler)
        self._lib = lib
        self._state: int | None = state
        self._t30: int = lib.fax_get_t30_state(state)
        self._fax_rx: Callable[..., int] = lib.fax_rx
        self._fax_tx: Callable[..., int] = lib.fax_tx
        self.calling = calling
        self.rx_file = rx_file
        self.tx_file = tx_file
        self.samples = 0
        self._rx_buffer = np.zeros(FRAME_SAMPLES, dtype=np.int16)

        lib.fax_set_transmit_on_idle(state, 1)
        lib.t30_set_phase_e_handler(self._t30, handler, None)
        if local_ident:
            lib.t30_set_tx_ident(self._t30, local_ident.encode("ascii"))
        lib.t30_set_ecm_capability(self._t30, 1 if ecm else 0)
        if ecm:
            # T.6 (MMR) is only allowed with ECM. Measured here: the 2-page test fax takes
            # 27 s of audio with ECM + T.6, 39 s without ECM.
            lib.t30_set_supported_compressions(
                self._t30,
                T30_SUPPORT_T4_1D_COMPRESSION | T30_SUPPORT_T4_2D_COMPRESSION | T30_SUPPORT_T6_COMPRESSION,
            )
        if tx_raw is not None:
            lib.t30_set_tx_file(self._t30, tx_raw, -1, -1)
        if rx_raw is not None:
            lib.t30_set_rx_file(self._t30, rx_raw, -1)
        if trace:
            self._enable_trace()

    def _enable_trace(self) -> None:
        handler = _message_handler()
        for logging_state in (self._lib.fax_get_logging_state(self._state), self._lib.t30_get_logging_state(self._t30)):
            self._lib.span_log_set_level(logging_state, SPAN_LOG_FLOW | SPAN_LOG_SHOW_PROTOCOL | SPAN_LOG_SHOW_TAG)
            self._lib.span_log_set_message_handler(logging_state, handler)

    def _require_state(self) -> int:
        if self._state is None:
            raise RuntimeError("fax session is closed")
        return self._state

    def process(self, rx: Samples) -> Samples:
        """Feed the far end's audio (int16, normally 160 samples); return as many to send."""
        state = self._require_state()
        if rx.dtype != np.int16 or rx.ndim != 1:
            raise ValueError(f"fax audio must be a 1-D int16 array, got {rx.dtype} {rx.shape}")
        count = len(rx)
        # fax_rx takes a non-const pointer: give it our own copy, never the caller's array.
        buffer = self._rx_buffer if count == FRAME_SAMPLES else np.empty(count, dtype=np.int16)
        buffer[:] = rx
        self._fax_rx(state, buffer.ctypes.data, count)
        tx = np.zeros(count, dtype=np.int16)
        self._fax_tx(state, tx.ctypes.data, count)  # transmit_on_idle: always `count` samples
        self.samples += count
        return tx

    @property
    def done(self) -> bool:
        """Phase E has been reached: the fax call is over, successfully or not."""
        return self._outcome.result is not None

    @property
    def result(self) -> FaxResult | None:
        return self._outcome.result

    @property
    def seconds(self) -> float:
        """Audio processed so far, in seconds (the session's own clock)."""
        return self.samples / SAMPLE_RATE

    def progress(self) -> FaxProgress:
        self._require_state()
        stats = _Stats()
        self._lib.t30_get_transfer_statistics(self._t30, ctypes.byref(stats))
        return FaxProgress(stats.pages_tx, stats.pages_rx, stats.bit_rate, bool(stats.error_correcting_mode))

    def hangup(self) -> FaxResult:
        """The call ended (BYE, RTP timeout, our own deadline): finish T.30 now.

        Pages complete so far stay in the TIFF; spandsp reports T30_ERR_CALLDROPPED."""
        if self._outcome.result is None:
            self._require_state()
            self._lib.t30_terminate(self._t30)
        if self._outcome.result is None:  # spandsp did not call phase E: say so ourselves
            self._outcome.result = FaxResult(T30_ERR_CALLDROPPED, completion_text(T30_ERR_CALLDROPPED), 0, "", 0, False)
        return self._outcome.result

    def close(self) -> None:
        """Release the spandsp state (closing any half-received TIFF first). Idempotent."""
        if self._state is None:
            return
        if self._outcome.result is None:
            self.hangup()
        self._state = None
        self._finalizer()

    def __enter__(self) -> FaxSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# --- documents -------------------------------------------------------------------------------


def tiff_to_pdf(tiff: Path, pdf: Path) -> int:
    """Write the pages of a received fax TIFF as one PDF; returns the page count.

    Each page keeps its own resolution (fax lines are not square: 204x98 or 204x196 dpi), so
    the PDF page has the paper size the sender scanned. Written to a temporary file, synced
    and renamed, so `pdf` is either absent or whole."""
    pages: list[Image.Image] = []
    dpis: list[tuple[float, float]] = []
    with Image.open(tiff) as image:
        for index in range(int(getattr(image, "n_frames", 1))):
            image.seek(index)
            x_dpi, y_dpi = image.info.get("dpi", (204.0, 196.0))
            dpis.append((float(x_dpi) or 204.0, float(y_dpi) or 196.0))
            pages.append(image.convert("1") if image.mode != "1" else image.copy())
    if not pages:
        raise ValueError(f"{tiff} has no pages")
    tmp = pdf.with_name(pdf.name + ".tmp")
    try:
        if not _img2pdf(tiff, tmp):
            _pillow_pdf(pages, dpis, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, pdf)
    finally:
        tmp.unlink(missing_ok=True)
    return len(pages)


def _img2pdf(tiff: Path, out: Path) -> bool:
    try:
        import img2pdf  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    try:
        data = img2pdf.convert(str(tiff))
    except Exception as exc:  # img2pdf rejects some TIFF variants; Pillow copes with them
        log.debug("img2pdf could not convert %s (%s); using Pillow", tiff, exc)
        return False
    out.write_bytes(data)
    return True


def _pillow_pdf(pages: list[Image.Image], dpis: list[tuple[float, float]], out: Path) -> None:
    if len(set(dpis)) == 1:  # the usual case: one resolution for the whole fax, no resampling
        pages[0].save(out, format="PDF", dpi=dpis[0], save_all=True, append_images=pages[1:])
        return
    # Pillow's PDF writer takes one resolution for all pages: rescale pages whose resolution
    # differs from the first so that every page keeps its physical size.
    x_dpi, y_dpi = dpis[0]
    scaled = []
    for page, (page_x, page_y) in zip(pages, dpis, strict=True):
        size = (round(page.width * x_dpi / page_x), round(page.height * y_dpi / page_y))
        scaled.append(page if size == page.size else page.resize(size, Image.Resampling.NEAREST))
    scaled[0].save(out, format="PDF", dpi=dpis[0], save_all=True, append_images=scaled[1:])


def make_test_tiff(path: Path, pages: int, *, width: int = 1728, height: int = 2200) -> list[Image.Image]:
    """A multi-page bilevel Group 4 TIFF at 204x196 dpi, every page recognisably different:
    a frame, the page number in big digits, and a bar pattern whose position and spacing
    depend on the page. Returns the page images (mode "1") for comparison."""
    if pages < 1:
        raise ValueError("a fax needs at least one page")
    images = []
    font = _big_font(height // 5)
    for number in range(1, pages + 1):
        page = Image.new("1", (width, height), 1)
        draw = ImageDraw.Draw(page)
        draw.rectangle([20, 20, width - 21, height - 21], outline=0, width=8)
        draw.text((width // 4, height // 6), f"{number}", fill=0, font=font)
        spacing = 16 + 8 * number
        top = height // 2 + 40 * number
        for x in range(60, width - 60, spacing):
            draw.rectangle([x, top, x + spacing // 2, top + 300], fill=0)
        draw.rectangle([60 + 120 * (number - 1), height - 300, 160 + 120 * (number - 1), height - 200], fill=0)
        draw.text((60, height - 150), f"voffice test fax page {number} of {pages}", fill=0, font=_big_font(48))
        images.append(page)
    images[0].save(path, format="TIFF", compression="group4", dpi=(204, 196), save_all=True, append_images=images[1:])
    return images


def _big_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: small bitmap font
        return ImageFont.load_default()
