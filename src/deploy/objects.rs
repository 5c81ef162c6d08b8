//! The install's objects, one function each, as plain JSON: what `kubectl get -o yaml` would
//! show, so they read like the YAML in `deploy/`.

use serde_json::{Value, json};

use super::InstallOptions;

/// The name of the ServiceAccount, Deployment and Service.
pub const APP_NAME: &str = "ferroflux";
/// The controller's container in the Deployment.
pub const CONTAINER_NAME: &str = "manager";

/// Ports, named as Flux names them.
const ARTIFACT_PORT: u16 = 9090;
const METRICS_PORT: u16 = 8080;
const HEALTH_PORT: u16 = 9440;
/// The webhook Receiver's port (Flux's notification-controller listens there too).
const WEBHOOK_PORT: u16 = 9292;

/// The labels every object carries (Flux's `app.kubernetes.io/*` set).
fn labels(options: &InstallOptions) -> Value {
    json!({
        "app.kubernetes.io/instance": options.namespace,
        "app.kubernetes.io/part-of": APP_NAME,
        "app.kubernetes.io/version": env!("CARGO_PKG_VERSION"),
    })
}

/// The labels that select the controller's Pods; they never change, since a Deployment's selector
/// is immutable (so no version in it).
fn selector() -> Value {
    json!({"app.kubernetes.io/name": APP_NAME})
}

fn with_selector(options: &InstallOptions) -> Value {
    let mut all = labels(options);
    if let (Some(all), Value::Object(selector)) = (all.as_object_mut(), selector()) {
        all.extend(selector);
    }
    all
}

pub fn namespace(options: &InstallOptions) -> Value {
    let mut labels = labels(options);
    if let Some(labels) = labels.as_object_mut() {
        // Clusters with Pod Security admission (1.23+) warn about Pods that are not
        // `restricted`; ours are, and Flux labels its namespace the same way.
        labels.insert("pod-security.kubernetes.io/warn".into(), "restricted".into());
        labels.insert("pod-security.kubernetes.io/warn-version".into(), "latest".into());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.namespace, "labels": labels},
    })
}

/// Cluster-scoped names carry the namespace, so installs in two namespaces do not collide
/// (Flux names them `crd-controller-flux-system` and so on).
fn cluster_name(options: &InstallOptions, base: &str) -> String {
    format!("{base}-{}", options.namespace)
}

/// The binding to `cluster-admin` of the default mode; restricted mode deletes it if an earlier
/// install left it.
pub fn cluster_admin_binding_name(options: &InstallOptions) -> String {
    cluster_name(options, "ferroflux-cluster-reconciler")
}

/// The ServiceAccount, the ClusterRole the controller needs for itself and its binding, and — not
/// in restricted mode — a binding to `cluster-admin` for applying arbitrary objects.
pub fn rbac(options: &InstallOptions) -> Vec<Value> {
    let labels = labels(options);
    let subject = json!([{"kind": "ServiceAccount", "name": APP_NAME, "namespace": options.namespace}]);
    let all_verbs = json!(["get", "list", "watch", "create", "update", "patch", "delete"]);
    let role_name = cluster_name(options, APP_NAME);
    let mut objects = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": APP_NAME, "namespace": options.namespace, "labels": labels},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role_name, "labels": labels},
            "rules": [
                {
                    "apiGroups": ["source.toolkit.fluxcd.io"],
                    "resources": ["gitrepositories", "gitrepositories/status", "gitrepositories/finalizers"],
                    "verbs": all_verbs,
                },
                {
                    "apiGroups": ["kustomize.toolkit.fluxcd.io"],
                    "resources": ["kustomizations", "kustomizations/status", "kustomizations/finalizers"],
                    "verbs": all_verbs,
                },
                {
                    "apiGroups": ["notification.toolkit.fluxcd.io"],
                    "resources": ["receivers", "receivers/status", "receivers/finalizers"],
                    "verbs": all_verbs,
                },
                // Sources' credentials (secretRef) and postBuild inputs: read only.
                {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
                // Leader election.
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": all_verbs},
                // A Kustomization with spec.serviceAccountName (or, in restricted mode, every
                // Kustomization) applies its objects as that ServiceAccount.
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
                // Deleting such a Kustomization first checks that its ServiceAccount still
                // exists (as Flux does): when it is gone, pruning is skipped, not retried forever.
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role_name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": subject,
        }),
    ];
    if !options.restricted() {
        // Like Flux's `cluster-reconciler`: applying whatever Git holds needs every right.
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_admin_binding_name(options), "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": subject,
        }));
    }
    objects
}

fn controller_args(options: &InstallOptions) -> Vec<String> {
    let mut args = vec![
        "controller".to_owned(),
        "--storage-path=/data".to_owned(),
        // The Service's DNS name: status.artifact.url points there, port 80.
        "--storage-adv-addr=ferroflux.$(RUNTIME_NAMESPACE).svc.cluster.local.".to_owned(),
        "--log-encoding=json".to_owned(),
        "--enable-leader-election".to_owned(),
    ];
    if let Some(account) = &options.default_service_account {
        // Flux's multi-tenancy lockdown sets all three: without the other two a tenant could
        // still use another namespace's source or pull in a base from any URL.
        args.push(format!("--default-service-account={account}"));
        args.push("--no-cross-namespace-refs".to_owned());
        args.push("--no-remote-bases".to_owned());
    }
    args
}

fn port(name: &str, number: u16) -> Value {
    // `protocol` is the default, but Kubernetes 1.20's server-side apply needs it spelled out.
    json!({"name": name, "containerPort": number, "protocol": "TCP"})
}

fn from_pod_field(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}

pub fn deployment(options: &InstallOptions) -> Value {
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "healthz"}, "initialDelaySeconds": 5, "periodSeconds": 10});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP_NAME, "namespace": options.namespace, "labels": with_selector(options)},
        "spec": {
            "replicas": 1,
            // Artifacts live in an emptyDir and one leader reconciles: a new Pod replaces the old
            // one rather than running beside it.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector()},
            "template": {
                "metadata": {
                    "labels": with_selector(options),
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": METRICS_PORT.to_string()},
                },
                "spec": {
                    "serviceAccountName": APP_NAME,
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": {"fsGroup": 65534},
                    "containers": [{
                        "name": CONTAINER_NAME,
                        "image": options.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": controller_args(options),
                        // MALLOC_ARENA_MAX: glibc's malloc keeps an arena per thread up to 8 per
                        // core, each holding freed memory; two arenas keep about a tenth less
                        // resident at a thousand Kustomizations (benches/mttp.rs), at no measured
                        // cost in time. mimalloc and jemalloc were measured too and kept as much
                        // or more (BENCHMARKS.md).
                        "env": [
                            from_pod_field("RUNTIME_NAMESPACE", "metadata.namespace"),
                            from_pod_field("POD_NAME", "metadata.name"),
                            {"name": "MALLOC_ARENA_MAX", "value": "2"},
                        ],
                        "ports": [port("http", ARTIFACT_PORT), port("http-prom", METRICS_PORT), port("healthz", HEALTH_PORT), port("http-webhook", WEBHOOK_PORT)],
                        "livenessProbe": probe("/healthz"),
                        "readinessProbe": probe("/readyz"),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "64Mi"},
                            "limits": {"memory": "1Gi"},
                        },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    })
}

/// The artifact server, at `http://ferroflux.<namespace>.svc.cluster.local./`.
pub fn service(options: &InstallOptions) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": APP_NAME, "namespace": options.namespace, "labels": with_selector(options)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(),
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
        },
    })
}

/// The webhook Receiver, under Flux's name: point GitHub/GitLab (through your Ingress or load
/// balancer) at `http://webhook-receiver.<namespace>/<status.webhookPath>`.
pub fn receiver_service(options: &InstallOptions) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "webhook-receiver", "namespace": options.namespace, "labels": with_selector(options)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(),
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http-webhook"}],
        },
    })
}

/// Flux's three NetworkPolicies (`manifests/policies` of flux2), for the whole namespace: Pods
/// there take traffic only from each other, except metrics (from any namespace) and the webhook
/// Receiver (from anywhere); egress is open (Git servers and the API server are anywhere).
pub fn network_policies(options: &InstallOptions) -> Vec<Value> {
    let policy = |name: &str, spec: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": options.namespace, "labels": labels(options)},
            "spec": spec,
        })
    };
    let from_any_namespace_on = |port: u16| json!([{"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": port}]}]);
    vec![
        policy(
            "allow-egress",
            json!({
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{}],
            }),
        ),
        policy("allow-scraping", json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": from_any_namespace_on(METRICS_PORT)})),
        policy(
            "allow-webhooks",
            json!({"podSelector": {"matchLabels": selector()}, "policyTypes": ["Ingress"], "ingress": from_any_namespace_on(WEBHOOK_PORT)}),
        ),
    ]
}
