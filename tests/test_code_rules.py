"""Rules every Python file of the lab keeps: ruff's checks (pyproject.toml's [tool.ruff]) and short functions.

Alembic's migrations are frozen history: they keep the length they were written with.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
MIGRATIONS = ROOT / "backend" / "domain" / "migrations" / "versions"
SKIPPED_FOLDERS = {"__pycache__", "node_modules", "build", "dist"}   # besides hidden ones (.venv, .git, …)


def python_files() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        folders = path.relative_to(ROOT).parts[:-1]
        if any(part.startswith(".") or part in SKIPPED_FOLDERS or part.endswith(".egg-info") for part in folders):
            continue
        if path.is_relative_to(MIGRATIONS):
            continue
        yield path


def long_functions(path: Path, root: Path = ROOT) -> Iterator[str]:
    """`file:line name (n lines)` for each function or method of `path` longer than the limit."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                yield f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)"


def test_the_walk_finds_the_lab_and_leaves_out_the_migrations():
    files = {path.relative_to(ROOT).as_posix() for path in python_files()}
    assert {"idlab/config.py", "worker/subspace/training.py", "tests/test_code_rules.py"} <= files
    assert not any(name.startswith(("backend/domain/migrations/versions/", ".venv/")) for name in files)


def test_no_function_is_longer_than_sixty_lines():
    too_long = [found for path in python_files() for found in long_functions(path)]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(too_long)


def test_the_rule_catches_a_long_function(tmp_path: Path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = tmp_path / "long.py"
    source.write_text(f"def short():\n    return 1\n\n\ndef too_long():\n{body}\n")
    assert list(long_functions(source, tmp_path)) == [f"long.py:5 too_long ({MAX_FUNCTION_LINES + 1} lines)"]


def ruff_command() -> list[str] | None:
    beside_python = Path(sys.executable).with_name("ruff")
    if beside_python.exists():
        return [str(beside_python)]
    on_path = shutil.which("ruff")
    return [on_path] if on_path else None


def test_ruff_finds_nothing():
    command = ruff_command()
    if command is None:
        pytest.skip("ruff is not installed: `make install` (the test extra) brings it")
    result = subprocess.run([*command, "check", ".", "--no-cache", "--output-format", "concise"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"`ruff check .` found problems:\n{result.stdout}{result.stderr}"
