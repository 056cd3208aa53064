#!/bin/sh
# Try kiln on a fresh Debian 12: installs what is missing, builds kiln, renders this example into
# ${KILN_EXAMPLE_DIR:-/tmp/kiln-example} and boots it in the foreground. Ctrl-C stops it.
#
#   examples/php-app/run.sh
#
# Addresses: KILN_EXAMPLE_HTTP (default 127.0.0.1:8080) for the app through nginx,
#            KILN_EXAMPLE_HEALTH (default 127.0.0.1:9100) for kiln's /livez and /readyz.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${KILN_EXAMPLE_DIR:-/tmp/kiln-example}
http=${KILN_EXAMPLE_HTTP:-127.0.0.1:8080}
health=${KILN_EXAMPLE_HEALTH:-127.0.0.1:9100}

missing=""
command -v php-fpm8.2 >/dev/null 2>&1 || missing="$missing php-fpm"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v php >/dev/null 2>&1 || missing="$missing php-cli"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh: missing:$missing. Install them first: sudo apt-get install -y --no-install-recommends$missing" >&2
        exit 1
    fi
    echo "run.sh: installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing
fi
command -v cargo >/dev/null 2>&1 || {
    echo "run.sh: cargo not found: install Rust first (https://rustup.rs)" >&2
    exit 1
}
# Debian puts nginx and php-fpm8.2 in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin"; export PATH ;; esac

cd "$repo"
cargo build --release --bin kiln
cargo run -q -p testkit --bin kiln-testkit -- example render "$dir" --http "$http" --health "$health"

cat <<MSG

  the app:     curl http://$http/
  readiness:   curl -i http://$health/readyz   (livez: http://$health/livez)
  status:      $repo/target/release/kiln status --config $dir/kiln.toml
  config:      $dir/kiln.toml

Booting kiln; Ctrl-C stops it (services stop in reverse order).

MSG
exec "$repo/target/release/kiln" boot --config "$dir/kiln.toml"
