#!/usr/bin/env bash
# Times `ferroflux build` against `kubectl kustomize` on the same trees in one run, checks that both
# print the same objects in the same order (parsed with PyYAML, so formatting does not matter) and
# prints the speed ratios.
#
#   hack/bench-kustomize.sh [N ...]      (default: 1000; each N is a generated overlay of ~N objects)
#
# FERROFLUX: the binary to time, called as `$FERROFLUX build DIR` (default: target/release/ferroflux).
# RUNS: timed runs per tool and tree, the median is printed (default: 3).
# Needs kubectl (with its built-in kustomize) and python3 with PyYAML. Exits non-zero when an
# output differs.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ferroflux=${FERROFLUX:-$repo/target/release/ferroflux}
runs=${RUNS:-3}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000)
[ -x "$ferroflux" ] || { echo "$ferroflux not found: build it first (cargo build --release) or set FERROFLUX" >&2; exit 2; }
command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

trees=("small overlay (nested-overlays)=$repo/tests/kustomize/nested-overlays/top"
       "small overlay (generators)=$repo/tests/kustomize/generators-overlay-merge/overlay")
for n in "${sizes[@]}"; do
  overlay=$(python3 "$repo/hack/gen-kustomize-bench.py" "$work/gen-$n" "$n")
  trees+=("generated overlay ~$n=$overlay")
done

python3 - "$ferroflux" "$runs" "${trees[@]}" <<'PY'
import statistics, subprocess, sys, time
import yaml

ferroflux, runs, trees = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def timed(cmd):
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return elapsed, done.stdout

ok = True
for tree in trees:
    name, directory = tree.split("=", 1)
    ours, theirs = [], []
    for _ in range(runs):
        t, ours_out = timed([ferroflux, "build", directory])
        ours.append(t)
        t, theirs_out = timed(["kubectl", "kustomize", directory])
        theirs.append(t)
    ours_docs = [d for d in yaml.safe_load_all(ours_out) if d is not None]
    theirs_docs = [d for d in yaml.safe_load_all(theirs_out) if d is not None]
    same = ours_docs == theirs_docs
    ok &= same
    o, k = statistics.median(ours), statistics.median(theirs)
    print(f"{name:34} objects={len(theirs_docs):6}  ferroflux={o:8.3f}s  kubectl kustomize={k:8.3f}s  "
          f"ratio={k / o:7.1f}x  identical={'yes' if same else 'NO'}")
sys.exit(0 if ok else 1)
PY
