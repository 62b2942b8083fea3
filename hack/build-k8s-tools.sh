#!/usr/bin/env bash
# Builds the pinned local Kubernetes toolchain from Go modules (no Docker, no release downloads):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   kubelet, for the real node (own stamp)                            (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok                                                              (sigs.k8s.io/kwok/cmd/kwok)
#   helm                                                              (helm.sh/helm/vN/cmd/helm)
# plus prometheus-operator's PrometheusRule/ServiceMonitor/PodMonitor CRD YAML, from its module zip.
#
# Versions come from hack/k8s-versions.env. Everything lands in $K8S_CACHE/$KUBERNETES_VERSION
# (bin/, crds/), outside the repository; Go's module and build caches for this live in
# $K8S_CACHE/go. Each piece is stamped with its version, so the same version is never built twice
# and a warm run is a no-op. See docs/control-plane.md for times and disk use.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=k8s-versions.env
source "$here/k8s-versions.env"

K8S_CACHE=${K8S_CACHE:-$HOME/.cache/finex/k8s}
root=$K8S_CACHE/$KUBERNETES_VERSION
bin=$root/bin
crds=$root/crds
work=$root/work

say() { printf '[k8s-tools] %s\n' "$*"; }
die() { printf '[k8s-tools] ERROR: %s\n' "$*" >&2; exit 1; }
step="setup"
trap 'rc=$?; [ $rc -eq 0 ] || printf "[k8s-tools] FAILED during: %s (exit %s). The output above says why; fix it and run make k8s-tools again (finished pieces are kept).\n" "$step" "$rc" >&2' EXIT

# --- what is already there ----------------------------------------------------------------------
stamp_ok() { [ -f "$bin/.$1.stamp" ] && [ "$(cat "$bin/.$1.stamp")" = "$2" ]; }
stamp_set() { printf '%s\n' "$2" >"$bin/.$1.stamp"; }

k8s_stamp="kubernetes $KUBERNETES_VERSION"
kubelet_stamp="kubelet $KUBERNETES_VERSION"
etcd_stamp="etcd $ETCD_VERSION"
kwok_stamp="kwok $KWOK_VERSION"
helm_stamp="helm $HELM_VERSION k8s-version-ldflags"
crds_stamp="prometheus-operator $PROMETHEUS_OPERATOR_VERSION prometheusrules servicemonitors podmonitors"
keda_stamp="keda $KEDA_VERSION scaledobjects"

all_done() {
    stamp_ok kubernetes "$k8s_stamp" && stamp_ok kubelet "$kubelet_stamp" && stamp_ok etcd "$etcd_stamp" && stamp_ok kwok "$kwok_stamp" &&
        stamp_ok kwok-stages "$kwok_stamp" &&
        stamp_ok helm "$helm_stamp" && stamp_ok crds "$crds_stamp" && stamp_ok keda "$keda_stamp"
}
if all_done; then
    say "up to date in $root (kubernetes $KUBERNETES_VERSION with kubelet, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION)"
    exit 0
fi

# --- Go toolchain and caches -----------------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "Go is not installed; install Go >= 1.26 (the pinned kwok, etcd and helm need it) and re-run"
go_ver=$(go env GOVERSION)
go_minor=$(printf '%s' "$go_ver" | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 26 ] 2>/dev/null || die "found $go_ver; Go >= 1.26 is needed (the pinned kwok, etcd and helm declare go 1.26)"
command -v flock >/dev/null 2>&1 || die "flock (util-linux) is missing"

mkdir -p "$bin" "$crds" "$work" "$K8S_CACHE/go"
exec 9>"$K8S_CACHE/.build.lock"
say "waiting for the build lock $K8S_CACHE/.build.lock" && flock 9
if all_done; then say "another run finished the build; up to date in $root"; exit 0; fi

export GOMODCACHE=$K8S_CACHE/go/mod
export GOCACHE=$K8S_CACHE/go/build
export GOTOOLCHAIN=local
export GOFLAGS="-modcacherw -trimpath -buildvcs=false"
export CGO_ENABLED=0
say "using $go_ver, GOMODCACHE=$GOMODCACHE GOCACHE=$GOCACHE GOPROXY=$(go env GOPROXY)"

timed() { # timed NAME CMD...: run a step, print how long it took
    local name=$1 t0=$SECONDS
    shift
    step=$name
    say "$name: start"
    "$@"
    say "$name: done in $((SECONDS - t0))s"
}
mod_field() { # mod_field MODULE@VERSION FIELD: go mod download -json, one field
    go mod download -json "$1" | sed -n -E "s/^[[:space:]]*\"$2\": \"(.*)\",?$/\1/p" | head -n1
}

# --- prometheus-operator CRDs ----------------------------------------------------------------------
build_crds() {
    local dir src
    dir=$(mod_field "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" Dir)
    [ -n "$dir" ] || die "could not download github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
    src=$dir/example/prometheus-operator-crd
    for kind in prometheusrules servicemonitors podmonitors; do
        [ -f "$src/monitoring.coreos.com_$kind.yaml" ] || die "$src has no monitoring.coreos.com_$kind.yaml"
        cp "$src/monitoring.coreos.com_$kind.yaml" "$crds/"
        chmod 644 "$crds/monitoring.coreos.com_$kind.yaml"
    done
    stamp_set crds "$crds_stamp"
}

# --- KEDA's ScaledObject CRD, to check docs/operator.md's example against the apiserver ------------
build_keda_crd() {
    local dir src=config/crd/bases/keda.sh_scaledobjects.yaml
    dir=$(mod_field "github.com/kedacore/keda/v2@$KEDA_VERSION" Dir)
    [ -n "$dir" ] && [ -f "$dir/$src" ] || die "no $src in github.com/kedacore/keda/v2@$KEDA_VERSION"
    mkdir -p "$root/keda"
    cp "$dir/$src" "$root/keda/" && chmod 644 "$root/keda/keda.sh_scaledobjects.yaml"
    stamp_set keda "$keda_stamp"
}

# --- etcd, through a wrapper module (its go.mod has replace directives) ----------------------------
build_etcd() {
    local w=$work/etcd-$ETCD_VERSION gomod
    gomod=$(mod_field "go.etcd.io/etcd/server/v3@$ETCD_VERSION" GoMod)
    [ -n "$gomod" ] || die "could not download go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    mkdir -p "$w"
    {
        echo "module finex.local/etcd-build"
        grep -m1 -E '^go [0-9]' "$gomod"
        echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    } >"$w/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$w/tools.go"
    (cd "$w" && go mod tidy &&
        go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
    "$bin/etcd" --version | head -n1
    stamp_set etcd "$etcd_stamp"
}

# --- kwok and helm: plain go install (no replace directives) ---------------------------------------
build_kwok() {
    GOBIN=$bin go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    stamp_set kwok "$kwok_stamp"
}
# The kwok binary has no built-in Stages (kwokctl injects them): take the "fast" node and pod
# Stages plus the lease heartbeat from the same module version, as one --config file.
build_kwok_stages() {
    local dir out=$root/kwok/stages.yaml f
    dir=$(mod_field "sigs.k8s.io/kwok@$KWOK_VERSION" Dir)
    [ -n "$dir" ] || die "could not download sigs.k8s.io/kwok@$KWOK_VERSION"
    mkdir -p "$root/kwok"
    : >"$out.tmp"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        [ -f "$dir/kustomize/stage/$f" ] || die "kwok $KWOK_VERSION has no kustomize/stage/$f"
        { echo "---"; cat "$dir/kustomize/stage/$f"; } >>"$out.tmp"
    done
    mv "$out.tmp" "$out"
    stamp_set kwok-stages "$kwok_stamp"
}
# helm's own Makefile sets its default Kubernetes version (what `helm template` and `helm lint`
# assume without --kube-version) from the k8s.io/client-go it requires, major + 1: a plain
# `go install` leaves chartutil's fallback v1.20.0, which charts with kubeVersion >= 1.21 refuse.
build_helm() {
    local major=${HELM_VERSION%%.*} mod=helm.sh/helm/${HELM_VERSION%%.*} gomod cg kmajor kminor ld p
    gomod=$(mod_field "$mod@$HELM_VERSION" GoMod)
    [ -n "$gomod" ] || die "could not download $mod@$HELM_VERSION"
    cg=$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")
    [ -n "$cg" ] || die "found no k8s.io/client-go requirement in $gomod"
    cg=${cg#v}
    kmajor=$((${cg%%.*} + 1))
    kminor=${cg#*.}
    kminor=${kminor%%.*}
    ld="-s -w -X $mod/internal/version.version=$HELM_VERSION -X $mod/internal/version.gitTreeState=clean"
    for p in pkg/chartutil pkg/lint/rules; do
        ld+=" -X $mod/$p.k8sVersionMajor=$kmajor -X $mod/$p.k8sVersionMinor=$kminor"
    done
    say "helm: default Kubernetes version v$kmajor.$kminor.0 (from k8s.io/client-go v$cg)"
    GOBIN=$bin go install -ldflags "$ld" "$mod/cmd/helm@$HELM_VERSION"
    "$bin/helm" version --short
    stamp_set helm "$helm_stamp"
}

# --- Kubernetes, through a wrapper module that replaces each staging module with k8s.io/X v0.Y.Z ----
# kubernetes_wrapper writes the module into $kube_work and sets $kube_ld (the version ldflags). The
# control-plane binaries and the kubelet are built from it in two steps with their own stamps, so
# adding the kubelet does not rebuild the others.
kube_work=$work/kubernetes-$KUBERNETES_VERSION
kube_ld=""
kubernetes_wrapper() {
    local w=$kube_work gomod staging ver=${KUBERNETES_VERSION#v}
    local major=${ver%%.*} rest=${ver#*.}
    local minor=${rest%%.*} patch=${rest#*.}
    local staging_ver="v0.$minor.$patch" build_date p m
    gomod=$(mod_field "k8s.io/kubernetes@$KUBERNETES_VERSION" GoMod)
    [ -n "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"
    # The staging modules are exactly the replace targets under ./staging/ in that version's go.mod.
    staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod" | sort -u)
    [ -n "$staging" ] || die "found no ./staging replace directives in $gomod"
    say "kubernetes: $(wc -l <<<"$staging") staging modules pinned to $staging_ver"
    mkdir -p "$w"
    {
        echo "module finex.local/kubernetes-build"
        grep -m1 -E '^go [0-9]' "$gomod"
        grep -E '^godebug ' "$gomod" || true
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo "replace ("
        for m in $staging; do echo "	$m => $m $staging_ver"; done
        echo ")"
    } >"$w/go.mod"
    cat >"$w/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
    build_date=$(mod_field "k8s.io/kubernetes@$KUBERNETES_VERSION" Time)
    build_date=${build_date:-1970-01-01T00:00:00Z}
    kube_ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        kube_ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
        kube_ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
    done
    (cd "$w" && go mod tidy)
}
build_kubernetes() {
    [ -n "$kube_ld" ] || kubernetes_wrapper
    (cd "$kube_work" &&
        go build -ldflags "$kube_ld" -o "$bin/" \
            k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
    "$bin/kube-apiserver" --version
    "$bin/kubectl" version --client
    stamp_set kubernetes "$k8s_stamp"
}
# The real node's kubelet (tests/support/cluster.py runs it with Debian's containerd). Static like
# the rest (CGO_ENABLED=0): it talks to containerd over CRI and needs no C library.
build_kubelet() {
    [ -n "$kube_ld" ] || kubernetes_wrapper
    (cd "$kube_work" && go build -ldflags "$kube_ld" -o "$bin/kubelet" k8s.io/kubernetes/cmd/kubelet)
    "$bin/kubelet" --version
    stamp_set kubelet "$kubelet_stamp"
}

total0=$SECONDS
stamp_ok crds "$crds_stamp" || timed "prometheus-operator CRDs $PROMETHEUS_OPERATOR_VERSION" build_crds
stamp_ok keda "$keda_stamp" || timed "KEDA CRD $KEDA_VERSION" build_keda_crd
stamp_ok etcd "$etcd_stamp" || timed "etcd $ETCD_VERSION" build_etcd
stamp_ok kwok "$kwok_stamp" || timed "kwok $KWOK_VERSION" build_kwok
stamp_ok kwok-stages "$kwok_stamp" || timed "kwok $KWOK_VERSION stages" build_kwok_stages
stamp_ok kubernetes "$k8s_stamp" || timed "kubernetes $KUBERNETES_VERSION" build_kubernetes
stamp_ok kubelet "$kubelet_stamp" || timed "kubelet $KUBERNETES_VERSION" build_kubelet
stamp_ok helm "$helm_stamp" || timed "helm $HELM_VERSION" build_helm
step="report"
say "built in $((SECONDS - total0))s into $bin:"
ls -l "$bin"
say "disk use: $(du -sh "$root" | cut -f1) in $root; Go caches $(du -sh "$K8S_CACHE/go" | cut -f1) in $K8S_CACHE/go"
