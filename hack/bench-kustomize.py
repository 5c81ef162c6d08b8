#!/usr/bin/env python3
"""Times `ferroflux build` against `kubectl kustomize` side by side on the same trees, checks that
both print the same objects in the same order, and prints the ratios.

  hack/bench-kustomize.py [--ferroflux PATH] [--objects N ...] [--runs R]

Trees: a small real-world overlay (tests/kustomize/overlay-base/prod) and generated overlays of
about N objects each (Deployments, Services, ConfigMaps) with namePrefix, namespace, labels with
selectors, annotations, images, replicas, one strategic-merge patch targeting every Deployment and
dozens of JSON 6902 patches.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(base_dir, objects):
    apps = max(1, objects // 3)
    base = os.path.join(base_dir, "base")
    overlay = os.path.join(base_dir, "overlay")
    os.makedirs(base)
    os.makedirs(overlay)
    docs = []
    for i in range(apps):
        name = f"app-{i:04d}"
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                              "template": {"metadata": {"labels": {"app": name}},
                                           "spec": {"containers": [{"name": "main", "image": f"registry.example.com/{name}:1.0",
                                                                    "envFrom": [{"configMapRef": {"name": name}}],
                                                                    "ports": [{"containerPort": 8080}]},
                                                                   {"name": "proxy", "image": "envoy:1.29"}]}}}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                     "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"LEVEL": "info", "INDEX": str(i)}})
    with open(os.path.join(base, "resources.yaml"), "w") as f:
        yaml.safe_dump_all(docs, f)
    with open(os.path.join(base, "kustomization.yaml"), "w") as f:
        yaml.safe_dump({"resources": ["resources.yaml"]}, f)
    json_patches = [{"target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": f"app-{i:04d}"},
                     "patch": yaml.safe_dump([{"op": "replace", "path": "/spec/replicas", "value": 3},
                                              {"op": "add", "path": "/metadata/annotations/patched", "value": "json6902"}])}
                    for i in range(0, apps, max(1, apps // 40))]
    kustomization = {
        "resources": ["../base"],
        "namePrefix": "prod-",
        "namespace": "production",
        "commonLabels": {"env": "prod", "team": "platform"},
        "commonAnnotations": {"owner": "sre@example.com"},
        "images": [{"name": "envoy", "newTag": "1.30"}, {"name": f"registry.example.com/app-0000", "newTag": "2.0"}],
        "replicas": [{"name": "app-0001", "count": 5}],
        "patches": [{"target": {"kind": "Deployment"},
                     "patch": yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "any"},
                                              "spec": {"template": {"spec": {"containers": [
                                                  {"name": "main", "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}]}}}})}]
                   + json_patches,
    }
    with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
        yaml.safe_dump(kustomization, f)
    return overlay


def run(cmd):
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{cmd} failed:\n{done.stderr}")
    out = done.stdout
    return time.perf_counter() - start, out


def bench(name, directory, ferroflux, runs):
    ours_times, theirs_times = [], []
    ours_out = theirs_out = ""
    for _ in range(runs):
        t, ours_out = run([ferroflux, "build", directory])
        ours_times.append(t)
        t, theirs_out = run(["kubectl", "kustomize", directory])
        theirs_times.append(t)
    ours_docs = list(yaml.safe_load_all(ours_out))
    theirs_docs = list(yaml.safe_load_all(theirs_out))
    identical = ours_docs == theirs_docs
    ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
    print(f"{name:28} objects={len(theirs_docs):5}  ferroflux={ours:7.3f}s  kubectl kustomize={theirs:7.3f}s  "
          f"speedup={theirs / ours:6.1f}x  identical={'yes' if identical else 'NO'}")
    return identical


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ferroflux", default=os.path.join(ROOT, "target/release/ferroflux"))
    parser.add_argument("--objects", type=int, nargs="*", default=[300, 1000, 3000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists(args.ferroflux):
        sys.exit(f"{args.ferroflux} not found: cargo build --release first")
    ok = bench("small real-world overlay", os.path.join(ROOT, "tests/kustomize/overlay-base/prod"), args.ferroflux, args.runs)
    for n in args.objects:
        work = tempfile.mkdtemp(prefix="ferroflux-bench-")
        try:
            ok &= bench(f"generated overlay ~{n}", generate(work, n), args.ferroflux, args.runs)
        finally:
            shutil.rmtree(work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
