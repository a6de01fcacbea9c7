"""A sound's audio file, uploaded from its page: checked and converted exactly as the sounds
API does it (routing.records.sounds: sniffed, decoded, made the media server's 8 kHz prompt
WAV, kept under the account's folder), stored as `<sound id>.wav`, and named in the draft's
sound as its `file` — so the page shows the result, not the API's JSON."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from routing.records import sounds
from routing.web.api.sounds import sounds_dir, upload_size
from routing.web.console import draft as drafts
from routing.web.console.common import ConsoleAccount, PostedForm, lang_of, redirect
from routing.web.console.forms import KINDS
from routing.web.console.i18n import translate
from routing.web.console.items import edit_page, item_url

router = APIRouter()
log = logging.getLogger("voffice.web")
KIND = KINDS["sounds"]


@router.post("/{account}/sounds/{item_id}/upload", dependencies=[Depends(upload_size)])
async def upload(request: Request, scope: ConsoleAccount, item_id: str, form: PostedForm) -> Response:
    lang = lang_of(request)
    draft = await run_in_threadpool(drafts.get, scope.redis, scope.account)
    index = draft.index_of("sounds", item_id)
    if index is None:
        return redirect(f"{scope.base}/sounds")
    item = draft.items("sounds")[index]

    def refused(message: str, status: int) -> HTMLResponse:
        return edit_page(request, scope, KIND, draft, item, index, status=status, upload_error=message)

    folder = sounds_dir(request)  # 503 page when voffice web has no --sounds-dir
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return refused(translate("no_file", lang), 422)
    label = upload.filename.rsplit("/", 1)[-1][:80]
    data = await upload.read(sounds.MAX_BYTES + 1)
    if len(data) > sounds.MAX_BYTES:
        return refused(translate("too_big", lang, mb=sounds.MAX_BYTES >> 20), 413)
    kind = sounds.sniff(data)
    if kind is None:
        return refused(translate("not_audio", lang, name=label), 415)
    try:
        name = sounds.file_name(item_id)
        wav = await run_in_threadpool(sounds.convert, data, kind, label)
        sound, _ = await run_in_threadpool(sounds.store, folder, scope.account, name, wav)
    except ValueError as exc:
        return refused(str(exc), 422)
    except sounds.SoundError as exc:
        return refused(str(exc), exc.status)
    except OSError as exc:
        log.warning("sound %s of %s not stored: %s", item_id, scope.account, exc.strerror or type(exc).__name__)
        return refused(translate("not_stored", lang), 503)
    def name_it(latest: drafts.Draft) -> bool:
        at = latest.index_of("sounds", item_id)
        if at is not None:
            latest.items("sounds")[at]["file"] = sound.name
        return at is not None

    await run_in_threadpool(drafts.edit, scope.redis, scope.account, name_it)
    log.info("sound %s of %s uploaded by %s", sound.name, scope.account, scope.principal.name)
    return redirect(item_url(scope, KIND, item_id) + "?saved=1")
