"""`voffice up|down|status`: the whole stack on this machine, on loopback, embedded defaults.

Components start in dependency order (Redis, rtpengine, media servers, Kamailio), each a
child process with its pid in the run directory (so `down` and `status` work from another
shell) and its log next to it. Every component gets the same clock: VOFFICE_NOW plus
VOFFICE_NOW_AT (the real instant `up` ran), see routing/core/clock.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from routing.core.clock import offset_from_env
from routing.core.problems import errors
from routing.core.validation import validate_paths
from routing.stack.redis_server import stop_process
from routing.store import configs, redis_client

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = ROOT / ".run"
SEED = ROOT / "examples" / "seed-office.json"
KAMAILIO_CFG = ROOT / "kamailio" / "kamailio.cfg"
KEMI_SCRIPT = ROOT / "kamailio" / "voffice_kemi.py"
VENV = ROOT / ".venv"
TRANSPORTS = ("udp", "tcp", "tls")  # Kamailio's SIP transports `voffice up --transport` offers


class StackError(Exception):
    pass


@dataclass
class StackConfig:
    run_dir: Path = DEFAULT_RUN_DIR
    host: str = "127.0.0.1"
    redis_port: int = 6479
    sip_port: int = 5060
    media_port: int = 5070
    media_servers: int = 1
    rtpengine_port: int = 2223
    rtp_ports: tuple[int, int] = (30000, 34999)
    media_rtp_ports: tuple[int, int] = (35000, 39999)
    operator_gateway: str = "127.0.0.1:5080"
    kamailio_children: int = 4
    # Kamailio's SIP transports: udp and tcp on sip_port, tls on tls_port (0: sip_port + 1)
    # with tls_cert/tls_key, or a self-signed certificate for the host made in run_dir/tls.
    transports: tuple[str, ...] = ("udp",)
    tls_port: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    # Kamailio's memory managers (shm and pkg). Its default, qm, keeps debugging data per
    # fragment and spent a third of Kamailio's CPU in qm_malloc under load here; tlsf is
    # the fast one (docs/performance.md).
    kamailio_allocator: str = "tlsf"
    load: tuple[str, ...] = (str(SEED),)
    now: str | None = None  # VOFFICE_NOW
    components: tuple[str, ...] = ("redis", "postgres", "rtpengine", "media", "kamailio", "history", "notifier", "web")
    web_port: int = 8080  # the cabinet: REST API and console (`voffice web`)
    # One node store for the machine (every account in one memory map shared by all
    # workers; routing/store/node_store.py), kept by a `voffice node-store` process.
    # False: each worker caches from Redis itself, as the docker images still do.
    node_store: bool = True
    trusted_trunks: str = "127.0.0.1"  # exempt from flood control; their P-Asserted-Identity is believed
    # An answered call whose BYE never comes gets its record when its entry in Kamailio's
    # vocalls htable expires, this long after the answer (kamailio.cfg: VO_CALLS_TABLE).
    call_max_seconds: int = 43200
    # tm's ceiling for an INVITE transaction that the routing does not set itself (each
    # scenario step sets its own: kamailio.cfg VO_MAX_INV_LIFETIME, routing/proxy/kemi.py).
    kamailio_max_inv_lifetime_ms: int = 180000
    # The call history: a PostgreSQL of our own (component "postgres", on postgres_port), or
    # database_url (then no local cluster is started).
    database_url: str | None = None
    postgres_port: int = 5479
    history_keep_months: int | None = None
    # Notifications: an SMTP relay, else mail is delivered into run_dir/mail (a Maildir).
    smtp_url: str | None = None
    allow_private_webhooks: bool = False
    notify_retry_base: float = 5.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # An existing Redis (`up --redis URL`): then no local redis-server is started.
    redis_external: str | None = None
    # Identical Kamailio nodes (docs/cluster.md), each with its own rtpengine, all sharing
    # Redis, PostgreSQL and the media servers' dispatcher list. Node 1 is "kamailio" on
    # sip_port with "rtpengine" on rtpengine_port, exactly as with one node; node i (from 2)
    # is "kamailio<i>" with "rtpengine<i>". Ports: node_sip_ports / node_rtpengine_ports /
    # node_dmq_ports when given, else sip_port + 2*(i-1), rtpengine_port + (i-1) and
    # dmq_port + (i-1). One node: no DMQ at all.
    kamailio_nodes: int = 1
    dmq_port: int = 5090
    node_sip_ports: tuple[int, ...] = ()
    node_rtpengine_ports: tuple[int, ...] = ()
    node_dmq_ports: tuple[int, ...] = ()

    @property
    def redis_url(self) -> str:
        return self.redis_external or f"redis://{self.host}:{self.redis_port}/0"

    @property
    def history_url(self) -> str:
        """The call-history database: the given URL, or the local cluster's (with the password
        its initdb made, kept 0600 in the run dir)."""
        if self.database_url:
            return self.database_url
        try:
            password = (self.run_dir / POSTGRES_PASSWORD).read_text().strip()
        except OSError:
            password = ""
        user = f"voffice:{password}" if password else "voffice"
        return f"postgresql://{user}@{self.host}:{self.postgres_port}/voffice"

    @property
    def sip_tls_port(self) -> int:
        return self.tls_port or self.sip_port + 1

    def media_ports(self) -> list[int]:
        return [self.media_port + 2 * i for i in range(self.media_servers)]

    @property
    def clustered(self) -> bool:
        return self.kamailio_nodes > 1

    def sip_ports(self) -> list[int]:
        """Each Kamailio node's SIP port (node 1 first: sip_port)."""
        return list(self.node_sip_ports) or [self.sip_port + 2 * i for i in range(self.kamailio_nodes)]

    def rtpengine_ports(self) -> list[int]:
        """Each node's rtpengine's ng port."""
        return list(self.node_rtpengine_ports) or [self.rtpengine_port + i for i in range(self.kamailio_nodes)]

    def dmq_ports(self) -> list[int]:
        """Each node's DMQ port (on host; only with several nodes)."""
        return list(self.node_dmq_ports) or [self.dmq_port + i for i in range(self.kamailio_nodes)]

    def ctl_socket(self, node: int) -> Path:
        """Node `node`'s (1-based) binrpc socket for kamcmd (only with several nodes)."""
        return self.run_dir / f"{node_name('kamailio', node)}.ctl"


OWN_RTPENGINE_WEIGHT = 100  # of a node's own rtpengine in its set; every other node's weighs 1


def rtpengine_set(host: str, ng_ports: list[int], node: int) -> str:
    """Node `node`'s (0-based) rtpengine set: its own rtpengine, weighted so that about 98% of
    its calls are anchored there (one failure domain per node), and every other node's as a
    fallback: when its own dies, Kamailio's rtpengine module disables it after one timeout
    and anchors new calls on a living one. One node: just its own."""
    if len(ng_ports) == 1:
        return f"udp:{host}:{ng_ports[0]}"
    return " ".join(f"udp:{host}:{port}={OWN_RTPENGINE_WEIGHT if j == node else 1}" for j, port in enumerate(ng_ports))


def node_name(component: str, node: int) -> str:
    """"kamailio" / "rtpengine" for node 1, "kamailio2" / "rtpengine2" for node 2, ..."""
    return component if node == 1 else f"{component}{node}"


@dataclass
class Component:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    popen: dict[str, Any] = field(default_factory=dict)  # e.g. the user PostgreSQL runs as


POSTGRES_PASSWORD = "postgres.password"  # in the run dir: the local cluster's password (0600)

# How each component is told to stop: PostgreSQL's SIGTERM waits for every client to leave
# ("smart"), SIGINT is its fast shutdown; everything else finishes its work on SIGTERM.
STOP_SIGNALS = {"postgres": signal.SIGINT}


# --- probes ------------------------------------------------------------------------------


def sip_options(host: str, port: int, timeout: float = 1.0, transport: str = "udp") -> int | None:
    """Send one OPTIONS over UDP, TCP or TLS (certificate not verified: a health probe); the
    status code of the reply, or None."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as raw:
        raw.settimeout(timeout)
        tag = os.urandom(4).hex()
        sock = raw
        try:
            if transport == "udp":
                sock.bind((host, 0))
            else:
                sock.connect((host, port))
            if transport == "tls":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(raw, server_hostname=host)
            local = sock.getsockname()[1]
            msg = (
                f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/{transport.upper()} {host}:{local};branch=z9hG4bK{tag}\r\n"
                f"From: <sip:probe@{host}>;tag={tag}\r\nTo: <sip:ping@{host}:{port}>\r\n"
                f"Call-ID: probe-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n"
            )
            if transport != "udp":
                sock.sendall(msg.encode())
            else:
                sock.sendto(msg.encode(), (host, port))
            data = sock.recv(65535)
        except OSError:
            return None
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def rtpengine_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        cookie = os.urandom(4).hex()
        try:
            sock.sendto(f"{cookie} d7:command4:pinge".encode(), (host, port))
            data = sock.recv(4096)
        except OSError:
            return False
    return data.startswith(cookie.encode()) and b"pong" in data


def web_health(host: str, port: int, timeout: float = 1.0) -> bool:
    """The cabinet answers and reaches Redis (`GET /api/health`)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api/health", timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def node_store_used(config: StackConfig) -> bool:
    """A node store for the Kamailio and media server of a stack that has a Redis to mirror
    (not, say, the SIP bench's baseline Kamailio, which runs no routing)."""
    has_redis = "redis" in config.components or bool(config.redis_external)
    return config.node_store and has_redis and ("kamailio" in config.components or "media" in config.components)


def node_store_ready(path: Path) -> bool:
    """Its first full sync is done: a worker started now finds every account."""
    from routing.store.node_store import NodeReader
    from routing.store.reader import StoreUnavailable

    reader = NodeReader(path)
    try:
        return reader.generation() is not None
    except StoreUnavailable:
        return False
    finally:
        reader.close()


def redis_ping(url: str) -> bool:
    try:
        return bool(redis_client.client(url, timeout=1).ping())
    except redis.RedisError:
        return False


# --- the Python each component runs -----------------------------------------------------


def without_python_vars(env: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment less PYTHONHOME, PYTHONPATH and every other PYTHON* setting:
    they belong to whatever interpreter the caller runs, not to ours."""
    return {k: v for k, v in env.items() if not k.startswith("PYTHON")}


def interpreter_home(venv: Path = VENV) -> str:
    """The prefix of the interpreter the venv was made from (pyvenv.cfg's `home` is its bin/):
    Debian's /usr, whose libpython3 Kamailio's app_python3 embeds."""
    try:
        lines = (venv / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return "/usr"
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return str(Path(value.strip()).parent)
    return "/usr"


def embedded_python_env(venv: Path = VENV) -> dict[str, str]:
    """For Kamailio: an embedded interpreter with no PYTHONHOME looks for its standard library
    next to the first `python3` on PATH, so a pyenv/conda python3 there would hand it a foreign
    stdlib (its `ssl` then fails to load and redis-py with it). PYTHONHOME pins Debian's."""
    return {"PYTHONHOME": interpreter_home(venv), "PYTHONNOUSERSITE": "1"}


def venv_python(venv: Path = VENV) -> str:
    """The project's venv interpreter for the media servers, whichever python runs `voffice`."""
    candidate = venv / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


# --- components --------------------------------------------------------------------------


def clock_env(now: str | None) -> dict[str, str]:
    if not now:
        return {}
    env = {"VOFFICE_NOW": now, "VOFFICE_NOW_AT": f"{time.time():.3f}"}
    offset_from_env(env)  # raises ClockError for a bad value before anything starts
    return env


def components(config: StackConfig) -> list[Component]:
    run = config.run_dir
    h = config.host
    env = {
        "VOFFICE_REDIS_URL": config.redis_url,
        "VOFFICE_OPERATOR_GATEWAY": config.operator_gateway,
        "VOFFICE_ROOT": str(ROOT),
        "VOFFICE_TRUSTED_TRUNKS": config.trusted_trunks,
        # operator branches too large for UDP go over TCP, when Kamailio has it (RFC 3261 18.1.1)
        **({"VOFFICE_UDP_MAX_BYTES": "1300"} if "tcp" in config.transports else {}),
        **clock_env(config.now),
        **config.extra_env,
    }
    out: list[Component] = []
    store = run / "store"
    uses_store = node_store_used(config)
    if uses_store:
        env["VOFFICE_NODE_STORE"] = str(store)
    if "redis" in config.components and not config.redis_external:
        redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
        (run / "redis").mkdir(parents=True, exist_ok=True)
        out.append(Component(
            "redis",
            [redis_bin, "--port", str(config.redis_port), "--bind", h, "--dir", str(run / "redis"),
             "--appendonly", "yes", "--save", "60 1", "--loglevel", "warning"],
            lambda: redis_ping(config.redis_url),
        ))
    if "postgres" in config.components and not config.database_url:
        from routing.stack.postgres_server import PostgresError, PostgresServer, cluster_dir

        server = PostgresServer(cluster_dir(run), port=config.postgres_port, host=h, password_file=run / POSTGRES_PASSWORD)
        try:
            server.init()  # initdb, once
        except PostgresError as exc:
            raise StackError(str(exc)) from exc
        out.append(Component("postgres", server.command(), server.ready, popen=server.popen_options()))
    if "history" in config.components:
        out.append(Component(
            "history",
            [venv_python(), "-m", "routing.cli.console", "history-writer", "--name", "history-1",  # Redis: env
             *(["--keep-months", str(config.history_keep_months)] if config.history_keep_months else [])],
            lambda: consumer_ready(config.redis_url, "history", "history-1"),
            {**env, **secret_env(config)},  # URLs with passwords: in the environment, not on the command line (ps)
        ))
    if "notifier" in config.components:
        out.append(Component(
            "notifier",
            [venv_python(), "-m", "routing.cli.console", "notifier", "--name", "notifier-1", "--retry-base", str(config.notify_retry_base),
             *([] if config.smtp_url else ["--maildir", str(run / "mail")]),
             *(["--allow-private-webhooks"] if config.allow_private_webhooks else [])],
            lambda: consumer_ready(config.redis_url, "notifier", "notifier-1"),
            {**env, **secret_env(config)},
        ))
    if "web" in config.components:
        out.append(Component(
            "web",
            [venv_python(), "-m", "routing.cli.console", "web", "--listen", f"{h}:{config.web_port}",
             "--state-dir", str(run / "web"),  # Redis and PostgreSQL: env (URLs may hold passwords)
             *(arg for i in range(config.media_servers)  # the media servers' data dirs, as below: the inbox
               for arg in ("--media-dir", str(run / ("media" if i == 0 else f"media{i + 1}"))))],
            lambda: web_health(h, config.web_port),
            {**env, **({"VOFFICE_DATABASE_URL": config.history_url} if "history" in config.components else {})},
        ))
    if uses_store:
        out.append(Component(
            "node-store",
            [venv_python(), "-m", "routing.cli.console", "node-store", "--dir", str(store),  # Redis: env
             "--keep-retired", str(int(config.call_max_seconds))],
            lambda: node_store_ready(store),
            env,
        ))
    if "rtpengine" in config.components:
        # one per Kamailio node, the RTP port range split between them
        low, high = config.rtp_ports
        span = (high - low + 1) // config.kamailio_nodes
        for i, ng_port in enumerate(config.rtpengine_ports()):
            first, last = (low, high) if not config.clustered else (low + i * span, low + (i + 1) * span - 1)
            out.append(Component(
                node_name("rtpengine", i + 1),
                [shutil.which("rtpengine") or "/usr/bin/rtpengine", "--config-file=none", "--table=-1",
                 f"--interface={h}", f"--listen-ng={h}:{ng_port}", f"--port-min={first}",
                 f"--port-max={last}", "--foreground", "--log-stderr", "--log-level=5", "--delete-delay=0",
                 "--num-threads=2", "--timeout=60"],
                lambda ng_port=ng_port: rtpengine_ping(h, ng_port),  # type: ignore[misc]
            ))
    if "media" in config.components:
        low, high = config.media_rtp_ports
        span = (high - low) // max(1, config.media_servers)
        for i, port in enumerate(config.media_ports()):
            # A data dir each (media, media2, ...): at start-up a media server repairs or
            # quarantines every unfinished recording in its dir, which must never be another
            # server's recording in progress (as in docker/compose.multinode.yaml).
            data_dir = run / ("media" if i == 0 else f"media{i + 1}")
            out.append(Component(
                f"media{i + 1}",
                [venv_python(), "-m", "voffice_media", "--listen", f"{h}:{port}", "--kamailio", h,
                 "--data-dir", str(data_dir), "--rtp-ports", f"{low + i * span}-{low + (i + 1) * span - 1}",
                 "--metrics", f"{h}:{port + 1}"],  # its Redis: VOFFICE_REDIS_URL (a URL may hold a password)
                lambda port=port: sip_options(h, port) == 200,  # type: ignore[misc]
                env,
            ))
    if "kamailio" in config.components:
        ds_list = run / "dispatcher.list"  # one list for every node: one media server set
        ds_list.write_text("".join(f"1 sip:{h}:{p}\n" for p in config.media_ports()))
        sip_ports, ng_ports, dmq_ports = config.sip_ports(), config.rtpengine_ports(), config.dmq_ports()
        for i, sip_port in enumerate(sip_ports):
            tls_port = config.sip_tls_port if i == 0 else sip_port + 1
            out.append(Component(
                node_name("kamailio", i + 1),
                [shutil.which("kamailio") or "/usr/sbin/kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E",
                 "-w", str(run), "-m", "128", "-M", "16",
                 "-x", config.kamailio_allocator, "-X", config.kamailio_allocator,
                 "-A", f"VO_LISTEN=udp:{h}:{sip_port}",
                 *(["-A", f"VO_LISTEN_TCP=tcp:{h}:{sip_port}"] if "tcp" in config.transports else []),
                 *(["-A", f"VO_LISTEN_TLS=tls:{h}:{tls_port}", "-A", f'VO_TLS_CONFIG="{tls_config(config)}"']
                   if "tls" in config.transports else []),
                 "-A", f'VO_KEMI_SCRIPT="{KEMI_SCRIPT}"',
                 "-A", f'VO_DISPATCHER_LIST="{ds_list}"',
                 "-A", f'VO_RTPENGINE_SOCK="{rtpengine_set(h, ng_ports, i)}"',
                 "-A", f"VO_CHILDREN={config.kamailio_children}",
                 "-A", f'VO_CALLS_TABLE="vocalls=>size=14;autoexpire={int(config.call_max_seconds)};'
                       f'{"dmqreplicate=1;" if config.clustered else ""}"',
                 "-A", f"VO_MAX_INV_LIFETIME={int(config.kamailio_max_inv_lifetime_ms)}",
                 *(dmq_defines(config, i) if config.clustered else [])],
                lambda sip_port=sip_port: sip_options(h, sip_port) == 200,  # type: ignore[misc]
                {**env, **embedded_python_env(),
                 **({"VOFFICE_NODE": str(i + 1), "VOFFICE_DMQ_PORT": str(dmq_ports[i])} if config.clustered else {})},
            ))
    return out


def dmq_defines(config: StackConfig, index: int) -> list[str]:
    """Node `index`'s (0-based) DMQ socket and the peers it joins by: the next two nodes
    round the ring (any live one is enough: it tells the joiner every node it knows)."""
    h, ports = config.host, config.dmq_ports()
    peers = [ports[(index + k) % len(ports)] for k in (1, 2) if (index + k) % len(ports) != index]
    out = ["-A", f"VO_DMQ_LISTEN=udp:{h}:{ports[index]}", "-A", f'VO_DMQ_SERVER="sip:{h}:{ports[index]}"',
           "-A", f'VO_CTL="unix:{config.ctl_socket(index + 1)}"']
    for n, peer in enumerate(dict.fromkeys(peers)):
        out += ["-A", f'VO_DMQ_NOTIFICATION_ADDRESS{"2" if n else ""}="sip:{h}:{peer}"']
    return out


def tls_config(config: StackConfig) -> Path:
    """The tls module's config for Kamailio's TLS listener: the given certificate and key, or
    a self-signed one for the stack's host (made once, kept in run_dir/tls)."""
    folder = config.run_dir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = config.tls_cert, config.tls_key
    if bool(cert) != bool(key):
        raise StackError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    if not cert or not key:
        cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
        if not (Path(cert).exists() and Path(key).exists()):
            made = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825", "-subj", f"/CN={config.host}",
                 "-addext", f"subjectAltName=IP:{config.host}", "-keyout", key, "-out", cert],
                capture_output=True, text=True, timeout=60)
            if made.returncode != 0:
                raise StackError(f"could not make a TLS certificate with openssl: {made.stderr.strip()[-300:]}")
    for path in (cert, key):
        if not Path(path).is_file():
            raise StackError(f"TLS: {path} is not a file")
    cfg = folder / "tls.cfg"
    cfg.write_text(
        "# written by voffice up: Kamailio's TLS listener\n"
        f"[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
        f"certificate = {cert}\nprivate_key = {key}\n\n"
        "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
    )
    return cfg


def _pid_file(config: StackConfig, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


class Stack:
    def __init__(self, config: StackConfig, echo: Callable[[str], None] = lambda s: None):
        self.config = config
        self.echo = echo
        self.parts: list[Component] = []

    def start(self, detach: bool = False, timeout: float = 20.0) -> None:
        config = self.config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        parts = components(config)  # once: Kamailio's part makes the TLS config
        for part in parts:
            pid = _read_pid(_pid_file(config, part.name))
            if pid:
                raise StackError(f"{part.name} is already running (pid {pid}); run `voffice down` first")
        if config.redis_external:  # for `status`
            write_private(config.run_dir / "redis.url", config.redis_external)
        else:
            (config.run_dir / "redis.url").unlink(missing_ok=True)
        listening: dict[str, Any] = {"transports": config.transports, "tls_port": config.sip_tls_port}
        if config.clustered:  # for `status`: every node's ports
            listening["nodes"] = {"sip": config.sip_ports(), "dmq": config.dmq_ports(), "rtpengine": config.rtpengine_ports()}
        (config.run_dir / "listening.json").write_text(json.dumps(listening))
        try:
            if not any(p.name == "redis" for p in parts) and config.load:  # an existing Redis (`up --redis URL`)
                self.load(config.load)
            for part in parts:
                self._start(part, detach, timeout)
                if part.name == "redis" and config.load:
                    self.load(config.load)
                if part.name == "postgres":
                    self.upgrade_history()
            if "history" in config.components:  # where `voffice calls` finds it
                write_private(config.run_dir / "database.url", config.history_url)
        except BaseException:
            self.stop()
            raise

    def _start(self, part: Component, detach: bool, timeout: float) -> None:
        log = open(self.config.run_dir / f"{part.name}.log", "ab")
        env = {**without_python_vars(os.environ), **part.env}
        proc: subprocess.Popen[bytes] = subprocess.Popen(part.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                         stdin=subprocess.DEVNULL, start_new_session=detach, **part.popen)
        part.proc = proc
        log.close()
        self.parts.append(part)
        _pid_file(self.config, part.name).write_text(str(part.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if part.proc.poll() is not None:
                tail = (self.config.run_dir / f"{part.name}.log").read_text(errors="replace")[-600:]
                raise StackError(f"{part.name} exited with code {part.proc.returncode}:\n{tail}")
            if part.ready():
                self.echo(f"{part.name:<10} up    pid {part.proc.pid}, log {self.config.run_dir / (part.name + '.log')}")
                return
            time.sleep(0.1)
        raise StackError(f"{part.name} did not become ready within {timeout:.0f} s; see {self.config.run_dir / (part.name + '.log')}")

    def upgrade_history(self) -> None:
        """The local cluster's schema brought up to date, and its URL kept for the CLI."""
        from routing.records import database

        url = self.config.history_url
        try:
            with database.connect(url) as conn:
                applied = database.upgrade(conn)
        except database.DatabaseError as exc:
            raise StackError(str(exc)) from exc
        if applied:
            self.echo(f"{'postgres':<10} schema version {applied[-1]}")

    def load(self, paths: tuple[str, ...]) -> None:
        result = validate_paths(list(paths), allow_private_webhooks=self.config.allow_private_webhooks)
        if not result.ok:
            raise StackError("; ".join(p.line() for p in errors(result.problems))[:500])
        r = configs.connect(self.config.redis_url)
        changes, problems = configs.plan_load(r, result.documents)
        if problems:
            raise StackError(problems[0].line())
        loaded = configs.apply_load(r, changes)
        for change in changes:
            version = loaded.versions.get(change.account, change.current)
            self.echo(f"loaded     {change.account} v{version} ({', '.join(change.doc['numbers'])})")

    def wait(self) -> None:
        """Foreground: until Ctrl-C / SIGTERM or a component dies."""
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            for part in self.parts:
                if part.proc is not None and part.proc.poll() is not None:
                    self.echo(f"{part.name} exited with code {part.proc.returncode}; stopping")
                    stopping = True
            time.sleep(0.2)

    def stop(self) -> None:
        for part in reversed(self.parts):
            if part.proc is not None:
                if part.proc.poll() is None and part.name in STOP_SIGNALS:
                    part.proc.send_signal(STOP_SIGNALS[part.name])
                stop_process(part.proc)
            _pid_file(self.config, part.name).unlink(missing_ok=True)
        self.parts.clear()


def down(config: StackConfig, echo: Callable[[str], None]) -> bool:
    """Stop what a detached `up` started (found by the pid files)."""
    stopped = False
    for path in sorted(config.run_dir.glob("*.pid")):
        pid = _read_pid(path)
        if pid:
            os.kill(pid, STOP_SIGNALS.get(path.stem, signal.SIGTERM))
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.05)
            echo(f"stopped {path.stem} (pid {pid})")
            stopped = True
        path.unlink(missing_ok=True)
    if not stopped:
        echo("the stack is not running")
    return stopped


def secret_env(config: StackConfig) -> dict[str, str]:
    """The database and SMTP URLs for the records processes (click reads them from these)."""
    env = {"VOFFICE_DATABASE_URL": config.history_url}
    if config.smtp_url:
        env["VOFFICE_SMTP_URL"] = config.smtp_url
    return env


def consumer_ready(redis_url: str, group: str, name: str) -> bool:
    """A records process is up once it reads its consumer group on voffice:events (its name
    there and active in the last 3 s: a name left by an earlier run is not enough)."""
    try:
        client = redis_client.client(redis_url, timeout=1)
        consumers = client.xinfo_consumers("voffice:events", group)
    except redis.RedisError:
        return False
    return any((c["name"].decode() if isinstance(c["name"], bytes) else c["name"]) == name and int(c.get("idle", 0)) < 3000
               for c in consumers)


def node_store_status(config: StackConfig) -> tuple[bool, str]:
    """The machine's node store: its mirror alive, and at Redis's generation."""
    from routing.store.node_store import NodeReader
    from routing.store.reader import StoreUnavailable

    path = config.run_dir / "store"
    pid = _read_pid(_pid_file(config, "node-store"))
    reader = NodeReader(path)
    try:
        generation, accounts, synced_at = reader.summary()
    except StoreUnavailable as exc:
        return False, str(exc)
    finally:
        reader.close()
    try:
        remote = int(redis_client.client(config.redis_url, timeout=1).get("vo:generation") or 0)
        behind = f"Redis at {remote}" if remote != generation else "as Redis"
    except redis.RedisError:
        remote, behind = None, "Redis does not answer"
    written = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(synced_at)) if synced_at else "never"
    detail = (f"{path}: {accounts} accounts, generation {generation} ({behind}), last written {written}; "
              f"mirror {'pid ' + str(pid) if pid else 'NOT RUNNING'}")
    return bool(pid) and (remote is None or remote == generation), detail


def history_status(config: StackConfig) -> tuple[bool, str]:
    from routing.records import database
    from routing.records.stream import lag

    try:
        with database.connect(config.history_url, timeout=2) as conn:
            row = conn.execute("SELECT count(*) AS n FROM calls").fetchone()
        calls = int(row["n"]) if row else 0
    except Exception as exc:  # a status line, whatever went wrong
        return False, f"{database.redact(config.history_url)}: {database.one_line(exc)}"
    try:
        behind = lag(redis_client.client(config.redis_url, timeout=1)).get("history")
    except redis.RedisError:
        behind = None
    pid = _read_pid(_pid_file(config, "history"))
    detail = f"{calls} calls in {database.redact(config.history_url)}; " + (
        f"{behind} events to write" if behind is not None else "no consumer group yet")
    return pid is not None or "history" not in config.components, detail + ("" if pid else "; writer not running")


def notifier_status(config: StackConfig) -> tuple[bool, str]:
    from routing.records import database

    pid = _read_pid(_pid_file(config, "notifier"))
    try:
        with database.connect(config.history_url, timeout=2) as conn:
            counts = {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM deliveries GROUP BY status")}
    except Exception as exc:  # a status line, whatever went wrong
        return False, f"deliveries unknown: {database.one_line(exc)}"
    where = "SMTP relay" if config.smtp_url else f"Maildir {config.run_dir / 'mail'}"
    detail = f"{counts.get('sent', 0)} sent, {counts.get('pending', 0)} pending, {counts.get('failed', 0)} failed; mail to {where}"
    return pid is not None, detail + ("" if pid else "; notifier not running")


def sipsak_ping(host: str, port: int) -> tuple[bool, str]:
    """The card's sipsak harness: one OPTIONS, the reply's status line."""
    binary = shutil.which("sipsak")
    if binary is None:
        code = sip_options(host, port)
        return code == 200, f"OPTIONS -> {code}" if code else "no answer"
    result = subprocess.run([binary, "-s", f"sip:ping@{host}:{port}", "-v"], capture_output=True, text=True, timeout=10)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("SIP/2.0")), "")
    return result.returncode == 0 and " 200 " in line, f"sipsak OPTIONS -> {line or 'no answer'}"


def _listening(config: StackConfig) -> tuple[list[str], int]:
    """The transports and TLS port the running stack's `up` listened on, else the config's."""
    try:
        started = json.loads((config.run_dir / "listening.json").read_text())
        return list(started["transports"]), int(started["tls_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return list(config.transports), config.sip_tls_port


def with_started_nodes(config: StackConfig) -> StackConfig:
    """The config with the node layout the running stack's `up` started (listening.json), so
    `status` sees every node without being told."""
    try:
        nodes = json.loads((config.run_dir / "listening.json").read_text()).get("nodes")
        sip, dmq, ng = (tuple(int(p) for p in nodes[key]) for key in ("sip", "dmq", "rtpengine"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return config
    if not (len(sip) == len(dmq) == len(ng) > 1):
        return config
    return replace(config, kamailio_nodes=len(sip), node_sip_ports=sip, node_dmq_ports=dmq, node_rtpengine_ports=ng)


def dmq_peers(config: StackConfig, node: int) -> tuple[bool, str]:
    """What node `node` (1-based) knows of the others: `kamcmd dmq.list_nodes` on its ctl
    socket. Healthy when it sees every node of the layout active."""
    kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
    try:
        result = subprocess.run([kamcmd, "-s", f"unix:{config.ctl_socket(node)}", "dmq.list_nodes"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"dmq.list_nodes: {exc}"
    if result.returncode != 0:
        return False, f"dmq.list_nodes: {(result.stderr or result.stdout).strip()[:200] or 'no answer'}"
    seen = {int(port): status for port, status in
            re.findall(r"port: (\d+)\s+proto: \S+\s+resolved_ip: \S+\s+status: (\w+)", result.stdout)}
    want = config.dmq_ports()
    peers = ", ".join(f"{config.host}:{port} {status}" for port, status in sorted(seen.items()))
    return all(seen.get(port) == "active" for port in want), f"DMQ peers: {peers or 'none'}"


def write_private(path: Path, url: str) -> None:
    """A URL kept in the run dir for later commands: 0600 before anything is written (it may
    hold a password)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(url + "\n")


def remembered_redis(run_dir: Path) -> str | None:
    """The existing Redis a detached `up --redis URL` was given, if it was."""
    try:
        return (run_dir / "redis.url").read_text().strip() or None
    except OSError:
        return None


def status(config: StackConfig) -> list[tuple[str, bool, str]]:
    """(component, healthy, detail) for each component (each Kamailio node and its rtpengine)."""
    config = with_started_nodes(config)
    rows = []
    h = config.host
    if "redis" in config.components or config.redis_external:
        shown = configs.shown_url(config.redis_url)
        if redis_ping(config.redis_url):
            client = redis_client.client(config.redis_url, timeout=1)
            ha = f"; {redis_client.sentinel_view(config.redis_url)}" if redis_client.is_sentinel(config.redis_url) else ""
            rows.append(("redis", True, f"{shown} PONG, {client.scard('vo:accounts')} accounts, {client.hlen('vo:numbers')} numbers{ha}"))
        else:
            rows.append(("redis", False, f"{shown} does not answer"))
    if "postgres" in config.components and not config.database_url:
        from routing.records import database

        try:
            with database.connect(config.history_url, timeout=2) as conn:
                version = database.current_version(conn)
            rows.append(("postgres", True, f"{database.redact(config.history_url)} schema version {version}"))
        except database.DatabaseError as exc:
            rows.append(("postgres", False, str(exc)))
    if node_store_used(config):
        rows.append(("node-store", *node_store_status(config)))
    if "history" in config.components:
        ok, detail = history_status(config)
        rows.append(("history", ok, detail))
    if "notifier" in config.components:
        rows.append(("notifier", *notifier_status(config)))
    if "web" in config.components:
        ok = web_health(h, config.web_port)
        rows.append(("web", ok, f"http://{h}:{config.web_port}/console {'answers' if ok else 'does not answer'}"))
    if "rtpengine" in config.components:
        for i, ng_port in enumerate(config.rtpengine_ports()):
            ok = rtpengine_ping(h, ng_port)
            rows.append((node_name("rtpengine", i + 1), ok, f"ng {h}:{ng_port} {'pong' if ok else 'no answer'}"))
    if "media" in config.components:
        for i, port in enumerate(config.media_ports()):
            ok, detail = sipsak_ping(h, port)
            rows.append((f"media{i + 1}", ok, f"{h}:{port} {detail}"))
    if "kamailio" in config.components and config.clustered:
        for i, sip_port in enumerate(config.sip_ports()):
            name = node_name("kamailio", i + 1)
            ok, detail = sipsak_ping(h, sip_port)
            rows.append((name, ok, f"{h}:{sip_port} {detail}"))
            rows.append((f"{name}/dmq", *dmq_peers(config, i + 1)))
    elif "kamailio" in config.components:
        ok, detail = sipsak_ping(h, config.sip_port)
        rows.append(("kamailio", ok, f"{h}:{config.sip_port} {detail}"))
        transports, tls_port = _listening(config)
        if "tcp" in transports:
            code = sip_options(h, config.sip_port, transport="tcp")
            rows.append(("kamailio/tcp", code == 200, f"tcp:{h}:{config.sip_port} OPTIONS -> {code or 'no answer'}"))
        if "tls" in transports:
            code = sip_options(h, tls_port, transport="tls")
            rows.append(("kamailio/tls", code == 200, f"tls:{h}:{tls_port} OPTIONS -> {code or 'no answer'}"))
    return rows
