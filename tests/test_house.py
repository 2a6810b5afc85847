"""The house's floors (README, "Architecture"), checked on every test run.

import-linter's contracts in pyproject.toml say which floor may import which and forbid
cycles among the files of a package; this file runs them, proves they bite, and refuses
imports hidden inside functions (the usual way to dodge a cycle instead of fixing the room).
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("wecom", "core", "accounts", "merchants", "coupons", "residents", "campaigns", "marketplace")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]
# A function-level import of our own code must say why on its line, after this marker.
LATE_OK = "# late import:"


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LINT, "--no-cache", "--config", str(cwd / "pyproject.toml")],
        cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )


def test_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, source",
    [
        ("core/_probe.py", "import merchants.models\n"),  # the ground reaching up a floor
        ("wecom/_probe.py", "def f():\n    from core import db\n"),  # late imports count too
        ("merchants/_probe.py", "import residents\n"),
    ],
)
def test_contracts_fail_on_a_broken_floor(tmp_path, module, source):
    """Plant one upward import in a copy of the tree: the same check must fail on it."""
    for pkg in OURS:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "static", "*.ttf"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint(tmp_path).returncode == 0
    (tmp_path / module).write_text(source)
    result = lint(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-2000:]


def test_contracts_fail_on_a_file_cycle(tmp_path):
    for pkg in OURS:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "core" / "_a.py").write_text("from core import _b\n")
    (tmp_path / "core" / "_b.py").write_text("from core import _a\n")
    result = lint(tmp_path)
    assert result.returncode != 0 and "cycle" in result.stdout.lower(), result.stdout[-2000:]


def late_imports(root: Path = ROOT) -> list[str]:
    """``file:line`` of every import of our own modules inside a function, unless it says why."""
    found = []
    for pkg in OURS:
        for path in sorted((root / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom):
                        names = [inner.module or ""] if not inner.level else [pkg]
                    elif isinstance(inner, ast.Import):
                        names = [a.name for a in inner.names]
                    else:
                        continue
                    if any(n.split(".")[0] in OURS for n in names) and LATE_OK not in lines[inner.lineno - 1]:
                        found.append(f"{path.relative_to(root)}:{inner.lineno}")
    return sorted(set(found))


def test_no_imports_inside_functions():
    assert late_imports() == []


def test_test_packages_share_only_through_support():
    """tests/<pkg>/ imports tests.support (and its own package), never another test package;
    fixtures reach a package through its conftest.py."""
    tests = ROOT / "tests"
    bad = []
    for path in sorted(tests.rglob("*.py")):
        own = path.relative_to(tests).parts[0] if len(path.relative_to(tests).parts) > 1 else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "tests" and len(parts) > 1 and parts[1] not in ("support", own):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert bad == []
