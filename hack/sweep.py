#!/usr/bin/env python3
"""The real-world kustomize sweep's engine (hack/sweep.sh checks the trees out and calls this).

Every directory of each checked-out tree that holds a kustomization file is built with
`kubectl kustomize` (the reference) and with `ferroflux build`; the parsed objects are compared
in order. Each build lands in one class:

  identical      both built, same objects in the same order
  SILENT         both built, different objects: the failure a GitOps controller must never have
  we-error       kubectl built it, ferroflux failed
  kubectl-error  ferroflux built it, kubectl failed
  both-error     both failed

kubectl's results are cached per repository commit and directory (they never change), so a
second run after an engine fix costs only our builds.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CLASSES = ("identical", "SILENT", "we-error", "kubectl-error", "both-error")


def export(gitdir, commit, dest):
    """Writes the tree of commit into dest, from the object store alone (read-only: no index, no
    worktree metadata in gitdir). Blobs the snapshot lacks (large files) are skipped: neither
    tool can read them, so both see the same tree."""
    listing = subprocess.run(["git", "--git-dir", gitdir, "ls-tree", "-r", "-z", "--full-tree", commit], capture_output=True, check=True).stdout
    entries = []
    for line in listing.split(b"\0"):
        if not line:
            continue
        meta, path = line.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob":
            entries.append((mode, sha, os.fsdecode(path)))
    cat = subprocess.Popen(["git", "--git-dir", gitdir, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    skipped = 0
    for mode, sha, path in entries:
        cat.stdin.write(sha + b"\n")
        cat.stdin.flush()
        header = cat.stdout.readline().split()
        if len(header) < 3 or header[1] == b"missing":
            skipped += 1
            continue
        body = cat.stdout.read(int(header[2]))
        cat.stdout.read(1)
        target = os.path.join(dest, path)
        if os.path.relpath(target, dest).startswith(".."):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if mode == b"120000":
            os.symlink(os.fsdecode(body), target)
        else:
            with open(target, "wb") as f:
                f.write(body)
            if mode == b"100755":
                os.chmod(target, 0o755)
    cat.stdin.close()
    cat.wait()
    return skipped


def kustomization_dirs(tree):
    found = []
    for current, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        if any(f in files for f in KUSTOMIZATION_FILES):
            found.append(current)
    return sorted(found)


def run(cmd, timeout):
    try:
        done = subprocess.run(["nice", "-n", "19", *cmd], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout}s"
    if done.returncode == 0:
        return True, done.stdout
    return False, (done.stderr or done.stdout).strip()


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where the plain scalars `=` and `<<` are tags of their own (value,
    merge); in YAML 1.2, which kubectl (go-yaml v3) writes, they are strings, and kubectl leaves
    them unquoted. Read as strings (`<<` as a mapping key still merges, as in go-yaml)."""


for _tag in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:merge"):
    Yaml12Loader.add_constructor(_tag, yaml.SafeLoader.construct_yaml_str)


def documents(text):
    """The objects of a build's output, or an error text if it is not YAML."""
    try:
        return [d for d in yaml.load_all(text, Loader=Yaml12Loader) if d is not None], None
    except yaml.YAMLError as e:
        return None, f"unparsable output: {e}"


def object_id(doc):
    if not isinstance(doc, dict):
        return repr(doc)[:60]
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{doc.get('apiVersion')}/{doc.get('kind')} {ns + '/' if ns else ''}{name}"


def first_difference(a, b, path=""):
    """The path of the first place two parsed values differ, with both sides."""
    if type(a) is not type(b):
        return f"{path or '.'}: kubectl {json.dumps(a)[:120]} vs ours {json.dumps(b)[:120]}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in b:
                return f"{path}.{key}: only kubectl has it ({json.dumps(a[key])[:100]})"
            if key not in a:
                return f"{path}.{key}: only ours has it ({json.dumps(b[key])[:100]})"
            if a[key] != b[key]:
                return first_difference(a[key], b[key], f"{path}.{key}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: kubectl has {len(a)} items, ours {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path or '.'}: kubectl {json.dumps(a)[:120]} vs ours {json.dumps(b)[:120]}"


def describe_difference(theirs, ours):
    if len(theirs) != len(ours):
        t_ids, o_ids = [object_id(d) for d in theirs], [object_id(d) for d in ours]
        only_t = [i for i in t_ids if i not in o_ids][:3]
        only_o = [i for i in o_ids if i not in t_ids][:3]
        return f"kubectl {len(theirs)} objects, ours {len(ours)}; only kubectl: {only_t}; only ours: {only_o}"
    for i, (t, o) in enumerate(zip(theirs, ours)):
        if t != o:
            if object_id(t) != object_id(o):
                if sorted(map(object_id, theirs)) == sorted(map(object_id, ours)):
                    return f"same objects, other order: #{i} is {object_id(t)} in kubectl's, {object_id(o)} in ours"
                return f"#{i}: kubectl {object_id(t)} vs ours {object_id(o)}"
            return f"#{i} {object_id(t)}: {first_difference(t, o)}"
    return "equal"


def kubectl_build(directory, cache_dir, key, timeout):
    path = os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest() + ".json")
    try:
        with open(path) as f:
            cached = json.load(f)
        return cached["ok"], cached["out"]
    except (OSError, ValueError, KeyError):
        pass
    ok, out = run(["kubectl", "kustomize", directory], timeout)
    if "timed out" not in out or ok:
        os.makedirs(cache_dir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump({"ok": ok, "out": out}, f)
        os.replace(path + ".tmp", path)
    return ok, out


def sweep_one(job):
    repo, commit, tree, directory, args = job
    rel = os.path.relpath(directory, tree)
    k_ok, k_out = kubectl_build(directory, args.cache, f"{repo}@{commit}:{rel}", args.timeout)
    o_ok, o_out = run([args.ferroflux, "build", directory, "--root", tree], args.timeout)
    detail = ""
    if k_ok and o_ok:
        theirs, err = documents(k_out)
        ours, err2 = documents(o_out)
        if err or err2:
            cls, detail = "SILENT", err2 or err
        elif theirs == ours:
            cls = "identical"
        else:
            cls, detail = "SILENT", describe_difference(theirs, ours)
    elif k_ok:
        cls, detail = "we-error", o_out
    elif o_ok:
        cls, detail = "kubectl-error", k_out
    else:
        cls, detail = "both-error", f"kubectl: {k_out.splitlines()[-1] if k_out else ''} | ours: {o_out.splitlines()[-1] if o_out else ''}"
    return {"repo": repo, "commit": commit, "dir": rel, "class": cls, "detail": " ".join(detail.split())[:600]}


def main():
    if sys.argv[1:2] == ["export"]:
        gitdir, commit, dest = sys.argv[2:5]
        skipped = export(gitdir, commit, dest)
        if skipped:
            print(f"{dest}: {skipped} files absent from the snapshot, skipped", file=sys.stderr)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ferroflux", required=True, help="the ferroflux binary")
    p.add_argument("--cache", required=True, help="folder for kubectl's cached results")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--timeout", type=int, default=120)
    p.add_argument("--results", help="write one JSON line per build here")
    p.add_argument("--only", help="build only directories whose 'repo:dir' contains this text")
    p.add_argument("trees", nargs="+", help="REPO@COMMIT=DIR: a checked-out tree")
    args = p.parse_args()

    jobs, repos = [], []
    for spec in args.trees:
        name, tree = spec.split("=", 1)
        repo, commit = name.rsplit("@", 1)
        repos.append((repo, commit))
        for d in kustomization_dirs(tree):
            if args.only and args.only not in f"{repo}:{os.path.relpath(d, tree)}":
                continue
            jobs.append((repo, commit, tree, d, args))

    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(sweep_one, jobs):
            results.append(r)
            if r["class"] != "identical":
                print(f"{r['class']:13} {r['repo']}:{r['dir']}  {r['detail'][:300]}", flush=True)
    if args.results:
        with open(args.results, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")

    print()
    print(f"{'repository':45} {'commit':12} {'builds':>6} " + " ".join(f"{c:>13}" for c in CLASSES))
    for repo, commit in repos:
        mine = [r for r in results if r["repo"] == repo]
        print(f"{repo:45} {commit[:12]:12} {len(mine):6} " + " ".join(f"{sum(r['class'] == c for r in mine):13}" for c in CLASSES))
    total = len(results)
    counts = {c: sum(r["class"] == c for r in results) for c in CLASSES}
    print(f"{'TOTAL (' + str(len(repos)) + ' repositories)':45} {'':12} {total:6} " + " ".join(f"{counts[c]:13}" for c in CLASSES))
    both_ok = counts["identical"] + counts["SILENT"]
    if total:
        print(f"identical: {counts['identical']}/{total} = {100 * counts['identical'] / total:.1f}% of all builds; "
              f"{counts['identical']}/{both_ok + counts['we-error']} = "
              f"{100 * counts['identical'] / max(1, both_ok + counts['we-error']):.1f}% of the builds kubectl kustomize accepts")
    return 1 if counts["SILENT"] else 0


if __name__ == "__main__":
    sys.exit(main())
