# Stage 3, final image: kiln, the app and its config baked in, instance state wiped, sealed.
# Runs as root inside the image (chrooted by bake.sh here, on the build instance under Packer),
# with its inputs in /tmp/kiln-stage: kiln.deb, app/ (the app's files), files/final/ (config).
here=/tmp/kiln-stage

dpkg -i "$here/kiln.deb"

# The app (examples/symfony/app by default): the release, owned by root and read-only to the app.
cp -R "$here/app/." /srv/app/
# Symfony's runtime reads .env.local.php instead of .env when it exists: kiln renders it at boot
# into its tmpfs ([render] in kiln.toml, /run/kiln-render), before any service starts. The release
# carries only the symlink, dangling here (the bake has no instance environment), so php-fpm keeps
# clear_env = yes and no secret sits in any process's environment or on the disk.
ln -sfn /run/kiln-render/env.local.php /srv/app/.env.local.php
# The prod cache (compiled container, routes), warmed once here inside the release and sealed with
# it: APP_ENV=prod and no other variable (the symlink above dangles, so .env's defaults apply), so
# the container reads every variable at run time, from the file kiln renders.
(cd /srv/app && env -i PATH=/usr/bin:/bin APP_ENV=prod APP_DEBUG=0 php bin/console cache:warmup --no-interaction)
test -f /srv/app/var/cache/prod/App_KernelProdContainer.php
chown -R root:root /srv/app
find /srv/app -path /srv/app/var/log -prune -o -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
# The app's logs are its own (excluded from the seal); the cache is part of the release.
chown -R app:app /srv/app/var/log

# The config of kiln, nginx and php-fpm for this image (replacing the package defaults).
cp -R "$here/files/final/etc/." /etc/
nginx -t -q
php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf 2>&1 | grep -v 'test is successful' || true
php-fpm8.2 -t -y /etc/php/8.2/fpm/php-fpm.conf >/dev/null 2>&1

# Nothing instance-specific leaves the bake: every instance makes its own machine id (journal,
# DHCP client id), host keys and cloud-init state; logs and apt's lists go too.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs; fi
apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/* /var/cache/debconf/*-old

# Last: check the config as the boot will, then seal. Nothing may change the sealed paths after this.
kiln check
kiln seal
