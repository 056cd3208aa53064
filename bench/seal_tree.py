#!/usr/bin/env python3
"""Writes a tree shaped like a Symfony release for bench/seal.sh.

About 20,000 small files in nested vendor/src/config/public/var folders (sizes spread like PHP
sources: mostly a few KB, some tens of KB), plus a few files of tens of MB (a build artefact, a
GeoIP database, a video): about 400 MB in all. Seeded, so every run writes the same tree.

Usage: seal_tree.py DIR   (DIR must not exist yet)
"""
import os
import random
import sys

SMALL_FILES = 20_000
LARGE = [("var/data/GeoLite2-City.mmdb", 62), ("public/media/intro.mp4", 48),
         ("var/build/app.phar", 35), ("public/build/vendor.js.map", 21)]  # MB


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    os.makedirs(root)
    rng = random.Random(20181206)
    # A pool of bytes to slice from: generating fresh random bytes per file is slower than hashing.
    pool = rng.randbytes(8 << 20)
    vendors = [f"vendor{v}" for v in range(40)]
    written = 0

    def put(rel, size):
        nonlocal written
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left:
                start = rng.randrange(0, len(pool) - 1)
                chunk = pool[start:start + min(left, len(pool) - start)]
                f.write(chunk)
                left -= len(chunk)
        written += size

    for i in range(SMALL_FILES):
        if i < 17_000:
            vendor = rng.choice(vendors)
            package = f"package{rng.randrange(4)}"
            depth = "".join(f"Ns{rng.randrange(4)}/" for _ in range(rng.randrange(0, 3)))
            rel = f"vendor/{vendor}/{package}/src/{depth}Class{i}.php"
        elif i < 18_500:
            rel = f"src/{'/'.join(f'Domain{rng.randrange(10)}' for _ in range(2))}/Service{i}.php"
        elif i < 19_300:
            rel = f"config/packages/{rng.choice(['prod', 'dev', 'test'])}/conf{i}.yaml"
        else:
            rel = f"public/build/{rng.choice(['js', 'css', 'img'])}/asset{i}.bin"
        size = min(int(rng.lognormvariate(8.6, 1.0)), 400_000)
        put(rel, size)
    for rel, mb in LARGE:
        put(rel, mb << 20)
    put("composer.json", 1200)
    put("composer.lock", 480_000)
    os.makedirs(os.path.join(root, "var/cache/prod"), exist_ok=True)
    os.symlink("../var/data", os.path.join(root, "public/data"))
    print(f"{root}: {SMALL_FILES + len(LARGE) + 2} files, {written / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
