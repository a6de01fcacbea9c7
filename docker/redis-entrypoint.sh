#!/bin/sh
# Redis (default) or Redis Sentinel (`sentinel` first), each from a writable config file in /data:
# Sentinel and CONFIG REWRITE change that file, so the role a failover set survives a restart.
#   voffice-redis [--option value ...]            redis-server /data/redis.conf
#   voffice-redis sentinel [--option value ...]   redis-server /data/sentinel.conf --sentinel
# The file is made at the first start, from /etc/voffice/{redis,sentinel}.conf plus the options
# given (`--port 6479` becomes the line `port 6479`). Later starts use the file as it is then and
# ignore the options: change a running server with CONFIG SET + CONFIG REWRITE, or remove the file.
set -eu
mode=redis
if [ "${1:-}" = sentinel ]; then
    mode=sentinel
    shift
fi
conf=/data/$mode.conf
if [ ! -s "$conf" ]; then
    cp "/etc/voffice/$mode.conf" "$conf.new"
    line=""
    for arg in "$@"; do
        case "$arg" in
            --*) [ -z "$line" ] || printf '%s\n' "$line" >>"$conf.new"; line=${arg#--} ;;
            *) line="$line $arg" ;;
        esac
    done
    [ -z "$line" ] || printf '%s\n' "$line" >>"$conf.new"
    mv "$conf.new" "$conf"
elif [ "$#" -gt 0 ]; then
    echo "voffice-redis: $conf exists; the command line's options ($*) were used only at the first start" >&2
fi
if [ "$mode" = sentinel ]; then
    # Debian packs redis-sentinel separately: redis-server runs as a sentinel just the same
    exec redis-server "$conf" --sentinel
fi
exec redis-server "$conf"
