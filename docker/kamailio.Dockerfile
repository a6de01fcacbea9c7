# Kamailio 5.6 with app_python3 and the voffice KEMI routing (Debian 12 packages, as `make install`).
# Build from the repository root:  docker build -f docker/kamailio.Dockerfile -t voffice/kamailio .
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      kamailio kamailio-python3-modules kamailio-tls-modules python3-venv sipsak \
 && rm -rf /var/lib/apt/lists/*

# Kamailio embeds Debian's /usr/bin/python3: the venv is made from that interpreter so the
# embedded Python loads the venv's packages (kamailio/voffice_kemi.py puts them on sys.path).
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

RUN install -d -o kamailio -g kamailio /run/voffice
ENV VOFFICE_ROOT=/opt/voffice PYTHONDONTWRITEBYTECODE=1
USER kamailio
ENTRYPOINT ["/opt/voffice/docker/kamailio-entrypoint.sh"]
