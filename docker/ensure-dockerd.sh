#!/bin/sh
# Starts dockerd in the background when no Docker engine answers (a fresh machine where no
# service was started: `make test`, CI containers), and waits until it does (at most 60 s).
# Its log: /var/log/voffice-dockerd.log. VO_DOCKERD_ARGS: more dockerd options (with DOCKER_HOST
# naming the same socket, a second engine of its own: how this script's start path was tried
# while another dockerd ran; give such a second engine a bridge of its own, not `--bridge none`,
# which deletes the first engine's docker0).
set -eu
docker info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null || { echo "ensure-dockerd: no dockerd (Debian package docker.io)" >&2; exit 1; }
echo "ensure-dockerd: starting dockerd" >&2
# setsid: not in this shell's process group, so it outlives the make or pytest that started it.
# shellcheck disable=SC2086  # VO_DOCKERD_ARGS: options, split on purpose
setsid dockerd ${VO_DOCKERD_ARGS:-} >>/var/log/voffice-dockerd.log 2>&1 </dev/null &
echo "ensure-dockerd: dockerd started, pid $!" >&2
i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 120 ]; then
        echo "ensure-dockerd: dockerd did not answer within 60 s; see /var/log/voffice-dockerd.log" >&2
        exit 1
    fi
    sleep 0.5
done
