#!/usr/bin/env python3
"""Policy checks on rendered chart output (what schema validation cannot see).

Usage: check-render.py [--chart DIR] [--values FILE]... [--set KEY=VALUE]... [--api-versions GV/KIND]...
                       FILE...

FILE is rendered multi-document YAML (`helm template`, or deploy/install.yaml). The values it was rendered
with (the chart's values.yaml, then every --values file and --set in order, null removing a key, as Helm
does) say what the rendering must contain. Exits 1 on any violation.

Always:
- Deployments: hardened security context (non-root, read-only root filesystem, no privilege escalation,
  all capabilities dropped, RuntimeDefault seccomp), /livez and /readyz probes, POD_NAME/POD_NAMESPACE
  from the downward API, resource requests and a memory limit, every volume mount backed by a volume.
- RBAC: no wildcards; Leases only in namespaced Roles; Secrets never get update/escalate-like verbs;
  the roles aggregated to users touch only secretsync.io objects.
- Every object the chart renders carries the chart's labels; selectors (Deployment, Service,
  PodDisruptionBudget, NetworkPolicy, ServiceMonitor) match the pods.

From the values:
- the image is repository@digest when image.digest is set, else repository:tag (default: appVersion);
- the pod and container securityContext are exactly the values' (a key set to null, e.g. runAsUser on
  OpenShift, is absent from the whole pod spec);
- extraVolumes are in the pod and extraVolumeMounts in the controller container;
- topologySpreadConstraints are rendered, each with a labelSelector (defaulted to the release's pods);
- commonLabels are on every object the chart renders (and the pods), deploymentAnnotations on the
  Deployment, nameOverride in app.kubernetes.io/name;
- a PodDisruptionBudget exists iff podDisruptionBudget.enabled is true, or "auto" with replicaCount > 1;
- a NetworkPolicy exists iff networkPolicy.enabled; it allows DNS, and TCP 80 to 169.254.169.254/32
  and 169.254.170.23/32 (cloud identity endpoints) iff networkPolicy.cloudIdentityEndpoints;
- a ServiceMonitor / PrometheusRule exists iff enabled and (force, or the kind is among --api-versions).
"""

import argparse
import copy
import ipaddress
import os
import sys

import yaml

errors = []

CHART_OWN_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
)
IDENTITY_ENDPOINTS = ("169.254.169.254/32", "169.254.170.23/32")
NULLABLE_IDS = ("runAsUser", "runAsGroup", "fsGroup")


def err(where, msg):
    errors.append(f"{where}: {msg}")


# ---------------------------------------------------------------------------------------------- values


def coalesce(base, over):
    """Helm's merge of user values over defaults: maps merge, anything else replaces, null removes."""
    for k, v in (over or {}).items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            coalesce(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def nulled(over, path):
    """Whether the user values set `path` (a tuple of keys) to null explicitly."""
    node = over
    for p in path[:-1]:
        node = (node or {}).get(p)
        if not isinstance(node, dict):
            return False
    return path[-1] in node and node[path[-1]] is None


# ------------------------------------------------------------------------------------------ checks


def labels(o):
    return (o.get("metadata") or {}).get("labels") or {}


def matches(selector, lbls):
    return bool(selector) and all(lbls.get(k) == v for k, v in selector.items())


def check_hardening(d):
    where = f"Deployment {d['metadata']['name']}"
    pod = d["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    volumes = {v["name"] for v in pod.get("volumes") or []}
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
        for m in c.get("volumeMounts") or []:
            if m["name"] not in volumes:
                err(w, f"volumeMount {m['name']} has no volume in the pod")


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


def check_deployment_values(d, values, user, app_version):
    where = f"Deployment {d['metadata']['name']}"
    tmpl = d["spec"]["template"]
    pod = tmpl["spec"]
    ctr = next((c for c in pod["containers"] if c["name"] == "controller"), None)
    if ctr is None:
        err(where, "no container named controller")
        return
    image = values["image"]
    want = (
        f"{image['repository']}@{image['digest']}"
        if image.get("digest")
        else f"{image['repository']}:{image.get('tag') or app_version}"
    )
    if ctr.get("image") != want:
        err(where, f"image {ctr.get('image')!r}, want {want!r}")

    # Security contexts exactly as the values say; ids set to null are nowhere in the pod spec.
    if (pod.get("securityContext") or {}) != (values.get("podSecurityContext") or {}):
        err(where, f"pod securityContext {pod.get('securityContext')} differs from podSecurityContext")
    if (ctr.get("securityContext") or {}) != (values.get("securityContext") or {}):
        err(where, f"container securityContext {ctr.get('securityContext')} differs from securityContext")
    for section in ("podSecurityContext", "securityContext"):
        for key in NULLABLE_IDS:
            if nulled(user, (section, key)):
                contexts = [pod.get("securityContext") or {}] + [
                    c.get("securityContext") or {} for c in pod["containers"] + (pod.get("initContainers") or [])
                ]
                if any(key in sc for sc in contexts):
                    err(where, f"{section}.{key} is null in the values but {key} is rendered")

    # One shard: the selector is passed exactly as given, and only when given.
    sel = (values.get("controller") or {}).get("watchLabelSelector") or ""
    shard_args = [a for a in ctr.get("args") or [] if a.startswith("--watch-label-selector")]
    want_args = [f"--watch-label-selector={sel}"] if sel else []
    if shard_args != want_args:
        err(where, f"shard args {shard_args}, want {want_args} (controller.watchLabelSelector)")

    # Extra volumes and mounts.
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    for v in values.get("extraVolumes") or []:
        if vols.get(v["name"]) != v:
            err(where, f"extraVolumes entry {v['name']} is not in the pod's volumes as given")
    mounts = ctr.get("volumeMounts") or []
    for m in values.get("extraVolumeMounts") or []:
        if m not in mounts:
            err(where, f"extraVolumeMounts entry {m['name']} at {m['mountPath']} is not mounted in the controller")

    # Topology spread: one rendered constraint per value, each selecting the release's pods by default.
    tsc = pod.get("topologySpreadConstraints") or []
    given = values.get("topologySpreadConstraints") or []
    if len(tsc) != len(given):
        err(where, f"{len(tsc)} topologySpreadConstraints rendered, {len(given)} in the values")
    for g, r in zip(given, tsc):
        if "labelSelector" not in r:
            err(where, f"topologySpreadConstraint on {r.get('topologyKey')} has no labelSelector")
        elif "labelSelector" not in g and not matches(r["labelSelector"].get("matchLabels"), labels(tmpl)):
            err(where, "a defaulted topologySpreadConstraint labelSelector does not select the pods")

    # Labels and annotations.
    name = values.get("nameOverride") or "secretsync"
    for obj, what in ((d, "Deployment"), (tmpl, "pod template")):
        if labels(obj).get("app.kubernetes.io/name") != name:
            err(where, f"{what} app.kubernetes.io/name is {labels(obj).get('app.kubernetes.io/name')!r}, want {name!r}")
    want_pod = {k: v for k, v in (values.get("commonLabels") or {}).items() if k not in CHART_OWN_LABELS}
    want_pod.update({k: v for k, v in (values.get("podLabels") or {}).items() if k not in CHART_OWN_LABELS})
    for k, v in want_pod.items():
        if labels(tmpl).get(k) != v:
            err(where, f"pod label {k}={v!r} (commonLabels/podLabels) missing")
    annotations = d["metadata"].get("annotations") or {}
    for k, v in (values.get("deploymentAnnotations") or {}).items():
        if annotations.get(k) != v:
            err(where, f"deploymentAnnotations {k}={v!r} missing on the Deployment")
    for k in (tmpl.get("metadata") or {}).get("annotations") or {}:
        if k in (values.get("deploymentAnnotations") or {}) and k not in (values.get("podAnnotations") or {}):
            err(where, f"deploymentAnnotations {k} leaked onto the pods")
    if not matches(d["spec"]["selector"].get("matchLabels"), labels(tmpl)):
        err(where, "selector does not match the pod template's labels")


def check_network_policy(np, values, pod_labels):
    where = f"NetworkPolicy {np['metadata']['name']}"
    spec = np["spec"]
    if not matches((spec.get("podSelector") or {}).get("matchLabels"), pod_labels):
        err(where, "podSelector does not select the controller's pods")
    if set(spec.get("policyTypes") or []) != {"Ingress", "Egress"}:
        err(where, "policyTypes must be Ingress and Egress")
    egress = spec.get("egress") or []

    def covers(peer, cidr):
        block = peer.get("ipBlock")
        if not block:
            return False  # pod/namespace selectors never cover a link-local address
        net = ipaddress.ip_network(cidr)
        outer = ipaddress.ip_network(block["cidr"], strict=False)
        if net.version != outer.version or not net.subnet_of(outer):
            return False
        return not any(
            net.version == ipaddress.ip_network(x, strict=False).version
            and net.overlaps(ipaddress.ip_network(x, strict=False))
            for x in block.get("except") or []
        )

    def allows(cidr, port, protocol="TCP"):
        for rule in egress:
            peers = rule.get("to") or []
            ports = rule.get("ports") or []
            cidr_ok = not peers or any(covers(p, cidr) for p in peers)
            port_ok = not ports or any(
                p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
            )
            if cidr_ok and port_ok:
                return True
        return False

    if not allows("10.96.0.10/32", 53, "UDP"):
        err(where, "egress must allow DNS (UDP 53)")
    if not allows("203.0.113.7/32", 443):
        err(where, "egress must allow TCP 443 (API server, providers)")
    want = bool(values["networkPolicy"].get("cloudIdentityEndpoints"))
    for cidr in IDENTITY_ENDPOINTS:
        if allows(cidr, 80) != want:
            err(where, f"egress to {cidr} port 80 is {'missing' if want else 'allowed'} "
                       f"(networkPolicy.cloudIdentityEndpoints: {want})")


def pdb_expected(values):
    enabled = values["podDisruptionBudget"].get("enabled")
    if isinstance(enabled, bool):
        return enabled
    return enabled == "auto" and int(values.get("replicaCount", 1)) > 1


def monitoring_expected(section, kind, api_versions):
    return bool(section.get("enabled")) and (
        bool(section.get("force")) or f"monitoring.coreos.com/v1/{kind}" in api_versions
    )


def check_values(objs, values, user, app_version, api_versions):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    deployments = by_kind.get("Deployment") or []
    if len(deployments) != 1:
        err("rendering", f"{len(deployments)} Deployments, want 1")
        return
    d = deployments[0]
    pod_labels = labels(d["spec"]["template"])
    check_deployment_values(d, values, user, app_version)

    # Every object of the chart (not the CRDs, nor install.yaml's Namespace) has the chart's labels and
    # commonLabels.
    common = {k: v for k, v in (values.get("commonLabels") or {}).items() if k not in CHART_OWN_LABELS}
    for o in objs:
        if o.get("kind") in ("CustomResourceDefinition", "Namespace"):
            continue
        where = f"{o.get('kind')} {o['metadata'].get('name')}"
        lbls = labels(o)
        for k in CHART_OWN_LABELS:
            if k not in lbls:
                err(where, f"label {k} missing (use the secretsync.labels helper)")
        for k, v in common.items():
            if lbls.get(k) != v:
                err(where, f"commonLabels {k}={v!r} missing")

    pdbs = by_kind.get("PodDisruptionBudget") or []
    if pdb_expected(values) != bool(pdbs):
        err("PodDisruptionBudget",
            f"{'missing' if not pdbs else 'present'} with replicaCount {values.get('replicaCount')} and "
            f"podDisruptionBudget.enabled {values['podDisruptionBudget'].get('enabled')!r}")
    for p in pdbs:
        if not matches(p["spec"]["selector"].get("matchLabels"), pod_labels):
            err(f"PodDisruptionBudget {p['metadata']['name']}", "selector does not select the pods")
        if p["spec"].get("minAvailable") != values["podDisruptionBudget"].get("minAvailable"):
            err(f"PodDisruptionBudget {p['metadata']['name']}", "minAvailable differs from the values")

    nps = by_kind.get("NetworkPolicy") or []
    if bool(values["networkPolicy"].get("enabled")) != bool(nps):
        err("NetworkPolicy", f"{'missing' if not nps else 'present'} with networkPolicy.enabled "
                             f"{values['networkPolicy'].get('enabled')}")
    for np in nps:
        check_network_policy(np, values, pod_labels)

    for s in by_kind.get("Service") or []:
        if not matches(s["spec"].get("selector"), pod_labels):
            err(f"Service {s['metadata']['name']}", "selector does not select the pods")

    sm_values = dict(values["metrics"]["serviceMonitor"])
    sm_values["enabled"] = sm_values.get("enabled") and values["metrics"].get("enabled")
    for kind, section in (("ServiceMonitor", sm_values), ("PrometheusRule", values["prometheusRule"])):
        got = by_kind.get(kind) or []
        want = monitoring_expected(section, kind, api_versions)
        if want != bool(got):
            err(kind, f"{'missing' if want else 'rendered'}: enabled {section.get('enabled')}, force "
                      f"{section.get('force')}, API versions {sorted(api_versions) or 'none'}")
    services = by_kind.get("Service") or []
    for sm in by_kind.get("ServiceMonitor") or []:
        sel = (sm["spec"].get("selector") or {}).get("matchLabels")
        if not any(matches(sel, labels(s)) for s in services):
            err(f"ServiceMonitor {sm['metadata']['name']}", "selects no Service of the chart")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chart", default=os.path.join(os.path.dirname(__file__), "..", "charts", "secretsync"))
    ap.add_argument("--values", action="append", default=[], help="a values file the rendering used")
    ap.add_argument("--set", action="append", default=[], help="a --set the rendering used")
    ap.add_argument("--api-versions", action="append", default=[], help="an --api-versions the rendering used")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    with open(os.path.join(args.chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    with open(os.path.join(args.chart, "Chart.yaml")) as f:
        app_version = str(yaml.safe_load(f)["appVersion"])
    user = {}
    overrides = []
    for path in args.values:
        with open(path) as f:
            overrides.append(yaml.safe_load(f) or {})
    for assignment in args.set:
        key, _, raw = assignment.partition("=")
        overrides.append(_nested(key, yaml.safe_load(raw) if raw else ""))
    for over in overrides:
        coalesce(values, over)
        _record(user, over)

    objs = []
    for path in args.files:
        with open(path) as f:
            objs.extend(d for d in yaml.safe_load_all(f) if isinstance(d, dict))
    for d in objs:
        if d.get("kind") == "Deployment":
            check_hardening(d)
        elif d.get("kind") in ("Role", "ClusterRole"):
            check_role(d)
    if objs:
        check_values(objs, values, user, app_version, set(args.api_versions))
    for e in errors:
        print(f"ERROR {e}")
    print(f"check-render: {len(objs)} object(s), {len(errors)} violation(s)")
    return 1 if errors or not objs else 0


def _nested(key, value):
    parts = [p.replace("\0", ".") for p in key.replace("\\.", "\0").split(".")]
    out = value
    for p in reversed(parts):
        out = {p: out}
    return out


def _record(user, over):
    """Merges user values keeping explicit nulls (to know what the user removed)."""
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(user.get(k), dict):
            _record(user[k], v)
        else:
            user[k] = copy.deepcopy(v)


if __name__ == "__main__":
    sys.exit(main())
