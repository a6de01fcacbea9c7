"""Where the files a call record points to are, for a reader on the media server's host (or
with its data folder mounted): voicemail WAVs, fax TIFFs and their PDFs.

The media server (media-server/voffice_media/server.py) keeps recordings under
DATA_DIR/recordings/<account>/<date>/<call id><ext> and publishes their absolute paths in its
events, which the history writer stores in `recordings.path` and `.pdf`. A path is served only
if it lies, symlinks resolved, under DATA_DIR/recordings/<account>/ of a data folder the reader
was given: a row naming any other file (a forged event, another account's folder) serves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

RECORDINGS = "recordings"  # the media server's DATA_DIR/recordings (RecordingStore's root)


def stored_file(path: str, data_dirs: Iterable[Path], account: str) -> Path | None:
    """The file `path` names, if it is a regular file of `account` in one of the media
    servers' data folders; None otherwise (missing, elsewhere, or not a plain name)."""
    if not path or "\x00" in path or not account or "/" in account or account in (".", ".."):
        return None
    try:
        found = Path(path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    for data_dir in data_dirs:
        try:
            root = (data_dir / RECORDINGS / account).resolve()
        except (OSError, RuntimeError):
            continue
        if found.is_relative_to(root) and found.is_file():
            return found
    return None
