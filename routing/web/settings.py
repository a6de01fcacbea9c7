"""What the cabinet (web API and console) needs to run: where Redis and PostgreSQL are, its
listen address, the media servers' folders (recordings, sounds), and the secret key that
signs session cookies.

The key lives in a file under the state directory, made (mode 0600) on the first start and
read on the next ones, so sessions survive a restart; it is never logged nor printed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_STATE_DIR = Path("/var/lib/voffice")
# The media server's own default --sounds-dir (media-server/voffice_media/__main__.py).
DEFAULT_SOUNDS_DIR = Path(__file__).resolve().parents[2] / "sounds"
SECRET_FILE = "web-secret.key"
SESSION_MAX_AGE = 8 * 3600  # seconds a login lasts


class SettingsError(Exception):
    """A setting that cannot be used (one line, no secret in it)."""


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT too) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def load_secret(state_dir: Path) -> bytes:
    """The signing key: read from STATE_DIR/web-secret.key, made there (0600) if absent."""
    path = state_dir / SECRET_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SettingsError(f"{path}: cannot create the secret key: {exc.strerror or exc}") from None
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the secret key: {getattr(exc, 'strerror', None) or 'not text'}") from None
    if len(key) < 32:
        raise SettingsError(f"{path}: the secret key is too short (delete the file to make a new one)")
    return key.encode()


@dataclass(frozen=True)
class WebSettings:
    redis_url: str | None = None  # None: VOFFICE_REDIS_URL or the store's default
    secret_key: bytes = field(default=b"", repr=False)  # never in a repr, hence never in a log
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    listen: str = DEFAULT_LISTEN
    secure_cookies: bool = False  # set the cookie's Secure flag (behind HTTPS)
    session_max_age: int = SESSION_MAX_AGE
    # The media servers' data folders (their --data-dir): voicemail and faxes are served from
    # DIR/recordings/<account>/ only (routing.records.files). Empty: none are served (503).
    media_dirs: tuple[Path, ...] = ()
    # The media servers' --sounds-dir: an account's uploaded sounds go to DIR/<account>/,
    # where its prompts' `file` names are looked up first. None: no uploads (503).
    sounds_dir: Path | None = None

    @classmethod
    def from_state_dir(cls, state_dir: Path, **kwargs: object) -> WebSettings:
        return cls(secret_key=load_secret(state_dir), **kwargs)  # type: ignore[arg-type]
