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
#   VO_DMQ_LISTEN      udp:IP:PORT: one of several identical nodes, DMQ on this socket (docs/cluster.md;
#                      unset: one node). Then also VO_DMQ_SERVER (sip:IP:PORT of that socket),
#                      VO_DMQ_NOTIFICATION_ADDRESS (a peer's, to join by; VO_DMQ_NOTIFICATION_ADDRESS2
#                      a second one) and VOFFICE_NODE (this node's id: 1, 2, ...)
#   VO_CTL             unix:PATH of a binrpc socket for kamcmd   (unset: none)
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

if [ -n "${VO_LISTEN_TCP:-}" ]; then
    set -- -A "VO_LISTEN_TCP=$VO_LISTEN_TCP" "$@"
    # operator branches larger than this go over TCP (RFC 3261 18.1.1; routing/proxy/operator_leg.py)
    : "${VOFFICE_UDP_MAX_BYTES:=1300}"
    export VOFFICE_UDP_MAX_BYTES
fi
if [ -n "${VO_LISTEN_TLS:-}" ]; then
    set -- -A "VO_LISTEN_TLS=$VO_LISTEN_TLS" -A "VO_TLS_CONFIG=\"${VO_TLS_CONFIG:-/etc/voffice/tls.cfg}\"" "$@"
fi
calls_replicated=""
if [ -n "${VO_DMQ_LISTEN:-}" ]; then
    : "${VO_DMQ_SERVER:?VO_DMQ_SERVER (sip:IP:PORT of VO_DMQ_LISTEN) is needed with VO_DMQ_LISTEN}"
    : "${VO_DMQ_NOTIFICATION_ADDRESS:?VO_DMQ_NOTIFICATION_ADDRESS (a peer, sip:IP:PORT) is needed with VO_DMQ_LISTEN}"
    : "${VOFFICE_NODE:?VOFFICE_NODE (this node's id) is needed with VO_DMQ_LISTEN}"
    set -- -A "VO_DMQ_LISTEN=$VO_DMQ_LISTEN" -A "VO_DMQ_SERVER=\"$VO_DMQ_SERVER\"" \
        -A "VO_DMQ_NOTIFICATION_ADDRESS=\"$VO_DMQ_NOTIFICATION_ADDRESS\"" "$@"
    if [ -n "${VO_DMQ_NOTIFICATION_ADDRESS2:-}" ]; then
        set -- -A "VO_DMQ_NOTIFICATION_ADDRESS2=\"$VO_DMQ_NOTIFICATION_ADDRESS2\"" "$@"
    fi
    # the routing code hands KDMQ to dmq on this port only (routing/proxy/kemi.py)
    VOFFICE_DMQ_PORT="${VO_DMQ_LISTEN##*:}"
    export VOFFICE_NODE VOFFICE_DMQ_PORT
    calls_replicated="dmqreplicate=1;"
fi
if [ -n "${VO_CTL:-}" ]; then
    set -- -A "VO_CTL=\"$VO_CTL\"" "$@"
fi

exec kamailio -f "$VOFFICE_ROOT/kamailio/kamailio.cfg" -DD -E -w "$VO_RUN_DIR" \
    -m "${VO_SHM_MB:-128}" -M "${VO_PKG_MB:-16}" -x tlsf -X tlsf \
    -A "VO_LISTEN=${VO_LISTEN:-udp:127.0.0.1:5060}" \
    -A "VO_KEMI_SCRIPT=\"$VOFFICE_ROOT/kamailio/voffice_kemi.py\"" \
    -A "VO_DISPATCHER_LIST=\"$ds_list\"" \
    -A "VO_RTPENGINE_SOCK=\"${VO_RTPENGINE_SOCK:-udp:127.0.0.1:2223}\"" \
    -A "VO_CHILDREN=${VO_CHILDREN:-4}" \
    -A "VO_CALLS_TABLE=\"vocalls=>size=14;autoexpire=${VO_CALL_MAX_SECONDS:-43200};$calls_replicated\"" \
    -A "VO_MAX_INV_LIFETIME=${VO_MAX_INV_LIFETIME:-180000}" \
    -A "VO_DEBUG=${VO_DEBUG:-2}" \
    "$@"
