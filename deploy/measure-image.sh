#!/usr/bin/env bash
# Builds the Dockerfile's image with podman and prints its size, then starts `ragcord serve` from the image's
# own files as its non-root user and waits for the "ready" line: the image figure README's "Performance"
# section quotes. Needs root, podman (apt-get install podman), Redis on 127.0.0.1:6379 (db 15 is used and
# flushed).
#
# Where Docker Hub cannot be reached (these machines reach only Debian's and PyPI's registries), set
# STAND_IN_BASE=1: `python:3.11-slim` is then built locally from Debian bookworm (debootstrap minbase +
# Debian's python3.11, 161 MB, so an upper bound of the official base: Docker Hub's image is the same
# Debian release with Python built from source) and the host's CA certificates are added to it so pip
# trusts an intercepting proxy. Run from the repository's root.
set -euo pipefail

tag=${TAG:-localhost/ragcord:measure}
if [[ ${STAND_IN_BASE:-0} == 1 ]] && ! podman image exists python:3.11-slim; then
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase \
        --include=python3.11,python3.11-venv,python3-distutils,python3-pip-whl,python3-setuptools-whl,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$rootfs" update-ca-certificates >/dev/null
    # What the official slim images leave out, and debootstrap's own leftovers.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs/debootstrap"
    tar -C "$rootfs" -c . | podman import - localhost/python:3.11-slim >/dev/null
    rm -rf "$rootfs"
fi

podman build --isolation chroot --quiet -t "$tag" . >/dev/null
size=$(podman image inspect "$tag" --format '{{.Size}}')
base=$(podman image inspect python:3.11-slim --format '{{.Size}}' 2>/dev/null || echo 0)
echo "image: $tag $((size / 1000000)) MB (base python:3.11-slim $((base / 1000000)) MB)"

# Containers may not run here (no cgroup v2), so the image's files are run with chroot: same files, same user.
root=$(podman image mount "$tag")
serve=""
cleanup() {
    # chroot and env exec, so $! is `ragcord serve` itself: it stops its API and workers on SIGTERM.
    [[ -n $serve ]] && kill "$serve" 2>/dev/null && while kill -0 "$serve" 2>/dev/null; do sleep 0.2; done
    umount "$root/dev/shm" "$root/dev" "$root/proc" 2>/dev/null || true
    podman image unmount "$tag" >/dev/null || true
    redis-cli -n 15 flushdb >/dev/null
}
trap cleanup EXIT
mkdir -p "$root/proc" "$root/dev" "$root/data"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
chown 10001 "$root/data"
log=$(mktemp)
chroot --userspec=10001:10001 "$root" /usr/bin/env -i PATH=/venv/bin:/usr/bin:/bin HOME=/home/ragcord \
    RAGCORD_DATA_DIR=/data PYTHONUNBUFFERED=1 RAGCORD_REDIS_URL=redis://127.0.0.1:6379/15 \
    RAGCORD_GRPC_ADDRESS=127.0.0.1:50199 RAGCORD_METRICS_ADDRESS=127.0.0.1:9499 ragcord serve >"$log" 2>&1 &
serve=$!
for _ in $(seq 60); do
    if grep -q "ready: admin API" "$log"; then
        echo "serve from the image: $(grep -o 'ready: admin API on [^ ]*' "$log" | head -1)"
        exit 0
    fi
    sleep 1
done
echo "serve from the image did not get ready in 60 s:" >&2
tail -20 "$log" >&2
exit 1
