# Stage 3, final image: kiln, the app and its config baked in, instance state wiped, sealed.
# Runs as root inside the image (chrooted by bake.sh here, on the build instance under Packer),
# with its inputs in /tmp/kiln-stage: kiln.deb, app/ (the app's files), files/final/ (config).
here=/tmp/kiln-stage

dpkg -i "$here/kiln.deb"

# The app: code owned by root, var/ left as the previous stage made it (the app's own).
cp -R "$here/app/." /srv/app/
chown -R root:root /srv/app
chown -R app:app /srv/app/var
find /srv/app -path /srv/app/var -prune -o -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +

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
