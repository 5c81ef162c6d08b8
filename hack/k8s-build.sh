#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager (Kubernetes 1.20.2) from Debian bookworm's
# `kubernetes` source package, once, and caches them. Debian ships only kubectl from that tree, but
# the tree carries its vendor/ folder, so the control plane builds offline with Debian's Go.
# Prints the folder holding the binaries. Idempotent: a second run returns at once.
set -euo pipefail
cache=${FERROFLUX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferroflux}/k8s-1.20.2-reflect2
bin=$cache/bin
if [[ -x $bin/kube-apiserver && -x $bin/kube-controller-manager ]]; then
  echo "$bin"; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
sudo_() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
src_list=/etc/apt/sources.list.d/debian.sources
if [[ -f $src_list ]] && ! grep -q 'deb-src' "$src_list"; then
  sudo_ sed -i 's/^Types: deb$/Types: deb deb-src/' "$src_list"
fi
sudo_ apt-get update -qq >&2
sudo_ apt-get install -y -qq golang-go etcd-server rsync dpkg-dev openssl \
  golang-github-modern-go-reflect2-dev >&2
mkdir -p "$cache/src"
cd "$cache/src"
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
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
if [[ -d $reflect2_src ]]; then
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r "$reflect2_src" vendor/github.com/modern-go/reflect2
fi
echo "building kube-apiserver and kube-controller-manager (about 7 minutes on 2 cores)..." >&2
if ! env GOPATH="$PWD/.go" CGO_ENABLED=0 GOCACHE="$cache/gocache" \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$cache/build.log" 2>&1; then
  tail -n 40 "$cache/build.log" >&2
  exit 1
fi
mkdir -p "$bin"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$bin/"
# The source tree and Go cache are large and no longer needed.
cd "$cache" && rm -rf src gocache
echo "$bin"
