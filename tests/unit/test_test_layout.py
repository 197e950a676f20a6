"""The test suite's own layout, so it cannot rot: fixtures are in conftest.py files, helpers in
tests/support, and tests import neither each other nor a conftest.

- no module under tests/ imports a test module (``test_*``) or a ``conftest``: pytest finds
  fixtures in conftest.py files by itself, and a helper that two test modules need belongs in
  tests/support;
- the acceptance tests use nothing of the integration tests (they stand on tests/support and
  the conftest fixtures alone), and tests/support uses none of the suites;
- a suite's folders hold only test modules, conftest.py and ``__init__.py`` (helpers go to
  tests/support), and every folder is a package, so two suites may each have a test_client.py.

Each file is read with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUITES = ("unit", "integration", "acceptance")


def module_name(path: Path) -> str:
    """The dotted name of a file under tests/ (``tests.unit.engine.test_steps``)."""
    parts = path.relative_to(TESTS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool) -> Iterator[str]:
    """Every module an import statement in ``source`` may name: for ``from X import Y`` both X
    and X.Y, since Y may be a submodule; relative imports resolved against ``name``."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def is_test_or_conftest(module: str) -> bool:
    last = module.rpartition(".")[2]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def problems_of(path: Path, source: str) -> list[str]:
    """What is wrong with the imports of one file under tests/ (given as its text)."""
    name = module_name(path)
    where = path.relative_to(TESTS.parent)
    found = []
    for module in imported_modules(source, name, path.name == "__init__.py"):
        if is_test_or_conftest(module):
            found.append(f"{where} imports {module}: a test module or conftest (move the helper to tests/support)")
        if name.startswith("tests.acceptance") and module.startswith("tests.integration"):
            found.append(f"{where} imports {module}: acceptance tests stand on tests/support and the conftests")
        if name.startswith("tests.support") and module.startswith(tuple(f"tests.{suite}" for suite in SUITES)):
            found.append(f"{where} imports {module}: support modules use none of the suites")
    return found


def python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_checker_finds_the_imports_it_forbids():
    test_file = TESTS / "acceptance" / "test_example.py"
    forbidden = [
        "from tests.unit.engine.test_steps import record",
        "from tests.unit.engine import test_steps",
        "import tests.integration.conftest",
        "from .conftest import sandbox",
        "from . import test_other",
        "from tests.integration import helpers",
    ]
    for line in forbidden:
        assert problems_of(test_file, line), line
    assert problems_of(TESTS / "support" / "steps.py", "from tests.unit import helpers")
    assert not problems_of(test_file, "from tests.support import engine_env\nfrom tests.support.cli import BIN")
    assert not problems_of(test_file, "from migration_engine.engine import steps\nimport pytest")


def test_no_test_imports_a_test_module_or_conftest_and_acceptance_uses_no_integration_code():
    files = python_files()
    assert len([p for p in files if p.name.startswith("test_")]) >= 30  # the walk found the suite
    problems = [problem for path in files for problem in problems_of(path, path.read_text(encoding="utf-8"))]
    assert problems == []


def test_suites_hold_only_tests_and_conftests_and_every_folder_is_a_package():
    misplaced = [
        str(path.relative_to(TESTS.parent))
        for suite in SUITES
        for path in (TESTS / suite).rglob("*.py")
        if "__pycache__" not in path.parts
        and not (path.name.startswith("test_") or path.name in ("conftest.py", "__init__.py"))
    ]
    assert misplaced == [], "helpers belong in tests/support"
    folders = {path.parent for path in python_files()}
    assert sorted(str(f.relative_to(TESTS.parent)) for f in folders if not (f / "__init__.py").exists()) == []
