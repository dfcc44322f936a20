"""Check that everything an install of wildocr pulls in sits at exactly its pin in constraints.txt.

    python docker/check_pins.py constraints.txt "wildocr[cpu,airflow]"

Walks the installed requirement tree from the project with the given extras (the Airflow image build runs
it, and so does the test suite on the venv), so the image and the venv that `make test-stack` ran are the
same set: every package of that tree must be pinned and installed at its pin. Packages the base image
brings that wildocr does not need are not its business. Exit 1 with the differences otherwise.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def read_pins(path: str) -> dict[str, str]:
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if match := PIN.match(line.strip()):
                pins[canonicalize_name(match[1])] = match[2]
    return pins


def requirement_tree(root: str) -> dict[str, str]:
    """name -> installed version for `root` (a requirement string with extras) and all it requires."""
    found: dict[str, str] = {}
    todo = [(Requirement(root), "")]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            found[name] = "<not installed>"
            continue
        found[name] = dist.version
        for text in dist.requires or []:
            child = Requirement(text)
            # A requirement without an extra marker applies always; one with `extra == x` when x is wanted.
            for extra in sorted(req.extras) or [""]:
                todo.append((child, extra))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pins = read_pins(argv[1])
    problems = []
    for name, version in sorted(requirement_tree(argv[2]).items()):
        if name == canonicalize_name(Requirement(argv[2]).name):
            continue  # the project itself
        if name not in pins:
            problems.append(f"{name} {version}: not pinned in {argv[1]}")
        elif pins[name] != version:
            problems.append(f"{name}: installed {version}, pinned {pins[name]}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{argv[2]}: {f'{len(problems)} problem(s)' if problems else 'every package at its pin'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
