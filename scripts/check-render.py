#!/usr/bin/env python3
"""Policy checks on rendered chart output (what schema validation cannot see).

Usage: check-render.py FILE...   (rendered multi-document YAML; exits 1 on any violation)

- Deployments: hardened security context (non-root, read-only root filesystem, no privilege escalation,
  all capabilities dropped, RuntimeDefault seccomp), /livez and /readyz probes, POD_NAME/POD_NAMESPACE
  from the downward API, resource requests and a memory limit.
- RBAC: no wildcards; Leases only in namespaced Roles; Secrets never get update/escalate-like verbs;
  the roles aggregated to users touch only secretsync.io objects.
"""

import sys

import yaml

errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def check_deployment(d):
    where = f"Deployment {d['metadata']['name']}"
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    for c in pod["containers"]:
        w = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}

        def eff(key):
            return sc.get(key, psc.get(key))

        if eff("runAsNonRoot") is not True:
            err(w, "runAsNonRoot must be true")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(w, "readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(w, "allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            err(w, "must not be privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            err(w, "capabilities.drop must contain ALL")
        if (sc.get("capabilities") or {}).get("add"):
            err(w, "must not add capabilities")
        if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
            err(w, "seccompProfile must be RuntimeDefault")
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            if ((c.get(probe) or {}).get("httpGet") or {}).get("path") != path:
                err(w, f"{probe} must GET {path}")
        env = {e["name"]: e for e in c.get("env") or []}
        for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            got = ((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
            if got != field:
                err(w, f"env {name} must come from the downward API ({field})")
        res = c.get("resources") or {}
        if not (res.get("requests") or {}).get("memory") or not (res.get("limits") or {}).get("memory"):
            err(w, "needs a memory request and a memory limit")
        mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
        if any("--audit-file" in a for a in c.get("args") or []) and "/var/log/secretsync" not in mounts:
            err(w, "--audit-file needs the writable /var/log/secretsync volume")


def check_role(d):
    kind, meta = d["kind"], d["metadata"]
    where = f"{kind} {meta['name']}"
    aggregated = any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in meta.get("labels") or {})
    for r in d.get("rules") or []:
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in (r.get(field) or []):
                err(where, f"wildcard in {field}")
        res = set(r.get("resources") or [])
        verbs = set(r.get("verbs") or [])
        if kind == "ClusterRole" and "leases" in res:
            err(where, "leases belong in a Role in the controller's namespace")
        if "secrets" in res and verbs & {"update", "escalate", "bind", "impersonate", "deletecollection"}:
            err(where, f"secrets with verbs {sorted(verbs)}")
        if aggregated and set(r.get("apiGroups") or []) != {"secretsync.io"}:
            err(where, "roles aggregated to users may only cover secretsync.io objects")


def main():
    n = 0
    for path in sys.argv[1:]:
        with open(path) as f:
            for d in yaml.safe_load_all(f):
                if not isinstance(d, dict):
                    continue
                n += 1
                if d.get("kind") == "Deployment":
                    check_deployment(d)
                elif d.get("kind") in ("Role", "ClusterRole"):
                    check_role(d)
    for e in errors:
        print(f"ERROR {e}")
    print(f"check-render: {n} object(s), {len(errors)} violation(s)")
    return 1 if errors or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
