#!/bin/sh
# A Python base image made from Debian's own packages (debootstrap, then `docker import`), for a
# machine that cannot pull python:3.11-slim. The image is the deploy/Dockerfile's BASE_IMAGE:
#
#   deploy/build-base.sh status-hub-base:bookworm
#   docker build -f deploy/Dockerfile --build-arg BASE_IMAGE=status-hub-base:bookworm -t status-hub .
#
# Needs root, debootstrap and a Debian mirror (DEBIAN_MIRROR, default deb.debian.org). CA_BUNDLE, when
# set, names a PEM file of certificate authorities the image trusts besides Debian's (a TLS-inspecting
# proxy's, say). Does nothing when the tag already exists; `docker rmi` it to build it again.
set -eu

tag=${1:?usage: deploy/build-base.sh TAG}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
	echo "build-base: $tag exists; not rebuilt."
	exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
	echo "build-base: needs debootstrap (apt-get install debootstrap)." >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "build-base: debootstrap needs root." >&2
	exit 1
fi

root=$(mktemp -d)
cleanup() {
	# debootstrap mounts /proc and /sys inside the tree while it works; a failed run can leave them.
	awk -v root="$root" 'index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r mounted; do
		umount -l "$mounted" || true
	done
	rm -rf --one-file-system "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "build-base: debootstrap $suite (minbase, python3, python3-venv, ca-certificates) from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
	tail -n 30 "$root.log" >&2
	rm -f "$root.log"
	exit 1
}
rm -f "$root.log"
if [ -n "${CA_BUNDLE:-}" ]; then
	echo "build-base: trusting the authorities in $CA_BUNDLE as well"
	# One certificate a file, as update-ca-certificates expects.
	awk -v dir="$root/usr/local/share/ca-certificates" '
		/-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/build-host-%03d.crt", dir, n) }
		file { print > file }
		/-----END CERTIFICATE-----/ { close(file); file = "" }
	' "$CA_BUNDLE"
	# Quiet: a bundle that repeats Debian's own authorities makes it warn once for each.
	chroot "$root" update-ca-certificates >/dev/null 2>&1 || {
		echo "build-base: update-ca-certificates failed in the new tree." >&2
		exit 1
	}
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'CMD ["python3"]' \
	--message "debootstrap $suite minbase with python3, python3-venv and ca-certificates" \
	- "$tag"
echo "build-base: $tag built ($(docker image inspect --format '{{.Size}}' "$tag") bytes)."
