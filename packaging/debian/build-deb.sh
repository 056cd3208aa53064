#!/bin/sh
# Builds the kiln Debian package from the static binary:
#
#   packaging/debian/build-deb.sh [KILN_BINARY]    # -> target/debian/kiln_VERSION-1_amd64.deb
#
# KILN_BINARY defaults to the one packaging/build-static.sh builds (run that first). The package
# installs /usr/bin/kiln, /lib/systemd/system/kiln.service (enabled by postinst, not started),
# /etc/kiln/kiln.toml (a conffile: an example) and /var/lib/kiln/seed (nocloud's seed directory).
# Only dpkg-deb is needed. Timestamps come from the last commit (SOURCE_DATE_EPOCH), so the same
# binary gives the same .deb. Prints the package's path last.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-$repo/target/x86_64-unknown-linux-musl/release/kiln}
[ -x "$bin" ] || { echo "build-deb: $bin: no such binary: run packaging/build-static.sh first" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
deb_version="$version-1"
out="$repo/target/debian"
stage="$out/kiln_$deb_version"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/kiln" \
    "$stage/var/lib/kiln/seed" "$stage/usr/share/doc/kiln"

install -m 0755 "$bin" "$stage/usr/bin/kiln"
install -m 0644 "$repo/units/kiln.service" "$stage/lib/systemd/system/kiln.service"
install -m 0644 "$here/kiln.toml" "$stage/etc/kiln/kiln.toml"
install -m 0644 "$here/copyright" "$stage/usr/share/doc/kiln/copyright"
install -m 0644 "$repo/README.md" "$stage/usr/share/doc/kiln/README.md"
chmod 0755 "$stage/var/lib/kiln" "$stage/var/lib/kiln/seed"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$deb_version/" -e "s/@SIZE@/$size/" "$here/control" >"$stage/DEBIAN/control"
echo /etc/kiln/kiln.toml >"$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$stage/DEBIAN/md5sums"

SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb="$out/kiln_${deb_version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
