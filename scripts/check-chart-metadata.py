#!/usr/bin/env python3
"""Checks the Artifact Hub metadata of the chart's Chart.yaml against the repository.

Usage: check-chart-metadata.py [--chart DIR] [--crds DIR] [--examples-out FILE]

- home, sources, icon, maintainers and kubeVersion are set; the icon, when it is a file of this
  repository's main branch, exists;
- the artifacthub.io/* annotations that Artifact Hub parses as YAML are YAML lists of the right shape;
- artifacthub.io/crds lists exactly the CRDs in crds/ (kind, version, name);
- artifacthub.io/images names the chart's default image (values image.repository, tag appVersion);
- artifacthub.io/changes uses Artifact Hub's change kinds;
- artifacthub.io/crdsExamples are written to --examples-out, for validate-crs.py against the CRDs.
Exits 1 on any problem.
"""

import argparse
import os
import re
import sys

import yaml

REQUIRED = ("home", "sources", "icon", "maintainers", "kubeVersion")
LISTS = ("artifacthub.io/crds", "artifacthub.io/crdsExamples", "artifacthub.io/images",
         "artifacthub.io/links", "artifacthub.io/changes")
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}
ICON_IN_REPO = re.compile(r"^https://raw\.githubusercontent\.com/secretsync/secretsync/main/(.+)$")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chart", default=os.path.join(here, "..", "charts", "secretsync"))
    ap.add_argument("--crds", default=os.path.join(here, "..", "crds"))
    ap.add_argument("--examples-out")
    args = ap.parse_args()
    errors = []
    with open(os.path.join(args.chart, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(args.chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for key in REQUIRED:
        if not chart.get(key):
            errors.append(f"Chart.yaml: {key} is not set")
    m = ICON_IN_REPO.match(chart.get("icon") or "")
    if m and not os.path.isfile(os.path.join(here, "..", m.group(1))):
        errors.append(f"Chart.yaml: icon {m.group(1)} is not in the repository")
    ann = chart.get("annotations") or {}
    if ann.get("artifacthub.io/license") != "Apache-2.0":
        errors.append("artifacthub.io/license must be Apache-2.0 (the project's license)")
    parsed = {}
    for key in LISTS:
        try:
            parsed[key] = yaml.safe_load(ann.get(key) or "")
        except yaml.YAMLError as e:
            errors.append(f"{key}: not YAML: {e}")
            continue
        if not isinstance(parsed[key], list) or not parsed[key]:
            errors.append(f"{key}: must be a non-empty YAML list")
            parsed[key] = []

    want = set()
    for name in sorted(os.listdir(args.crds)):
        if name.endswith(".yaml"):
            with open(os.path.join(args.crds, name)) as f:
                crd = yaml.safe_load(f)
            for v in crd["spec"]["versions"]:
                if v.get("served", True):
                    want.add((crd["spec"]["names"]["kind"], v["name"], crd["metadata"]["name"]))
    got = {(c.get("kind"), c.get("version"), c.get("name")) for c in parsed.get("artifacthub.io/crds", [])}
    for c in parsed.get("artifacthub.io/crds", []):
        if not c.get("displayName") or not c.get("description"):
            errors.append(f"artifacthub.io/crds: {c.get('kind')} needs displayName and description")
    if got != want:
        errors.append(f"artifacthub.io/crds lists {sorted(got)}, crds/ has {sorted(want)}")

    image = f"{values['image']['repository']}:{chart['appVersion']}"
    images = [i.get("image") for i in parsed.get("artifacthub.io/images", [])]
    if image not in images:
        errors.append(f"artifacthub.io/images lists {images}, want the default image {image}")
    for c in parsed.get("artifacthub.io/changes", []):
        if c.get("kind") not in CHANGE_KINDS or not c.get("description"):
            errors.append(f"artifacthub.io/changes: bad entry {c}")
    for link in parsed.get("artifacthub.io/links", []):
        if not link.get("name") or not str(link.get("url", "")).startswith("https://"):
            errors.append(f"artifacthub.io/links: bad entry {link}")

    if args.examples_out:
        with open(args.examples_out, "w") as f:
            yaml.safe_dump_all(parsed.get("artifacthub.io/crdsExamples", []), f, sort_keys=False)
    for e in errors:
        print(f"ERROR {e}")
    print(f"check-chart-metadata: {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
