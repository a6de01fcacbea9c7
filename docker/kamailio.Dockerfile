# Kamailio 5.6 with app_python3 and the voffice KEMI routing (Debian 12 packages, as `make install`).
# Build from the repository root:  docker build -f docker/kamailio.Dockerfile -t voffice/kamailio .
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      kamailio kamailio-python3-modules python3-venv sipsak \
 && rm -rf /var/lib/apt/lists/*

# Kamailio embeds Debian's /usr/bin/python3: the venv is made from that interpreter so the
# embedded Python loads the venv's packages (kamailio/voffice_kemi.py puts them on sys.path).
# Dependencies are installed against stub packages first so a code change does not reinstall them.
WORKDIR /opt/voffice
COPY pyproject.toml README.md ./
RUN mkdir -p routing media-server/voffice_media \
 && touch routing/__init__.py media-server/voffice_media/__init__.py \
 && /usr/bin/python3 -m venv .venv \
 && .venv/bin/pip install -q --no-cache-dir -e .
COPY . .

RUN install -d -o kamailio -g kamailio /run/voffice
ENV VOFFICE_ROOT=/opt/voffice PYTHONDONTWRITEBYTECODE=1
USER kamailio
ENTRYPOINT ["/opt/voffice/docker/kamailio-entrypoint.sh"]
