#!/bin/sh
# Bakes the kiln example image, from nothing to a bootable Debian 12 disk, in the three stages of
# an immutable-server bake:
#
#   1. base image         debootstrap minbase + kernel, systemd, DHCP, console  (stages/base.sh)
#                         (the debootstrap itself is cached too, as test-deb.sh's fresh root)
#   2. application base   nginx, php-fpm, php-cli, Symfony 5.4's Debian packages, Redis, the app's
#                         user and folders  (stages/appbase.sh)
#   3. final image        kiln's .deb, the Symfony app with its prod cache warmed, its config;
#                         `kiln check`, `kiln seal`  (stages/final.sh)
#
#   sudo packaging/image/bake.sh            # -> target/image/{kiln.img,vmlinuz,initrd.img}
#
# Stages 1 and 2 are cached as tarballs in $KILN_BAKE_CACHE (/var/cache/kiln-bake), keyed by the
# hash of their inputs (their script, files and the stage before): a re-bake after a change to kiln
# or the app redoes only stage 3, in seconds. Stage 3 always runs. The disk is one ext4 file system
# without a partition table (mkfs.ext4 -d), booted with the kernel and initrd taken from it:
#   qemu-system-x86_64 -kernel target/image/vmlinuz -initrd target/image/initrd.img \
#       -append "root=/dev/vda console=ttyS0" -drive file=target/image/kiln.img,format=raw,if=virtio ...
# (packaging/image/e2e.sh boots it for real.) Environment: KILN_DEB=PATH skips building kiln and
# packages that .deb instead; KILN_IMAGE_OUT=DIR (target/image); KILN_APP=DIR (examples/symfony/app;
# stage 3 runs its `bin/console cache:warmup`, so another app must be a Symfony app of that shape);
# KILN_TOML=FILE replaces files/final/etc/kiln/kiln.toml (as Packer's kiln_toml variable).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot, mkfs with owners)"
"$here/host-setup.sh"

out=${KILN_IMAGE_OUT:-$repo/target/image}
app=${KILN_APP:-$repo/examples/symfony/app}
mkdir -p "$out" "$KILN_BAKE_CACHE/stages"
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

started=$(date +%s)

# kiln: the static binary and its Debian package.
if [ -z "${KILN_DEB:-}" ]; then
    log "building kiln (static) and its .deb"
    "$repo/packaging/build-static.sh" >/dev/null
    KILN_DEB=$("$repo/packaging/debian/build-deb.sh")
fi
[ -f "$KILN_DEB" ] || die "$KILN_DEB: no such package"

# What every stage sees in /tmp/kiln-stage (as Packer uploads it).
inputs="$work/inputs"
mkdir -p "$inputs"
cp -R "$here/stages" "$here/files" "$inputs/"

base_key=$(hash_inputs -- "$here/stages/base.env" "$here/stages/base.sh" "$here/files/base")
base_tar="$KILN_BAKE_CACHE/stages/base-$base_key.tar.zst"
appbase_key=$(hash_inputs "$base_key" -- "$here/stages/appbase.sh")
appbase_tar="$KILN_BAKE_CACHE/stages/appbase-$appbase_key.tar.zst"

if [ -f "$appbase_tar" ]; then
    log "stage 1 base image: not needed (stage 2 cached)"
    log "stage 2 application base image: cached ($appbase_tar)"
else
    root="$work/root"
    if [ -f "$base_tar" ]; then
        log "stage 1 base image: cached ($base_tar)"
    else
        t=$(date +%s)
        minbase=$(minbase_tarball "$here/stages/base.env")
        log "stage 1 base image: debian minbase + kernel, systemd, DHCP, console, guest agent"
        unpack "$minbase" "$root"
        run_stage "$root" "$inputs" stages/base.sh
        pack "$root" "$base_tar"
        log "stage 1 base image: done in $(($(date +%s) - t))s, $(du -h "$base_tar" | cut -f1) -> $base_tar"
        rm -rf "$root"
    fi
    t=$(date +%s)
    log "stage 2 application base image: nginx, php-fpm, php-cli, Symfony packages, Redis, user app, /srv/app"
    unpack "$base_tar" "$root"
    run_stage "$root" "$inputs" stages/appbase.sh
    pack "$root" "$appbase_tar"
    rm -rf "$root"
    log "stage 2 application base image: done in $(($(date +%s) - t))s, $(du -h "$appbase_tar" | cut -f1) -> $appbase_tar"
fi
# Older stage tarballs are dead weight: keep the cache to the current ones.
find "$KILN_BAKE_CACHE/stages" -name '*.tar.zst' ! -name "base-$base_key.tar.zst" ! -name "appbase-$appbase_key.tar.zst" -delete

t=$(date +%s)
log "stage 3 final image: $(basename "$KILN_DEB"), the app from ${app#"$repo"/}, sealed"
root="$work/root"
unpack "$appbase_tar" "$root"
cp "$KILN_DEB" "$inputs/kiln.deb"
if [ -n "${KILN_TOML:-}" ]; then cp "$KILN_TOML" "$inputs/files/final/etc/kiln/kiln.toml"; fi
mkdir -p "$inputs/app"
cp -R "$app/." "$inputs/app/"
run_stage "$root" "$inputs" stages/final.sh
# The unit as systemd will load it, offline, against the image's own systemd and binary.
verify=$(systemd-analyze verify --man=no --root="$root" kiln.service 2>&1) && [ -z "$verify" ] ||
    die "systemd-analyze verify kiln.service in the image: ${verify:-exit status $?}"
log "stage 3: systemd-analyze verify kiln.service: clean"

# The disk: the root file system as is, plus room for logs and runtime writes.
cp -L "$root/vmlinuz" "$work/vmlinuz"
cp -L "$root/initrd.img" "$work/initrd.img"
used_mb=$(du -sm "$root" | cut -f1)
size_mb=$((used_mb + used_mb / 4 + 512))
rm -f "$work/kiln.img"
mkfs.ext4 -q -F -L kiln-root -d "$root" "$work/kiln.img" "${size_mb}M"
mv "$work/kiln.img" "$work/vmlinuz" "$work/initrd.img" "$out/"
rm -rf "$root"
log "stage 3 final image: done in $(($(date +%s) - t))s: $out/kiln.img (${size_mb} MiB, ${used_mb} MiB used)"
log "baked in $(($(date +%s) - started))s"
echo "$out/kiln.img"
