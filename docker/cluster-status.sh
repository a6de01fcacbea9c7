#!/bin/sh
# The status of every node of docker/compose.multinode.yaml (what `voffice status` shows for a
# local stack; docs/deployment.md "Status of every node"):
#   docker/cluster-status.sh [PROJECT]          (PROJECT: docker-compose's -p, default: the folder's)
# prints every container with its health, each Kamailio node's DMQ peers (`kamcmd dmq.list_nodes`)
# and media servers as its dispatcher sees them (`kamcmd dispatcher.list`: AP active, IP inactive),
# and the Redis master each sentinel names. Exits 1 when a long-running container is not healthy,
# a live node does not see every other live node active, or the sentinels disagree.
set -u
here=$(dirname "$0")
compose="docker-compose -f $here/compose.multinode.yaml"
[ -n "${1:-}" ] && compose="$compose -p $1"
ctl=unix:/run/voffice/kamailio.ctl
bad=0

$compose ps
$compose ps | grep -Eq 'Restarting|Exit [1-9]|unhealthy|health: starting' && bad=1

live=""
for node in kamailio-1 kamailio-2 kamailio-3; do
    cid=$($compose ps -q "$node" 2>/dev/null)
    [ -n "$cid" ] && [ "$(docker inspect -f '{{.State.Running}}' "$cid")" = true ] && live="$live $node"
done
echo
for node in kamailio-1 kamailio-2 kamailio-3; do
    case " $live " in
        *" $node "*) ;;
        *) echo "$node: not running"; bad=1; continue ;;
    esac
    peers=$($compose exec -T "$node" kamcmd -s $ctl dmq.list_nodes 2>&1 |
            awk '/host:/ {h = $2} /status:/ {printf "%s %s, ", h, $2}')
    media=$($compose exec -T "$node" kamcmd -s $ctl dispatcher.list 2>&1 |
            awk '/URI:/ {u = $2} /FLAGS:/ {printf "%s %s, ", u, $2}')
    echo "$node: DMQ peers: ${peers%, }"
    echo "$node: media servers: ${media%, }"
    active=$(echo "$peers" | grep -o 'active' | wc -l)
    [ "$active" -ge "$(echo $live | wc -w)" ] || bad=1
done
echo
masters=""
for sentinel in sentinel-1 sentinel-2 sentinel-3; do
    master=$($compose exec -T "$sentinel" redis-cli -p 26379 --raw sentinel get-master-addr-by-name voffice 2>/dev/null | paste -sd: -)
    echo "$sentinel: Redis master ${master:-unknown}"
    masters="$masters ${master:-unknown}"
done
[ "$(echo $masters | tr ' ' '\n' | sort -u | wc -l)" = 1 ] && [ "${masters#* }" != unknown ] || bad=1
exit $bad
