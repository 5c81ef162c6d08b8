#!/usr/bin/env python3
"""Writes a kustomize tree for benchmarks: DIR/base (about N objects: Deployments, Services and
ConfigMaps, plus a generated ConfigMap) and DIR/overlay, which uses namePrefix, namespace, labels
with selectors, commonAnnotations, images, replicas, one strategic merge patch targeting every
Deployment, dozens of JSON 6902 patches and a configMapGenerator merged into the base's.

  hack/gen-kustomize-bench.py DIR [N]     (N defaults to 1000; prints DIR/overlay)
"""
import os
import sys

import yaml


def generate(directory, objects):
    apps = max(1, objects // 3)
    base = os.path.join(directory, "base")
    overlay = os.path.join(directory, "overlay")
    os.makedirs(base, exist_ok=True)
    os.makedirs(overlay, exist_ok=True)
    docs = []
    for i in range(apps):
        name = f"app-{i:04d}"
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "serviceAccountName": "runner",
                        "containers": [
                            {"name": "main", "image": f"registry.example.com/{name}:1.0",
                             "envFrom": [{"configMapRef": {"name": name}}, {"configMapRef": {"name": "shared"}}],
                             "env": [{"name": "INDEX", "value": str(i)}],
                             "ports": [{"containerPort": 8080, "name": "http"}]},
                            {"name": "proxy", "image": "envoy:1.29"},
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": name}}],
                    },
                },
            },
        })
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                     "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                     "data": {"LEVEL": "info", "INDEX": str(i)}})
    docs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner"}})
    with open(os.path.join(base, "resources.yaml"), "w") as f:
        yaml.safe_dump_all(docs, f)
    with open(os.path.join(base, "kustomization.yaml"), "w") as f:
        yaml.safe_dump({
            "resources": ["resources.yaml"],
            "configMapGenerator": [{"name": "shared", "literals": ["REGION=eu", "TIER=base"]}],
        }, f)
    step = max(1, apps // 40)
    json_patches = [{
        "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": f"app-{i:04d}"},
        "patch": yaml.safe_dump([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/annotations/patched", "value": "json6902"},
        ]),
    } for i in range(0, apps, step)]
    kustomization = {
        "resources": ["../base"],
        "namePrefix": "prod-",
        "namespace": "production",
        "labels": [{"pairs": {"env": "prod", "team": "platform"}, "includeSelectors": True}],
        "commonAnnotations": {"owner": "sre@example.com"},
        "images": [{"name": "envoy", "newTag": "1.30"}, {"name": "registry.example.com/app-0000", "newTag": "2.0"}],
        "replicas": [{"name": "app-0001", "count": 5}],
        "configMapGenerator": [{"name": "shared", "behavior": "merge", "literals": ["TIER=prod", "ZONE=a"]}],
        "patches": [{
            "target": {"kind": "Deployment"},
            "patch": yaml.safe_dump({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "any"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "main", "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}}}]}}},
            }),
        }] + json_patches,
    }
    with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
        yaml.safe_dump(kustomization, f)
    return overlay


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(generate(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
