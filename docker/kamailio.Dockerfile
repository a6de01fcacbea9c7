# Kamailio 5.6 with app_python3 and the voffice KEMI routing (Debian 12 packages, as `make install`).
# Build with `make images` (it makes the base image and the wheelhouse first), or from the
# repository root:  docker build -f docker/kamailio.Dockerfile -t voffice/kamailio .
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
      kamailio kamailio-python3-modules kamailio-tls-modules python3-venv sipsak \
 && rm -rf /var/lib/apt/lists/*

# Kamailio embeds Debian's /usr/bin/python3: the venv's packages are loaded by the embedded
# Python (kamailio/voffice_kemi.py puts them on sys.path).
WORKDIR /opt/voffice
COPY --from=venv /opt/voffice/.venv .venv
# The project itself, editable (Kamailio loads kamailio/voffice_kemi.py from the tree).
COPY pyproject.toml README.md ./
COPY kamailio kamailio
COPY schemas schemas
COPY examples examples
COPY routing routing
COPY media-server media-server
COPY bench bench
COPY docker/kamailio-entrypoint.sh docker/
RUN .venv/bin/pip install -q --no-cache-dir --no-index --no-deps --no-build-isolation -e . \
 && .venv/bin/pip check \
 && install -d -o kamailio -g kamailio /run/voffice

ENV VOFFICE_ROOT=/opt/voffice PYTHONDONTWRITEBYTECODE=1
USER kamailio
ENTRYPOINT ["/opt/voffice/docker/kamailio-entrypoint.sh"]
