"""Sound uploads: WAV, MP3 and Ogg Vorbis checked by their bytes and by the decoders,
converted to the media server's 8 kHz mono 16-bit prompt WAV, kept in the account's folder;
list, download, delete; limits (413, 411), disguised files (415), unreadable audio (422),
names that could be paths (422/404), another account's sound (404)."""

from __future__ import annotations

import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from routing.core.media_contract import ACCOUNT_SOUNDS_MARKER
from routing.records import sounds
from tests.api_support import OTHER, SEED, Stack, document

pytestmark = [pytest.mark.redis]

BERRY, THAMES = "berry-demo", "thames-support-247"


class Sounds:
    def __init__(self, stack: Stack, root: Path):
        self.stack, self.root = stack, root
        self.dir = root / "sounds"
        media = root / "made"
        media.mkdir()
        wav, ogg, mp3 = media / "hello.wav", media / "hello.ogg", media / "hello.mp3"
        # 44.1 kHz stereo: the upload must come out as the media server's 8 kHz mono.
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(wav), "synth", "1.5", "sine", "440"], check=True)
        subprocess.run(["sox", str(wav), str(ogg)], check=True)
        subprocess.run(["lame", "--quiet", str(wav), str(mp3)], check=True)
        self.wav, self.ogg, self.mp3 = wav.read_bytes(), ogg.read_bytes(), mp3.read_bytes()
        stack.configure(sounds_dir=self.dir)
        self.subscriber, self.csrf = stack.subscriber(BERRY)

    def post(self, client: TestClient, files: dict[str, Any], account: str = BERRY, **data: str) -> Any:
        headers = {"X-CSRF-Token": self.csrf} if client is self.subscriber else {}
        return client.post(f"/api/accounts/{account}/sounds", files=files, data=data, headers=headers)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sounds]:
    root = tmp_path_factory.mktemp("api-sounds")
    stack = Stack(root)
    try:
        stack.load(document(SEED))
        stack.load(document(OTHER))
        yield Sounds(stack, root)
    finally:
        stack.server.stop()


def prompt_format(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as reader:
        return reader.getframerate(), reader.getnchannels(), reader.getsampwidth(), reader.getnframes() / 8000


def test_upload_wav_mp3_ogg_converted_to_the_prompt_format(env: Sounds) -> None:
    for client, name, files in [
        (env.subscriber, "greeting", {"file": ("hello.wav", env.wav, "audio/wav")}),
        (env.stack.noc(), "from-mp3.wav", {"file": ("hello.mp3", env.mp3, "audio/mpeg")}),
        (env.subscriber, "", {"file": ("night_notice.ogg", env.ogg, "audio/ogg")}),  # named after the file
    ]:
        reply = env.post(client, files, name=name) if name else env.post(client, files)
        assert reply.status_code == 201, reply.text
        stored = env.dir / BERRY / reply.json()["name"]
        rate, channels, width, seconds = prompt_format(stored)
        assert (rate, channels, width) == (8000, 1, 2) and 1.4 < seconds < 1.7, reply.json()
        assert reply.json()["replaced"] is False and reply.json()["seconds"] > 1.4
    assert {p.name for p in (env.dir / BERRY).iterdir()} >= {"greeting.wav", "from-mp3.wav", "night_notice.wav"}
    assert (env.dir / BERRY / ACCOUNT_SOUNDS_MARKER).exists()  # out of other accounts' reach (media server)
    again = env.post(env.subscriber, {"file": ("hello.wav", env.wav, "audio/wav")}, name="greeting")
    assert again.status_code == 200 and again.json()["replaced"] is True
    # the console's upload form: the CSRF token as the form field `csrf`, no header
    form = env.subscriber.post(f"/api/accounts/{BERRY}/sounds", files={"file": ("hello.ogg", env.ogg, "audio/ogg")},
                               data={"name": "by-form", "csrf": env.csrf})
    assert form.status_code == 201, form.text
    forged = env.subscriber.post(f"/api/accounts/{BERRY}/sounds", files={"file": ("hello.ogg", env.ogg, "audio/ogg")},
                                 data={"name": "forged"})
    assert forged.status_code == 403 and not (env.dir / BERRY / "forged.wav").exists()


def test_list_download_and_delete_for_both_roles(env: Sounds) -> None:
    env.post(env.stack.noc(), {"file": ("hello.wav", env.wav, "audio/wav")}, name="listed")
    for client in (env.subscriber, env.stack.noc()):
        listed = client.get(f"/api/accounts/{BERRY}/sounds")
        assert listed.status_code == 200
        assert "listed.wav" in [s["name"] for s in listed.json()["sounds"]]
        got = client.get(f"/api/accounts/{BERRY}/sounds/listed.wav")
        assert got.status_code == 200 and got.headers["content-type"] == "audio/wav"
        assert got.content == (env.dir / BERRY / "listed.wav").read_bytes()
        assert client.get(f"/api/accounts/{BERRY}/sounds/listed.wav", headers={"Range": "bytes=0-3"}).content == b"RIFF"
    no_csrf = env.subscriber.delete(f"/api/accounts/{BERRY}/sounds/listed.wav")
    assert no_csrf.status_code == 403
    gone = env.subscriber.delete(f"/api/accounts/{BERRY}/sounds/listed.wav", headers={"X-CSRF-Token": env.csrf})
    assert gone.status_code == 204 and not (env.dir / BERRY / "listed.wav").exists()
    assert env.subscriber.get(f"/api/accounts/{BERRY}/sounds/listed.wav").status_code == 404


def test_a_sound_in_use_is_not_deleted(env: Sounds) -> None:
    env.post(env.stack.noc(), {"file": ("hello.wav", env.wav, "audio/wav")}, name="vm-file")
    doc = document(SEED)
    doc["sounds"][0]["file"] = "vm-file.wav"
    env.stack.load(doc)
    try:
        listed = env.stack.noc().get(f"/api/accounts/{BERRY}/sounds").json()["sounds"]
        assert next(s for s in listed if s["name"] == "vm-file.wav")["used_by"] == ["vm-prompt"]
        reply = env.stack.noc().delete(f"/api/accounts/{BERRY}/sounds/vm-file.wav")
        assert reply.status_code == 409 and "vm-prompt" in reply.json()["detail"]
    finally:
        env.stack.load(document(SEED))


def test_another_accounts_sounds_are_404(env: Sounds) -> None:
    env.post(env.stack.noc(), {"file": ("hello.wav", env.wav, "audio/wav")}, account=THAMES, name="thames-only")
    assert (env.dir / THAMES / "thames-only.wav").exists()
    thames = f"/api/accounts/{THAMES}/sounds"
    for reply in (env.subscriber.get(thames), env.subscriber.get(f"{thames}/thames-only.wav"),
                  env.subscriber.delete(f"{thames}/thames-only.wav", headers={"X-CSRF-Token": env.csrf}),
                  env.post(env.subscriber, {"file": ("hello.wav", env.wav, "audio/wav")}, account=THAMES)):
        assert reply.status_code == 404 and reply.json()["detail"] == f"account {THAMES!r} not found"
    # under berry-demo's own path, thames' sound does not exist
    assert env.subscriber.get(f"/api/accounts/{BERRY}/sounds/thames-only.wav").status_code == 404
    assert (env.dir / THAMES / "thames-only.wav").exists()
    assert "thames-only.wav" not in env.subscriber.get(f"/api/accounts/{BERRY}/sounds").text


def test_disguised_and_unreadable_files_are_refused(env: Sounds) -> None:
    text = b"Hello, I am not audio at all.\n" * 20
    fake_riff = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 200
    for files, status, words in [
        ({"file": ("prompt.wav", text, "audio/wav")}, 415, "not a WAV, MP3 or Ogg"),
        ({"file": ("prompt.wav", env.wav, "text/plain")}, 415, "not audio"),
        ({"file": ("prompt.mp3", env.wav, "audio/mpeg")}, 415, "named .mp3 but its bytes are WAV"),
        ({"file": ("prompt.wav", fake_riff, "audio/wav")}, 422, "cannot read it"),
        ({"file": ("prompt.ogg", b"OggS" + b"\x00" * 100, "audio/ogg")}, 422, "cannot read it"),
        ({"file": ("prompt.mp3", b"ID3" + b"\x00" * 100, "audio/mpeg")}, 422, ""),
    ]:
        reply = env.post(env.subscriber, files, name="refused")
        assert reply.status_code == status, (files["file"][0], reply.text)
        assert words in reply.json()["detail"], reply.json()
        assert "Traceback" not in reply.text and "/tmp" not in reply.text and "voffice-sound" not in reply.text
    assert not (env.dir / BERRY / "refused.wav").exists()
    missing = env.post(env.subscriber, {"other": ("x.wav", env.wav, "audio/wav")})
    assert missing.status_code == 422 and missing.json()["problems"][0]["pointer"] == "/body/file"


def test_size_limits(env: Sounds) -> None:
    big = b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * (sounds.MAX_BYTES + 100_000)
    reply = env.post(env.stack.noc(), {"file": ("big.wav", big, "audio/wav")}, name="big")
    assert reply.status_code == 413 and "10 MiB" in reply.json()["detail"]
    just_over = b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * (sounds.MAX_BYTES - 11)
    reply = env.post(env.stack.noc(), {"file": ("big.wav", just_over, "audio/wav")}, name="big")
    assert reply.status_code == 413
    chunked = env.stack.noc().post(f"/api/accounts/{BERRY}/sounds", content=iter([b"--x\r\n"]),
                                   headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 411
    assert not (env.dir / BERRY / "big.wav").exists()


def test_names_that_could_be_paths(env: Sounds) -> None:
    for name in ("../escape", "a/b", ".hidden", "x" * 65, "a..b", "with space", "/abs", "..", "x\n"):
        reply = env.post(env.stack.noc(), {"file": ("hello.wav", env.wav, "audio/wav")}, name=name)
        assert reply.status_code == 422 and reply.json()["problems"][0]["pointer"] == "/body/name", name
    reply = env.post(env.stack.noc(), {"file": ("../../etc/evil.wav", env.wav, "audio/wav")})
    assert reply.status_code == 201 and reply.json()["name"] == "evil.wav"  # only the file's own name counts
    (env.root / "outside.wav").write_bytes(env.wav)
    (env.dir / BERRY / "link.wav").symlink_to(env.root / "outside.wav")
    for path in ("..%2Foutside.wav", "link.wav", "%2e%2e%2Fmade%2Fhello.wav", "evil", "evil.WAV", "evil.mp3"):
        reply = env.stack.noc().get(f"/api/accounts/{BERRY}/sounds/{path}")
        assert reply.status_code in (404, 422), (path, reply.status_code)
        assert not reply.content.startswith(b"RIFF")
    assert "link.wav" not in env.stack.noc().get(f"/api/accounts/{BERRY}/sounds").text
    dotted = env.post(env.stack.noc(), {"file": ("hello.wav", env.wav, "audio/wav")}, name="vm.prompt")
    assert dotted.status_code == 201 and dotted.json()["name"] == "vm.prompt.wav"  # ids may hold dots
    assert env.stack.noc().get(f"/api/accounts/{BERRY}/sounds/vm.prompt.wav").status_code == 200


def test_no_sounds_dir_is_503(env: Sounds) -> None:
    env.stack.configure(sounds_dir=None)
    try:
        reply = env.stack.noc().get(f"/api/accounts/{BERRY}/sounds")
        assert reply.status_code == 503 and "--sounds-dir" in reply.json()["detail"]
    finally:
        env.stack.configure(sounds_dir=env.dir)
