#!/usr/bin/env bash
# Real Git servers on loopback for ferroflux's source tests.
#
#   hack/git-servers.sh start DIR   start everything, write DIR/env
#   hack/git-servers.sh stop DIR    stop everything started under DIR (idempotent)
#
# What runs (all bound to 127.0.0.1 on free ports, all state inside DIR; GIT_SERVERS_ADDR=IP binds
# another address instead, e.g. docker0's, where Pods of a local node can reach it):
#   - nginx + fcgiwrap + git-http-backend over HTTPS with basic auth, certificate signed by a
#     CA generated here (subjectAltName IP:127.0.0.1), push enabled;
#   - the same over plain HTTP without auth;
#   - the same over plain HTTP requiring "Authorization: Bearer <token>";
#   - sshd with its own config, a client key (and one with a passphrase), known_hosts lines.
# Bare repositories live under DIR/repos; create them with `git init --bare DIR/repos/NAME.git`.
#
# DIR/env holds KEY=VALUE lines for the tests (see write_env below).
# It installs nginx, fcgiwrap, openssh-server and openssl with apt-get when they are missing,
# which needs root (the test machines and CI run as root).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$2
addr=${GIT_SERVERS_ADDR:-127.0.0.1}

log() { echo "git-servers: $*" >&2; }

ensure_packages() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v fcgiwrap >/dev/null 2>&1 || [ -x /usr/sbin/fcgiwrap ] || missing+=(fcgiwrap)
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y "${missing[@]}" >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1
    apt-get install -y "${missing[@]}" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("'"$addr"'", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$name did not start listening on port $port"
  return 1
}

# Alive and not a zombie: daemons are reparented to PID 1, which in a container may reap late.
is_running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

kill_pidfile() {
  local pidfile=$1
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && is_running "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do is_running "$pid" || break; sleep 0.05; done
    is_running "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop_all() {
  [ -d "$dir" ] || return 0
  kill_pidfile "$dir/run/nginx.pid"
  kill_pidfile "$dir/run/fcgiwrap.pid"
  kill_pidfile "$dir/run/sshd.pid"
  rm -f "$dir/run/fcgiwrap.sock"
}

make_tls() {
  local t=$dir/tls
  mkdir -p "$t"
  # Two CAs: the one that signs the server certificate, and an unrelated one for negative tests.
  for ca in ca other-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -subj "/CN=ferroflux test $ca" -keyout "$t/$ca.key" -out "$t/$ca.crt" 2>/dev/null
  done
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$addr" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  cat >"$t/server.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $([ "$addr" = 127.0.0.1 ] || echo "IP:$addr, ")IP:127.0.0.1, DNS:localhost
EOF
  openssl x509 -req -sha256 -days 3650 -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
    -CAcreateserial -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
}

make_ssh() {
  local s=$dir/ssh
  mkdir -p "$s"
  ssh-keygen -q -t ed25519 -N '' -C ferroflux-test-host -f "$s/host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C ferroflux-test-other-host -f "$s/other_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C ferroflux-test-client -f "$s/client_key"
  ssh-keygen -q -t ed25519 -N "$ssh_key_passphrase" -C ferroflux-test-client-pass -f "$s/client_key_pass"
  cat "$s/client_key.pub" "$s/client_key_pass.pub" >"$s/authorized_keys"
  # known_hosts in the form `ssh-keyscan` prints for a non-standard port.
  echo "[$addr]:$ssh_port $(cut -d' ' -f1,2 "$s/host_ed25519_key.pub")" >"$s/known_hosts"
  echo "[$addr]:$ssh_port $(cut -d' ' -f1,2 "$s/other_host_ed25519_key.pub")" >"$s/other_known_hosts"
  cat >"$s/sshd_config" <<EOF
Port $ssh_port
ListenAddress $addr
HostKey $s/host_ed25519_key
PidFile $dir/run/sshd.pid
AuthorizedKeysFile $s/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
LogLevel ERROR
EOF
}

git_backend() {
  local exec_path
  exec_path=$(git --exec-path 2>/dev/null || true)
  for candidate in "$exec_path/git-http-backend" /usr/lib/git-core/git-http-backend; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  log "git-http-backend not found"
  return 1
}

# The FastCGI parameters shared by every server block; $1 is an extra line (auth) or empty.
git_location() {
  cat <<EOF
    location / {
$1
      fastcgi_pass unix:$dir/run/fcgiwrap.sock;
      fastcgi_param SCRIPT_FILENAME $backend;
      fastcgi_param GIT_PROJECT_ROOT $dir/repos;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      # Push over HTTP without requiring the repository's own config to allow it.
      fastcgi_param GIT_CONFIG_COUNT 1;
      fastcgi_param GIT_CONFIG_KEY_0 http.receivepack;
      fastcgi_param GIT_CONFIG_VALUE_0 true;
      fastcgi_param REMOTE_USER \$remote_user;
      fastcgi_param PATH_INFO \$uri;
      fastcgi_param QUERY_STRING \$query_string;
      fastcgi_param REQUEST_METHOD \$request_method;
      fastcgi_param CONTENT_TYPE \$content_type;
      fastcgi_param CONTENT_LENGTH \$content_length;
      fastcgi_param GIT_PROTOCOL \$http_git_protocol;
    }
EOF
}

make_nginx() {
  local n=$dir/nginx
  mkdir -p "$n/tmp"
  printf '%s:%s\n' "$git_username" "$(openssl passwd -apr1 "$git_password")" >"$n/htpasswd"
  cat >"$n/nginx.conf" <<EOF
worker_processes 1;
user root;
daemon on;
pid $dir/run/nginx.pid;
error_log $dir/logs/nginx-error.log warn;
events { worker_connections 256; }
http {
  client_body_temp_path $n/tmp/body;
  fastcgi_temp_path $n/tmp/fastcgi;
  proxy_temp_path $n/tmp/proxy;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  client_max_body_size 0;
  server {
    listen $addr:$https_port ssl;
    ssl_certificate $dir/tls/server.crt;
    ssl_certificate_key $dir/tls/server.key;
    access_log $dir/logs/https-access.log;
$(git_location "      auth_basic \"git\"; auth_basic_user_file $n/htpasswd;")
  }
  server {
    listen $addr:$http_port;
    access_log $dir/logs/http-access.log;
$(git_location "")
  }
  server {
    listen $addr:$bearer_port;
    access_log $dir/logs/bearer-access.log;
$(git_location "      if (\$http_authorization != \"Bearer $bearer_token\") { return 401; }")
  }
}
EOF
}

random_token() { openssl rand -hex 16; }

start_all() {
  ensure_packages
  stop_all
  mkdir -p "$dir/repos" "$dir/run" "$dir/logs"
  dir=$(cd "$dir" && pwd)
  https_port=$(free_port)
  http_port=$(free_port)
  bearer_port=$(free_port)
  ssh_port=$(free_port)
  git_username=ferroflux
  git_password=$(random_token)
  bearer_token=$(random_token)
  ssh_key_passphrase=$(random_token)
  backend=$(git_backend)

  make_tls
  make_ssh
  make_nginx

  setsid /usr/sbin/fcgiwrap -s "unix:$dir/run/fcgiwrap.sock" >"$dir/logs/fcgiwrap.log" 2>&1 </dev/null &
  echo $! >"$dir/run/fcgiwrap.pid"
  for _ in $(seq 1 100); do [ -S "$dir/run/fcgiwrap.sock" ] && break; sleep 0.05; done
  [ -S "$dir/run/fcgiwrap.sock" ] || { log "fcgiwrap did not create its socket"; exit 1; }

  /usr/sbin/nginx -c "$dir/nginx/nginx.conf" -e "$dir/logs/nginx-error.log"
  mkdir -p /run/sshd
  /usr/sbin/sshd -f "$dir/ssh/sshd_config" -E "$dir/logs/sshd.log"

  wait_for_port "$https_port" nginx-https
  wait_for_port "$http_port" nginx-http
  wait_for_port "$bearer_port" nginx-bearer
  wait_for_port "$ssh_port" sshd

  cat >"$dir/env" <<EOF
HTTPS_URL_BASE=https://$addr:$https_port
HTTP_URL_BASE=http://$addr:$http_port
BEARER_URL_BASE=http://$addr:$bearer_port
SSH_URL_BASE=ssh://$(id -un)@$addr:$ssh_port$dir/repos
USERNAME=$git_username
PASSWORD=$git_password
BEARER_TOKEN=$bearer_token
CA_FILE=$dir/tls/ca.crt
OTHER_CA_FILE=$dir/tls/other-ca.crt
SSH_KEY_FILE=$dir/ssh/client_key
SSH_KEY_WITH_PASSPHRASE_FILE=$dir/ssh/client_key_pass
SSH_KEY_PASSPHRASE=$ssh_key_passphrase
KNOWN_HOSTS_FILE=$dir/ssh/known_hosts
OTHER_KNOWN_HOSTS_FILE=$dir/ssh/other_known_hosts
REPO_ROOT=$dir/repos
HTTPS_ACCESS_LOG=$dir/logs/https-access.log
HTTP_ACCESS_LOG=$dir/logs/http-access.log
BEARER_ACCESS_LOG=$dir/logs/bearer-access.log
EOF
  log "started (env in $dir/env)"
}

case $action in
  start) start_all ;;
  stop) stop_all ;;
  *) usage ;;
esac
