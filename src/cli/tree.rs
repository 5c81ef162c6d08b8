//! `ferroflux tree ks NAME`: the objects in a Kustomization's `status.inventory` as a tree, going
//! into the Kustomizations it applied, as `flux tree kustomization` prints it.

use std::collections::BTreeSet;

use clap::Subcommand;
use kube::Client;
use serde_json::Value;

use super::status::FluxKind;
use super::{CliError, ClusterArgs};
use crate::api::kustomize::GROUP as KUSTOMIZE_GROUP;
use crate::apply::ObjectId;

#[derive(Subcommand, Debug)]
pub enum TreeTarget {
    /// A Kustomization.
    #[command(alias = "ks", alias = "kustomizations")]
    Kustomization { name: String },
}

/// One object and what it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: ObjectId,
    pub children: Vec<Node>,
}

impl Node {
    fn leaf(id: ObjectId) -> Node {
        Node { id, children: Vec::new() }
    }
}

pub async fn run(cluster: &ClusterArgs, target: TreeTarget) -> Result<(), CliError> {
    let TreeTarget::Kustomization { name } = target;
    let client = super::client(cluster).await?;
    let ks = super::get_object(&client, FluxKind::Kustomization, &cluster.namespace, &name).await?;
    let id = kustomization_id(&cluster.namespace, &name);
    let mut visited = BTreeSet::from([id.clone()]);
    let children = children(&client, &ks, &mut visited).await?;
    print!("{}", render(&Node { id, children }));
    Ok(())
}

fn kustomization_id(namespace: &str, name: &str) -> ObjectId {
    ObjectId { namespace: namespace.to_owned(), name: name.to_owned(), group: KUSTOMIZE_GROUP.to_owned(), kind: "Kustomization".to_owned() }
}

/// The inventory of a Kustomization (as JSON), in the inventory's order.
pub fn inventory_ids(ks: &Value) -> Vec<ObjectId> {
    ks.pointer("/status/inventory/entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("id").and_then(Value::as_str))
        .filter_map(|id| ObjectId::from_inventory_id(id).ok())
        .collect()
}

/// The nodes of `ks`'s inventory, Kustomizations with their own inventories. A Kustomization
/// already on the way (itself, or a cycle) is listed but not entered again.
fn children<'a>(client: &'a Client, ks: &'a Value, visited: &'a mut BTreeSet<ObjectId>) -> futures::future::BoxFuture<'a, Result<Vec<Node>, CliError>> {
    Box::pin(async move {
        let mut nodes = Vec::new();
        for id in inventory_ids(ks) {
            let is_kustomization = id.group == KUSTOMIZE_GROUP && id.kind == "Kustomization";
            if is_kustomization && visited.contains(&id) {
                // Flux leaves the Kustomization itself out of its own tree.
                if id != kustomization_id(super::status::namespace_of(ks), super::status::name_of(ks)) {
                    nodes.push(Node::leaf(id));
                }
                continue;
            }
            if !is_kustomization {
                nodes.push(Node::leaf(id));
                continue;
            }
            visited.insert(id.clone());
            let grandchildren = match super::get_object(client, FluxKind::Kustomization, &id.namespace, &id.name).await {
                Ok(child) => children(client, &child, visited).await?,
                // Applied but gone, or not reconciled yet: nothing below it.
                Err(CliError::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(e),
            };
            nodes.push(Node { id, children: grandchildren });
        }
        Ok(nodes)
    })
}

/// The tree as text, with Flux's `├── `, `│   `, `└── ` guides.
pub fn render(root: &Node) -> String {
    fn items(nodes: &[Node], prefix: &str, out: &mut String) {
        for (i, node) in nodes.iter().enumerate() {
            let last = i + 1 == nodes.len();
            out.push_str(prefix);
            out.push_str(if last { "└── " } else { "├── " });
            out.push_str(&node.id.to_string());
            out.push('\n');
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            items(&node.children, &deeper, out);
        }
    }
    let mut out = format!("{}\n", root.id);
    items(&root.children, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(kind: &str, namespace: &str, name: &str) -> ObjectId {
        let group = if kind == "Kustomization" {
            KUSTOMIZE_GROUP
        } else if kind == "Deployment" {
            "apps"
        } else {
            ""
        };
        ObjectId { namespace: namespace.into(), name: name.into(), group: group.into(), kind: kind.into() }
    }

    #[test]
    fn renders_like_flux_tree() {
        let tree = Node {
            id: id("Kustomization", "flux-system", "apps"),
            children: vec![
                Node::leaf(id("Namespace", "", "apps")),
                Node {
                    id: id("Kustomization", "flux-system", "infra"),
                    children: vec![Node::leaf(id("ConfigMap", "infra", "a")), Node::leaf(id("ConfigMap", "infra", "b"))],
                },
                Node { id: id("Kustomization", "flux-system", "last"), children: vec![Node::leaf(id("Deployment", "apps", "hello"))] },
            ],
        };
        assert_eq!(
            render(&tree),
            "Kustomization/flux-system/apps\n\
             ├── Namespace/apps\n\
             ├── Kustomization/flux-system/infra\n\
             │   ├── ConfigMap/infra/a\n\
             │   └── ConfigMap/infra/b\n\
             └── Kustomization/flux-system/last\n    \
             └── Deployment/apps/hello\n"
        );
        assert_eq!(render(&Node::leaf(id("Kustomization", "ns", "empty"))), "Kustomization/ns/empty\n");
    }

    #[test]
    fn inventory_ids_are_read_in_order_and_bad_ones_skipped() {
        let ks = json!({"status": {"inventory": {"entries": [
            {"id": "_apps__Namespace", "v": "v1"},
            {"id": "apps_hello_apps_Deployment", "v": "v1"},
            {"id": "broken", "v": "v1"}
        ]}}});
        assert_eq!(inventory_ids(&ks), [id("Namespace", "", "apps"), id("Deployment", "apps", "hello")]);
        assert!(inventory_ids(&json!({})).is_empty());
    }
}
