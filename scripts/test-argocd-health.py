#!/usr/bin/env python3
"""Runs deploy/argocd/secretref-health.lua (the Argo CD health check for SecretRef) in Lua 5.1, the
dialect of Argo CD's gopher-lua, against sample objects; checks that the install guide (docs/install.md)
carries the same script. Exits 1 on any failure."""

import os
import sys

from lupa import lua51

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCRIPT = os.path.join(ROOT, "deploy", "argocd", "secretref-health.lua")
# The page that shows the script to users, inside an argocd-cm snippet.
DOC = os.path.join("docs", "install.md")


def to_lua(lua, v):
    if isinstance(v, dict):
        return lua.table_from({k: to_lua(lua, x) for k, x in v.items()})
    if isinstance(v, list):
        return lua.table_from([to_lua(lua, x) for x in v])
    return v


def sref(status=None, generation=1):
    o = {"apiVersion": "secretsync.io/v1alpha1", "kind": "SecretRef",
         "metadata": {"name": "db", "namespace": "payments", "generation": generation}, "spec": {}}
    if status is not None:
        o["status"] = status
    return o


def ready(status, reason, message="m", observed=1):
    return {"observedGeneration": observed,
            "conditions": [{"type": "Drifted", "status": "False", "reason": "NoDrift"},
                           {"type": "Ready", "status": status, "reason": reason, "message": message}]}


CASES = [
    ("no status", sref(), "Progressing"),
    ("empty status", sref({}), "Progressing"),
    ("no Ready condition", sref({"conditions": [{"type": "Drifted", "status": "False"}]}), "Progressing"),
    ("synced", sref(ready("True", "Synced")), "Healthy"),
    ("unknown", sref(ready("Unknown", "Reconciling")), "Progressing"),
    ("paused", sref(ready("False", "Paused")), "Suspended"),
    ("stale status", sref(ready("True", "Synced", observed=1), generation=2), "Progressing"),
    ("no observedGeneration", sref({"conditions": [{"type": "Ready", "status": "True", "reason": "Synced"}]}), "Healthy"),
]
CASES += [(r, sref(ready("False", r)), "Progressing")
          for r in ("ProviderThrottled", "ProviderUnavailable", "StoreUnavailable", "KubernetesError")]
CASES += [(r, sref(ready("False", r)), "Degraded")
          for r in ("AccessDenied", "RemoteKeyNotFound", "TargetConflict", "InvalidSpec", "EmptyValue",
                    "StoreNotFound", "NamespaceNotAllowed", "InlineSecretsDisabled", "ProviderUnsupported")]


def main():
    with open(SCRIPT) as f:
        script = f.read()
    failures = 0
    doc_ok = True
    for name, obj, want in CASES:
        lua = lua51.LuaRuntime(unpack_returned_tuples=True)
        lua.globals().obj = to_lua(lua, obj)
        hs = lua.execute(script)
        got = hs["status"]
        if got != want or not isinstance(hs["message"], str):
            print(f"FAIL {name}: got {got!r} ({hs['message']!r}), want {want!r}")
            failures += 1
    # The install guide shows the script inside an argocd-cm snippet (indented by four spaces).
    with open(os.path.join(ROOT, DOC)) as f:
        doc = f.read()
    block = "".join(("    " + line if line.strip() else line) for line in script.splitlines(True))
    if block not in doc:
        print(f"FAIL {DOC} does not carry deploy/argocd/secretref-health.lua (indented by 4 spaces)")
        doc_ok = False
    print(f"argocd health check: {len(CASES) - failures} of {len(CASES)} cases as expected;"
          f" {DOC} {'in sync' if doc_ok else 'out of sync'}")
    return 1 if failures or not doc_ok else 0


if __name__ == "__main__":
    sys.exit(main())
