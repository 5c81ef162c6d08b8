#!/usr/bin/env bash
# The soak of issue #16: many Kustomizations at a short interval for a long time against a real
# control plane and Git server; reports failed reconciles and the controller's RSS over time.
# A benchmark, not a test: nothing is asserted, the figures are printed.
#
#   hack/bench-soak.sh [DURATION_SECONDS] [KUSTOMIZATIONS] [INTERVAL]
#   defaults: 3600 100 10s (the issue's soak: 100 Kustomizations at 10 s for an hour)
#   FERROFLUX_BIN=target/debug/ferroflux hack/bench-soak.sh 600   # a shorter run, another build
#
# What runs: hack/k8s-up.sh (etcd + kube-apiserver + kube-controller-manager), hack/git-servers.sh,
# `ferroflux controller` (release build), one GitRepository (interval 10s) and N Kustomizations,
# each applying 5 ConfigMaps of its own folder with prune. A commit is pushed every minute
# (changing every folder), so applies and prunes happen throughout, not only no-op reconciles.
# Every 30 s it samples the controller's RSS (VmRSS) and thread count; at the end it prints
# the reconcile results from /metrics (controller_runtime_reconcile_total), how many
# Kustomizations are not Ready, and RSS growth from the first sample after warm-up (2 min) to
# the end.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
duration=${1:-3600}
count=${2:-100}
interval=${3:-10s}
work=$(mktemp -d -t ferroflux-soak-XXXXXX)
controller_pid=
cleanup() {
  [[ -n $controller_pid ]] && kill "$controller_pid" 2>/dev/null || true
  bash "$here/git-servers.sh" stop "$work/git" >/dev/null 2>&1 || true
  [[ -x $work/k8s/down.sh ]] && "$work/k8s/down.sh" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "soak: $count Kustomizations at $interval for ${duration}s (work dir $work)" >&2
# FERROFLUX_BIN runs another build (e.g. target/debug/ferroflux) instead of the release one.
bin=${FERROFLUX_BIN:-}
if [[ -z $bin ]]; then
  (cd "$root" && cargo build --release --quiet)
  bin=$root/target/release/ferroflux
fi
kubeconfig=$(bash "$here/k8s-up.sh" "$work/k8s" --watch-pid $$)
export KUBECONFIG=$kubeconfig
bash "$here/git-servers.sh" start "$work/git" >/dev/null
# shellcheck disable=SC1091
source "$work/git/env"
kubectl apply -f "$root/crds/" >/dev/null
kubectl create namespace soak >/dev/null

git init -q --bare -b main "$REPO_ROOT/soak.git"
git -C "$REPO_ROOT/soak.git" config http.receivepack true
git init -q -b main "$work/tree"
git -C "$work/tree" remote add origin "$REPO_ROOT/soak.git"
commit() { # ROUND
  for i in $(seq 0 $((count - 1))); do
    mkdir -p "$work/tree/apps/app-$i"
    for j in 0 1 2 3 4; do
      printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-%s-%s\ndata:\n  round: "%s"\n' "$i" "$j" "$1"
      echo ---
    done > "$work/tree/apps/app-$i/config.yaml"
  done
  git -C "$work/tree" add -A
  git -C "$work/tree" -c user.name=soak -c user.email=soak@ferroflux.invalid commit -q -m "round $1"
  git -C "$work/tree" push -q -f origin main
}
commit 0

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
storage_port=$(free_port); metrics_port=$(free_port); health_port=$(free_port)
"$bin" controller --storage-path "$work/storage" --storage-addr "127.0.0.1:$storage_port" \
  --health-addr "127.0.0.1:$health_port" --metrics-addr "127.0.0.1:$metrics_port" >"$work/controller.log" 2>&1 &
controller_pid=$!

{
  printf 'apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: soak\n  namespace: soak\nspec:\n  interval: 10s\n  url: %s/soak.git\n  ref:\n    branch: main\n' "$HTTP_URL_BASE"
  for i in $(seq 0 $((count - 1))); do
    printf -- '---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: app-%s\n  namespace: soak\nspec:\n  interval: %s\n  path: ./apps/app-%s\n  prune: true\n  targetNamespace: soak\n  sourceRef:\n    kind: GitRepository\n    name: soak\n' "$i" "$interval" "$i"
  done
} | kubectl apply -f - >/dev/null

rss() { awk '/^VmRSS/ {print $2}' "/proc/$controller_pid/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$controller_pid/status"; }
start=$(date +%s)
warm_rss=
round=0
last_commit=$start
echo "elapsed_s rss_kib threads not_ready" >&2
while (( $(date +%s) - start < duration )); do
  sleep 30
  kill -0 "$controller_pid" 2>/dev/null || { echo "the controller exited; last log lines:" >&2; tail -n 30 "$work/controller.log" >&2; exit 1; }
  now=$(date +%s)
  if (( now - last_commit >= 60 )); then round=$((round + 1)); commit "$round"; last_commit=$now; fi
  not_ready=$(kubectl get kustomizations -n soak -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -vc '^True$' || true)
  elapsed=$((now - start))
  echo "$elapsed $(rss) $(threads) $not_ready" >&2
  if [[ -z $warm_rss ]] && (( elapsed >= 120 )); then warm_rss=$(rss); fi
done
end_rss=$(rss)
echo "--- after ${duration}s, $round pushes:" >&2
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep '^controller_runtime_reconcile_total' >&2 || true
echo "Kustomizations not Ready: $(kubectl get kustomizations -n soak -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -vc '^True$' || true)" >&2
if [[ -n $warm_rss ]]; then
  echo "RSS after warm-up ${warm_rss} KiB, at the end ${end_rss} KiB ($(( (end_rss - warm_rss) * 100 / warm_rss ))% growth)" >&2
else
  echo "RSS at the end ${end_rss} KiB (run shorter than the 2-minute warm-up: no growth figure)" >&2
fi
