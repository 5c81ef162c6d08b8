#!/usr/bin/env bash
# Builds the tutorial's app images into the local Docker engine, FROM scratch (no registry):
#   lyzhang1999/hello-world-flask:latest  "Hello, my first docker images! <pod name>"
#   lyzhang1999/hello-world-flask:v1      "Hello, my v1 version docker images! <pod name>"
#
#   examples/hello-world-flask/build.sh [--print-tags]
#
# Needs gcc and the static C library (Debian: gcc, libc6-dev); a build takes about a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repository=lyzhang1999/hello-world-flask
if [[ ${1:-} == --print-tags ]]; then echo "$repository:latest $repository:v1"; exit 0; fi
command -v gcc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$context/"
for variant in latest:first v1:"v1 version"; do
  tag=${variant%%:*} text=${variant#*:}
  gcc -static -O2 -Wall -Werror -DVERSION_TEXT="\"$text\"" -o "$context/hello" "$here/main.c"
  # The legacy builder's deprecation notice goes to stderr: show it only when the build fails.
  out=$(docker build -q -t "$repository:$tag" "$context" 2>&1) || { echo "$out" >&2; exit 1; }
  echo "✔ built $repository:$tag"
done
