#!/usr/bin/env bash
# Times the source library against the git CLI on loopback Git servers (hack/git-servers.sh):
# a no-change poll (ls_remote vs `git ls-remote`) and fetch + pack of a 5,000-file,
# 1,000-commit repository (vs `git clone --depth 1` + `tar czf`), printing ratios.
#
# Needs the bench target in Cargo.toml:
#   [[bench]]
#   name = "source"
#   harness = false
# FERROFLUX_CRATE_DIR overrides the crate to build (default: this repository).
set -euo pipefail
crate_dir=${FERROFLUX_CRATE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$crate_dir"
exec cargo bench --bench source
