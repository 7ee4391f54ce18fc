#!/usr/bin/env bash
# A Debian 12 root file system standing in for Gradescope's base image, made offline-ready:
# debootstrap (minbase) with the packages the export's setup.sh installs already included,
# so setup.sh's apt step has nothing to fetch. Output: a tar for `podman import`.
#
#   docker/gradescope/make-rootfs.sh build/gradescope-image/bookworm-rootfs.tar
#
# Needs root and debootstrap (apt-get install debootstrap). Debian's archive must be
# reachable ($MIRROR); nothing else is.
set -euo pipefail
OUT="${1:?usage: make-rootfs.sh OUT.tar}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE="${SUITE:-bookworm}"
# Keep in step with SETUP_PACKAGES in autograder/authoring/export.py.
PACKAGES="python3,python3-venv,python3-dev,bubblewrap,util-linux,procps,g++,make,cmake"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gradescope-rootfs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/root" "$MIRROR" \
  >"$WORK/debootstrap.log" 2>&1 || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$WORK/root/var/cache/apt/archives/"*.deb "$WORK/root/var/lib/apt/lists/"* \
  "$WORK/root/usr/share/doc" "$WORK/root/usr/share/man" "$WORK/root/usr/share/locale"
mkdir -p "$(dirname "$OUT")"
tar --numeric-owner -C "$WORK/root" -cf "$OUT.partial" .
mv "$OUT.partial" "$OUT"
