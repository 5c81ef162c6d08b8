#!/usr/bin/env bash
# The demo (README): the tutorial on a local, real Kubernetes control plane and a real Git server.
#
#   hack/demo.sh            starts everything itself (first run builds the control plane, ~7 min)
#   KUBECONFIG=... hack/demo.sh   uses an existing cluster instead
#
# It pushes the tutorial's deployment.yaml to a local Git server, runs `ferroflux controller`,
# applies the tutorial's two manifests (verbatim but for the repository URL), and shows
# `kubectl get gitrepository,kustomization` as the tutorial does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
work=$(mktemp -d -t ferroflux-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  bash "$root/hack/git-servers.sh" stop "$work/git" >/dev/null 2>&1 || true
  [[ -x $work/k8s/down.sh ]] && "$work/k8s/down.sh" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -z ${KUBECONFIG:-} ]]; then
  step "starting a local Kubernetes control plane"
  KUBECONFIG=$("$root/hack/k8s-up.sh" "$work/k8s" --watch-pid $$)
  export KUBECONFIG
fi

step "starting a local Git server (nginx + git-http-backend)"
bash "$root/hack/git-servers.sh" start "$work/git" >/dev/null
# shellcheck disable=SC1091
source "$work/git/env"
git init -q --bare -b main "$REPO_ROOT/fluxcd-demo.git"
repo_url="$HTTP_URL_BASE/fluxcd-demo.git"

step "mkdir fluxcd-demo && git push (the tutorial's deployment.yaml)"
mkdir "$work/fluxcd-demo" && cd "$work/fluxcd-demo"
cp "$root/examples/tutorial/deployment.yaml" .
git init -q -b main && git add -A
git -c user.name=demo -c user.email=demo@example.invalid commit -q -m "Add deployment"
git remote add origin "$REPO_ROOT/fluxcd-demo.git" && git push -q origin main
git log --oneline
cd "$root"

step "building ferroflux"
cargo build --release --quiet

step "kubectl apply -f crds/"
kubectl apply -f crds/
kubectl wait --for condition=established --timeout=60s \
  crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io >/dev/null

step "ferroflux controller (in the background; log in $work/controller.log)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
./target/release/ferroflux controller --storage-path "$work/storage" --storage-addr "127.0.0.1:$(free_port)" \
  --health-addr "127.0.0.1:$(free_port)" >"$work/controller.log" 2>&1 &
pids+=($!)

step "kubectl apply -f fluxcd-repo.yaml   (the tutorial's manifest; url: $repo_url)"
sed "s#url: .*#url: $repo_url#" examples/tutorial/fluxcd-repo.yaml | kubectl apply -f -
kubectl wait --for condition=ready --timeout=60s gitrepository/hello-world-flask >/dev/null
kubectl get gitrepository

step "kubectl apply -f fluxcd-kustomize.yaml   (verbatim)"
kubectl apply -f examples/tutorial/fluxcd-kustomize.yaml
kubectl wait --for condition=ready --timeout=60s kustomization/hello-world-flask >/dev/null
kubectl get kustomization
kubectl get deployment hello-world-flask -o wide

commit_and_wait() { # MESSAGE: push what the work tree has, wait until it is applied
  cd "$work/fluxcd-demo"
  git -c user.name=demo -c user.email=demo@example.invalid commit -qam "$1"
  git push -q -f origin main
  local sha; sha=$(git rev-parse HEAD)
  cd "$root"
  wait_applied "$sha"
}
wait_applied() { # SHA
  for _ in $(seq 100); do
    if kubectl get kustomization hello-world-flask -o jsonpath='{.status.lastAppliedRevision}' | grep -q "$1"; then
      kubectl describe kustomization hello-world-flask | sed -n '/^Status:/,/^Events:/p' | grep -v '^Events:'
      kubectl get deployment hello-world-flask -o jsonpath='image: {.spec.template.spec.containers[0].image}{"\n"}'
      return 0
    fi
    sleep 0.2
  done
  echo "not applied in time; controller log: $work/controller.log" >&2; return 1
}

step "release: image tag latest -> v1, git commit, git push"
sed -i 's#hello-world-flask:latest#hello-world-flask:v1#' "$work/fluxcd-demo/deployment.yaml"
commit_and_wait "Update image tag to v1"

step "rollback: git reset --hard <first commit> && git push -f"
cd "$work/fluxcd-demo"
first=$(git rev-list --max-parents=0 HEAD)
git reset -q --hard "$first" && git push -q -f origin main
cd "$root"
wait_applied "$first"

step "kubectl get gitrepository,kustomization"
kubectl get gitrepository,kustomization

step "the same through ferroflux's CLI: get all, tree ks"
./target/release/ferroflux get all -n default
./target/release/ferroflux tree ks hello-world-flask -n default
printf '\nThe tutorial, end to end: push released, force-push rolled back. (No kubelet runs here, so the\nPods stay Pending; the Deployment itself is what the tutorial changes.)\n'
