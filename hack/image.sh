#!/usr/bin/env bash
# Builds the ferroflux container image, ferroflux:<version>, with no registry: a statically linked
# binary on `FROM scratch` (see Dockerfile).
#
#   hack/image.sh [TAG]
#
# How the binary is made static with only the x86_64-unknown-linux-gnu target installed (no musl):
# - `-C target-feature=+crt-static` links glibc statically; `--target` is given explicitly so that
#   build scripts and proc-macros (which cannot be static) are built without it;
# - OPENSSL_STATIC=1: openssl-sys links the system's libssl.a/libcrypto.a (Debian: libssl-dev);
# - LIBZ_SYS_STATIC=1: libz-sys builds zlib from its bundled source;
# - libgit2 (git2's vendored-libgit2) and libssh2 (libssh2-sys) are built from source by their
#   -sys crates and linked statically anyway.
# The result is checked with `file` and `ldd`, and run once, before it goes into the image.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
tag=${1:-ferroflux:$version}
target=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$root/target}

fail() { echo "hack/image.sh: $*" >&2; exit 1; }
command -v cargo >/dev/null || fail "cargo is needed: install Rust with rustup"
command -v docker >/dev/null || fail "docker is needed: install a Docker engine"
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info failed): start it, or check your access to its socket"

# Static OpenSSL needs libssl.a; Debian-like machines get it from libssl-dev.
if ! compgen -G "/usr/lib/*/libssl.a" >/dev/null && ! compgen -G "/usr/lib/libssl.a" >/dev/null; then
  command -v apt-get >/dev/null || fail "libssl.a (OpenSSL's static library) is needed: install your distribution's OpenSSL development package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev >/dev/null
fi

# Run from `cargo test` (tests/image.rs), cargo's per-package variables are set; build scripts
# (ring's) watch them, and seeing them change would rebuild half the tree on every run.
while read -r variable; do unset "$variable"; done < <(compgen -e | grep -E '^(CARGO_(PKG|MANIFEST|CRATE|BIN|PRIMARY)_?|OUT_DIR$)' || true)

echo "► building a static ferroflux $version ($target, crt-static)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" OPENSSL_STATIC=1 LIBZ_SYS_STATIC=1 \
  cargo build --release --locked --target "$target" --bin ferroflux
binary="$target_dir/$target/release/ferroflux"

# An empty image has no dynamic loader: a binary that needs one would not even start.
description=$(file -b "$binary")
[[ $description == *"static"* && $description != *"dynamically linked"* ]] \
  || fail "$binary is not statically linked: $description"
if ldd "$binary" >/dev/null 2>&1 && ! ldd "$binary" 2>&1 | grep -q "statically linked"; then
  fail "$binary still needs shared libraries:"$'\n'"$(ldd "$binary")"
fi
"$binary" version >/dev/null || fail "$binary does not run"
echo "✔ $binary: $description"

ca_bundle=
for candidate in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [[ -s $candidate ]]; then ca_bundle=$candidate; break; fi
done
[[ -n $ca_bundle ]] || fail "no CA bundle found: install ca-certificates"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
strip -o "$context/ferroflux" "$binary" 2>/dev/null || cp "$binary" "$context/ferroflux"
cp "$ca_bundle" "$context/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$context/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$context/group"
printf 'hosts: files dns\n' >"$context/nsswitch.conf"
cp Dockerfile .dockerignore "$context/"

echo "► docker build -t $tag"
docker build -t "$tag" "$context"
echo "✔ built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
