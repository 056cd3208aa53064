#!/bin/sh
# Builds, once, the Debian 12 root that runs real cloud-init (22.4, Debian's package) beside kiln:
# `debootstrap --variant=minbase bookworm`, then cloud-init, dnsmasq-base (the DHCP answer of
# `init --local`, run from this root on the metadata side) and openssh-server (cc_ssh's host keys
# and sshd_config, as on a cloud image), without recommends. Kept unpacked in
# $KILN_TEST_CACHE/cloud-init-root-KEY (default /var/cache/kiln-test, ~330 MB; KEY hashes this
# script) and never changed afterwards: a test lays an overlay on it (testkit/src/cloud_init.rs).
# Older roots are deleted. Prints the root's path. About 2-4 minutes on 2 cores with a warm mirror.
#
#   testkit/cloud-init-root.sh            # build if missing; print the path
#   testkit/cloud-init-root.sh --path     # print the path it would have, build nothing
set -eu
[ "$(id -u)" -eq 0 ] || { echo "cloud-init-root: run as root (debootstrap, chroot)" >&2; exit 1; }
cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}
suite=bookworm
mirror=http://deb.debian.org/debian
packages="cloud-init dnsmasq-base openssh-server"
key=$(cat "$0" | sha256sum | cut -c1-12)
root="$cache/cloud-init-root-$key"
if [ "${1:-}" = "--path" ]; then
    echo "$root"
    exit 0
fi
if [ -f "$root/.kiln-complete" ]; then
    echo "$root"
    exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2
}
mkdir -p "$cache"
# One builder at a time (two test processes may both find the root missing).
exec 9>"$cache/.cloud-init-root.lock"
flock 9
if [ -f "$root/.kiln-complete" ]; then
    echo "$root"
    exit 0
fi
tmp=$(mktemp -d "$cache/.cloud-init-root.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "cloud-init-root: debootstrap --variant=minbase $suite (once)" >&2
if ! debootstrap --variant=minbase "$suite" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 30 "$tmp/debootstrap.log" >&2
    exit 1
fi
echo "cloud-init-root: apt-get install $packages" >&2
# In a private mount namespace: the mounts go with it, the host's mount table is never touched.
# Daemons that packages try to start are refused (policy-rc.d), as in any image build.
printf '#!/bin/sh\nexit 101\n' >"$tmp/root/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$tmp/root/etc/resolv.conf"
unshare --mount --propagation private sh -eu -c '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/run"
    exec chroot "$root" env -i LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
' in_root "$tmp/root" sh -eu -c "apt-get update -q && apt-get install -y -q --no-install-recommends $packages && apt-get clean" \
    >"$tmp/install.log" 2>&1 || { tail -n 30 "$tmp/install.log" >&2; exit 1; }
rm -f "$tmp/root/usr/sbin/policy-rc.d" "$tmp/root/etc/resolv.conf"
rm -rf "$tmp/root/var/lib/apt/lists/"* "$tmp/root/var/cache/apt/"*.bin
# The host keys the package made are this build's, not an instance's: cc_ssh makes new ones.
rm -f "$tmp/root/etc/ssh/ssh_host_"*
touch "$tmp/root/.kiln-complete"
mv "$tmp/root" "$root"
# Only the current one is kept.
find "$cache" -maxdepth 1 -name 'cloud-init-root-*' ! -name "${root##*/}" -exec rm -rf {} +
echo "$root"
