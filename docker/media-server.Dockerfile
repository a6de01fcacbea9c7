# The voffice media server (media-server/voffice_media): SIP UAS + RTP, prompts, voicemail, fax.
# The image also carries the `voffice` CLI: docker/compose.yaml runs the history writer, the
# notifier and the one-shot loader and db-upgrade from it.
# Build with `make images` (it makes the base image and the wheelhouse first), or from the
# repository root:  docker build -f docker/media-server.Dockerfile -t voffice/media-server .
# Layers from the least to the most often changed: Debian packages, the locked wheels, the code.

# The venv, in a stage of its own: the wheelhouse never becomes a layer of the image, and the
# kamailio and media-server images share this stage through the build cache. The venv is made
# from Debian's /usr/bin/python3 (Kamailio embeds that interpreter; the final stage has it too) and
# holds the runtime part of requirements.lock (exact versions and hashes, no dev extra), from the
# wheelhouse `make wheelhouse` downloads on the host: no index is asked in here.
FROM voffice/debian:bookworm AS venv
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY .wheelhouse /wheelhouse
RUN /usr/bin/python3 -m venv /opt/voffice/.venv \
 && /opt/voffice/.venv/bin/pip install -q --no-cache-dir --no-index --find-links /wheelhouse --require-hashes \
      --no-deps -r /wheelhouse/runtime.lock

FROM voffice/debian:bookworm

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      python3-venv sox espeak-ng libspandsp2 fonts-dejavu-core lame \
 && rm -rf /var/lib/apt/lists/*

# /var/lib/voffice/media: recordings, faxes and the prompt cache; /var/lib/voffice/sounds: the
# configs' sound files; /var/lib/voffice/mail: the notifier's Maildir. Volumes mounted there
# start with this ownership.
RUN useradd --system --user-group --home-dir /var/lib/voffice --shell /usr/sbin/nologin voffice \
 && install -d -o voffice -g voffice /var/lib/voffice /var/lib/voffice/media /var/lib/voffice/sounds \
      /var/lib/voffice/mail

WORKDIR /opt/voffice
COPY --from=venv /opt/voffice/.venv .venv
# The project itself, editable, as `make install`.
COPY pyproject.toml README.md ./
COPY kamailio kamailio
COPY schemas schemas
COPY examples examples
COPY routing routing
COPY media-server media-server
COPY bench bench
RUN .venv/bin/pip install -q --no-cache-dir --no-index --no-deps --no-build-isolation -e . \
 && .venv/bin/pip check

ENV PATH=/opt/voffice/.venv/bin:$PATH VOFFICE_ROOT=/opt/voffice PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER voffice
ENTRYPOINT ["python", "-m", "voffice_media"]
CMD ["--listen", "127.0.0.1:5070", "--kamailio", "127.0.0.1", "--data-dir", "/var/lib/voffice/media", \
     "--sounds-dir", "/var/lib/voffice/sounds", "--rtp-ports", "35000-39999", "--metrics", "127.0.0.1:5071"]
