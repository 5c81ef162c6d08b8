#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 120), one
# after another, niced: the machine is usually shared.
#
#   hack/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`; installed when missing). The nightly features it
# uses are enabled on the stable toolchain with RUSTC_BOOTSTRAP=1. Crashes are written to
# fuzz/artifacts/<target>/; corpora grow in fuzz/corpus/<target>/ (both ignored by Git).
# A target that finds a crash stops the script with its exit code, after printing the input.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(yaml kustomize_build strategic_merge json_patch artifact_unpack git_url known_hosts)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# No AddressSanitizer by default: the code under test is safe Rust, and an ASan build of the
# whole dependency tree (kube, k8s-openapi, libgit2) costs far more than it finds here.
# FUZZ_SANITIZER=address (or leak, memory, thread) turns one on.
sanitizer=${FUZZ_SANITIZER:-none}
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s" >&2
  mkdir -p "fuzz/corpus/$target"
  # -timeout: one input taking longer than 10 s counts as a hang (a crash); -rss_limit_mb
  # catches memory blow-ups; -max_len keeps generated trees small enough to be fast.
  nice -n 10 cargo fuzz run --fuzz-dir fuzz --sanitizer "$sanitizer" "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1
done
echo "fuzz: all targets ran ${seconds}s without a crash" >&2
