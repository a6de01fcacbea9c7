# Debian 12's Redis 7.0 for voffice's configs and events (and, from the same image, Redis Sentinel:
# `sentinel` as the first argument). Build with `make images`, or from the repository root:
#   docker build -f docker/redis.Dockerfile -t voffice/redis .
# Redis runs from a writable config file in /data, so what CONFIG REWRITE writes (the role
# Sentinel sets) survives a restart: see docker/redis-entrypoint.sh.
FROM voffice/debian:bookworm

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis /data
COPY docker/redis.conf docker/sentinel.conf /etc/voffice/
COPY docker/redis-entrypoint.sh /usr/local/bin/voffice-redis
USER redis
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/voffice-redis"]
