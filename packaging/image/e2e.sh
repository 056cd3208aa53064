#!/bin/bash
# End-to-end test of the baked image: bakes it (packaging/image/bake.sh), boots it under qemu and
# checks from the host what an instance must do where it runs.
#
#   sudo packaging/image/e2e.sh              # bake (cached stages) + two VM boots, a few minutes
#   KILN_E2E_NO_BAKE=1 sudo packaging/image/e2e.sh   # boot what target/image holds
#
# The host side lives in a network namespace of its own (nothing listens on the host's network):
#   169.254.169.254:80  the EC2 metadata emulator (kiln-testkit metadata --provider ec2), IMDSv2,
#                       with the user-data below; 169.254.169.254 sits on the namespace's loopback
#   127.0.0.1:8080      HAProxy's frontend; backend `app` starts empty, kiln adds itself through
#   127.0.0.1:9999      HAProxy's runtime API (`level admin`), which the guest reaches as
#                       10.0.2.2:9999 (qemu's user network maps its gateway to the host's loopback)
#   10.0.2.15:80,9100,9101  hostfwd into the guest (nginx, /readyz, agent-check). The guest's own
#                       address is 10.0.2.15 too, so the metadata's local-ipv4 is the address
#                       HAProxy reaches the instance at, as on a real network. Connections to it
#                       leave from 127.0.0.1 (curl --interface, HAProxy's `source`): qemu hands a
#                       forwarded connection to the guest with its source address unchanged
#                       unless it is the host's loopback (then 10.0.2.2), and a packet from
#                       10.0.2.15 to 10.0.2.15 is one the guest drops as its own.
# The guest keeps qemu's user network (10.0.2.15, gateway 10.0.2.2): qemu cannot forward
# 169.254.169.254 itself, but a connection the guest makes to it leaves qemu as a host connection
# to 169.254.169.254, which the namespace answers.
#
# The image carries the Symfony example (examples/symfony/app, its prod cache warmed at bake time,
# its configuration from the .env.local.php kiln renders at boot, php-fpm with clear_env = yes),
# Redis and two Messenger workers.
#
# Checks: the Symfony page shows a user-data value, the instance id and the digest of the
# user-data's APP_SECRET (which reached the app through the rendered .env.local.php: mode 0640,
# group app, and in no environment of the app's processes); /readyz 200; every service up
# (redis, php-fpm, nginx, worker#1, worker#2); a task queued through the app is handled by a worker; `kiln status` in the
# guest (through the qemu guest agent) says READY; `systemd-analyze verify kiln.service` in the
# guest is clean; kiln sits in kiln.service/kiln and each unit in kiln.service/services/<unit>
# with the memory and pids controllers, the workers' limits written, memory and CPU in status;
# `journalctl -u kiln -o json` has kiln's lines with PRIORITY and TARGET and the services' lines
# with SERVICE and STREAM, and no env value is anywhere in the journal; the instance registered
# itself in HAProxy and requests flow through HAProxy into the guest; an ACPI power-off (QMP system_powerdown) makes kiln drain and deregister before the
# guest powers off. Then the image with one sealed file changed after sealing boots to a refused
# boot and never registers. Prints the boot timeline. Cleans up every process, the namespace and
# its files on exit, also on failure (KILN_E2E_KEEP=1 keeps the files for a look).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
log_tag=e2e

[ "$(id -u)" -eq 0 ] || die "run as root (network namespace, qemu, debugfs)"
"$here/host-setup.sh"
PATH="$HOME/.cargo/bin:$PATH"

image_dir=${KILN_IMAGE_OUT:-$repo/target/image}
if [ -z "${KILN_E2E_NO_BAKE:-}" ]; then
    "$here/bake.sh" >/dev/null
fi
for f in kiln.img vmlinuz initrd.img; do
    [ -f "$image_dir/$f" ] || die "$image_dir/$f missing: bake first (packaging/image/bake.sh)"
done
log "building kiln-testkit (the EC2 metadata emulator)"
cargo build -q -p testkit --bin kiln-testkit --manifest-path "$repo/Cargo.toml"
testkit="$repo/target/debug/kiln-testkit"

work=$(mktemp -d /tmp/kiln-e2e.XXXXXX)
ns="kiln-e2e-$$"
pids=()
vm_pid=""
# The script's own stderr, for cleanup: a signal can run it while a command's output is redirected.
exec 3>&2
cleanup() {
    status=$?
    [ -z "${interrupted:-}" ] || status=130
    set +e
    [ -n "$vm_pid" ] && kill "$vm_pid" 2>/dev/null
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    # Anything left in our own namespace is ours (each started with `ip netns exec`).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    if [ "$status" -ne 0 ]; then
        echo "e2e: FAILED ($status); serial console of the last VM: $work/serial.log (last lines below)" >&3
        tail -n 40 "$work/serial.log" 2>/dev/null | cut -c1-200 >&3
    fi
    if [ -n "${KILN_E2E_KEEP:-}" ]; then echo "e2e: files kept in $work" >&3; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT TERM

fail() {
    echo "e2e: FAIL: $*" >&2
    exit 1
}
pass() {
    log "ok: $*"
}
# (Background processes are started with `ip netns exec` itself, not through this function, so
# that $! is the process: `ip netns exec` execs it.)
in_ns() {
    ip netns exec "$ns" "$@"
}
# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
    what=$1 secs=$2
    shift 2
    deadline=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${secs}s"
        [ -z "$vm_pid" ] || kill -0 "$vm_pid" 2>/dev/null || fail "$what: the VM is gone"
        sleep 0.2
    done
}
now() {
    date +%s.%N | cut -c1-14
}

# ---- the host side: namespace, metadata emulator, HAProxy --------------------------------------
instance_id=i-0e2e5eed00000001
greeting="Hello from the baked image"
ip netns add "$ns"
in_ns ip link set lo up
in_ns ip addr add 169.254.169.254/32 dev lo
in_ns ip addr add 10.0.2.15/32 dev lo

app_secret=e2e-secret-never-shown
cat >"$work/user-data" <<EOF
GREETING=$greeting
APP_SECRET=$app_secret
EOF
ip netns exec "$ns" "$testkit" metadata --provider ec2 --listen 169.254.169.254:80 --user-data "$work/user-data" \
    --instance-id "$instance_id" --local-ipv4 10.0.2.15 --region eu-west-1 --zone eu-west-1a \
    >"$work/metadata.log" 2>&1 &
pids+=($!)
wait_for "metadata emulator" 10 grep -q "listening on" "$work/metadata.log"

cat >"$work/haproxy.cfg" <<EOF
global
    stats socket $work/haproxy.sock level admin
    stats socket ipv4@127.0.0.1:9999 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:8080
    default_backend app
backend app
    balance roundrobin
    source 127.0.0.1
EOF
ip netns exec "$ns" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
haproxy_cmd() {
    echo "$1" | socat -t 2 - "UNIX-CONNECT:$work/haproxy.sock"
}
wait_for "HAProxy's runtime API" 10 haproxy_cmd "show info"
# lb_stat FIELD: a field of the instance's row in HAProxy's `show stat` (empty: no such server).
lb_stat() {
    haproxy_cmd "show stat app 4 -1" | awk -F, -v s="$instance_id" -v f="$1" '
        NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
        $2 == s { print $col[f] }'
}
registered() {
    [ -n "$(lb_stat status)" ]
}
up() {
    [ "$(lb_stat status)" = UP ]
}
pass "host side up: metadata emulator at 169.254.169.254, HAProxy (backend app empty)"

# ---- booting a VM ------------------------------------------------------------------------------
# boot_vm IMAGE: starts qemu (TCG) on a throwaway overlay of IMAGE (the image file never changes),
# the serial console timestamped into $work/serial.log, QMP and the guest agent on unix sockets.
boot_vm() {
    rm -f "$work"/serial.sock "$work"/qmp.sock "$work"/qga.sock "$work"/serial.log
    t_qemu=$(now)
    ip netns exec "$ns" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1024 -display none -no-reboot \
        -kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 systemd.journald.forward_to_console=1" \
        -drive "file=$1,format=raw,if=virtio,snapshot=on" \
        -netdev "user,id=n0,hostfwd=tcp:10.0.2.15:80-:80,hostfwd=tcp:10.0.2.15:9100-:9100,hostfwd=tcp:10.0.2.15:9101-:9101" \
        -device virtio-net-pci,netdev=n0 \
        -chardev "socket,id=ser0,path=$work/serial.sock,server=on,wait=on" -serial chardev:ser0 \
        -qmp "unix:$work/qmp.sock,server=on,wait=off" \
        -chardev "socket,id=qga0,path=$work/qga.sock,server=on,wait=off" \
        -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
        >"$work/qemu.log" 2>&1 &
    vm_pid=$!
    python3 "$here/vmctl.py" serial "$work/serial.sock" "$work/serial.log" &
    pids+=($!)
}
# Stops the VM at once (the e2e's own end, not a test of shutdown).
kill_vm() {
    python3 "$here/vmctl.py" qmp "$work/qmp.sock" quit >/dev/null 2>&1 || kill "$vm_pid"
    wait "$vm_pid" 2>/dev/null || true
    vm_pid=""
}
guest() {
    python3 "$here/vmctl.py" exec "$work/qga.sock" 30 "$@"
}
# serial_at PATTERN: the host time of the first serial line matching PATTERN (extended regex).
serial_at() {
    grep -m1 -E "$1" "$work/serial.log" | cut -d' ' -f1
}
# guest_curl ARGS...: curl into the guest through hostfwd (from 127.0.0.1: see the top).
guest_curl() {
    in_ns curl --interface 127.0.0.1 -s -m 5 "$@"
}
readyz() {
    guest_curl -o /dev/null -w '%{http_code}' http://10.0.2.15:9100/readyz || true
}
readyz_is() {
    [ "$(readyz)" = "$1" ]
}

# ---- 1. the baked image boots, serves, registers -----------------------------------------------
log "VM 1: booting $image_dir/kiln.img (TCG, 2 vCPUs)"
boot_vm "$image_dir/kiln.img"
wait_for "/readyz 200 through hostfwd" 300 readyz_is 200
t_ready_host=$(now)
pass "/readyz 200"
wait_for "the instance to register in HAProxy" 60 registered

page=$(guest_curl http://10.0.2.15/)
grep -qx "greeting: $greeting" <<<"$page" || fail "the page does not show the user-data's GREETING: $page"
grep -qx "instance_id: $instance_id" <<<"$page" || fail "the page does not show the instance id: $page"
grep -qx "app_env: prod" <<<"$page" || fail "the page is not Symfony's prod page: $page"
secret_digest=$(printf %s "$app_secret" | sha256sum | cut -c1-12)
grep -qx "app_secret_sha256: $secret_digest" <<<"$page" ||
    fail "the page does not show the digest of the user-data's APP_SECRET ($secret_digest): $page"
grep -q "e2e-secret" <<<"$page" && fail "the page shows a secret"
pass "the Symfony page shows the user-data's GREETING, the instance id from the metadata service and the digest of APP_SECRET (app_env: prod)"

python3 "$here/vmctl.py" wait-agent "$work/qga.sock" 60 || fail "the guest agent does not answer"
status_out=$(guest /usr/bin/kiln status) || fail "kiln status in the guest: exit $?: $status_out"
grep -q "READY" <<<"$status_out" || fail "kiln status does not say READY: $status_out"
for unit in redis php-fpm nginx 'worker#1' 'worker#2'; do
    grep -qE "^$unit +running +yes" <<<"$status_out" || fail "kiln status: $unit is not running and ready: $status_out"
done
pass "kiln status in the guest: READY, redis, php-fpm, nginx, worker#1, worker#2 running and ready"
sed 's/^/    | /' <<<"$status_out" >&2

# The app's configuration: the file kiln rendered, through the release's symlink; the warmed cache.
rendered=$(guest /usr/bin/stat -c '%a %U %G %F' /run/kiln-render/env.local.php) || fail "no rendered env.local.php"
[ "$rendered" = "640 root app regular file" ] || fail "/run/kiln-render/env.local.php: $rendered (want 640 root app)"
link=$(guest /usr/bin/readlink /srv/app/.env.local.php) || fail "no /srv/app/.env.local.php"
[ "$link" = /run/kiln-render/env.local.php ] || fail "/srv/app/.env.local.php -> $link"
guest /usr/bin/test -f /srv/app/var/cache/prod/App_KernelProdContainer.php || fail "no warmed prod cache in /srv/app/var/cache/prod"
# No process of the app's user (php-fpm's pool, the workers) holds the secret in its environment.
# (The pattern is not the secret itself: the guest agent logs the command line in the journal.)
app_procs=$(guest /bin/sh -c 'n=0; for d in /proc/[0-9]*; do [ "$(/usr/bin/stat -c %U "$d" 2>/dev/null)" = app ] || continue; n=$((n + 1)); ! /bin/grep -qs "e2e-secret-never-show[n]" "$d/environ" || echo "${d#/proc/}"; done; echo "$n"') ||
    fail "reading the app's processes' environments in the guest"
[ "$(wc -l <<<"$app_procs")" -eq 1 ] || fail "processes of user app with APP_SECRET in their environment: $app_procs"
[ "$app_procs" -ge 4 ] || fail "only $app_procs processes of user app (php-fpm's pool and two workers expected)"
pass "env.local.php rendered by kiln (0640 root:app) behind the release's symlink, the prod cache warmed at bake; the secret in none of the $app_procs environments of user app (php-fpm clear_env = yes, workers env_allow = [])"

# The workers: a task queued through the app goes through Redis to a worker, which logs it on its
# stdout. Either replica may take a task: queue them until worker#1 has handled one.
handled=""
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    queued=$(guest_curl -X POST --data "e2e task $i" "http://10.0.2.15/tasks?seconds=0") || true
    grep -q "^queued task " <<<"$queued" || fail "POST /tasks: $queued"
    sleep 2
    if guest /usr/bin/journalctl -u kiln.service -o cat | grep -qE '^worker#1\|.*handled task [0-9a-f]+: e2e task'; then
        handled=$i
        break
    fi
done
[ -n "$handled" ] || fail "worker#1 handled none of 12 tasks queued through the app"
pass "tasks queued through the app (POST /tasks, Redis transport): worker#1 handled one (after $handled queued)"
mount_opts=$(guest /usr/bin/findmnt -n -o OPTIONS --target /srv/app/public)
[ "${mount_opts%%,*}" = ro ] || fail "/srv/app is not mounted read-only in the guest: $mount_opts"
write=$(guest /bin/sh -c 'echo x >/srv/app/public/x.php' 2>&1) && fail "root could write into the sealed /srv/app"
grep -q "Read-only file system" <<<"$write" || fail "writing into /srv/app: $write"
guest /bin/sh -c 'echo x >/srv/app/var/log/e2e.log' || fail "the excluded /srv/app/var/log is not writable"
pass "sealed paths read-only for root in the guest (EROFS), the excluded /srv/app/var/log writable"
verify_out=$(guest /usr/bin/systemd-analyze verify --man=no kiln.service 2>&1) || fail "systemd-analyze verify in the guest: $verify_out"
[ -z "$verify_out" ] || fail "systemd-analyze verify kiln.service in the guest: $verify_out"
pass "systemd-analyze verify kiln.service, by the guest's systemd (PID 1): clean"


# ---- 1b. every unit in a cgroup of its own, under kiln.service (unified, with controllers) ----
unit_cg=/sys/fs/cgroup/system.slice/kiln.service
status_json=$(guest /usr/bin/kiln status --json) || fail "kiln status --json in the guest"
# One line per unit: UNIT CGROUP PID MEMORY_BYTES CPU_USEC; first line: kiln's pid, the kind
# of containment, the services' cgroup and its controllers.
cg_report=$(python3 -c '
import json, sys
s = json.load(sys.stdin)
c = s["containment"]
print(s["pid"], c["kind"], c["cgroup"], ",".join(c["controllers"]))
for u in s["services"]:
    print(u["unit"], u["cgroup"], u["pid"], u["memory_bytes"], u["cpu_usec"])
' <<<"$status_json") || fail "kiln status --json: $status_json"
read -r kiln_pid kind services_cg controllers <<<"$(head -n1 <<<"$cg_report")"
[ "$kind" = cgroups ] && [ "$services_cg" = "$unit_cg/services" ] ||
    fail "kiln status --json: units not in cgroups under $unit_cg/services: $(head -n1 <<<"$cg_report")"
[ "$controllers" = memory,pids ] || fail "controllers enabled for the units: $controllers (want memory,pids)"
kiln_cg=$(guest /bin/cat "/proc/$kiln_pid/cgroup")
[ "$kiln_cg" = "0::/system.slice/kiln.service/kiln" ] || fail "kiln itself is in $kiln_cg, not in kiln.service/kiln"
inner=$(guest /bin/cat "$unit_cg/cgroup.procs" "$unit_cg/services/cgroup.procs")
[ -z "$inner" ] || fail "processes in an inner cgroup of kiln.service: $inner"
while read -r unit cg pid mem cpu; do
    [ "$cg" = "$unit_cg/services/$unit" ] || fail "$unit's cgroup is $cg"
    guest /bin/cat "$cg/cgroup.procs" | grep -qx "$pid" || fail "$unit's main process $pid is not in $cg"
    [ "$mem" != None ] && [ "$mem" -gt 0 ] || fail "$unit: no memory figure ($mem) from its cgroup"
    [ "$cpu" != None ] && [ "$cpu" -gt 0 ] || fail "$unit: no CPU figure ($cpu) from its cgroup"
done < <(tail -n +2 <<<"$cg_report")
for worker in 'worker#1' 'worker#2'; do
    limits=$(guest /bin/cat "$unit_cg/services/$worker/memory.max" "$unit_cg/services/$worker/pids.max" | tr '\n' ' ')
    [ "$limits" = "268435456 64 " ] || fail "$worker: memory.max and pids.max are $limits (want 268435456 64: memory_max 256M, tasks_max 64)"
done
grep -qF "services: a cgroup each under $unit_cg/services (controllers: memory pids)" <<<"$status_out" ||
    fail "kiln status does not say how the units are held: $status_out"
pass "cgroups: kiln in kiln.service/kiln, each unit's processes in kiln.service/services/<unit> (memory, pids), workers' memory_max 256M and tasks_max 64 applied, memory and CPU in kiln status"
guest /usr/bin/systemd-cgls --no-pager -u kiln.service | sed 's/^/    | /' >&2


# ---- 1c. kiln's lines and the services' lines in the journal, with their fields ---------------
guest /bin/kill -HUP "$kiln_pid" || fail "kill -HUP kiln in the guest"
wait_for "SIGHUP refused in the journal" 30 bash -c \
    "python3 '$here/vmctl.py' exec '$work/qga.sock' 30 /usr/bin/journalctl -u kiln.service -o cat | grep -q 'SIGHUP refused'"
guest /usr/bin/journalctl -u kiln.service -o json >"$work/journal.json" || fail "journalctl -u kiln -o json in the guest"
journal_report=$(python3 - "$work/journal.json" <<'PY'
import json, sys
entries = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def first(test, among=entries):
    return next((e for e in among if test(e)), None)
def msg(e):
    return e.get("MESSAGE", "") if isinstance(e.get("MESSAGE"), str) else ""
problems = []
own = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "kiln" and "SERVICE" not in e]
started = first(lambda e: msg(e).startswith("php-fpm: started"), own)
if not started or started.get("PRIORITY") != "6" or not started.get("TARGET"):
    problems.append(f"kiln's 'php-fpm: started' line with PRIORITY 6 and TARGET: {started}")
hup = first(lambda e: msg(e).startswith("SIGHUP refused"), own)
if not hup or hup.get("PRIORITY") != "4":
    problems.append(f"kiln's 'SIGHUP refused' warning with PRIORITY 4: {hup}")
fpm = first(lambda e: e.get("SERVICE") == "php-fpm" and e.get("STREAM") == "stderr")
if not fpm or not msg(fpm).startswith("php-fpm| ") or fpm.get("PRIORITY") != "6":
    problems.append(f"a php-fpm stderr line with SERVICE=php-fpm STREAM=stderr: {fpm}")
worker = first(lambda e: e.get("SERVICE") == "worker#1" and e.get("STREAM") == "stdout")
if not worker or "handled task" not in msg(worker):
    problems.append(f"a worker#1 stdout line with SERVICE=worker#1 STREAM=stdout: {worker}")
if problems:
    print("; ".join(problems))
    sys.exit(1)
print(f"{len(entries)} entries, {len(own)} of kiln's own")
PY
) || fail "the journal: $journal_report"
guest /usr/bin/journalctl -o json --no-pager >"$work/journal-all.json" || fail "journalctl -o json in the guest"
! grep -q "e2e-secret-never-shown" "$work/journal.json" "$work/journal-all.json" ||
    fail "a user-data secret value is in the guest's journal"
pass "journald: $journal_report; kiln's lines PRIORITY 6 (info) and 4 (SIGHUP refused) with TARGET, php-fpm's stderr and worker#1's stdout (a handled task) with SERVICE and STREAM; no env value in the whole journal"

t_qemu1=$t_qemu

# ---- 2. load balancer --------------------------------------------------------------------------
wait_for "HAProxy to see the instance UP (TCP check and agent-check)" 30 up
pass "registered in HAProxy as app/$instance_id ($(lb_stat addr 2>/dev/null || true)), UP"
before=$(lb_stat stot)
for _ in 1 2 3 4 5; do
    via=$(in_ns curl -s -m 5 http://127.0.0.1:8080/)
    grep -qx "greeting: $greeting" <<<"$via" || fail "the page through HAProxy: $via"
done
after=$(lb_stat stot)
[ $((after - before)) -ge 5 ] || fail "HAProxy counted $((after - before)) sessions to the instance for 5 requests"
pass "5 requests through HAProxy's frontend reached the guest's nginx (server sessions $before -> $after)"

# ---- 3. ACPI power-off: drain and deregister before the guest is gone -------------------------
log "VM 1: ACPI power-off (QMP system_powerdown)"
t_powerdown=$(now)
python3 "$here/vmctl.py" qmp "$work/qmp.sock" system_powerdown >/dev/null
deadline=$(($(date +%s) + 120))
t_left=""
while kill -0 "$vm_pid" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "the VM did not power off within 120s of system_powerdown"
    if [ -z "$t_left" ] && ! registered; then t_left=$(now); fi
    sleep 0.1
done
wait "$vm_pid" 2>/dev/null || true
vm_pid=""
t_off=$(now)
sleep 0.3 # the serial reader drains what qemu wrote last
[ -n "$t_left" ] || fail "the instance was still in HAProxy when the VM powered off"
! registered || fail "the instance is still in HAProxy after the power-off"
# The order, in the guest's own log: leave the load balancer, then stop nginx, then power down.
line_of() { grep -n -m1 -E "$1" "$work/serial.log" | cut -d: -f1; }
l_left=$(line_of "kiln\[[0-9]+\]: lb: left")
l_nginx=$(line_of "kiln\[[0-9]+\]: nginx: stopping")
l_stopped=$(line_of "Stopped kiln.service")
l_off=$(line_of "reboot: Power down")
[ -n "$l_left" ] || fail "kiln did not log leaving the load balancer"
[ -n "$l_nginx" ] && [ -n "$l_stopped" ] && [ -n "$l_off" ] || fail "no nginx stop, kiln stop or power-down in the serial log"
[ "$l_left" -lt "$l_nginx" ] && [ "$l_nginx" -lt "$l_stopped" ] && [ "$l_stopped" -lt "$l_off" ] ||
    fail "power-off order: left LB at line $l_left, nginx stopping $l_nginx, kiln stopped $l_stopped, power down $l_off"
t_stopping=$(serial_at "Stopping kiln.service")
t_stopped=$(serial_at "Stopped kiln.service")
t_lb_left=$(serial_at "kiln\[[0-9]+\]: lb: left")
pass "power-off: kiln drained and left HAProxy ($(sed -n "${l_left}p" "$work/serial.log" | sed 's/.*lb: left //')), then stopped nginx and the rest, then the guest powered down; HAProxy's backend is empty"
cp "$work/serial.log" "$work/serial-vm1.log"

# ---- 4. a tampered image boots to a refused state and never registers -------------------------
log "tampering: /srv/app/public/index.php changed after sealing (debugfs on a copy of the image)"
cp --sparse=always "$image_dir/kiln.img" "$work/tampered.img"
printf '<?php echo "tampered\\n";\n' >"$work/index.php"
debugfs -w -R "rm /srv/app/public/index.php" "$work/tampered.img" >/dev/null 2>&1
debugfs -w -R "write $work/index.php /srv/app/public/index.php" "$work/tampered.img" >/dev/null 2>&1
debugfs -R "cat /srv/app/public/index.php" "$work/tampered.img" 2>/dev/null | grep -q tampered ||
    fail "debugfs did not change the file"
log "VM 2: booting the tampered image"
boot_vm "$work/tampered.img"
python3 "$here/vmctl.py" wait-agent "$work/qga.sock" 300 || fail "the guest agent does not answer"
wait_for "kiln to refuse the boot" 120 bash -c "python3 '$here/vmctl.py' exec '$work/qga.sock' 30 /usr/bin/kiln status; test \$? -eq 1"
status_out=$(guest /usr/bin/kiln status) && fail "kiln status exit 0 on a tampered image: $status_out"
grep -qi "seal" <<<"$status_out" || fail "kiln status does not name the seal: $status_out"
grep -q "index.php" <<<"$status_out$(guest /usr/bin/journalctl -u kiln.service -o cat)" ||
    fail "neither kiln status nor its log names the changed file"
[ "$(readyz)" = 503 ] || fail "/readyz is not 503 on a refused boot"
guest_curl -o /dev/null http://10.0.2.15/ && fail "nginx answers on a refused boot"
! registered || fail "the tampered instance registered in HAProxy: $(lb_stat status)"
sed 's/^/    | /' <<<"$status_out" >&2
pass "tampered image: boot refused (kiln status exit 1, names the seal), /readyz 503, nothing started, not registered"
kill_vm

# ---- the boot timeline -------------------------------------------------------------------------
# From VM 1's serial console: each line carries the host's clock on arrival (first field), and
# the kernel's and journald's lines the guest's CLOCK_MONOTONIC (seconds since the kernel started,
# in brackets).
log1=$work/serial-vm1.log
host_at() { grep -m1 -E "$1" "$log1" | cut -d' ' -f1; }
guest_at() { grep -m1 -E "$1" "$log1" | sed -nE 's/^[0-9.]+ \[ *([0-9.]+)\].*/\1/p'; }
row() {
    h=$(host_at "$1") g=$(guest_at "$1")
    printf '  %8s  %8s  %s\n' "$([ -n "$h" ] && awk "BEGIN{printf \"%.2fs\", $h - $t_qemu1}" || echo -)" \
        "$([ -n "$g" ] && awk "BEGIN{printf \"%.2fs\", $g}" || echo -)" "$2"
}
span() { awk "BEGIN{printf \"%.2fs\", $(guest_at "$2") - $(guest_at "$1")}"; }
e_kernel="Linux version"
e_systemd="running in system mode"
e_kiln="systemd\[1\]: Starting kiln.service"
e_ready="systemd\[1\]: Started kiln.service"
e_registered="kiln\[[0-9]+\]: lb: registered"
e_finished="systemd\[1\]: Startup finished"
echo
echo "BOOT TIMELINE (VM 1; host: since qemu started; guest: CLOCK_MONOTONIC, since the kernel started)"
printf '  %8s  %8s  %s\n' host guest event
printf '  %8s  %8s  %s\n' 0.00s - "qemu started (TCG, 2 vCPUs)"
row "$e_kernel" "kernel: Linux version"
row "$e_systemd" "systemd (PID 1) running"
row "$e_kiln" "systemd starts kiln.service"
row "$e_ready" "kiln: READY=1 (unit active)"
row "$e_registered" "kiln: registered in HAProxy"
row "$e_finished" "systemd: startup finished ($(grep -m1 -E "$e_finished" "$log1" | sed 's/.*Startup finished in //'))"
echo "  systemd start -> kiln start:  $(span "$e_systemd" "$e_kiln")   (systemd's own part: sysinit, network-online)"
echo "  kiln start    -> READY=1:     $(span "$e_kiln" "$e_ready")"
echo "  kiln start    -> registered:  $(span "$e_kiln" "$e_registered")"
p() { awk "BEGIN{printf \"%.2fs\", $1 - $t_powerdown}"; }
echo "POWER-OFF (host clock since system_powerdown): kiln stopping $(p "$t_stopping"), left HAProxy $(p "$t_lb_left"), kiln stopped $(p "$t_stopped"), qemu exited $(p "$t_off")"
log "e2e passed"
