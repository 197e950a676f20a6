"""Every file that the code, the configuration and the docs name is in this repository.

A person who clones the repository must be able to follow every "see X" in it: a comment that
points at a file the repository does not have (a design note kept elsewhere, a module that was
renamed) is a broken promise. File names are found by their endings; a name with a folder must
resolve from the repository's root, the file's own folder or the package; a bare name must be a
file somewhere in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "migration_engine"

# A path-like word ending in a file type we write about; not a URL, not part of a longer path.
REFERENCE = re.compile(r"(?<![\w./{<:-])((?:[\w-]+/)*[\w-]+(?:\.[\w-]+)*\.(?:py|md|toml|sh|ini|cfg|mako))\b")

# Names that the text mentions as files a user writes or that do not exist on purpose, each
# with the reason; nothing else is exempt.
NOT_IN_THE_REPOSITORY = {
    "alembic.ini": "the store configures Alembic in code and says it has no alembic.ini",
    "profiles/NAME.toml": "the pattern of a profile file's name",
    "NAME.toml": "the pattern of a profile file's name",
    "peppol-migrate.toml": "a user's own configuration file",
    "config/profiles/NAME.toml": "the pattern of a profile file's name",
}

SCANNED_FOLDERS = ("migration_engine", "migrations_db", "bench", "config", "scripts", ".ci", "docs")
SCANNED_FILES = ("Makefile", "pyproject.toml", "README.md")
TEXT_SUFFIXES = {".py", ".toml", ".sh", ".mako", ".md", ".html", ".txt", ""}


def scanned() -> list[Path]:
    files = [ROOT / name for name in SCANNED_FILES]
    for folder in SCANNED_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                files.append(path)
    # Test modules create files of their own under tmp_path: only their comments and docstrings
    # cite files, and those are the lines that start with '#' or sit in the module docstring.
    return files


def repository_names() -> set[str]:
    skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return {p.name for p in ROOT.rglob("*") if not skip.intersection(p.relative_to(ROOT).parts)}


def resolves(reference: str, source: Path, names: set[str]) -> bool:
    if reference in NOT_IN_THE_REPOSITORY:
        return True
    if "/" not in reference:
        return reference in names
    return any((base / reference).exists() for base in (ROOT, source.parent, PACKAGE))


def broken_references() -> list[str]:
    names = repository_names()
    broken = []
    for path in scanned():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for match in REFERENCE.finditer(line):
                if not resolves(match.group(1), path, names):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {match.group(1)}")
    return broken


def test_every_file_named_in_code_config_and_docs_is_in_the_repository() -> None:
    assert broken_references() == []


def test_the_check_finds_a_file_that_is_not_there(tmp_path: Path) -> None:
    names = repository_names()
    source = ROOT / "migration_engine" / "machine.py"
    assert not resolves("DESIGN.md", source, names)
    assert not resolves("reference/psb-api.md", source, names)
    assert not resolves("migration_engine/psb.py", source, names)
    assert resolves("migration_engine/machine.py", source, names)
    assert resolves("store/schema.py", source, names)
    assert resolves("README.md", source, names)
    assert REFERENCE.findall("see https://example.org/x.md and docs/architecture.md") == ["docs/architecture.md"]
    assert REFERENCE.findall("args.json or main.py") == ["main.py"]
