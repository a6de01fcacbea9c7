"""An account's sound files (routing.records.sounds): upload (WAV, MP3 or Ogg Vorbis, up to
10 MiB, checked by its bytes and by the decoders, converted to the media server's 8 kHz
prompt WAV), list, download (for the console's player) and delete.

The size is checked before the body is read: Content-Length over the limit is a 413 at once,
none at all a 411 (a chunked upload could not be refused before it was spooled). The body is
parsed here rather than by FastAPI, which would spool any size before a dependency could look.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from routing.core.problems import Problem
from routing.records import sounds
from routing.store import configs
from routing.web import planning
from routing.web.auth import DIGITS, AccountScope, LoadedAccount, settings_of

router = APIRouter(prefix="/accounts", tags=["sounds"])
log = logging.getLogger("voffice.web")

MULTIPART_SLACK = 64 << 10  # the form's boundaries and other fields around the file
ACCEPTED_TYPES = ("audio/", "application/octet-stream", "application/ogg", "video/ogg")
UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "WAV, MP3 or Ogg Vorbis, up to 10 MiB"},
        "name": {"type": "string", "description": "NAME or NAME.wav (default: the file's name)"}}}}}}}


def upload_size(request: Request) -> None:
    """413 before reading a body that is too big; 411 for one whose size is not said."""
    length = request.headers.get("content-length")
    if length is None:
        raise HTTPException(411, "Content-Length required: send the upload as a plain (not chunked) request body")
    if not DIGITS.fullmatch(length):
        raise HTTPException(400, "Content-Length: not a number")
    if int(length) > sounds.MAX_BYTES + MULTIPART_SLACK:
        raise HTTPException(413, f"the upload is {int(length)} bytes; a sound may have {sounds.MAX_BYTES >> 20} MiB")


def sounds_dir(request: Request) -> Path:
    folder = settings_of(request).sounds_dir
    if folder is None:
        raise HTTPException(503, "sounds are not kept here: voffice web was started without --sounds-dir")
    return folder


def _invalid(scope: AccountScope, pointer: str, message: str) -> planning.Invalid:
    return planning.Invalid([Problem(scope.account, pointer, message)], detail=f"{pointer.rsplit('/', 1)[-1]}: {message}")


def _document(scope: AccountScope) -> dict[str, Any]:
    document = configs.describe(scope.redis, scope.account)["document"]
    return document if isinstance(document, dict) else {}


@router.post("/{account}/sounds", status_code=201, openapi_extra=UPLOAD_BODY, dependencies=[Depends(upload_size)])
async def upload_sound(scope: LoadedAccount, request: Request, response: Response) -> dict[str, Any]:
    """Upload a prompt (multipart: `file`, optional `name`). 201 (200 when it replaced one of
    the same name); 413 over 10 MiB; 415 not WAV/MP3/Ogg by its bytes or type; 422 audio the
    decoders cannot read, or longer than 10 minutes. Use it as `"file": "NAME.wav"`."""
    folder = sounds_dir(request)
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as exc:  # starlette's MultiPartException, a broken body
        raise HTTPException(400, f"the body must be multipart/form-data with a `file` ({type(exc).__name__})") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _invalid(scope, "/body/file", "the form has no file field `file`")
    label = (upload.filename or "upload").rsplit("/", 1)[-1][:80]
    raw_name = form.get("name")
    name_text = raw_name if isinstance(raw_name, str) and raw_name else label.rsplit(".", 1)[0]
    try:
        name = sounds.file_name(name_text)
    except ValueError as exc:
        raise _invalid(scope, "/body/name", str(exc)) from None
    declared = (upload.content_type or "").split(";")[0].strip().lower()
    if declared and not declared.startswith(ACCEPTED_TYPES):
        raise HTTPException(415, f"{label}: Content-Type {declared[:60]!r} is not audio (WAV, MP3 or Ogg Vorbis)")
    data = await upload.read(sounds.MAX_BYTES + 1)
    if len(data) > sounds.MAX_BYTES:
        raise HTTPException(413, f"{label}: over {sounds.MAX_BYTES >> 20} MiB, the limit for a sound")
    kind = sounds.sniff(data)
    if kind is None:
        raise HTTPException(415, f"{label}: not a WAV, MP3 or Ogg file (its first bytes are not those of any)")
    extension = label.rsplit(".", 1)[-1].lower() if "." in label else ""
    if extension in sounds.FORMATS and extension != kind:
        raise HTTPException(415, f"{label}: named .{extension} but its bytes are {sounds.FORMATS[kind]}")
    try:
        wav = await run_in_threadpool(sounds.convert, data, kind, label)
        sound, replaced = await run_in_threadpool(sounds.store, folder, scope.account, name, wav)
    except sounds.SoundError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except OSError as exc:
        log.warning("sound %s of %s not stored: %s", name, scope.account, exc.strerror or type(exc).__name__)
        raise HTTPException(503, "the sound could not be stored on the server") from None
    if replaced:
        response.status_code = 200
    log.info("sound %s of %s %s by %s", name, scope.account, "replaced" if replaced else "uploaded",
             scope.principal.name)
    return {**sound.to_json(), "account": scope.account, "replaced": replaced, "source_format": sounds.FORMATS[kind],
            "used_by": sounds.users(_document(scope), name)}


@router.get("/{account}/sounds")
def list_sounds(scope: LoadedAccount, request: Request) -> dict[str, Any]:
    """The account's uploaded sounds: name (the config's `file`), bytes, seconds, and which
    of the config's sounds use each."""
    folder = sounds_dir(request)
    document = _document(scope)
    return {"account": scope.account, "sounds": [
        {**s.to_json(), "used_by": sounds.users(document, s.name)} for s in sounds.listing(folder, scope.account)]}


def _path(scope: AccountScope, request: Request, name: str) -> Path:
    found = sounds.path_of(sounds_dir(request), scope.account, name)
    if found is None:
        raise HTTPException(404, f"sound {name[:80]!r} not found")
    return found


@router.get("/{account}/sounds/{name}", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}, "description": "The prompt (8 kHz mono WAV)"}})
def get_sound(scope: LoadedAccount, request: Request, name: str) -> FileResponse:
    """A sound's file as the media server plays it (Range requests for players)."""
    return FileResponse(_path(scope, request, name), media_type="audio/wav", filename=name,
                        content_disposition_type="inline")


@router.delete("/{account}/sounds/{name}", status_code=204)
def delete_sound(scope: LoadedAccount, request: Request, name: str) -> Response:
    """Delete a sound; 409 while the account's config uses it (change the config first)."""
    path = _path(scope, request, name)
    used = sounds.users(_document(scope), name)
    if used:
        raise HTTPException(409, f"sound {name!r} is used by the account's sounds {', '.join(used)}: "
                                 "change the config first")
    path.unlink(missing_ok=True)
    log.info("sound %s of %s deleted by %s", name, scope.account, scope.principal.name)
    return Response(status_code=204)

