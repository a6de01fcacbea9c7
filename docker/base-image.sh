#!/bin/sh
# The Debian 12 base of every voffice image, made on this machine (no image registry needed):
# debootstrap --variant=minbase, then `docker import`. Skipped when the image exists.
#   docker/base-image.sh [IMAGE]          (default voffice/debian:bookworm)
# VO_DEBIAN_MIRROR / VO_DEBIAN_SECURITY: the mirrors, both for debootstrap and the image's own
# apt sources (defaults: Debian's, the ones this host uses).
set -eu
image=${1:-voffice/debian:bookworm}
mirror=${VO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${VO_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image exists"
    exit 0
fi
root=$(mktemp -d /var/tmp/voffice-debootstrap.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror"

# The image's apt sources: the same mirror, with updates and security updates.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# As Docker's debian images: no recommends, no docs or man pages, no apt caches kept.
cat >"$root/etc/apt/apt.conf.d/90voffice" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
cat >"$root/etc/dpkg/dpkg.cfg.d/90voffice-nodoc" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
DPKG
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
    "$root"/usr/share/man/* "$root"/usr/share/info/*
# No daemon starts while packages install (what Docker's own debian images do).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# The host's resolver and hostname are Docker's business at run time.
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase bookworm $mirror" - "$image"
echo "$image imported"
