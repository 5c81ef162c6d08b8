#!/usr/bin/env bash
# The demo (README): the tutorial end to end, with a real Git server.
#
#   hack/demo.sh                  on a local control plane (no kubelet: the Deployment changes,
#                                 its Pods stay Pending); first run builds it (~7 min)
#   hack/demo.sh --node           on a local real node (kubelet on this machine's Docker engine,
#                                 kube-proxy, scheduler), with ferroflux installed in the cluster
#                                 from its image and the app answering over HTTP; needs root and
#                                 Docker, first run builds the node (~13 min) and the image (~9 min)
#   KUBECONFIG=... hack/demo.sh   uses an existing cluster instead (ferroflux runs on this machine)
#
# It pushes the tutorial's deployment.yaml to a local Git server, runs ferroflux, applies the
# tutorial's two manifests (verbatim but for the repository URL), then releases (image tag v1,
# commit, push) and rolls back (git reset --hard, git push -f), showing what the tutorial shows.
# Everything it starts or builds is stopped or removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
node=
case ${1:-} in
  "") ;;
  --node) node=1 ;;
  *) echo "usage: hack/demo.sh [--node]" >&2; exit 2 ;;
esac
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
work=$(mktemp -d -t ferroflux-demo.XXXXXX)
pids=()
images_built=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  bash "$root/hack/git-servers.sh" stop "$work/git" >/dev/null 2>&1 || true
  [[ -x $work/k8s/down.sh ]] && "$work/k8s/down.sh" >/dev/null 2>&1
  for image in "${images_built[@]}"; do docker rmi "$image" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
app_images=(lyzhang1999/hello-world-flask:latest lyzhang1999/hello-world-flask:v1)
controller_image=ferroflux:$version

if [[ -n $node ]]; then
  [[ -z ${KUBECONFIG:-} ]] || { echo "hack/demo.sh --node starts a node of its own: unset KUBECONFIG" >&2; exit 2; }
  echo "running the tutorial on a real local node: kubelet + kube-proxy on this machine's Docker engine"
  step "starting a local Kubernetes cluster with a real node (API server on docker0)"
  KUBECONFIG=$("$root/hack/k8s-up.sh" "$work/k8s" --node --watch-pid $$)
  export KUBECONFIG
  kubectl get nodes -o wide
elif [[ -z ${KUBECONFIG:-} ]]; then
  echo "running the tutorial on a local control plane without a node (hack/demo.sh --node: with a real node)"
  step "starting a local Kubernetes control plane"
  KUBECONFIG=$("$root/hack/k8s-up.sh" "$work/k8s" --watch-pid $$)
  export KUBECONFIG
fi

step "starting a local Git server (nginx + git-http-backend)"
if [[ -n $node ]]; then
  # Pods cannot reach the host's loopback: serve Git on the docker0 address.
  GIT_SERVERS_ADDR=$(ip -4 -o addr show docker0 | awk '{ split($4, a, "/"); print a[1]; exit }')
  export GIT_SERVERS_ADDR
fi
bash "$root/hack/git-servers.sh" start "$work/git" >/dev/null
# shellcheck disable=SC1091
source "$work/git/env"
git init -q --bare -b main "$REPO_ROOT/fluxcd-demo.git"
repo_url="$HTTP_URL_BASE/fluxcd-demo.git"

step "mkdir fluxcd-demo && git push (the tutorial's deployment.yaml)"
mkdir "$work/fluxcd-demo" && cd "$work/fluxcd-demo"
cp "$root/examples/tutorial/deployment.yaml" .
if [[ -n $node ]]; then
  # The one change to the tutorial's manifest: `:latest` defaults to imagePullPolicy Always, which
  # would pull from Docker Hub (unreachable here); the images are built locally instead.
  sed -i 's#^\(\s*\)- image: \(.*\)$#\1- image: \2\n\1  imagePullPolicy: IfNotPresent#' deployment.yaml
  echo "(deployment.yaml as the tutorial's, plus imagePullPolicy: IfNotPresent: the images are local)"
fi
git init -q -b main && git add -A
git -c user.name=demo -c user.email=demo@example.invalid commit -q -m "Add deployment"
git remote add origin "$REPO_ROOT/fluxcd-demo.git" && git push -q origin main
git log --oneline
cd "$root"

# Images built here are removed again at the end; ones that were there already are kept.
note_image() { docker image inspect "$1" >/dev/null 2>&1 || images_built+=("$1"); }

if [[ -n $node ]]; then
  step "the tutorial's app images, FROM scratch (examples/hello-world-flask)"
  for image in "${app_images[@]}"; do note_image "$image"; done
  examples/hello-world-flask/build.sh

  step "the ferroflux image (hack/image.sh: a static binary FROM scratch), on the node's Docker engine"
  note_image "$controller_image"
  hack/image.sh >"$work/image.log" 2>&1 || { tail -n 30 "$work/image.log" >&2; exit 1; }
  tail -n 1 "$work/image.log"
  ferroflux=$root/target/x86_64-unknown-linux-gnu/release/ferroflux

  step "ferroflux install   (the tutorial's kubectl apply -f fluxcd.yaml)"
  "$ferroflux" install --timeout 3m
  kubectl get pods -n flux-system -o wide
else
  step "building ferroflux"
  cargo build --release --quiet
  ferroflux=$root/target/release/ferroflux

  step "kubectl apply -f crds/"
  kubectl apply -f crds/
  kubectl wait --for condition=established --timeout=60s \
    crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io >/dev/null

  step "ferroflux controller (in the background; log in $work/controller.log)"
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  "$ferroflux" controller --storage-path "$work/storage" --storage-addr "127.0.0.1:$(free_port)" \
    --health-addr "127.0.0.1:$(free_port)" >"$work/controller.log" 2>&1 &
  pids+=($!)
fi

controller_log() {
  if [[ -n $node ]]; then kubectl logs -n flux-system deployment/ferroflux --tail 20 2>&1; else tail -n 20 "$work/controller.log"; fi
}

step "kubectl apply -f fluxcd-repo.yaml   (the tutorial's manifest; url: $repo_url)"
sed "s#url: .*#url: $repo_url#" examples/tutorial/fluxcd-repo.yaml | kubectl apply -f -
kubectl wait --for condition=ready --timeout=60s gitrepository/hello-world-flask >/dev/null || { controller_log >&2; exit 1; }
kubectl get gitrepository

step "kubectl apply -f fluxcd-kustomize.yaml   (verbatim)"
kubectl apply -f examples/tutorial/fluxcd-kustomize.yaml
kubectl wait --for condition=ready --timeout=60s kustomization/hello-world-flask >/dev/null || { controller_log >&2; exit 1; }
kubectl get kustomization
kubectl get deployment hello-world-flask -o wide

service_ip=
if [[ -n $node ]]; then
  kubectl rollout status deployment/hello-world-flask --timeout=120s
  kubectl get pods -l app=hello-world-flask -o wide
  step "a Service in front of the app (the tutorial reaches it through its Ingress on 127.0.0.1)"
  kubectl expose deployment hello-world-flask --port 80 --target-port 5000
  service_ip=$(kubectl get service hello-world-flask -o jsonpath='{.spec.clusterIP}')
fi

# Asks the Service until the answer has TEXT (old Pods may answer while they terminate).
answer_until() { # TEXT
  local answer=
  for _ in $(seq 120); do
    answer=$(curl -s -m 2 "http://$service_ip/" || true)
    if [[ $answer == *"$1"* ]]; then echo "$ curl http://$service_ip/"; echo "$answer"; return 0; fi
    sleep 0.5
  done
  echo "the app never answered \"$1\" (last answer: \"$answer\")" >&2; return 1
}
[[ -z $node ]] || answer_until "Hello, my first docker images!"

commit_and_wait() { # MESSAGE: push what the work tree has, wait until it is applied
  cd "$work/fluxcd-demo"
  git -c user.name=demo -c user.email=demo@example.invalid commit -qam "$1"
  git push -q -f origin main
  local sha; sha=$(git rev-parse HEAD)
  cd "$root"
  wait_applied "$sha"
}
wait_applied() { # SHA
  for _ in $(seq 300); do
    if kubectl get kustomization hello-world-flask -o jsonpath='{.status.lastAppliedRevision}' | grep -q "$1"; then
      kubectl describe kustomization hello-world-flask | sed -n '/^Status:/,/^Events:/p' | grep -v '^Events:'
      kubectl get deployment hello-world-flask -o jsonpath='image: {.spec.template.spec.containers[0].image}{"\n"}'
      if [[ -n $node ]]; then
        kubectl rollout status deployment/hello-world-flask --timeout=120s
        kubectl get pods -l app=hello-world-flask -o wide
      fi
      return 0
    fi
    sleep 0.2
  done
  echo "not applied in time; the controller's log:" >&2; controller_log >&2; return 1
}

step "release: image tag latest -> v1, git commit, git push"
sed -i 's#hello-world-flask:latest#hello-world-flask:v1#' "$work/fluxcd-demo/deployment.yaml"
commit_and_wait "Update image tag to v1"
[[ -z $node ]] || answer_until "Hello, my v1 version docker images!"

step "rollback: git reset --hard <first commit> && git push -f"
cd "$work/fluxcd-demo"
first=$(git rev-list --max-parents=0 HEAD)
git reset -q --hard "$first" && git push -q -f origin main
cd "$root"
wait_applied "$first"
[[ -z $node ]] || answer_until "Hello, my first docker images!"

step "kubectl get gitrepository,kustomization"
kubectl get gitrepository,kustomization

step "the same through ferroflux's CLI: get all, tree ks"
"$ferroflux" get all -n default
"$ferroflux" tree ks hello-world-flask -n default
if [[ -n $node ]]; then
  printf '\nThe tutorial, end to end on a real node: ferroflux, running in the cluster, released v1 on a push\nand rolled back on a force-push; the app answered each version.\n'
else
  printf '\nThe tutorial, end to end: push released, force-push rolled back. (No kubelet runs here, so the\nPods stay Pending; the Deployment itself is what the tutorial changes. hack/demo.sh --node runs it\non a real node.)\n'
fi
