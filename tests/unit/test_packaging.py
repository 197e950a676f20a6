"""The wheel is self-contained: pyproject.toml lists every package (the list is explicit
because ``migration_engine.defaults`` is the top-level config folder, which a find would not
see), ships the defaults and profiles as package data, reads the version from one place, and
keeps the simulator's servers in the ``sandbox`` extra."""

import ast
import tomllib
from importlib import resources
from pathlib import Path

import migration_engine

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
SANDBOX_ONLY = {"dnslib"}  # the sandbox's DNS server; its HTTP server (starlette) is the console's too
HTTP_SERVERS = {"uvicorn", "starlette"}


def requirement_name(requirement: str) -> str:
    return requirement.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()


def test_every_package_folder_is_listed_and_every_listed_package_exists():
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("migration_engine", "migrations_db")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    mapped = {"migration_engine.defaults", "migration_engine.defaults.profiles"}
    assert set(SETUPTOOLS["packages"]) == found | mapped


def test_the_defaults_package_is_the_config_folder_and_ships_its_toml_files():
    assert SETUPTOOLS["package-dir"] == {"migration_engine.defaults": "config"}
    assert (ROOT / "config" / "__init__.py").is_file()
    data = SETUPTOOLS["package-data"]
    assert data["migration_engine.defaults"] == ["*.toml"]
    assert data["migration_engine.defaults.profiles"] == ["*.toml"]
    installed = resources.files("migration_engine.defaults")
    assert installed.joinpath("default.toml").is_file()
    assert sorted(p.name for p in installed.joinpath("profiles").iterdir() if p.name.endswith(".toml")) == sorted(
        p.name for p in (ROOT / "config" / "profiles").glob("*.toml")
    )


def test_the_version_is_written_once():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "migration_engine.__version__"}
    assert migration_engine.__version__.count(".") == 2


def test_the_license_is_declared_and_shipped():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]


def test_the_sandbox_dns_server_is_an_extra_and_only_the_sandbox_and_console_serve_http():
    project = PYPROJECT["project"]
    assert not SANDBOX_ONLY & {requirement_name(r) for r in project["dependencies"]}
    assert {requirement_name(r) for r in project["optional-dependencies"]["sandbox"]} == SANDBOX_ONLY
    assert "peppol-migrate[sandbox]" in project["optional-dependencies"]["dev"]
    assert {requirement_name(r) for r in project["dependencies"]} >= HTTP_SERVERS  # `serve` in a plain install
    importers: dict[str, set[str]] = {"dns": set(), "http": set()}
    for path in (ROOT / "migration_engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            roots = {n.split(".")[0] for n in names}
            package = path.relative_to(ROOT / "migration_engine").parts[0]
            if roots & SANDBOX_ONLY:
                importers["dns"].add(package)
            if roots & HTTP_SERVERS:
                importers["http"].add(package)
    assert importers == {"dns": {"sandbox"}, "http": {"sandbox", "console"}}
