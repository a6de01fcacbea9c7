# Kamailio 5.6 with app_python3 and the voffice KEMI routing (Debian 12 packages, as `make install`).
# Build with `make images` (it makes the base image and the wheelhouse first), or from the
# repository root:  docker build -f docker/kamailio.Dockerfile -t voffice/kamailio .
# Layers from the least to the most often changed: Debian packages, the locked wheels, the code.
FROM voffice/debian:bookworm

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      kamailio kamailio-python3-modules kamailio-tls-modules python3-venv sipsak \
 && rm -rf /var/lib/apt/lists/*

# Kamailio embeds Debian's /usr/bin/python3: the venv is made from that interpreter so the
# embedded Python loads the venv's packages (kamailio/voffice_kemi.py puts them on sys.path).
# The dependencies are requirements.lock's wheels (exact versions and hashes, as `make install`),
# from the wheelhouse `make wheelhouse` downloads on the host: no index is asked in here.
WORKDIR /opt/voffice
COPY requirements.lock ./
COPY .wheelhouse /wheelhouse
RUN /usr/bin/python3 -m venv .venv \
 && .venv/bin/pip install -q --no-cache-dir --no-index --find-links /wheelhouse --require-hashes --no-deps \
      -r requirements.lock \
 && rm -rf /wheelhouse
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
