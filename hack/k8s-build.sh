#!/usr/bin/env bash
# Builds Kubernetes 1.20.2 from Debian bookworm's `kubernetes` source package, once, and caches it.
# Debian ships only kubectl from that tree, but the tree carries its vendor/ folder, so everything
# builds offline with Debian's Go.
#
#   hack/k8s-build.sh          kube-apiserver and kube-controller-manager; prints their folder
#   hack/k8s-build.sh --node   also kubelet, kube-scheduler and kube-proxy (a real node, see
#                              hack/k8s-up.sh --node); prints the node binaries' folder
#
# The two sets live in two cache folders, so a machine that has only the control plane cached never
# rebuilds it for the node, and the default tier never waits for the node build.
# Idempotent: a second run returns at once.
set -euo pipefail
base=${FERROFLUX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferroflux}
control_plane=$base/k8s-1.20.2-reflect2
# "oomclamp": built with the dockershim patch below; a change to the patch needs a new name.
node=$base/k8s-1.20.2-reflect2-node-oomclamp
mode=control-plane
case ${1:-} in
  "") ;;
  --node) mode=node ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac

have() { local dir=$1; shift; for b in "$@"; do [[ -x $dir/bin/$b ]] || return 1; done; }
sudo_() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

# Unpacks the source tree into CACHE/src (once per cache folder) and prepares it for `make`.
prepare_source() { # CACHE
  export DEBIAN_FRONTEND=noninteractive
  local src_list=/etc/apt/sources.list.d/debian.sources
  if [[ -f $src_list ]] && ! grep -q 'deb-src' "$src_list"; then
    sudo_ sed -i 's/^Types: deb$/Types: deb deb-src/' "$src_list"
  fi
  sudo_ apt-get update -qq >&2
  sudo_ apt-get install -y -qq golang-go etcd-server rsync dpkg-dev openssl \
    golang-github-modern-go-reflect2-dev >&2
  mkdir -p "$1/src"
  cd "$1/src"
  if [[ ! -d kubernetes-1.20.2 ]]; then
    apt-get source --download-only kubernetes >&2
    tar xzf kubernetes_*.orig.tar.gz
  fi
  cd kubernetes-1.20.2
  mkdir -p .go/src/k8s.io
  ln -sfn ../../.. .go/src/k8s.io/kubernetes
  rm -rf _output
  # Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, which predates Go 1.18's change to
  # reflect.mapiterinit: built with Debian's Go 1.19, kube-apiserver then dies with SIGSEGV
  # ("unexpected fault address", aeshashbody in mapiterinit) the first time it encodes a custom
  # resource's metadata map. Debian packages reflect2 1.0.2, which supports Go 1.18+; use it.
  local reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
  if [[ -d $reflect2_src ]]; then
    rm -rf vendor/github.com/modern-go/reflect2
    cp -r "$reflect2_src" vendor/github.com/modern-go/reflect2
  fi
}

# Builds WHAT (make's list of cmd/...) in the prepared tree, copies the binaries into CACHE/bin and
# drops the source tree and Go cache, which are large and no longer needed.
build() { # CACHE WHAT MINUTES BINARIES...
  local cache=$1 what=$2 minutes=$3; shift 3
  echo "building $* (about $minutes minutes on 2 cores)..." >&2
  if ! env GOPATH="$PWD/.go" CGO_ENABLED=0 GOCACHE="$cache/gocache" \
      make WHAT="$what" >"$cache/build.log" 2>&1; then
    tail -n 40 "$cache/build.log" >&2
    exit 1
  fi
  mkdir -p "$cache/bin"
  for b in "$@"; do cp "_output/bin/$b" "$cache/bin/"; done
  cd "$cache" && rm -rf src gocache
}

# Dockershim hard-codes a negative oom_score_adj for every Pod sandbox (-998) and for Guaranteed
# containers (-997), with no flag to change it. Where the capability bounding set lacks
# CAP_SYS_RESOURCE (VMs and containers such as CI machines), the kernel refuses any negative value
# and runc fails every sandbox with "can't get final child's PID from pipe: EOF". Clamping the
# value to 0 costs only the Pods' protection from the OOM killer, which a test node does not need.
patch_dockershim_oom() {
  local sandbox=pkg/kubelet/dockershim/docker_sandbox.go helpers=pkg/kubelet/dockershim/helpers_linux.go
  sed -i 's/^\thc\.OomScoreAdj = defaultSandboxOOMAdj$/\thc.OomScoreAdj = 0 \/\/ ferroflux: clamped, negative values need CAP_SYS_RESOURCE/' "$sandbox"
  sed -i 's/^\t\t\tcreateConfig\.HostConfig\.OomScoreAdj = int(rOpts\.OomScoreAdj)$/\t\t\tif rOpts.OomScoreAdj > 0 { createConfig.HostConfig.OomScoreAdj = int(rOpts.OomScoreAdj) } \/\/ ferroflux: negatives clamped to 0/' "$helpers"
  grep -q 'ferroflux: clamped' "$sandbox" && grep -q 'ferroflux: negatives clamped' "$helpers" || {
    echo "the dockershim oom_score_adj patch no longer applies to this source tree" >&2; exit 1; }
}

if ! have "$control_plane" kube-apiserver kube-controller-manager; then
  prepare_source "$control_plane"
  build "$control_plane" "cmd/kube-apiserver cmd/kube-controller-manager" 7 kube-apiserver kube-controller-manager
fi
if [[ $mode == control-plane ]]; then
  echo "$control_plane/bin"; exit 0
fi
if ! have "$node" kubelet kube-scheduler kube-proxy; then
  prepare_source "$node"
  patch_dockershim_oom
  build "$node" "cmd/kubelet cmd/kube-scheduler cmd/kube-proxy" 13 kubelet kube-scheduler kube-proxy
fi
echo "$node/bin"
