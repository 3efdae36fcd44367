#!/usr/bin/env python3
"""Generates the Helm chart's README.md from its values.yaml comments (a stand-in for helm-docs).

Usage: chart-readme.py [--chart DIR] [--check]

README.md = README.md.tmpl with the line `@@VALUES_TABLE@@` replaced by a table of every value:
key, type (from values.schema.json), default (from values.yaml) and description (the comment block right
above the key in values.yaml; no blank line between them). Rules:
- a key whose comment documents a map whose own keys are documented too is a section row (no default);
- any other documented key is one row with its whole default (nested keys included);
- every value must be documented by its own comment or by a documented ancestor row: an undocumented
  value is an error, so a new value cannot ship without its documentation.
With --check nothing is written: exits 1 (with a diff) when README.md differs from what would be
generated. Needs PyYAML (.venv-test).
"""

import argparse
import difflib
import json
import os
import re
import sys

import yaml

MARKER = "@@VALUES_TABLE@@"
KEY_RE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_][A-Za-z0-9_.\-/]*|\"[^\"]+\"|'[^']+'):(\s|$)")


def comments_by_path(text):
    """{path tuple: [comment lines]} for every mapping key of values.yaml that has a comment block
    directly above it. Keys inside list items are not values of their own and are skipped."""
    out = {}
    stack = []  # [(indent, key)]
    pending = []
    list_indent = None  # inside a block list item deeper than this indent
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        indent = len(line) - len(line.lstrip(" "))
        if stripped.startswith("#"):
            body = stripped[1:]
            pending.append(body[1:] if body.startswith(" ") else body)
            continue
        if list_indent is not None and indent >= list_indent:
            pending = []
            continue
        list_indent = None
        if stripped.startswith("- ") or stripped == "-":
            list_indent = indent
            pending = []
            continue
        m = KEY_RE.match(line)
        if not m:
            pending = []
            continue
        key = m.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            out[tuple(k for _, k in stack)] = pending
        pending = []
    return out


def schema_at(schema, path):
    """The schema node of a values path (following properties and local $refs), or None."""
    root = schema

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            target = root
            for part in ref[2:].split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    node = resolve(schema)
    for key in path:
        props = (node or {}).get("properties") or {}
        if key in props:
            node = resolve(props[key])
        elif isinstance((node or {}).get("additionalProperties"), dict):
            node = resolve(node["additionalProperties"])
        else:
            return None
    return node


TYPE_NAMES = {"boolean": "bool", "integer": "int", "string": "string", "array": "list", "object": "object", "number": "number", "null": "null"}


def type_of(node, value):
    if node:
        if "enum" in node and "type" not in node:
            return " | ".join(f"`{json.dumps(v)}`" for v in node["enum"])
        t = node.get("type")
        if isinstance(t, list):
            return " | ".join(TYPE_NAMES.get(x, x) for x in t)
        if t:
            return TYPE_NAMES.get(t, t)
        if "oneOf" in node or "anyOf" in node:
            alts = node.get("oneOf") or node.get("anyOf")
            return " | ".join(sorted({TYPE_NAMES.get(a.get("type"), "object") for a in alts}))
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "string"


def fmt_default(value):
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    return "`" + json.dumps(value, separators=(", ", ": ")) + "`"


def cell(text):
    return text.replace("|", "\\|")


def build_table(values, docs, schema):
    rows, errors = [], []

    def documented_below(path):
        return any(len(p) > len(path) and p[: len(path)] == path for p in docs)

    def walk(node, path):
        for key, value in node.items():
            p = path + (key,)
            name = ".".join(p)
            if p in docs:
                desc = cell(" ".join(docs[p]))
                if isinstance(value, dict) and value and documented_below(p):
                    rows.append(f"| `{name}` | object | | {desc} |")
                    walk(value, p)
                else:
                    rows.append(f"| `{name}` | {cell(type_of(schema_at(schema, p), value))} | {cell(fmt_default(value))} | {desc} |")
            elif isinstance(value, dict) and value:
                walk(value, p)
            else:
                errors.append(f"value {name} has no comment in values.yaml (document it above the key)")

    walk(values, ())
    for p in docs:
        if not _has_path(values, p):
            errors.append(f"comment for {'.'.join(p)}, which is not a value")
    table = ["| Key | Type | Default | Description |", "|---|---|---|---|", *rows]
    return "\n".join(table), errors


def _has_path(values, path):
    node = values
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return False
        node = node[k]
    return True


def generate(chart):
    with open(os.path.join(chart, "values.yaml")) as f:
        text = f.read()
    values = yaml.safe_load(text) or {}
    with open(os.path.join(chart, "values.schema.json")) as f:
        schema = json.load(f)
    with open(os.path.join(chart, "README.md.tmpl")) as f:
        tmpl = f.read()
    if tmpl.count(MARKER) != 1:
        sys.exit(f"chart-readme: README.md.tmpl must contain {MARKER} exactly once")
    table, errors = build_table(values, comments_by_path(text), schema)
    if errors:
        for e in errors:
            print(f"ERROR {e}", file=sys.stderr)
        sys.exit(1)
    header = (
        "<!-- Generated by scripts/chart-readme.py from README.md.tmpl and the comments in values.yaml;"
        " edit those and run `make chart-readme`. -->\n"
    )
    return header + tmpl.replace(MARKER, table)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chart", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "secretsync"))
    ap.add_argument("--check", action="store_true", help="only compare with README.md")
    args = ap.parse_args()
    out = generate(args.chart)
    path = os.path.join(args.chart, "README.md")
    if args.check:
        try:
            with open(path) as f:
                have = f.read()
        except FileNotFoundError:
            have = ""
        if have != out:
            sys.stdout.writelines(
                list(difflib.unified_diff(have.splitlines(True), out.splitlines(True), "README.md", "generated", n=1))[:60]
            )
            print("chart-readme: README.md is stale")
            return 1
        print("chart-readme: README.md is up to date")
        return 0
    with open(path, "w") as f:
        f.write(out)
    print(f"chart-readme: wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
