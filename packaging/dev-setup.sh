#!/bin/sh
# Installs what building and trying kiln needs on a fresh Debian 12, and nothing that is there
# already. `--tests` adds what the test suite needs (HAProxy, wrk, moto's venv, ...).
#
#   packaging/dev-setup.sh           # the examples: nginx, php-fpm, php-cli, Symfony, Redis, Rust
#   packaging/dev-setup.sh --tests   # + everything the tests start as real peers
set -eu

packages="nginx php-fpm php-cli ca-certificates curl"
# examples/symfony: Debian 12's Symfony 5.4 (its vendor/autoload.php requires these packages'
# autoload.php files, no Composer registry), DBAL on SQLite for app:migrate, Redis for Messenger.
# redis-server's package also enables a system Redis on 127.0.0.1:6379; the example starts its own.
packages="$packages php-symfony-framework-bundle php-symfony-console php-symfony-dotenv php-symfony-runtime
  php-symfony-yaml php-symfony-messenger php-symfony-redis-messenger php-doctrine-dbal php-sqlite3
  php-redis redis-server"
[ "${1:-}" = "--tests" ] && packages="$packages haproxy socat wrk hyperfine iproute2 util-linux procps python3-venv systemd libcap2-bin acl prometheus genisoimage dosfstools"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "dev-setup: missing:$missing; run as root, or: sudo apt-get install -y --no-install-recommends$missing" >&2
        exit 1
    fi
    echo "dev-setup: installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# Rust: Debian 12's rustc is too old for this crate (edition 2024); rustup installs a current one.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "dev-setup: installing Rust (rustup, minimal profile)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
if [ "${1:-}" = "--tests" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
    # moto (AWS ELBv2 for the load balancer tests) in a venv of the checkout; KILN_MOTO_VENV overrides.
    venv=${KILN_MOTO_VENV:-$(cd "$(dirname "$0")/.." && pwd)/target/venv}
    [ -x "$venv/bin/moto_server" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'moto[server]'; }
fi
