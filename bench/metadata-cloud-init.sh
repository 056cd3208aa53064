#!/bin/bash
# Benchmark: cloud-init beside kiln on one EC2 instance. Debian 12's cloud-init 22.4 runs
# `init --local` (DHCP on eth0, the IMDS crawl, user-data processing, its cache) in the chroot
# testkit/cloud-init-root.sh builds, in a network namespace whose 169.254.169.254 is the
# split-segment EC2 emulator (dnsmasq from the root answers its DHCP); then `kiln env` (token,
# facts, tags, user-data, env file) from the same namespace and the same emulator, and the curl
# script doing kiln's requests (bench/metadata-curl.sh). Each cloud-init run starts from a fresh
# overlay (a first boot). Prints the medians. Needs root. A benchmark: it never fails on numbers.
# Usage: bench/metadata-cloud-init.sh [--no-build] [--runs N] [--cloud-init-runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 runs=200 ci_runs=10
while (($#)); do
    case $1 in
        --no-build) build=0 ;;
        --runs) runs=$2; shift ;;
        --cloud-init-runs) ci_runs=$2; shift ;;
        *) echo "usage: $0 [--no-build] [--runs N] [--cloud-init-runs N]" >&2; exit 2 ;;
    esac
    shift
done
[[ $(id -u) -eq 0 ]] || { echo "run as root (network namespaces, chroot)" >&2; exit 1; }
((build)) && cargo build --release -p kiln --bin kiln -p testkit --bin kiln-testkit
root=$(testkit/cloud-init-root.sh)
kiln=$PWD/target/release/kiln
id=kcb$$
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    ip netns del "$id-s" 2>/dev/null || true
    ip netns del "$id-i" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$id-s"
ip netns add "$id-i"
ip -n "$id-s" link add "$id" type veth peer name eth0 netns "$id-i"
ip -n "$id-s" addr add 10.77.200.1/24 dev "$id"
ip -n "$id-s" addr add 169.254.169.254/16 dev "$id"
for ns in "$id-s:$id" "$id-i:eth0"; do
    ip -n "${ns%%:*}" link set "${ns#*:}" up
    ip -n "${ns%%:*}" link set lo up
done

# The user-data both read: cloud-init's part and kiln's (see docs: sharing user-data).
kiln_part=$(printf '# kiln environment, not for cloud-init\nAPP_SECRET=bench-secret\nDATABASE_URL="postgres://app@db.internal/app"\nAPP_DEBUG=0\n' | base64 -w0)
cat >"$work/user-data" <<EOF
Content-Type: multipart/mixed; boundary="==bench=="
MIME-Version: 1.0

--==bench==
Content-Type: text/cloud-config; charset="us-ascii"

#cloud-config
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFv8hbQ0c0lTn2YpX2E3d0J3bWZkS2lsblRlc3RLZXkx ops@bench

--==bench==
Content-Type: text/x-kiln-env; charset="utf-8"
Content-Transfer-Encoding: base64

$kiln_part
--==bench==--
EOF
ip netns exec "$id-s" target/release/kiln-testkit metadata --provider ec2 --listen 169.254.169.254:80 \
    --user-data "$work/user-data" --tag env.APP_ENV=prod --tag Name=web-1 --split-segments >"$work/emulator.out" &
pids+=($!)
ip netns exec "$id-s" "$root/lib64/ld-linux-x86-64.so.2" \
    --library-path "$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu" "$root/usr/sbin/dnsmasq" \
    --keep-in-foreground --port=0 --no-resolv --no-hosts --leasefile-ro --user=root --bind-interfaces \
    --interface="$id" --dhcp-range=10.77.200.10,10.77.200.20,255.255.255.0,1h \
    --dhcp-option=option:router,10.77.200.1 --pid-file="$work/dnsmasq.pid" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/emulator.out" && break; sleep 0.1; done

# A first boot of cloud-init, each run from a fresh overlay on the cached root.
cat >"$work/chroot.sh" <<'EOF'
lower=$1 dir=$2; shift 2
root=$dir/root
mkdir -p "$root"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$dir/run" "$root/run"
mount -t tmpfs -o mode=0755 tmpfs "$root/sys"
mkdir -p "$root/sys/class/net" "$root/sys/devices" "$root/sys/hypervisor"
mount --rbind /sys/devices "$root/sys/devices"
mount --bind /sys/class/net "$root/sys/class/net"
echo ec2e1916-9099-7caf-fd21-012345abcdef >"$root/sys/hypervisor/uuid"
exec chroot "$root" env -i LC_ALL=C.UTF-8 HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
EOF
cat >"$work/fresh.sh" <<EOF
rm -rf "$work/ci" && mkdir -p "$work/ci/upper/etc/cloud/cloud.cfg.d" "$work/ci/work" "$work/ci/run"
printf 'datasource_list: [ Ec2, None ]\nnetwork: {config: disabled}\n' >"$work/ci/upper/etc/cloud/cloud.cfg.d/90_kiln_bench.cfg"
EOF
cloud_init="ip netns exec $id-i unshare --mount --propagation private sh -eu $work/chroot.sh $root $work/ci cloud-init init --local"
bash "$work/fresh.sh"
# init --local crawls IMDS, user-data included (the later stages store and handle its parts).
$cloud_init >"$work/cloud-init.out" 2>&1 || { cat "$work/cloud-init.out" >&2; exit 1; }
grep -qs '/user-data (200, ' "$work/ci/upper/var/log/cloud-init.log" ||
    { tail -n 40 "$work/ci/upper/var/log/cloud-init.log" >&2; echo "cloud-init did not read the user-data" >&2; exit 1; }

hyperfine -N --warmup 1 --runs "$ci_runs" --prepare "bash $work/fresh.sh" --export-json "$work/cloud-init.json" \
    -n "cloud-init init --local" "$cloud_init"

# kiln and curl from the same namespace, once the instance has its address (cloud-init's
# ephemeral DHCP teardown set eth0 down).
ip -n "$id-i" link set eth0 up
ip -n "$id-i" addr add 169.254.10.10/16 dev eth0
printf '[metadata]\nprovider = "ec2"\ntags_prefix = "env."\n[env]\nrequired = ["APP_SECRET", "DATABASE_URL"]\n' >"$work/kiln.toml"
ip netns exec "$id-i" "$kiln" env --config "$work/kiln.toml" --write-to "$work/kiln" >/dev/null
hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/kiln.json" \
    -n "kiln env" "ip netns exec $id-i $kiln env --config $work/kiln.toml --write-to $work/kiln" \
    -n "curl script" "ip netns exec $id-i bench/metadata-curl.sh http://169.254.169.254 $work/curl" \
    -n "ip netns exec true" "ip netns exec $id-i true"

python3 - "$work/cloud-init.json" "$work/kiln.json" <<'PY'
import json, sys
results = {}
for path in sys.argv[1:]:
    results.update({r["command"]: r["median"] * 1000 for r in json.load(open(path))["results"]})
base = results["ip netns exec true"]
print(f"\nmedians (ip netns exec alone: {base:.2f} ms, subtracted below)")
print(f"  cloud-init init --local {results['cloud-init init --local'] - base:9.2f} ms")
print(f"  kiln env                {results['kiln env'] - base:9.2f} ms")
print(f"  curl script             {results['curl script'] - base:9.2f} ms")
PY
