#!/usr/bin/env python3
"""Prints one release's section of CHANGELOG.md (Keep a Changelog): the release notes of a tag.

Usage: changelog-section.py VERSION [--file CHANGELOG.md]
       changelog-section.py --check [--file CHANGELOG.md]

VERSION is `1.2.3`, `v1.2.3` or `Unreleased`. Prints the body under `## [VERSION]` (up to the next `## `
heading, without link reference definitions), stripped. Exits 1 when the section is missing or empty, so
a tag without release notes fails the release. --check only validates the file: an `[Unreleased]`
section, release headings `## [X.Y.Z] - YYYY-MM-DD`, newest first, each version once. Standard library only.
"""

import argparse
import re
import sys

HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
LINK_DEF = re.compile(r"^\[[^\]]+\]: \S+")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def sections(text):
    """[(version, date, [body lines])] in file order."""
    out, current = [], None
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            current = (m.group("version"), m.group("date"), [])
            out.append(current)
        elif line.startswith("## "):
            current = None  # some other level-2 heading ends the section
        elif current is not None and not LINK_DEF.match(line):
            current[2].append(line)
    return out


def key(version):
    core = version.split("+")[0]
    main, _, pre = core.partition("-")
    return tuple(int(x) for x in main.split(".")), pre == "", pre


def check(secs):
    problems, seen = [], set()
    if not secs or secs[0][0] != "Unreleased":
        problems.append("the first section must be ## [Unreleased]")
    released = [s for s in secs if s[0] != "Unreleased"]
    for version, date, _ in released:
        if not SEMVER.match(version):
            problems.append(f"[{version}]: not a semantic version")
        if not date:
            problems.append(f"[{version}]: heading needs ' - YYYY-MM-DD'")
        if version in seen:
            problems.append(f"[{version}]: listed twice")
        seen.add(version)
    ok = [s[0] for s in released if SEMVER.match(s[0])]
    if ok != sorted(ok, key=key, reverse=True):
        problems.append("releases must be listed newest first")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("version", nargs="?")
    ap.add_argument("--file", default="CHANGELOG.md")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    with open(args.file, encoding="utf-8") as f:
        secs = sections(f.read())
    if args.check:
        problems = check(secs)
        for p in problems:
            print(f"ERROR {args.file}: {p}", file=sys.stderr)
        return 1 if problems else 0
    if not args.version:
        ap.error("VERSION or --check is required")
    want = args.version[1:] if re.match(r"^v\d", args.version) else args.version
    for version, _, body in secs:
        if version.lower() == want.lower():
            notes = "\n".join(body).strip()
            if not notes:
                print(f"{args.file}: the section [{version}] is empty", file=sys.stderr)
                return 1
            print(notes)
            return 0
    print(f"{args.file}: no section ## [{want}] (add the release's notes before tagging)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
