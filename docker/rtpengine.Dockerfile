# rtpengine, userspace only (--table=-1: no kernel module in a container), in the foreground.
# Build with `make images`, or from the repository root:
#   docker build -f docker/rtpengine.Dockerfile -t voffice/rtpengine .
FROM voffice/debian:bookworm

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends rtpengine-daemon \
 && rm -rf /var/lib/apt/lists/*

# Debian's package makes the unprivileged user `rtpengine`; userspace rtpengine needs no capability.
USER rtpengine
# --config-file=none: Debian's /etc/rtpengine/rtpengine.conf asks for the kernel module.
ENTRYPOINT ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr"]
# The `voffice up` defaults; the compose files pass their own addresses.
CMD ["--interface=127.0.0.1", "--listen-ng=127.0.0.1:2223", "--port-min=30000", "--port-max=34999", \
     "--log-level=5", "--delete-delay=0", "--num-threads=2", "--timeout=60"]
