"""The import layering of pyproject.toml's [tool.importlinter] (docs/architecture.md, "Layers").

`make lint` runs `lint-imports`; running it here as well makes a violation fail
`pytest` on its own. Each contract is then shown to break on a copy of the
sources with one deliberate import added, so none of them holds vacuously.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def test_the_tree_keeps_every_contract() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree, not an installed copy
    done = subprocess.run(
        [str(lint_imports), "--config", str(CONFIG), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 broken" in done.stdout


def test_the_copy_keeps_every_contract(tree: Path) -> None:
    assert "0 broken" in _lint(tree)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the three packages' sources, to add one import to."""
    copy = tmp_path_factory.mktemp("layers")
    for package in ("portal", "chain", "training"):
        shutil.copytree(
            ROOT / package,
            copy / package,
            ignore=shutil.ignore_patterns("static", "__pycache__"),
        )
    return copy


def _lint(tree: Path) -> str:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [str(lint_imports), "--config", str(CONFIG), "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Contracts:" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(
    ("contract", "importer", "imported"),
    [
        ("training and chain import no Django", "training.crypto", "django.db"),
        ("training and chain import no Django", "chain.client", "portal.core.models"),
        ("training and chain are independent of each other", "chain.client", "training.crypto"),
        (
            "a hospital node's code imports no model, service or chain mirror",
            "portal.nodes.agent.tasks",
            "portal.nodes.models",
        ),
        (
            "a hospital node's code imports no model, service or chain mirror",
            "portal.nodes.agent.fetch",
            "portal.datasets.services",
        ),
        (
            "a hospital node's code imports no model, service or chain mirror",
            "portal.nodes.management.commands.run_node",
            "portal.nodes.models",
        ),
        (
            "a hospital node's code does not touch the database layer itself",
            "portal.nodes.agent.config",
            "django.db",
        ),
        ("the apps import each other downwards only", "portal.core.models", "portal.nodes.models"),
        ("the apps import each other downwards only", "portal.nodes.models", "portal.datasets"),
        (
            "the apps import each other downwards only",
            "portal.consortium.services",
            "portal.nodes.services",
        ),
    ],
)
def test_a_deliberate_violation_breaks_the_contract(
    tree: Path, contract: str, importer: str, imported: str
) -> None:
    module = tree / (importer.replace(".", "/") + ".py")
    if not module.exists():
        module = module.with_suffix("") / "__init__.py"
    kept = module.read_text()
    module.write_text(f"{kept}\nimport {imported}  # the deliberate violation\n")
    try:
        report = _lint(tree)
    finally:
        module.write_text(kept)
    assert f"{contract} BROKEN" in report
    # The reported chain starts at the added import.
    assert re.search(rf"^-\s+{re.escape(importer)} -> ", report, re.MULTILINE), report
