"""Refuse an install whose lockfile no longer matches pyproject.toml.

Every `name==version` that pyproject.toml pins (dependencies and the dev extra) must be
locked at that version in requirements.lock; a range must be satisfied by the locked
version. Regenerate the lock with `make lock` after changing a dependency.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare interpreter: pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if found:
            pins[_norm(found.group(1))] = found.group(2)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = locked()
    problems = []
    for text in wanted:
        req = Requirement(text)
        version = pins.get(_norm(req.name))
        if version is None:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: pyproject wants {req.specifier}, the lock has {version}")
    for problem in problems:
        print(f"check-lock: {problem}; run `make lock`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
