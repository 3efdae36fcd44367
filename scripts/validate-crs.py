#!/usr/bin/env python3
"""Validates custom resources offline against the openAPIV3Schema of our CRDs.

Usage: validate-crs.py --crds DIR [--require] FILE|DIR|- ...

Every YAML document whose apiVersion is served by a CRD in DIR is checked against that version's
schema, the way the API server does with strict field validation (`kubectl apply --validate=strict`):
types, enums, patterns, required fields, min/max, and unknown fields (a property not in the schema is
an error unless the schema has x-kubernetes-preserve-unknown-fields or additionalProperties).
Also checked: metadata.name is set, and a namespace is given exactly for namespaced kinds when
--require-namespace is passed. CEL rules (x-kubernetes-validations) are not evaluated here; the Rust
test tests/crds.rs evaluates them.

Documents of other kinds are skipped (built-in kinds are kubernetes-validate's job); with --require
at least one custom resource must have been validated. Exits 1 on any error.
"""

import argparse
import copy
import os
import sys

import jsonschema
import yaml


def to_json_schema(node):
    """OpenAPI v3 (Kubernetes structural schema) -> JSON Schema draft 2020-12, strict on unknown fields."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("properties", "patternProperties"):
            out[k] = {name: to_json_schema(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = to_json_schema(v) if isinstance(v, dict) else v
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [to_json_schema(s) for s in v]
        elif k.startswith("x-kubernetes-") or k in ("nullable", "description", "example", "format"):
            continue
        else:
            out[k] = copy.deepcopy(v)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf", []) + [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
    if (
        out.get("type") == "object" or "properties" in out
    ) and "additionalProperties" not in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def load_crds(crd_dir):
    """{(apiVersion, kind): (validator, namespaced)} for every served version of every CRD in crd_dir."""
    index = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(crd_dir, name)) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    if not v.get("served", True):
                        continue
                    schema = to_json_schema(v["schema"]["openAPIV3Schema"])
                    props = schema.setdefault("properties", {})
                    # apiVersion/kind/metadata are checked by the API server itself, not the CRD schema.
                    props["apiVersion"] = {"type": "string"}
                    props["kind"] = {"type": "string"}
                    props["metadata"] = {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string", "minLength": 1}},
                    }
                    jsonschema.Draft202012Validator.check_schema(schema)
                    index[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = (
                        jsonschema.Draft202012Validator(schema),
                        spec["scope"] == "Namespaced",
                    )
    if not index:
        sys.exit(f"validate-crs: no CustomResourceDefinitions in {crd_dir}")
    return index


def documents(paths):
    for p in paths:
        if p == "-":
            yield from (("<stdin>", d) for d in yaml.safe_load_all(sys.stdin))
            continue
        files = (
            sorted(
                os.path.join(root, f)
                for root, _, fs in os.walk(p)
                for f in fs
                if f.endswith((".yaml", ".yml"))
            )
            if os.path.isdir(p)
            else [p]
        )
        for f in files:
            with open(f) as fh:
                try:
                    docs = list(yaml.safe_load_all(fh))
                except yaml.YAMLError as e:
                    yield f, YamlFileError(e)
                    continue
                for d in docs:
                    yield f, d


class YamlFileError(Exception):
    """A file that is not valid YAML (reported as an error, not a traceback)."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crds", required=True, help="directory with the CRD YAML files")
    ap.add_argument("--require", action="store_true", help="fail if no custom resource was found")
    ap.add_argument(
        "--require-namespace",
        action="store_true",
        help="namespaced kinds must set metadata.namespace (manifests applied as they are)",
    )
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    index = load_crds(args.crds)
    groups = {api.split("/")[0] for api, _ in index}
    errors = checked = 0
    for src, doc in documents(args.paths):
        if isinstance(doc, YamlFileError):
            print(f"ERROR {src}: not valid YAML: {doc.args[0]}".splitlines()[0])
            errors += 1
            continue
        if not isinstance(doc, dict):
            continue
        docs = doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc]
        for d in docs:
            api, kind = d.get("apiVersion", ""), d.get("kind", "")
            if (api, kind) not in index:
                if api.split("/")[0] in groups:
                    print(f"ERROR {src}: {kind} {api} is not served by any CRD in {args.crds}")
                    errors += 1
                continue
            validator, namespaced = index[(api, kind)]
            name = (d.get("metadata") or {}).get("name", "?")
            where = f"{src}: {kind} {name}"
            checked += 1
            before = errors
            problems = sorted(validator.iter_errors(d), key=lambda e: list(map(str, e.absolute_path)))
            ns = (d.get("metadata") or {}).get("namespace")
            if not namespaced and ns:
                print(f"ERROR {where}: cluster-scoped kind has metadata.namespace {ns!r}")
                errors += 1
            if namespaced and args.require_namespace and not ns:
                print(f"ERROR {where}: namespaced kind without metadata.namespace")
                errors += 1
            for e in problems:
                path = ".".join(str(p) for p in e.absolute_path) or "<root>"
                print(f"ERROR {where}: {path}: {e.message}")
                errors += 1
            if errors == before:
                print(f"ok    {where}")
    if args.require and checked == 0:
        print("ERROR: no custom resources found to validate")
        errors += 1
    print(f"validate-crs: {checked} custom resource(s) checked, {errors} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
