"""The layers are contracts: import-linter's (pyproject.toml) and the rules it has no contract for."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "harness"


def _lint_imports() -> list[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("lint-imports")
    if found is None:
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    return [found]


def test_import_linter_contracts_hold():
    """Every contract in pyproject.toml is kept: a new side door between layers fails here."""
    out = subprocess.run([*_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_imports(path: Path) -> list[str]:
    """``from harness.x import _name`` where harness.x is another module than this file."""
    here = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "harness" and node.module != here:
            found += [f"{path.relative_to(REPO)}:{node.lineno}: {node.module}.{a.name}"
                      for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_crosses_a_module():
    """Private names stay in their module (ruff's PLC2701 only sees imports from other packages)."""
    files = [p for d in ("harness", "tests", "benchmarks") for p in (REPO / d).rglob("*.py")]
    bad = [hit for p in files for hit in _private_imports(p)]
    assert not bad, "import a public name instead:\n" + "\n".join(bad)


def test_the_private_import_check_can_fail(tmp_path):
    probe = PACKAGE / "_probe_private_import.py"
    try:
        probe.write_text("from harness.config import _unknown\n")
        assert _private_imports(probe) == [f"harness/{probe.name}:1: harness.config._unknown"]
    finally:
        probe.unlink()
