//! CustomResourceDefinitions: turning a CRD object into a served resource type.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::{ResourceType, version_priority};

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(name: &str, field: &str, msg: &str) -> ApiError {
    ApiError::invalid(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        name,
        field,
        msg,
    )
}

/// Validate a CRD and derive the resource type it serves.
pub(crate) fn resource_type(crd: &Value) -> Result<ResourceType, ApiError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = s("/spec/group");
    let plural = s("/spec/names/plural");
    let kind = s("/spec/names/kind");
    if group.is_empty() {
        return Err(invalid(name, "spec.group", "Required value"));
    }
    if plural.is_empty() {
        return Err(invalid(name, "spec.names.plural", "Required value"));
    }
    if kind.is_empty() {
        return Err(invalid(name, "spec.names.kind", "Required value"));
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid(
            name,
            "metadata.name",
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let namespaced = match s("/spec/scope").as_str() {
        "Namespaced" => true,
        "Cluster" => false,
        _ => {
            return Err(invalid(
                name,
                "spec.scope",
                "Unsupported value: must be Namespaced or Cluster",
            ));
        }
    };
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut served: Vec<String> = Vec::new();
    let mut schemas = Vec::new();
    let mut has_status = false;
    let mut storage = 0;
    for v in &versions {
        let vn = v.get("name").and_then(Value::as_str).unwrap_or("");
        if vn.is_empty() {
            return Err(invalid(name, "spec.versions.name", "Required value"));
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        if v.get("served").and_then(Value::as_bool) == Some(true) {
            served.push(vn.to_string());
            if let Some(schema) = v
                .pointer("/schema/openAPIV3Schema")
                .filter(|s| s.is_object())
            {
                schemas.push((vn.to_string(), Arc::new(schema.clone())));
            }
            if v.pointer("/subresources/status").is_some() {
                has_status = true;
            }
        }
    }
    if storage != 1 {
        return Err(invalid(
            name,
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    served.sort_by(|a, b| version_priority(a, b));
    let singular = match s("/spec/names/singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let list_kind = match s("/spec/names/listKind") {
        x if x.is_empty() => format!("{kind}List"),
        x => x,
    };
    Ok(ResourceType {
        group,
        versions: served,
        plural,
        singular,
        kind,
        list_kind,
        namespaced,
        short_names: strs(crd.pointer("/spec/names/shortNames")),
        categories: strs(crd.pointer("/spec/names/categories")),
        has_status,
        has_generation: true,
        create_only: false,
        extra_subresources: vec![],
        custom: true,
        schemas,
    })
}

/// The status the apiextensions controllers would converge to.
pub(crate) fn status(crd: &Value, old: Option<&Value>) -> Value {
    let now = crate::fields::now();
    let ts = |t: &str| {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if names.get("singular").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        names["singular"] = json!(k.to_lowercase());
    }
    if names.get("listKind").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        names["listKind"] = json!(format!("{k}List"));
    }
    let mut stored: Vec<String> = strs(old.and_then(|o| o.pointer("/status/storedVersions")));
    if let Some(vs) = crd.pointer("/spec/versions").and_then(Value::as_array) {
        for v in vs {
            if v.get("storage").and_then(Value::as_bool) == Some(true)
                && let Some(n) = v.get("name").and_then(Value::as_str)
                && !stored.iter().any(|s| s == n)
            {
                stored.push(n.to_string());
            }
        }
    }
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": ts("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": ts("Established")},
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    })
}

/// Every CustomResourceDefinition document in `*.yaml`/`*.yml`/`*.json` files of `dir`.
pub(crate) fn read_dir(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = match serde::Deserialize::deserialize(doc) {
                Ok(v) => v,
                Err(e) => anyhow::bail!("{}: {e}", f.display()),
            };
            if v.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                out.push(v);
            }
        }
    }
    Ok(out)
}
