# The voffice media server (media-server/voffice_media): SIP UAS + RTP, prompts, voicemail, fax.
# Build from the repository root:  docker build -f docker/media-server.Dockerfile -t voffice/media-server .
# The image also carries the `voffice` CLI (the compose files' one-shot loader uses it).
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      python3-venv sox espeak-ng libspandsp2 fonts-dejavu-core lame \
 && rm -rf /var/lib/apt/lists/*

# Dependencies come from requirements.lock (exact versions and hashes, as `make install`), before the
# sources are copied, so a code change does not reinstall them; then the project itself, editable.
WORKDIR /opt/voffice
COPY requirements.lock ./
RUN /usr/bin/python3 -m venv .venv \
 && awk '/^pip==/ {p = 1; print; next} p && /^ / {print; next} {p = 0}' requirements.lock > /tmp/pip.lock \
 && .venv/bin/pip install -q --no-cache-dir --require-hashes --no-deps -r /tmp/pip.lock \
 && .venv/bin/pip install -q --no-cache-dir --require-hashes --no-deps -r requirements.lock \
 && rm /tmp/pip.lock
COPY . .
RUN .venv/bin/pip install -q --no-cache-dir --no-deps --no-build-isolation -e . \
 && .venv/bin/pip check

# /var/lib/voffice/media: recordings, faxes and the prompt cache; /var/lib/voffice/sounds: the
# configs' sound files. Volumes mounted there start with this ownership.
RUN useradd --system --user-group --home-dir /var/lib/voffice --shell /usr/sbin/nologin voffice \
 && install -d -o voffice -g voffice /var/lib/voffice /var/lib/voffice/media /var/lib/voffice/sounds
ENV PATH=/opt/voffice/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER voffice
ENTRYPOINT ["python", "-m", "voffice_media"]
CMD ["--listen", "127.0.0.1:5070", "--kamailio", "127.0.0.1", "--data-dir", "/var/lib/voffice/media", \
     "--sounds-dir", "/var/lib/voffice/sounds", "--rtp-ports", "35000-39999", "--metrics", "127.0.0.1:5071"]
