#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback: etcd + kube-apiserver + kube-controller-manager
# (1.20.2, built once by hack/k8s-build.sh). No kubelet: Pods stay Pending unless a test plays node.
#
#   hack/k8s-up.sh DIR [--watch-pid PID]
#
# Writes DIR/kubeconfig (admin, a static token) and DIR/down.sh. With --watch-pid, the control plane
# stops by itself when process PID exits, so a test run that dies leaves nothing behind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: k8s-up.sh DIR [--watch-pid PID]}
watch_pid=
if [[ ${2:-} == --watch-pid ]]; then watch_pid=${3:?--watch-pid needs a PID}; fi

bin=$("$here/k8s-build.sh")
command -v etcd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
cd "$dir"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port=$(free_port); etcd_port=$(free_port); etcd_peer=$(free_port); kcm_port=$(free_port)

[[ -f sa.key ]] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
cat > tokens.csv <<TOKENS
admintoken,admin,admin,system:masters
usertoken,ferroflux-test-user,ferroflux-test-user
TOKENS

etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  >etcd.log 2>&1 &
echo $! > etcd.pid

"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --cert-dir "$dir/certs" \
  --secure-port "$api_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.pub" \
  --service-account-signing-key-file "$dir/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
  >apiserver.log 2>&1 &
echo $! > apiserver.pid

write_kubeconfig() { # NAME TOKEN
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: ferroflux-test
  cluster:
    server: https://127.0.0.1:$api_port
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

cat > down.sh <<DOWN
#!/bin/sh
cd "$dir" || exit 0
for p in watch kcm apiserver etcd; do
  [ -f \$p.pid ] && kill \$(cat \$p.pid) 2>/dev/null
  rm -f \$p.pid
done
exit 0
DOWN
chmod +x down.sh

ready=
for _ in $(seq 120); do
  if curl -skf -H 'Authorization: Bearer admintoken' "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
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
  --use-service-account-credentials=false >kcm.log 2>&1 &
echo $! > kcm.pid
sleep 1
if ! kill -0 "$(cat kcm.pid)" 2>/dev/null; then
  echo "kube-controller-manager exited; last lines of its log:" >&2
  tail -n 20 kcm.log >&2
  ./down.sh; exit 1
fi

if [[ -n $watch_pid ]]; then
  # Detached from our stdout/stderr so that callers reading our output see EOF.
  nohup sh -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; '$dir/down.sh'" \
    >/dev/null 2>&1 </dev/null &
  echo $! > watch.pid
fi
echo "$dir/kubeconfig"
