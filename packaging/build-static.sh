#!/bin/sh
# Builds the release kiln as one static binary for x86_64 Linux (musl libc, TLS through rustls):
#
#   packaging/build-static.sh        # -> target/x86_64-unknown-linux-musl/release/kiln
#
# and checks what it built: statically linked (no ELF interpreter, no shared libraries), stripped,
# below 10 MiB, and it runs. Prints the binary's path last. Needs rustup's musl target, musl-gcc
# (Debian's musl-tools, for the C and assembly parts of ring and blake3), file and readelf; it
# installs what is missing when it runs as root, or says what to run.
#
# The binary is a static PIE (Rust's default for musl): its addresses are randomised like a
# dynamic executable's. For such a file `file` says "static-pie linked" and glibc's `ldd` says
# "statically linked" rather than "not a dynamic executable" (which it prints for non-PIE static
# files); both mean there is no loader and no shared library, which readelf confirms below.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=x86_64-unknown-linux-musl
PATH="$HOME/.cargo/bin:$PATH"

missing=""
command -v musl-gcc >/dev/null 2>&1 || missing="$missing musl-tools"
command -v file >/dev/null 2>&1 || missing="$missing file"
command -v readelf >/dev/null 2>&1 || missing="$missing binutils"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build-static: missing:$missing; sudo apt-get install$missing" >&2
        exit 1
    fi
    echo "build-static: installing$missing"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build-static: adding the Rust target $target"
    rustup target add "$target"
fi

# cc-rs looks for x86_64-linux-musl-gcc; Debian names the wrapper musl-gcc.
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$target" --bin kiln

bin="target/$target/release/kiln"
fail() {
    echo "build-static: $bin: $*" >&2
    exit 1
}
desc=$(file -b "$bin")
case "$desc" in
*"static-pie linked"* | *"statically linked"*) ;;
*) fail "not static: $desc" ;;
esac
case "$desc" in *"not stripped"*) fail "not stripped: $desc" ;; esac
if readelf -lW "$bin" | grep -q 'INTERP'; then fail "has an ELF interpreter"; fi
if readelf -dW "$bin" | grep -q '(NEEDED)'; then fail "needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"; fi
ldd_says=$(ldd "$bin" 2>&1 || true)
case "$ldd_says" in
*"statically linked"* | *"not a dynamic executable"*) ;;
*) fail "ldd lists libraries: $ldd_says" ;;
esac
size=$(stat -c %s "$bin")
[ "$size" -lt $((10 * 1024 * 1024)) ] || fail "$size bytes: over the 10 MiB budget"
version=$("$bin" --version) || fail "does not run"

echo "build-static: $version, $size bytes ($(awk "BEGIN{printf \"%.1f\", $size/1048576}") MiB)"
echo "build-static: file: $desc"
echo "build-static: ldd: $(echo "$ldd_says" | tr -s ' \t' ' ')"
echo "$repo/$bin"
