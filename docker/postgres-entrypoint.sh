#!/bin/sh
# The call history's cluster: made on the first start (UTF-8, trust on loopback only, as
# `voffice up`'s own: routing/stack/postgres_server.py) with its `voffice` database, then
# PostgreSQL in the foreground. Arguments go to postgres (listen address and port).
#   VO_PG_TRUST_NETWORKS  space-separated CIDRs whose clients are trusted as well (docker/compose.yaml:
#                         its own network). Without a password: only for a private network.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    "$bin/initdb" -D "$PGDATA" -U voffice --auth=trust -E UTF8 --locale=C.UTF-8 --no-instructions
    echo "CREATE DATABASE voffice" | "$bin/postgres" --single -D "$PGDATA" -j postgres >/dev/null
fi
for net in ${VO_PG_TRUST_NETWORKS:-}; do
    line="host all all $net trust"
    grep -qxF "$line" "$PGDATA/pg_hba.conf" || printf '%s\n' "$line" >>"$PGDATA/pg_hba.conf"
done
exec "$bin/postgres" -D "$PGDATA" -k "$PGDATA" "$@"
