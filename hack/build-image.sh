#!/usr/bin/env bash
# Builds the project's OCI images without Docker, for the test cluster's real node:
#   finex-workers  Debian bookworm (mmdebstrap --variant=minbase) with python3, and the project with
#                  its dependencies pip-installed into a venv at /opt/finex, like the Dockerfile:
#                  the versions of requirements.lock only, each file checked against its hash.
#                  A bill of materials (every Python package and Debian package with its version)
#                  goes into the image as $IMAGE_BOM, and into its config as labels (the Python
#                  packages, and the file's sha256: the Debian list is too long for a label)
#   pause          the pod sandbox: a static Go program (hack/pause) that waits for SIGTERM
# Each rootfs is packed with umoci into an OCI layout and written as a tar that
# `ctr images import` reads. The images honour the Dockerfile's contract (the IMAGE_* values below;
# tests/unit/test_image_contract.py keeps the two in step).
#
# Output: $IMAGE_CACHE (default $K8S_CACHE/images, outside the repository):
#   finex-workers-<hash>.tar, pause-<hash>.tar  named by a hash of their inputs (the files that go
#                                               into the image, requirements.lock among them, and
#                                               this script), so an unchanged input is never built
#                                               twice. Debian's packages are bookworm's of the day
#                                               (no snapshot mirror is reachable here): the BOM
#                                               says which went in
#   finex-workers.tar, pause.tar                symlinks to the current builds
#
#   hack/build-image.sh [finex|pause|all]      (default all; `make image` runs it)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
K8S_CACHE=${K8S_CACHE:-$HOME/.cache/finex/k8s}
IMAGE_CACHE=${IMAGE_CACHE:-$K8S_CACHE/images}

# --- the contract (the Dockerfile's final stage says the same) --------------------------------
IMAGE_NAME=finex-workers
IMAGE_SUITE=bookworm
IMAGE_MIRROR=http://deb.debian.org/debian
IMAGE_VENV=/opt/finex
IMAGE_USER=10001:10001
IMAGE_WORKDIR=/tmp
IMAGE_ENTRYPOINT=finex
IMAGE_CMD="workers start"
IMAGE_EXPOSE=9121/tcp
IMAGE_ENV_PATH=/opt/finex/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
IMAGE_ENV_PYTHONUNBUFFERED=1
IMAGE_ENV_PYTHONDONTWRITEBYTECODE=1
IMAGE_BOM=/usr/share/finex/bom.txt
# Names under which tests/support/cluster.py imports them into containerd.
PAUSE_NAME=localhost/finex-pause
PAUSE_TAG=1

say() { printf '[image] %s\n' "$*"; }
die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }
step="setup"
tmp_dirs=()
on_exit() {
    local rc=$? d
    for d in "${tmp_dirs[@]}"; do rm -rf "$d"; done
    [ $rc -eq 0 ] || printf "[image] FAILED during: %s (exit %s). The output above says why; fix it and run make image again.\n" "$step" "$rc" >&2
}
trap on_exit EXIT

what=${1:-all}
case $what in finex | pause | all) ;; *) die "usage: $0 [finex|pause|all]" ;; esac

for tool in mmdebstrap umoci go flock sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing; run make bootstrap (hack/bootstrap.sh installs it)"
done
[ "$(id -u)" -eq 0 ] || die "mmdebstrap runs in root mode here (chroot, device nodes, file owners): run as root"

project_version=$(sed -n -E 's/^version = "(.*)"$/\1/p' "$repo/pyproject.toml" | head -n1)
[ -n "$project_version" ] || die "no version in pyproject.toml"

mkdir -p "$IMAGE_CACHE"
exec 9>"$IMAGE_CACHE/.build.lock"
flock 9

# inputs_hash FILE...: one hash over the files' paths and contents (and this script's).
inputs_hash() {
    (cd "$repo" && sha256sum "$@" hack/build-image.sh | sha256sum | cut -c1-16)
}
# Tracked and untracked-but-not-ignored files under the given paths: what a clean clone would have,
# plus your edits; never .venv, caches or egg-info.
project_files() {
    (cd "$repo" && git ls-files -co --exclude-standard -- "$@" | while read -r f; do [ -f "$f" ] && echo "$f"; done | sort)
}

# pack ROOTFS TAG OUT CONFIG...: one-layer OCI image of ROOTFS, tagged TAG, written to the tar OUT.
pack() {
    local rootfs=$1 tag=$2 out=$3 layout
    shift 3
    layout=$(dirname "$rootfs")/oci
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    umoci insert --image "$layout:$tag" "$rootfs" /
    umoci config --image "$layout:$tag" --author "finex hack/build-image.sh" --no-history "$@"
    umoci gc --layout "$layout"
    tar -C "$layout" -cf "$out.tmp" .
    mv "$out.tmp" "$out"
}

# publish NAME OUT T0: point NAME.tar at OUT, drop older builds, print path, size and time.
publish() {
    local name=$1 out=$2 t0=$3 old
    for old in "$IMAGE_CACHE/$name"-*.tar; do
        [ "$old" = "$out" ] || rm -f "$old"
    done
    ln -sfn "$(basename "$out")" "$IMAGE_CACHE/$name.tar"
    say "$name: built $out ($(du -h "$out" | cut -f1), $(stat -c %s "$out") bytes) in $((SECONDS - t0))s"
}

build_finex() {
    local files hash out tmp t0=$SECONDS
    mapfile -t files < <(project_files pyproject.toml requirements.lock README.md workers operator)
    hash=$(inputs_hash "${files[@]}")
    out=$IMAGE_CACHE/$IMAGE_NAME-$hash.tar
    if [ -f "$out" ]; then
        ln -sfn "$(basename "$out")" "$IMAGE_CACHE/$IMAGE_NAME.tar"
        say "$IMAGE_NAME: up to date, $out ($(du -h "$out" | cut -f1); inputs hash $hash)"
        return
    fi
    tmp=$(mktemp -d "$IMAGE_CACHE/.build-finex.XXXXXX")
    tmp_dirs+=("$tmp")
    mkdir -p "$tmp/src"
    (cd "$repo" && cp --parents "${files[@]}" "$tmp/src/")
    # pip inside the chroot verifies TLS with the host's CA bundle: PIP_CERT reaches pip's
    # build-isolation subprocess too, which --cert does not. The bundle is removed afterwards.
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$tmp/pip-ca.pem"
    local chroot_env="env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8"
    chroot_env+=" PIP_CERT=/tmp/pip-ca.pem PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1"
    chroot_env+=" PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-60}"
    step="$IMAGE_NAME: mmdebstrap $IMAGE_SUITE and pip install"
    say "$step (inputs hash $hash)"
    mmdebstrap --mode=root --variant=minbase --include=python3,python3-venv \
        --customize-hook="copy-in $tmp/src /" \
        --customize-hook="copy-in $tmp/pip-ca.pem /tmp" \
        --customize-hook="chroot \"\$1\" $chroot_env python3 -m venv $IMAGE_VENV" \
        --customize-hook="chroot \"\$1\" $chroot_env $IMAGE_VENV/bin/pip install --quiet --require-hashes -r /src/requirements.lock" \
        --customize-hook="chroot \"\$1\" $chroot_env $IMAGE_VENV/bin/pip install --quiet --no-deps --no-build-isolation /src" \
        --customize-hook="chroot \"\$1\" $IMAGE_VENV/bin/python -m compileall -q $IMAGE_VENV/lib" \
        --customize-hook="chroot \"\$1\" groupadd --system --gid ${IMAGE_USER#*:} finex" \
        --customize-hook="chroot \"\$1\" useradd --system --uid ${IMAGE_USER%:*} --gid ${IMAGE_USER#*:} --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin finex" \
        --customize-hook='rm -rf "$1/src" "$1/tmp/pip-ca.pem" "$1/root/.cache"' \
        --customize-hook="chroot \"\$1\" $IMAGE_VENV/bin/finex --help >/dev/null" \
        "$IMAGE_SUITE" "$tmp/rootfs" "$IMAGE_MIRROR"
    [ ! -e "$tmp/rootfs/tmp/pip-ca.pem" ] || die "the CA bundle was left in the image"
    step="$IMAGE_NAME: bill of materials"
    say "$step"
    local python_pkgs bom_sha
    python_pkgs=$(chroot "$tmp/rootfs" $IMAGE_VENV/bin/python -m pip list --format=freeze \
        --disable-pip-version-check | LC_ALL=C sort)
    mkdir -p "$tmp/rootfs/$(dirname "$IMAGE_BOM")"
    {
        echo "# $IMAGE_NAME $project_version: bill of materials (hack/build-image.sh)"
        echo "# python <name>==<version>: $IMAGE_VENV, from requirements.lock (hashes checked)"
        echo "# debian <package>=<version>: bookworm, as mmdebstrap installed it"
        sed 's/^/python /' <<<"$python_pkgs"
        dpkg-query --admindir="$tmp/rootfs/var/lib/dpkg" -W -f='debian ${Package}=${Version}\n' | LC_ALL=C sort
    } >"$tmp/rootfs$IMAGE_BOM"
    chmod 0644 "$tmp/rootfs$IMAGE_BOM"
    bom_sha=$(sha256sum "$tmp/rootfs$IMAGE_BOM" | cut -d' ' -f1)
    # `finex --version` and the BOM must name the same release, and the rq the scripts mirror.
    local reported
    reported=$(chroot "$tmp/rootfs" $IMAGE_VENV/bin/finex --version)
    [ "$reported" = "finex $project_version" ] || die "finex --version says '$reported', pyproject says $project_version"
    grep -qx "python finex-workers==$project_version" "$tmp/rootfs$IMAGE_BOM" || die "the BOM does not list finex-workers==$project_version"
    grep -qx "python rq==3.0.0" "$tmp/rootfs$IMAGE_BOM" || die "the BOM does not list rq==3.0.0"
    step="$IMAGE_NAME: umoci pack"
    say "$step"
    local cmd_args=() c
    for c in $IMAGE_CMD; do cmd_args+=(--config.cmd "$c"); done
    pack "$tmp/rootfs" "$project_version" "$out" \
        --config.user "$IMAGE_USER" --config.workingdir "$IMAGE_WORKDIR" \
        --config.entrypoint "$IMAGE_ENTRYPOINT" "${cmd_args[@]}" \
        --config.exposedports "$IMAGE_EXPOSE" \
        --config.env "PATH=$IMAGE_ENV_PATH" \
        --config.env "PYTHONUNBUFFERED=$IMAGE_ENV_PYTHONUNBUFFERED" \
        --config.env "PYTHONDONTWRITEBYTECODE=$IMAGE_ENV_PYTHONDONTWRITEBYTECODE" \
        --config.label "org.opencontainers.image.version=$project_version" \
        --config.label "io.finex.bom.path=$IMAGE_BOM" \
        --config.label "io.finex.bom.sha256=$bom_sha" \
        --config.label "io.finex.bom.python=$(tr '\n' ' ' <<<"$python_pkgs" | sed 's/ $//')"
    rm -rf "$tmp"
    publish "$IMAGE_NAME" "$out" "$t0"
}

build_pause() {
    local hash out tmp t0=$SECONDS
    hash=$(inputs_hash hack/pause/go.mod hack/pause/main.go)
    out=$IMAGE_CACHE/pause-$hash.tar
    if [ -f "$out" ]; then
        ln -sfn "$(basename "$out")" "$IMAGE_CACHE/pause.tar"
        say "pause: up to date, $out ($(du -h "$out" | cut -f1); inputs hash $hash)"
        return
    fi
    tmp=$(mktemp -d "$IMAGE_CACHE/.build-pause.XXXXXX")
    tmp_dirs+=("$tmp")
    step="pause: go build"
    say "$step"
    mkdir -p "$tmp/rootfs"
    (cd "$here/pause" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" \
        GOCACHE=$K8S_CACHE/go/build go build -ldflags "-s -w" -o "$tmp/rootfs/pause" .)
    step="pause: umoci pack"
    pack "$tmp/rootfs" "$PAUSE_TAG" "$out" --config.entrypoint /pause --config.user 65535:65535
    rm -rf "$tmp"
    publish pause "$out" "$t0"
}

case $what in
finex) build_finex ;;
pause) build_pause ;;
all) build_pause && build_finex ;;
esac
step="report"
say "cache $IMAGE_CACHE: $(du -sh "$IMAGE_CACHE" | cut -f1)"
