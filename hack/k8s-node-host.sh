#!/usr/bin/env bash
# What a real node (hack/k8s-up.sh --node) changes on the host, saved before it starts and put
# back when it stops. One node per machine at a time (two kubelets on one Docker engine kill each
# other's Pods), so the state lives in one machine-wide folder, $state, under /run: it is gone
# after a reboot, as are the sysctls and iptables rules it restores.
#
#   hack/k8s-node-host.sh save NODE_DIR      before the node starts (the caller holds the lock)
#   hack/k8s-node-host.sh teardown NODE_DIR  stops the node started for NODE_DIR, restores the host
#   hack/k8s-node-host.sh teardown --stale   the same for a node whose owner died without teardown
#   hack/k8s-node-host.sh snapshot           prints the host state a node touches, one fact a line
#                                            (tests compare it before and after a node's life)
#
# What the kubelet and kube-proxy change (hack/k8s-up.sh starts them): the sysctls below (the
# kubelet's kernel tunables and kube-proxy's route_localnet), iptables chains in every table
# (KUBE-*, the canaries, the kubelet's DROP of non-loopback sources to 127/8) and the rules that
# jump to them, /var/log/pods and /var/log/containers (written whatever --root-dir says), the
# OOM score of dockerd and containerd, the Pods' containers, and the volumes it mounts under its
# root folder. hack/k8s-up.sh also builds the pause image when it is missing; teardown removes it.
set -euo pipefail
state=${FERROFLUX_NODE_STATE:-/run/ferroflux-node}
sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Folders the kubelet writes whatever its flags say (the log folders), or may (paths that 1.20
# hard-codes, such as /var/lib/kubelet/device-plugins): created ones are removed, and in ones that
# existed, the entries the node added.
log_dirs=(/var/log/pods /var/log/containers /var/lib/kubelet /var/lib/dockershim /etc/kubernetes
  /var/run/kubernetes /etc/cni /opt/cni)
daemons=(dockerd containerd)

# grep for pipelines: no match is not an error here (set -o pipefail).
filter() { grep "$@" || true; }

iptables_tools() { for t in iptables ip6tables iptables-legacy ip6tables-legacy; do command -v "$t-save" >/dev/null 2>&1 && echo "$t"; done; }

# The node's lines in one iptables variant: chains named KUBE-* and rules that jump to them or
# carry Kubernetes' comments.
kube_rules() { # TOOL
  "$1-save" 2>/dev/null | filter -E '^(\*|:KUBE-|-A .*(KUBE-|kubernetes))' | sed 's/ \[[0-9]*:[0-9]*\]$//' \
    | awk '/^\*/ { table = $0; next } { print table " " $0 }' || true
}

snapshot() {
  for key in "${sysctls[@]}"; do echo "sysctl $key=$(sysctl -n "$key" 2>/dev/null || echo absent)"; done
  for name in "${daemons[@]}"; do
    for pid in $(pidof "$name" 2>/dev/null || true); do echo "oom_score_adj $name $(cat "/proc/$pid/oom_score_adj" 2>/dev/null)"; done
  done
  for tool in $(iptables_tools); do kube_rules "$tool" | sed "s/^/$tool /"; done
  for d in "${log_dirs[@]}"; do
    if [[ -d $d ]]; then echo "dir $d: $(ls -A "$d" | tr '\n' ' ')"; else echo "dir $d: absent"; fi
  done
  if docker info >/dev/null 2>&1; then
    docker ps -a --filter label=io.kubernetes.docker.type --format 'container {{.Names}}'
  fi
}

save() { # NODE_DIR
  local node_dir=$1
  rm -rf "$state/saved"
  mkdir -p "$state/saved"
  for key in "${sysctls[@]}"; do
    value=$(sysctl -n "$key" 2>/dev/null) && printf '%s\t%s\n' "$key" "$value"
  done >"$state/saved/sysctls"
  for name in "${daemons[@]}"; do
    for pid in $(pidof "$name" 2>/dev/null || true); do printf '%s\t%s\n' "$pid" "$(cat "/proc/$pid/oom_score_adj")"; done
  done >"$state/saved/oom_score_adj"
  for d in "${log_dirs[@]}"; do
    if [[ -d $d ]]; then ls -A "$d" >"$state/saved/${d//\//_}.list"; fi
  done
  : >"$state/pids"
  : >"$state/images"
  echo "$node_dir" >"$state/active"
}

stop_pid() { # PID: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

clean_iptables() {
  for tool in $(iptables_tools); do
    for table in filter nat mangle raw; do
      "$tool" -t "$table" -S >/dev/null 2>&1 || continue
      # Rules in other chains that jump to the node's chains, then the chains themselves.
      "$tool" -t "$table" -S 2>/dev/null | filter -E '^-A ' | filter -vE '^-A KUBE-' | filter -E -- '-j KUBE-|kubernetes' \
        | sed 's/^-A /-D /' | while read -r rule; do eval "$tool -t $table $rule" 2>/dev/null || true; done
      chains=$("$tool" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p')
      for chain in $chains; do "$tool" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do "$tool" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}

teardown() { # NODE_DIR | --stale
  [[ -f $state/active ]] || return 0
  local node_dir
  node_dir=$(cat "$state/active")
  if [[ $1 != --stale && $1 != "$node_dir" ]]; then return 0; fi
  # The kubelet first, so that it restarts nothing; then what it started.
  while read -r pid; do [[ -n $pid ]] && stop_pid "$pid"; done <"$state/pids"
  if docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=io.kubernetes.docker.type)
    [[ -z $ids ]] || docker rm -f -v $ids >/dev/null 2>&1 || true
  fi
  # Secret and projected volumes are tmpfs mounts under the kubelet's root: unmount, deepest first.
  if [[ -n $node_dir ]]; then
    findmnt -rn -o TARGET | filter -F "$node_dir/" | sort -r | while read -r target; do umount -l "$target" 2>/dev/null || true; done
  fi
  clean_iptables
  if [[ -f $state/saved/sysctls ]]; then
    while IFS=$'\t' read -r key value; do
      [[ $(sysctl -n "$key" 2>/dev/null) == "$value" ]] || sysctl -q -w "$key=$value" >/dev/null 2>&1 || true
    done <"$state/saved/sysctls"
  fi
  if [[ -f $state/saved/oom_score_adj ]]; then
    while IFS=$'\t' read -r pid value; do
      [[ -w /proc/$pid/oom_score_adj ]] && echo "$value" >"/proc/$pid/oom_score_adj" 2>/dev/null || true
    done <"$state/saved/oom_score_adj"
  fi
  for d in "${log_dirs[@]}"; do
    local list=$state/saved/${d//\//_}.list
    if [[ ! -f $list ]]; then
      rm -rf "$d"
    elif [[ -d $d ]]; then
      ls -A "$d" | while read -r entry; do grep -qxF -- "$entry" "$list" || rm -rf "${d:?}/$entry"; done
    fi
  done
  # Images the node built for itself (the pause image), when nothing else uses them.
  if [[ -f $state/images ]] && docker info >/dev/null 2>&1; then
    while read -r image; do [[ -n $image ]] && docker rmi "$image" >/dev/null 2>&1 || true; done <"$state/images"
  fi
  rm -rf "$state/saved" "$state/pids" "$state/images" "$state/active"
}

case ${1:-} in
  save) save "${2:?save NODE_DIR}" ;;
  teardown) teardown "${2:?teardown NODE_DIR|--stale}" ;;
  snapshot) snapshot ;;
  *) echo "usage: $0 save NODE_DIR | teardown NODE_DIR|--stale | snapshot" >&2; exit 2 ;;
esac
