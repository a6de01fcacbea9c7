#!/bin/sh
# Kamailio in the foreground with the -A defines `voffice up` passes (routing/stack/local.py), taken
# from the environment. Extra arguments go to kamailio (e.g. -c to only check the config).
#   VO_LISTEN          udp:IP:PORT Kamailio listens on            (udp:127.0.0.1:5060)
#   VO_LISTEN_TCP      tcp:IP:PORT for SIP over TCP as well          (unset: UDP only)
#   VO_LISTEN_TLS      tls:IP:PORT for SIP over TLS as well          (unset: no TLS)
#   VO_TLS_CONFIG      the tls module's config (certificate, key)  (/etc/voffice/tls.cfg)
#   VO_MEDIA_SERVERS   media server SIP URIs, space-separated     (sip:127.0.0.1:5070)
#   VO_RTPENGINE_SOCK  rtpengine ng sockets, space-separated      (udp:127.0.0.1:2223)
#   VO_CHILDREN        SIP worker processes                       (4)
#   VO_SHM_MB, VO_PKG_MB  shared / per-process memory in MB       (128, 16)
#   VO_DEBUG           Kamailio log level                         (2)
#   VO_CALL_MAX_SECONDS  an answered call's record goes out after this long without a BYE (43200)
#   VO_MAX_INV_LIFETIME  tm's ceiling (ms) for INVITE transactions the routing does not set (180000)
# Several identical nodes (docs/cluster.md; docker/compose.multinode.yaml), all unset for one node:
#   VO_DMQ_LISTEN      udp:IP:PORT, this node's DMQ socket        (unset: one node, no DMQ)
#   VO_DMQ_SERVER      sip:IP:PORT, its DMQ address               (sip: + VO_DMQ_LISTEN's IP:PORT)
#   VO_DMQ_NOTIFICATION_ADDRESS, VO_DMQ_NOTIFICATION_ADDRESS2  sip:IP:PORT of peers to join by
#   VO_CTL             binrpc socket for kamcmd                   (unix:$VO_RUN_DIR/kamailio.ctl with DMQ)
#   VOFFICE_NODE       this node's id, a number, different on every node (required with DMQ)
# With VO_DMQ_LISTEN the answered calls' table is replicated (dmqreplicate=1) and the routing code
# is given VOFFICE_DMQ_PORT (the port of VO_DMQ_LISTEN), as `voffice up --nodes N` does.
# The routing code itself reads VOFFICE_REDIS_URL, VOFFICE_OPERATOR_GATEWAY,
# VOFFICE_TRUSTED_TRUNKS, VOFFICE_MEDIA_SET, VOFFICE_UDP_MAX_BYTES and VOFFICE_NOW from the environment.
set -eu

: "${VOFFICE_ROOT:=/opt/voffice}"
: "${VO_RUN_DIR:=/run/voffice}"
export VOFFICE_ROOT

# Kamailio embeds Debian's libpython3, which takes its standard library from PYTHONHOME or else
# from next to the first python3 on PATH: pin Debian's, drop whatever PYTHON* the caller set
# (routing/stack/local.py does the same for `voffice up`; docs/architecture.md).
for var in $(env | sed -n 's/^\(PYTHON[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
export PYTHONHOME=/usr PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1

mkdir -p "$VO_RUN_DIR"
ds_list="$VO_RUN_DIR/dispatcher.list"
: >"$ds_list"
for uri in ${VO_MEDIA_SERVERS:-sip:127.0.0.1:5070}; do
    printf '%s %s\n' "${VOFFICE_MEDIA_SET:-1}" "$uri" >>"$ds_list"
done

calls_table="vocalls=>size=14;autoexpire=${VO_CALL_MAX_SECONDS:-43200};"
if [ -n "${VO_DMQ_LISTEN:-}" ]; then
    if [ -z "${VOFFICE_NODE:-}" ]; then
        echo "kamailio-entrypoint: VO_DMQ_LISTEN needs VOFFICE_NODE (this node's id, a number)" >&2
        exit 2
    fi
    dmq_hostport=${VO_DMQ_LISTEN#*:}
    VOFFICE_DMQ_PORT=${dmq_hostport##*:}
    export VOFFICE_NODE VOFFICE_DMQ_PORT
    calls_table="${calls_table}dmqreplicate=1;"
    set -- -A "VO_DMQ_LISTEN=$VO_DMQ_LISTEN" -A "VO_DMQ_SERVER=\"${VO_DMQ_SERVER:-sip:$dmq_hostport}\"" \
        -A "VO_CTL=\"${VO_CTL:-unix:$VO_RUN_DIR/kamailio.ctl}\"" "$@"
    if [ -n "${VO_DMQ_NOTIFICATION_ADDRESS:-}" ]; then
        set -- -A "VO_DMQ_NOTIFICATION_ADDRESS=\"$VO_DMQ_NOTIFICATION_ADDRESS\"" "$@"
    fi
    if [ -n "${VO_DMQ_NOTIFICATION_ADDRESS2:-}" ]; then
        set -- -A "VO_DMQ_NOTIFICATION_ADDRESS2=\"$VO_DMQ_NOTIFICATION_ADDRESS2\"" "$@"
    fi
elif [ -n "${VO_CTL:-}" ]; then
    set -- -A "VO_CTL=\"$VO_CTL\"" "$@"
fi

if [ -n "${VO_LISTEN_TCP:-}" ]; then
    set -- -A "VO_LISTEN_TCP=$VO_LISTEN_TCP" "$@"
    # operator branches larger than this go over TCP (RFC 3261 18.1.1; routing/proxy/operator_leg.py)
    : "${VOFFICE_UDP_MAX_BYTES:=1300}"
    export VOFFICE_UDP_MAX_BYTES
fi
if [ -n "${VO_LISTEN_TLS:-}" ]; then
    set -- -A "VO_LISTEN_TLS=$VO_LISTEN_TLS" -A "VO_TLS_CONFIG=\"${VO_TLS_CONFIG:-/etc/voffice/tls.cfg}\"" "$@"
fi

exec kamailio -f "$VOFFICE_ROOT/kamailio/kamailio.cfg" -DD -E -w "$VO_RUN_DIR" \
    -m "${VO_SHM_MB:-128}" -M "${VO_PKG_MB:-16}" -x tlsf -X tlsf \
    -A "VO_LISTEN=${VO_LISTEN:-udp:127.0.0.1:5060}" \
    -A "VO_KEMI_SCRIPT=\"$VOFFICE_ROOT/kamailio/voffice_kemi.py\"" \
    -A "VO_DISPATCHER_LIST=\"$ds_list\"" \
    -A "VO_RTPENGINE_SOCK=\"${VO_RTPENGINE_SOCK:-udp:127.0.0.1:2223}\"" \
    -A "VO_CHILDREN=${VO_CHILDREN:-4}" \
    -A "VO_CALLS_TABLE=\"$calls_table\"" \
    -A "VO_MAX_INV_LIFETIME=${VO_MAX_INV_LIFETIME:-180000}" \
    -A "VO_DEBUG=${VO_DEBUG:-2}" \
    "$@"
