"""docker/: both compose files pass `docker-compose config` and wire their nodes to each other
consistently; each image installs the Debian packages `make install` installs for its component;
the Kamailio entrypoint passes the defines `voffice up` passes.

No container engine is needed: `docker-compose config` (Debian's docker-compose 1.29, installed
by `make install`) only reads the files. Its output is read without a YAML library: it is block
YAML with services at two spaces, their keys at four, environment entries at six.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
ONE_MACHINE = DOCKER / "compose.yaml"
MULTINODE = DOCKER / "compose.multinode.yaml"

# Debian packages of `make install`, by the image that needs them.
IMAGE_PACKAGES = {
    "kamailio.Dockerfile": {"kamailio", "kamailio-python3-modules", "kamailio-tls-modules", "python3-venv", "sipsak"},
    "media-server.Dockerfile": {"python3-venv", "sox", "espeak-ng", "libspandsp2", "fonts-dejavu-core", "lame"},
    "postgres.Dockerfile": {"postgresql"},
    "rtpengine.Dockerfile": {"rtpengine-daemon"},
    "redis.Dockerfile": {"redis-server"},
}
# ... and the ones no image of ours installs.
NOT_IN_IMAGES = {
    "python3-dev",  # headers for building wheels; the images install binary wheels
    "sip-tester",  # sipp: test and load tools
    "docker-compose",  # reads these files on the development machine
    "sipvicious",  # the scanner the abuse tests run against the stack
    "baresip",  # a real SIP client for tests/test_real_clients.py
    "openssl",  # `voffice up` makes a loopback TLS certificate; an image is given its certificate (VO_TLS_CONFIG)
    "docker.io",  # builds and runs these images (tests/test_images.py)
    "debootstrap",  # makes their base image, voffice/debian:bookworm (docker/base-image.sh)
    "chromium",  # the console's browser tests (tests/test_console_browser.py)
    "chromium-driver",
    "iptables",  # dockerd's bridge networking
}


@dataclass
class Service:
    environment: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # its keys; the value if inline, else ""
    ipv4_address: str | None = None


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def parse_services(text: str) -> dict[str, Service]:
    """The parts of `docker-compose config` output these tests read."""
    services: dict[str, Service] = {}
    current: Service | None = None
    section = ""
    in_services = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_services = line == "services:"
            current = None
            continue
        if not in_services:
            continue
        if m := re.fullmatch(r"  ([\w.-]+):", line):
            current = services.setdefault(m[1], Service())
        elif current is None:
            continue
        elif m := re.fullmatch(r"    ([\w.-]+):(?: (.*))?", line):
            section = m[1]
            current.keys[section] = _unquote(m[2] or "")
        elif section == "environment" and (m := re.fullmatch(r"      (\w+): ?(.*)", line)):
            current.environment[m[1]] = _unquote(m[2])
        elif section == "command" and (m := re.fullmatch(r"    - (.*)", line)):
            current.command.append(_unquote(m[1]))
        elif section == "networks" and (m := re.fullmatch(r"        ipv4_address: (.*)", line)):
            current.ipv4_address = m[1]
    return services


def compose_cli() -> str:
    cli = shutil.which("docker-compose")
    if cli is None:
        pytest.skip("no docker-compose CLI (Debian package docker-compose; `make install` installs it)")
    return cli


@cache
def compose_config(path: Path, *args: str) -> str:
    # Only the files' own defaults: no VO_*/VOFFICE_* from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VO_", "VOFFICE_"))}
    result = subprocess.run([compose_cli(), "-f", str(path), "config", *args],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def services_of(path: Path) -> dict[str, Service]:
    services = parse_services(compose_config(path))
    assert set(services) == set(compose_config(path, "--services").split())
    return services


def option_values(command: list[str], option: str) -> list[str]:
    """Values of `--option VALUE` and `--option=VALUE` in an argument list."""
    values = [value for flag, value in pairwise(command) if flag == option]
    return values + [arg.split("=", 1)[1] for arg in command if arg.startswith(option + "=")]


def long_running(services: dict[str, Service]) -> dict[str, Service]:
    return {name: s for name, s in services.items() if name not in ("loader", "db-upgrade")}


# --- one machine -------------------------------------------------------------------------


def test_one_machine_services() -> None:
    services = services_of(ONE_MACHINE)
    assert set(services) == {"redis", "rtpengine", "media-server", "loader", "kamailio", "postgres", "db-upgrade",
                             "history", "notifier", "web"}
    assert {"redis-data", "media-data"} <= set(compose_config(ONE_MACHINE, "--volumes").split())
    for name, service in long_running(services).items():
        assert "healthcheck" in service.keys, name
        assert service.keys.get("restart") == "unless-stopped", name
    assert services["loader"].keys.get("restart") == "no"
    assert services["loader"].command == ["examples/seed-office.json"]


def test_one_machine_addresses_agree() -> None:
    """A bridge network of the file's own subnet, every service at a fixed address, and each
    service pointed at the others' addresses with the ports of `voffice up`."""
    services = services_of(ONE_MACHINE)
    config = compose_config(ONE_MACHINE)
    assert "subnet: 172.31.240.0/24" in config
    addresses = {name: s.ipv4_address for name, s in services.items()}
    assert None not in addresses.values() and len(set(addresses.values())) == len(addresses)
    assert all((a or "").startswith("172.31.240.") for a in addresses.values())
    assert not any("network_mode" in s.keys for s in services.values())
    kamailio, media, rtpengine = services["kamailio"], services["media-server"], services["rtpengine"]
    assert kamailio.environment["VO_LISTEN"] == f"udp:{kamailio.ipv4_address}:5060"
    assert kamailio.environment["VO_MEDIA_SERVERS"] == f"sip:{media.ipv4_address}:5070"
    assert option_values(media.command, "--listen") == [f"{media.ipv4_address}:5070"]
    assert option_values(media.command, "--kamailio") == [kamailio.ipv4_address]
    assert option_values(media.command, "--rtp-source") == [rtpengine.ipv4_address]
    assert option_values(rtpengine.command, "--interface") == [rtpengine.ipv4_address]
    assert kamailio.environment["VO_RTPENGINE_SOCK"] == "udp:" + option_values(rtpengine.command, "--listen-ng")[0]
    assert option_values(rtpengine.command, "--listen-ng") == [f"{rtpengine.ipv4_address}:2223"]
    redis_url = f"redis://{services['redis'].ipv4_address}:6479/0"
    database_url = f"postgresql://voffice@{services['postgres'].ipv4_address}:5479/voffice"
    assert option_values(media.command, "--redis") == [redis_url]
    for name in ("kamailio", "media-server", "loader", "db-upgrade", "history", "notifier"):
        assert services[name].environment["VOFFICE_REDIS_URL"] == redis_url, name
        assert services[name].environment["VOFFICE_DATABASE_URL"] == database_url, name
    # the host, at the bridge's gateway address, is the SBC/operator gateway by default
    assert kamailio.environment["VOFFICE_OPERATOR_GATEWAY"] == "172.31.240.1:5080"
    assert kamailio.environment["VOFFICE_TRUSTED_TRUNKS"] == "172.31.240.1"


# --- multi-node --------------------------------------------------------------------------


def test_multinode_services() -> None:
    services = services_of(MULTINODE)
    assert set(services) == {
        "redis-1", "redis-2", "redis-3", "sentinel-1", "sentinel-2", "sentinel-3", "postgres", "db-upgrade",
        "rtpengine-1", "rtpengine-2", "rtpengine-3", "media-1", "media-2",
        "kamailio-1", "kamailio-2", "kamailio-3", "history", "notifier", "loader",
    }
    for name, service in long_running(services).items():
        assert "healthcheck" in service.keys, name
        assert service.keys.get("restart") == "unless-stopped", name
    addresses = [s.ipv4_address for s in services.values()]
    assert None not in addresses and len(set(addresses)) == len(addresses)
    # only our own images (no registry pulls), and nothing in front of Redis
    assert {s.keys.get("image") for s in services.values()} <= {
        "voffice/redis", "voffice/postgres", "voffice/rtpengine", "voffice/media-server", "voffice/kamailio"}
    # its own subnet, not compose.yaml's
    assert all(a.startswith("172.31.241.") for a in addresses if a)


def test_multinode_nodes_know_each_other() -> None:
    services = services_of(MULTINODE)

    def named(prefix: str) -> list[Service]:
        return [s for name, s in sorted(services.items()) if re.fullmatch(prefix + r"-\d", name)]

    kamailios, medias, rtpengines = named("kamailio"), named("media"), named("rtpengine")
    redises, sentinels = named("redis"), named("sentinel")
    assert len(kamailios) == 3 and len(medias) == 2 and len(rtpengines) == 3 and len(redises) == 3 and len(sentinels) == 3
    redis_url = ("redis+sentinel://" + ",".join(f"{s.ipv4_address}:26379" for s in sentinels) + "/voffice/0")
    media_uris = sorted("sip:" + option_values(m.command, "--listen")[0] for m in medias)
    dmq = [f"{k.ipv4_address}:5090" for k in kamailios]

    for i, node in enumerate(kamailios):
        env = node.environment
        assert env["VO_LISTEN"] == f"udp:{node.ipv4_address}:5060"
        assert sorted(env["VO_MEDIA_SERVERS"].split()) == media_uris
        # its own rtpengine weighted first, every other node's as a fallback (docs/cluster.md)
        ng = ["udp:" + option_values(r.command, "--listen-ng")[0] for r in rtpengines]
        assert env["VO_RTPENGINE_SOCK"].split() == [f"{sock}={100 if j == i else 1}" for j, sock in enumerate(ng)]
        assert env["VOFFICE_NODE"] == str(i + 1)
        assert env["VO_DMQ_LISTEN"] == f"udp:{dmq[i]}"
        peers = {env["VO_DMQ_NOTIFICATION_ADDRESS"], env["VO_DMQ_NOTIFICATION_ADDRESS2"]}
        assert peers == {f"sip:{d}" for d in dmq if d != dmq[i]}
        assert env["VOFFICE_OPERATOR_GATEWAY"] and env["VOFFICE_TRUSTED_TRUNKS"]
    for name, service in services.items():
        if service.keys.get("image") in ("voffice/media-server", "voffice/kamailio"):
            assert service.environment["VOFFICE_REDIS_URL"] == redis_url, name
    for media in medias:
        assert option_values(media.command, "--listen")[0].startswith(f"{media.ipv4_address}:")
        assert sorted(option_values(media.command, "--kamailio")) == sorted(k.ipv4_address or "" for k in kamailios)
        assert sorted(option_values(media.command, "--rtp-source")) == sorted(r.ipv4_address or "" for r in rtpengines)
    for rtpengine in rtpengines:
        assert option_values(rtpengine.command, "--interface") == [rtpengine.ipv4_address]
    # the replicas follow redis-1; the sentinels watch it
    for replica in redises[1:]:
        assert option_values(replica.command, "--replicaof") == [redises[0].ipv4_address]
    for sentinel in sentinels:
        assert sentinel.command[:7] == ["sentinel", "--sentinel", "monitor", "voffice", redises[0].ipv4_address, "6479", "2"]
    # Each media server repairs unfinished recordings in its data dir at start-up: never share one.
    data_dirs = [option_values(m.command, "--data-dir")[0] for m in medias]
    assert len(set(data_dirs)) == len(data_dirs)


# --- images ------------------------------------------------------------------------------


def _logical_lines(text: str) -> list[str]:
    return re.sub(r"\\\n", " ", text).splitlines()


def makefile_packages() -> set[str]:
    for line in _logical_lines((ROOT / "Makefile").read_text()):
        if m := re.match(r"APT_PACKAGES\s*:?=(.*)", line):
            return set(m[1].split())
    raise AssertionError("no APT_PACKAGES in the Makefile")


def dockerfile_packages(path: Path) -> set[str]:
    packages: set[str] = set()
    for line in _logical_lines(path.read_text()):
        for command in re.findall(r"apt-get install ([^&;]*)", line):
            packages |= {word for word in command.split() if not word.startswith("-")}
    return packages


def test_every_make_install_package_has_a_place() -> None:
    in_images = set().union(*IMAGE_PACKAGES.values())
    assert makefile_packages() == in_images | NOT_IN_IMAGES


@pytest.mark.parametrize("dockerfile", sorted(IMAGE_PACKAGES))
def test_image_installs_its_component_packages(dockerfile: str) -> None:
    text = (DOCKER / dockerfile).read_text()
    # the base image made here (docker/base-image.sh): no image registry is needed
    assert text.startswith("#") and "FROM voffice/debian:bookworm" in text
    assert IMAGE_PACKAGES[dockerfile] <= dockerfile_packages(DOCKER / dockerfile)


def test_kamailio_entrypoint_passes_the_stack_defines() -> None:
    entrypoint = (DOCKER / "kamailio-entrypoint.sh").read_text()
    stack_defines = set(re.findall(r'"-A", f[\'"](VO_\w+)=', (ROOT / "routing" / "stack" / "local.py").read_text()))
    cfg_defines = set(re.findall(r"^#!ifn?def (VO_\w+)", (ROOT / "kamailio" / "kamailio.cfg").read_text(), re.M))
    passed = set(re.findall(r'-A "(VO_\w+)=', entrypoint))
    assert stack_defines and stack_defines <= passed <= cfg_defines
    assert "-x tlsf -X tlsf" in entrypoint and "exec kamailio " in entrypoint
    assert os.access(DOCKER / "kamailio-entrypoint.sh", os.X_OK)
