# Stage 2, application base image: the runtime software, users and folders every release of the
# app runs on (php-fpm, php-cli, nginx, Debian's Symfony 5.4 packages, Redis), without the app
# itself. Changes rarely: cached.
# Runs as root inside the image: chrooted by bake.sh here, on the build instance under Packer.

apt-get update -q
# nginx, php-fpm and php-cli from Debian 12 (php8.2). php8.2-cli has pcntl built in (the workers
# stop cleanly on SIGTERM with it).
# The Symfony example (examples/symfony/app) needs no Composer: its vendor/autoload.php requires
# these packages' autoload.php files under /usr/share/php (the list in packaging/dev-setup.sh).
# OPcache (php8.2-opcache) is on for php-fpm, with timestamps never checked (kiln.toml). Redis is
# the Messenger transport of the example's workers, started by kiln beside the app.
apt-get install -y -q --no-install-recommends nginx php8.2-fpm php8.2-cli php8.2-opcache \
    php-symfony-framework-bundle php-symfony-console php-symfony-dotenv php-symfony-runtime \
    php-symfony-yaml php-symfony-messenger php-symfony-redis-messenger php-doctrine-dbal \
    php-sqlite3 php-redis redis-server

# kiln starts and stops nginx, php-fpm and Redis (ordered, probed, drained); their own units must
# never start them beside it. Masked, not disabled: a preset or a package upgrade cannot enable
# them again.
systemctl mask nginx.service php8.2-fpm.service redis-server.service
if [ -d /run/systemd/system ]; then
    # On a live build instance (Packer) the packages started them already.
    systemctl stop nginx.service php8.2-fpm.service redis-server.service || true
fi
# The final stage writes nginx's and php-fpm's config; Debian's examples go.
rm -f /etc/nginx/sites-enabled/default /etc/php/8.2/fpm/pool.d/www.conf

# The app's user: php-fpm's pool and the workers run as `app`; nginx's workers stay www-data and
# read only the public files (and php-fpm's socket, which is www-data's).
if ! getent passwd app >/dev/null; then
    adduser --system --group --home /srv/app --no-create-home --shell /usr/sbin/nologin app
fi
# The app's folder: code owned by root (read-only to the app), var/ the app's own.
install -d -m 0755 -o root -g root /srv/app
install -d -m 0755 -o app -g app /srv/app/var /srv/app/var/log /srv/app/var/cache

apt-get clean
rm -rf /var/lib/apt/lists/*
