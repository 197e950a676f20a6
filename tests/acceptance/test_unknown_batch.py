"""`status --batch` and `report --batch` with a batch name that does not exist: refused with
exit 2 and the name, never a "100% done" status or an empty report that looks like a result."""

from __future__ import annotations

import pytest

from tests.support import TEST_AUDIT_KEY
from tests.support.cli import peppol_migrate


@pytest.fixture
def db_env(tmp_path) -> dict[str, str]:
    env = {
        "PEPPOL_MIGRATE_DATABASE__URL": f"sqlite:///{tmp_path / 'unknown.db'}",
        "PEPPOL_MIGRATE_AUDIT__KEY": TEST_AUDIT_KEY,
    }
    assert peppol_migrate("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    batch = tmp_path / "spring.csv"
    batch.write_text("party_id,direction,new_provider\n0106:50000001,from-econnect,provider-b\n", encoding="utf-8")
    assert peppol_migrate("import", str(batch), "--batch", "spring", env=env, cwd=tmp_path).returncode == 0
    return env


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--batch", "sprnig"),
        ("status", "--batch", "sprnig", "--json"),
        ("status", "--batch", "sprnig", "--watch"),
        ("report", "--batch", "sprnig"),
        ("report", "--batch", "sprnig", "--format", "html"),
    ],
    ids=["status", "status-json", "status-watch", "report", "report-html"],
)
def test_an_unknown_batch_is_refused(tmp_path, db_env, args) -> None:
    result = peppol_migrate(*args, env=db_env, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "no batch named 'sprnig'" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_the_known_batch_still_answers(tmp_path, db_env) -> None:
    result = peppol_migrate("status", "--batch", "spring", "--json", env=db_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"total": 1' in result.stdout
