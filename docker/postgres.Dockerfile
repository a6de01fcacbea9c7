# The call history's PostgreSQL (Debian's), for docker/compose.yaml: what `voffice up` starts as
# its own cluster. Build with `make images`, or from the repository root:
#   docker build -f docker/postgres.Dockerfile -t voffice/postgres .
FROM voffice/debian:bookworm

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/*
COPY docker/postgres-entrypoint.sh /usr/local/bin/voffice-postgres
ENV PGDATA=/var/lib/postgresql/voffice
USER postgres
ENTRYPOINT ["/usr/local/bin/voffice-postgres"]
CMD ["-h", "127.0.0.1", "-p", "5479"]
