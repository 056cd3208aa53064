#!/bin/sh
# Installs on a Debian 12 host what baking an image and its end-to-end test need, and nothing that
# is there already: debootstrap, qemu-system-x86, e2fsprogs (mkfs.ext4 -d), zstd (stage caches),
# musl-tools (the static kiln), HAProxy and socat (the host side of the e2e), iproute2 (network
# namespaces), python3 (the e2e's QMP and guest-agent client).
#
#   sudo packaging/image/host-setup.sh
#
# qemu: on a plain Debian 12, bookworm's qemu-system-x86 7.2 is used. Where qemu-utils from
# bookworm-backports is installed already (qemu-utils 8+), bookworm's qemu-system-x86 cannot be
# installed beside it (qemu-system-common/qemu-utils version lock), so qemu-system-x86 comes from
# bookworm-backports too, through a private apt sources list: /etc/apt is left alone.
set -eu

missing=""
for p in debootstrap e2fsprogs zstd musl-tools haproxy socat iproute2 curl ca-certificates python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
need_qemu=false
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_qemu=true

if [ -z "$missing" ] && ! $need_qemu; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "host-setup: missing:$missing$($need_qemu && echo ' qemu-system-x86'); run as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "host-setup: installing$missing"
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi
if $need_qemu; then
    utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    case "$utils" in
    *bpo12*)
        echo "host-setup: qemu-utils $utils is from bookworm-backports: qemu-system-x86 from there too"
        apt_dir=/var/cache/kiln-bake/apt
        mkdir -p "$apt_dir/lists/partial"
        cat >"$apt_dir/sources.list" <<SOURCES
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
SOURCES
        set -- -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
            -o Dir::State::Lists="$apt_dir/lists"
        apt-get "$@" update -q
        apt-get "$@" install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
        ;;
    *)
        apt-get update -q
        apt-get install -y -q --no-install-recommends qemu-system-x86
        ;;
    esac
fi
