#!/usr/bin/env bash
# Starts a real Kubernetes cluster (1.20.2, built once by hack/k8s-build.sh).
#
#   hack/k8s-up.sh DIR [--watch-pid PID]          control plane only, on loopback: etcd,
#                                                 kube-apiserver, kube-controller-manager. No
#                                                 kubelet: Pods stay Pending unless a test plays node.
#   hack/k8s-up.sh DIR --node [--watch-pid PID]   a real node too: kube-scheduler, a kubelet on the
#                                                 local Docker engine (dockershim) and kube-proxy
#                                                 (iptables), with the API server on the docker0
#                                                 address so that Pods reach it. Needs root and
#                                                 Docker; one node per machine at a time (a lock).
#
# Writes DIR/kubeconfig (admin, a static token) and DIR/down.sh, and prints the kubeconfig's path.
# With --watch-pid, everything stops by itself when process PID exits, so a test run that dies
# leaves nothing behind. A node's down.sh also puts back what the node changed on the host
# (hack/k8s-node-host.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: k8s-up.sh DIR [--node] [--watch-pid PID]" >&2; exit 2; }
dir=${1:-}; [[ -n $dir && $dir != -* ]] || usage; shift
watch_pid= node=
while [[ $# -gt 0 ]]; do
  case $1 in
    --watch-pid) watch_pid=${2:?--watch-pid needs a PID}; shift 2 ;;
    --node) node=1; shift ;;
    *) usage ;;
  esac
done
fail() { echo "hack/k8s-up.sh: $*" >&2; exit 1; }

bin=$("$here/k8s-build.sh")
command -v etcd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
address=127.0.0.1
if [[ -n $node ]]; then
  [[ $(id -u) == 0 ]] || fail "--node needs root (the kubelet runs containers and sets iptables rules)"
  docker info >/dev/null 2>&1 || fail "--node needs a Docker engine that answers \`docker info\`"
  # Trap 2 of a node without a network plugin: with the API server on loopback it cannot publish
  # the kubernetes Service's endpoints ("may not be in the loopback range"), and Pods could not
  # reach loopback anyway. docker0's address is reachable from Pods and from the host.
  address=$(ip -4 -o addr show docker0 2>/dev/null | awk '{ split($4, a, "/"); print a[1]; exit }')
  [[ -n $address ]] || fail "--node needs Docker's docker0 bridge (no IPv4 address found on docker0)"
  pod_cidr=$(ip -4 -o addr show docker0 | awk '{ print $4; exit }' | python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.stdin.read().strip()).network)')
  missing=()
  command -v socat >/dev/null || missing+=(socat)       # kubectl port-forward
  command -v conntrack >/dev/null || missing+=(conntrack) # kube-proxy
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)  # the pause image
  if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  node_bin=$("$here/k8s-build.sh" --node)
fi
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
cd "$dir"

state=${FERROFLUX_NODE_STATE:-/run/ferroflux-node}
if [[ -n $node ]]; then
  # Trap 5: two kubelets on one Docker engine kill each other's Pods (each takes every k8s_*
  # container for its own). The lock is held from here until the node's teardown has finished:
  # by this script, then by the background process that watches the node (below).
  mkdir -p "$state"
  exec 9>"$state/lock"
  if ! flock -n 9; then
    echo "waiting for the node of $(cat "$state/active" 2>/dev/null || echo "another run") to stop (one node per Docker engine)..." >&2
    flock -w "${FERROFLUX_NODE_LOCK_TIMEOUT:-1800}" 9 || fail "another node still runs on this machine: $(cat "$state/active" 2>/dev/null)"
  fi
  if [[ -f $state/active ]]; then
    echo "cleaning up after a node that stopped without its teardown: $(cat "$state/active")" >&2
    "$here/k8s-node-host.sh" teardown --stale
  fi
  "$here/k8s-node-host.sh" save "$dir"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port); etcd_port=$(free_port); etcd_peer=$(free_port); kcm_port=$(free_port)

[[ -f sa.key ]] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
cat > tokens.csv <<TOKENS
admintoken,admin,admin,system:masters
usertoken,ferroflux-test-user,ferroflux-test-user
TOKENS

etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  >etcd.log 2>&1 9>&- &
echo $! > etcd.pid

"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --cert-dir "$dir/certs" \
  --secure-port "$api_port" --bind-address "$address" --advertise-address "$address" \
  --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.pub" \
  --service-account-signing-key-file "$dir/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
  >apiserver.log 2>&1 9>&- &
echo $! > apiserver.pid

write_kubeconfig() { # NAME TOKEN
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ferroflux-test
  cluster:
    server: https://$address:$api_port
    insecure-skip-tls-verify: true
users:
- name: $3
  user:
    token: $2
contexts:
- name: ferroflux-test
  context:
    cluster: ferroflux-test
    user: $3
    namespace: default
current-context: ferroflux-test
KC
}
write_kubeconfig kubeconfig admintoken admin
write_kubeconfig kubeconfig-user usertoken ferroflux-test-user

if [[ -z $node ]]; then
  cat > down.sh <<DOWN
#!/bin/sh
cd "$dir" || exit 0
for p in watch kcm apiserver etcd; do
  [ -f \$p.pid ] && kill \$(cat \$p.pid) 2>/dev/null
  rm -f \$p.pid
done
exit 0
DOWN
else
  # The node first (its teardown restores the host), then the control plane; the watcher, which
  # holds the lock, exits once the teardown is done.
  cat > down.sh <<DOWN
#!/bin/sh
cd "$dir" || exit 0
'$here/k8s-node-host.sh' teardown '$dir'
for p in kcm apiserver etcd watch; do
  [ -f \$p.pid ] && kill \$(cat \$p.pid) 2>/dev/null
  rm -f \$p.pid
done
exit 0
DOWN
  # Until the node is up and watched, a failure here must not leave it running.
  trap '[[ -n ${node_up:-} ]] || ./down.sh >/dev/null 2>&1' EXIT
fi
chmod +x down.sh

ready=
for _ in $(seq 120); do
  if curl -skf -H 'Authorization: Bearer admintoken' "https://$address:$api_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
if [[ -z $ready ]]; then
  echo "kube-apiserver did not become ready; last lines of its log:" >&2
  tail -n 30 apiserver.log >&2
  ./down.sh; exit 1
fi

# --port 0: no insecure port (1.20 opens 10252 on all addresses by default, which a second
# control plane on the machine could not bind).
"$bin/kube-controller-manager" --kubeconfig "$dir/kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" --port 0 \
  --service-account-private-key-file "$dir/sa.key" --root-ca-file "$dir/certs/apiserver.crt" \
  --use-service-account-credentials=false >kcm.log 2>&1 9>&- &
echo $! > kcm.pid
sleep 1
if ! kill -0 "$(cat kcm.pid)" 2>/dev/null; then
  echo "kube-controller-manager exited; last lines of its log:" >&2
  tail -n 20 kcm.log >&2
  ./down.sh; exit 1
fi

start_node() {
  # The Pod sandbox image, built FROM scratch (no registry to pull it from) unless present.
  if ! docker image inspect k8s.gcr.io/pause:3.2 >/dev/null 2>&1; then
    local context; context=$(mktemp -d)
    gcc -static -O2 -o "$context/pause" "$here/pause/pause.c"
    cp "$here/pause/Dockerfile" "$context/"
    docker build -q -t k8s.gcr.io/pause:3.2 "$context" >/dev/null 2>"$context/err" || { cat "$context/err" >&2; rm -rf "$context"; return 1; }
    rm -rf "$context"
    echo k8s.gcr.io/pause:3.2 >>"$state/images"
  fi
  local sched_port kubelet_port kubelet_health proxy_health proxy_metrics
  sched_port=$(free_port); kubelet_port=$(free_port); kubelet_health=$(free_port)
  proxy_health=$(free_port); proxy_metrics=$(free_port)
  mkdir -p node
  "$node_bin/kube-scheduler" --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" \
    --authorization-kubeconfig "$dir/kubeconfig" --leader-elect=false --port 0 \
    --bind-address 127.0.0.1 --secure-port "$sched_port" >scheduler.log 2>&1 9>&- &
  echo $! >>"$state/pids"
  # Trap 1: the node's name must resolve to 127.0.0.1 (the API server dials the node's Hostname
  # address first; the kubelet refuses a loopback --node-ip). Trap 7: image GC would delete any
  # unused image on the engine, not only the node's: thresholds 100/99 keep it from running.
  "$node_bin/kubelet" --kubeconfig "$dir/kubeconfig" --container-runtime docker \
    --pod-infra-container-image k8s.gcr.io/pause:3.2 \
    --container-runtime-endpoint "unix://$dir/node/dockershim.sock" \
    --experimental-dockershim-root-directory "$dir/node/dockershim" \
    --root-dir "$dir/node/kubelet" --cert-dir "$dir/node/pki" --volume-plugin-dir "$dir/node/volume-plugins" \
    --hostname-override localhost --address 127.0.0.1 --port "$kubelet_port" --read-only-port 0 \
    --healthz-port "$kubelet_health" --cgroups-per-qos=false --enforce-node-allocatable= \
    --cgroup-driver cgroupfs --fail-swap-on=false --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
    --eviction-hard= --resolv-conf /etc/resolv.conf >kubelet.log 2>&1 9>&- &
  echo $! >>"$state/pids"
  "$node_bin/kube-proxy" --kubeconfig "$dir/kubeconfig" --proxy-mode iptables --oom-score-adj 0 \
    --hostname-override localhost --cluster-cidr "$pod_cidr" --bind-address 127.0.0.1 \
    --healthz-bind-address "127.0.0.1:$proxy_health" --metrics-bind-address "127.0.0.1:$proxy_metrics" \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0 \
    >proxy.log 2>&1 9>&- &
  echo $! >>"$state/pids"
  local ready=
  for _ in $(seq 240); do
    if [[ $(KUBECONFIG=$dir/kubeconfig kubectl get node localhost -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; then
      ready=1; break
    fi
    sleep 0.5
  done
  if [[ -z $ready ]]; then
    echo "the node did not become Ready in 2 minutes; last lines of the kubelet's log ($dir/kubelet.log):" >&2
    tail -n 30 kubelet.log >&2
    return 1
  fi
}
if [[ -n $node ]]; then start_node; fi

if [[ -n $node ]]; then
  # The watcher holds the lock (fd 9) until the node's teardown has run: it runs down.sh itself
  # when PID exits, and exits once down.sh has torn the node down.
  nohup sh -c "while [ -e '$state/active' ] && { [ -z '$watch_pid' ] || kill -0 '$watch_pid' 2>/dev/null; }; do sleep 1; done
    [ -e '$state/active' ] && grep -qxF '$dir' '$state/active' && '$dir/down.sh'" >/dev/null 2>&1 </dev/null &
  echo $! > watch.pid
  exec 9>&-
  node_up=1
elif [[ -n $watch_pid ]]; then
  # Detached from our stdout/stderr so that callers reading our output see EOF.
  nohup sh -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; '$dir/down.sh'" \
    >/dev/null 2>&1 </dev/null &
  echo $! > watch.pid
fi
echo "$dir/kubeconfig"
