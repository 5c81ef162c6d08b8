#!/usr/bin/env bash
# The real-world kustomize sweep: builds every kustomization directory of the given Git
# repositories with `kubectl kustomize` (the reference, kustomize v5.5.0) and with
# `ferroflux build`, compares the parsed objects in order and reports each build as identical,
# SILENT (both built, different objects), we-error, kubectl-error or both-error, with totals.
#
#   hack/sweep.sh [--only TEXT] GIT_DIR|OWNER/NAME=GIT_DIR ...
#
# Each GIT_DIR is a local (bare or not) Git directory; its HEAD is exported from the object store
# (read-only; blobs a partial snapshot lacks are skipped) into a scratch folder outside this
# repository (SWEEP_WORK, default: a folder under $TMPDIR), so nothing fetched can be committed. A repository is named
# OWNER/NAME from an `OWNER+NAME` parent folder of its Git directory, or as given before `=`.
#
# FERROFLUX: the binary (default: built here with `cargo build --bin ferroflux`; where
# CARGO_TARGET_DIR is shared with other work trees, their builds replace target/debug/ferroflux
# at any time: build it yourself and set FERROFLUX to a copy).
# JOBS: builds at once (default 2); TIMEOUT: seconds per build (default 120).
# Results: one JSON line per build in $SWEEP_WORK/results.jsonl. kubectl's results are cached in
# $SWEEP_WORK/kubectl-cache (per commit and directory). Exits 1 when a build is SILENT.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${SWEEP_WORK:-${TMPDIR:-/tmp}/ferroflux-sweep}
only=()
if [ "${1:-}" = "--only" ]; then only=(--only "$2"); shift 2; fi
[ $# -gt 0 ] || { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 2; }
python3 -c 'import yaml' 2>/dev/null || { echo "python3 with PyYAML needed" >&2; exit 2; }
case "$(cd "$(dirname "$work")" && pwd)/$(basename "$work")/" in
  "$repo"/*) echo "SWEEP_WORK must be outside the repository" >&2; exit 2 ;;
esac

if [ -z "${FERROFLUX:-}" ]; then
  (cd "$repo" && nice -n 19 cargo build --quiet --bin ferroflux)
  # A copy: a target folder shared with other work trees may get another build of it meanwhile.
  mkdir -p "$work"
  cp "${CARGO_TARGET_DIR:-$repo/target}/debug/ferroflux" "$work/ferroflux"
  FERROFLUX=$work/ferroflux
fi

mkdir -p "$work/trees"
trees=()
for arg in "$@"; do
  if [[ "$arg" == *=* ]]; then name=${arg%%=*}; gitdir=${arg#*=}; else name=""; gitdir=$arg; fi
  gitdir=$(cd "$gitdir" && pwd)
  if [ -z "$name" ]; then
    # OWNER+NAME/repo or OWNER+NAME(.git): the folder naming the repository.
    for part in "$(basename "$(dirname "$gitdir")")" "$(basename "$gitdir" .git)"; do
      if [[ "$part" == *+* ]]; then name=${part/+//}; break; fi
    done
    [ -n "$name" ] || name=$(basename "$gitdir" .git)
  fi
  commit=$(git --git-dir="$gitdir" rev-parse --verify 'HEAD^{commit}')
  tree="$work/trees/${name//\//+}-${commit:0:12}"
  if [ ! -e "$tree/.complete" ]; then
    rm -rf "$tree"; mkdir -p "$tree"
    python3 "$repo/hack/sweep.py" export "$gitdir" "$commit" "$tree"
    touch "$tree/.complete"
  fi
  trees+=("$name@$commit=$tree")
done

exec python3 "$repo/hack/sweep.py" --ferroflux "$FERROFLUX" --cache "$work/kubectl-cache" --jobs "${JOBS:-2}" \
  --timeout "${TIMEOUT:-120}" --results "$work/results.jsonl" "${only[@]}" "${trees[@]}"
