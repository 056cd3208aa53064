#!/bin/sh
# Try kiln with a real Symfony app on a fresh Debian 12: installs what is missing (Debian's
# Symfony 5.4 packages, Redis, nginx, php-fpm, Rust), builds kiln, renders this example into
# ${KILN_EXAMPLE_DIR:-/run/kiln-symfony} (warming Symfony's prod cache there, as an image's last
# build stage would) and boots it in the foreground. Ctrl-C stops it.
# /run, not /tmp: kiln's state goes there, and kiln refuses a state directory in a directory
# others can write. Without root, the default is $XDG_RUNTIME_DIR/kiln-symfony.
#
#   examples/symfony/run.sh
#
# Addresses: KILN_EXAMPLE_HTTP (default 127.0.0.1:8080) for the app through nginx,
#            KILN_EXAMPLE_HEALTH (default 127.0.0.1:9100) for kiln's /livez and /readyz.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
default_dir=/run/kiln-symfony
[ "$(id -u)" -ne 0 ] && [ -n "${XDG_RUNTIME_DIR:-}" ] && default_dir=$XDG_RUNTIME_DIR/kiln-symfony
dir=${KILN_EXAMPLE_DIR:-$default_dir}
http=${KILN_EXAMPLE_HTTP:-127.0.0.1:8080}
health=${KILN_EXAMPLE_HEALTH:-127.0.0.1:9100}

"$repo/packaging/dev-setup.sh"
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
# Debian puts nginx and php-fpm8.2 in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin"; export PATH ;; esac

cd "$repo"
cargo build --release --bin kiln
cargo run -q -p testkit --bin kiln-testkit -- example render --app symfony "$dir" --http "$http" --health "$health"

cat <<MSG

  the app:     curl http://$http/
  a task:      curl -X POST --data 'hello' 'http://$http/tasks?seconds=1'   (a worker logs it)
  migrate:     sudo sh -c 'set -a; . $dir/run/kiln/env; cd $dir/app && php bin/console app:migrate'
  readiness:   curl -i http://$health/readyz   (livez: http://$health/livez)
  status:      $repo/target/release/kiln status --config $dir/kiln.toml
  config:      $dir/kiln.toml

Booting kiln; Ctrl-C stops it (services stop in reverse order, workers after the task in hand).

MSG
exec "$repo/target/release/kiln" boot --config "$dir/kiln.toml"
