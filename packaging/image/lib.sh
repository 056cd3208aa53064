# Shell functions of the local image bake (sourced by bake.sh and e2e.sh; POSIX sh).

# Stage caches: one tarball per stage and input hash. Small: a stage tarball is ~100-200 MB.
KILN_BAKE_CACHE=${KILN_BAKE_CACHE:-/var/cache/kiln-bake}

log() {
    printf '%s %s: %s\n' "$(date +%H:%M:%S)" "${log_tag:-bake}" "$*" >&2
}

die() {
    printf 'bake: %s\n' "$*" >&2
    exit 1
}

# hash_inputs KEY... -- FILE_OR_DIR...: one sha256 over the given strings and over every file below
# the given paths (name and content, in a stable order). A stage's key: what it was made from.
hash_inputs() {
    {
        while [ $# -gt 0 ] && [ "$1" != "--" ]; do
            printf 'key %s\n' "$1"
            shift
        done
        [ $# -gt 0 ] && shift
        for path in "$@"; do
            find "$path" -type f -print | LC_ALL=C sort | while read -r f; do
                printf 'file %s %s\n' "${f#"$path"}" "$(sha256sum <"$f" | cut -c1-64)"
            done
        done
    } | sha256sum | cut -c1-16
}

# pack ROOT TARBALL / unpack TARBALL ROOT: a root file system with owners, modes and xattrs.
pack() {
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$1" -cf - . | zstd -q -T0 -3 -o "$2.part" &&
        mv "$2.part" "$2"
}
unpack() {
    mkdir -p "$2"
    zstd -q -dc "$1" | tar --numeric-owner --xattrs --xattrs-include='*' -C "$2" -xpf -
}

# in_root ROOT COMMAND...: runs COMMAND chrooted into ROOT with /proc, /sys, /dev and /run
# mounted, inside a private mount namespace: whatever happens, the mounts go away with it and the
# host's mount table is never touched. The root's /etc/resolv.conf is set aside for the host's while
# COMMAND runs (apt needs DNS), then put back. Daemons that packages try to start are refused
# (policy-rc.d), as in any image build.
in_root() {
    root=$1
    shift
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    stash="$root/etc/resolv.conf.kiln-bake"
    rm -f "$stash"
    if [ -e "$root/etc/resolv.conf" ] || [ -L "$root/etc/resolv.conf" ]; then
        mv "$root/etc/resolv.conf" "$stash"
    fi
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    status=0
    unshare --mount --propagation private -- sh -eu -c '
        root=$1; shift
        mount -t proc proc "$root/proc"
        mount -t sysfs sysfs "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o mode=0755 tmpfs "$root/run"   # as systemd mounts it: kiln check refuses a state_dir under a world-writable /run
        exec chroot "$root" "$@"
    ' in_root "$root" env -i LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" || status=$?
    rm -f "$root/etc/resolv.conf" "$root/usr/sbin/policy-rc.d"
    if [ -e "$stash" ] || [ -L "$stash" ]; then mv "$stash" "$root/etc/resolv.conf"; fi
    return $status
}

# run_stage ROOT STAGE_DIR SCRIPT: copies STAGE_DIR (the stage script, its files, its inputs)
# to /tmp/kiln-stage in ROOT and runs SCRIPT there, as Packer's shell provisioner does on an
# instance; then removes it.
run_stage() {
    rm -rf "$1/tmp/kiln-stage"
    cp -a "$2" "$1/tmp/kiln-stage"
    status=0
    in_root "$1" /bin/sh -eu "/tmp/kiln-stage/$3" || status=$?
    rm -rf "$1/tmp/kiln-stage"
    return $status
}

# minbase_tarball BASE_ENV: a plain `debootstrap --variant=minbase` of BASE_ENV's (stages/base.env)
# suite and mirror, made once and kept in the cache: the starting point of stage 1, and
# test-deb.sh's fresh root. Prints its path.
minbase_tarball() {
    (
        . "$1"
        key=$(hash_inputs "$SUITE" "$MIRROR" --)
        tarball="$KILN_BAKE_CACHE/debian-$SUITE-minbase-$key.tar.zst"
        if [ ! -f "$tarball" ]; then
            mkdir -p "$KILN_BAKE_CACHE"
            tmp=$(mktemp -d "$KILN_BAKE_CACHE/.minbase.XXXXXX")
            log "debootstrap --variant=minbase $SUITE (once; kept as $tarball)"
            if ! debootstrap --variant=minbase "$SUITE" "$tmp/root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1; then
                tail -n 30 "$tmp/debootstrap.log" >&2
                rm -rf "$tmp"
                die "debootstrap failed (log above)"
            fi
            pack "$tmp/root" "$tarball"
            rm -rf "$tmp"
            # Only the current one is kept.
            find "$KILN_BAKE_CACHE" -maxdepth 1 -name "debian-*-minbase-*.tar.zst" ! -name "${tarball##*/}" -delete
        fi
        echo "$tarball"
    )
}
