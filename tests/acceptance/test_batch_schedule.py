"""`batch schedule`, `batch show`, the schedule flags of `import`, and `status`'s pacing line, as an
operator runs them: set at import and later, shown in local time, audited, bad values exit 2.

The commands run on the system clock, so the window state asserted is made certain by a start
time years ahead ("closed, opens ..." at that start) or by a schedule without windows (open)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import TEST_AUDIT_KEY
from tests.support.cli import as_json, peppol_migrate

PARTIES = ("0106:61000001", "0106:61000002", "0106:61000003")
FAR_START = "2031-01-07T19:00"  # a Tuesday, winter time in Amsterdam: 18:00 UTC


def _env(url: str) -> dict[str, str]:
    return {"PEPPOL_MIGRATE_DATABASE__URL": url, "PEPPOL_MIGRATE_AUDIT__KEY": TEST_AUDIT_KEY}


def _csv(tmp_path: Path, name: str, parties: tuple[str, ...]) -> Path:
    path = tmp_path / f"{name}.csv"
    path.write_text(
        "party_id,direction,new_provider\n" + "".join(f"{p},from-econnect,provider-b\n" for p in parties),
        encoding="utf-8",
    )
    return path


def run(env: dict[str, str], tmp_path: Path, *args: str) -> Any:
    return peppol_migrate(*args, env=env, cwd=tmp_path)


def schedule_events(env: dict[str, str], tmp_path: Path, party: str) -> list[dict[str, Any]]:
    shown = as_json(run(env, tmp_path, "show", party, "--json"))
    events = shown["migrations"][0]["events"]
    return [e for e in events if e["kind"] == "operator" and e["detail"].get("action") == "schedule"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = _env(f"sqlite:///{tmp_path / 'pacing.db'}")
    assert run(env, tmp_path, "db", "upgrade").returncode == 0
    return env


def test_set_at_import_and_later_shown_audited_and_verified(tmp_path: Path, db_url: str) -> None:
    env = _env(db_url)
    assert run(env, tmp_path, "db", "upgrade").returncode == 0
    imported = run(
        env,
        tmp_path,
        "import",
        str(_csv(tmp_path, "evenings", PARTIES)),
        "--window",
        "Mon-Fri 19:00-23:00",
        "--window",
        "Sat 08:00-18:00",
        "--timezone",
        "Europe/Amsterdam",
        "--blackout",
        "2031-12-25",
        "--start",
        FAR_START,
        "--per-hour",
        "50",
        "--per-day",
        "300",
        "--actor",
        "alice",
    )
    assert imported.returncode == 0, imported.stderr
    assert "schedule: set" in imported.stdout

    shown = as_json(run(env, tmp_path, "batch", "show", "evenings", "--json"))
    assert shown["schedule"] == {
        "timezone": "Europe/Amsterdam",
        "windows": ["Mon-Fri 19:00-23:00", "Sat 08:00-18:00"],
        "blackouts": ["2031-12-25"],
        "start_at": "2031-01-07T18:00:00+00:00",
        "per_hour": 50,
        "per_day": 300,
        "max_in_flight": None,
        "priority": 0,
    }
    assert shown["set_by"] == "alice" and shown["total"] == 3
    assert shown["window"]["open"] is False
    assert shown["window"]["next_open_at"] == "2031-01-07T18:00:00+00:00"
    assert shown["usage"]["started_this_hour"] == 0 and shown["usage"]["per_hour"] == 50
    for party in PARTIES:
        [event] = schedule_events(env, tmp_path, party)
        assert event["actor"] == "alice" and event["detail"]["batch"] == "evenings"
        assert event["detail"]["previous"] is None and event["detail"]["schedule"]["per_day"] == 300

    # later: only the flags given change; the rest of the schedule stays
    later = run(env, tmp_path, "batch", "schedule", "evenings", "--per-hour", "10", "--max-in-flight", "5",
                "--priority", "3", "--actor", "bob")  # fmt: skip
    assert later.returncode == 0, later.stderr
    assert "schedule set (recorded on 3 open migrations)" in later.stdout
    assert "at most 10 starts an hour, 300 starts a day, 5 in flight" in later.stdout
    assert "now: closed, opens Tue 2031-01-07 19:00 CET" in later.stdout
    text = run(env, tmp_path, "batch", "show", "evenings")
    assert text.returncode == 0, text.stderr
    assert "windows (Europe/Amsterdam): Mon-Fri 19:00-23:00, Sat 08:00-18:00" in text.stdout
    assert "blackout dates: 2031-12-25" in text.stdout
    assert "starts from Tue 2031-01-07 19:00 CET" in text.stdout
    assert "changed by bob" in text.stdout
    assert "started: this hour 0 of 10; today 0 of 300; in flight 0 of 5" in text.stdout
    assert "forecast:" in text.stdout
    events = schedule_events(env, tmp_path, PARTIES[0])
    assert [e["actor"] for e in events] == ["alice", "bob"]
    assert events[1]["detail"]["previous"]["per_hour"] == 50 and events[1]["detail"]["schedule"]["per_hour"] == 10

    status = run(env, tmp_path, "status")
    assert status.returncode == 0, status.stderr
    [line] = [ln for ln in status.stdout.splitlines() if ln.strip().startswith("schedule evenings:")]
    assert "closed, opens Tue 2031-01-07 19:00 CET" in line and "this hour 0 of 10" in line
    assert "priority 3" in line
    pacing = as_json(run(env, tmp_path, "status", "--batch", "evenings", "--json"))["pacing"]
    assert [p["batch"] for p in pacing] == ["evenings"] and pacing[0]["schedule"]["priority"] == 3

    verify = run(env, tmp_path, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_none_unsets_a_part_and_clear_removes_the_schedule(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(env, tmp_path, "import", str(_csv(tmp_path, "waves", PARTIES[:1]))).returncode == 0
    assert run(env, tmp_path, "status", "--json").returncode == 0
    assert as_json(run(env, tmp_path, "status", "--json"))["pacing"] == []  # nothing scheduled yet

    set_ = run(env, tmp_path, "batch", "schedule", "waves", "--window", "Sat,Sun 00:00-24:00", "--per-day", "7")
    assert set_.returncode == 0, set_.stderr
    opened = as_json(run(env, tmp_path, "batch", "schedule", "waves", "--window", "none", "--per-day", "none",
                         "--per-hour", "4", "--json"))  # fmt: skip
    assert opened["schedule"]["windows"] == [] and opened["schedule"]["per_day"] is None
    assert opened["schedule"]["per_hour"] == 4 and opened["window"]["open"] is True
    assert opened["previous"]["windows"] == ["Sat,Sun 00:00-24:00"] and opened["audited_migrations"] == 1

    same = run(env, tmp_path, "batch", "schedule", "waves", "--per-hour", "4")
    assert same.returncode == 0 and "unchanged" in same.stdout
    cleared = run(env, tmp_path, "batch", "schedule", "waves", "--clear")
    assert cleared.returncode == 0 and "schedule removed" in cleared.stdout
    shown = as_json(run(env, tmp_path, "batch", "show", "waves", "--json"))
    assert shown["schedule"] is None and shown["window"] is None
    assert [e["detail"]["schedule"] is None for e in schedule_events(env, tmp_path, PARTIES[0])] == [False, False, True]
    assert run(env, tmp_path, "audit", "verify").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--per-hour", "many"), "--per-hour: 'many' is not a whole number"),
        (("--per-day", "0"), "--per-day: 0 is not a positive number"),
        (("--max-in-flight", "-1"), "--max-in-flight: -1 is not a positive number"),
        (("--window", "Mon-Fri 19:00"), "--window: 'Mon-Fri 19:00' is not a window"),
        (("--window", "Mon-Fri 19:00-19:00"), "opens and closes at the same time"),
        (("--timezone", "Europe/Amsterdm"), "--timezone: 'Europe/Amsterdm' is not a time zone"),
        (("--blackout", "25-12-2031"), "--blackout: '25-12-2031' is not a date"),
        (("--start", "next week"), "--start: 'next week' is not a time"),
        (("--priority", "99999"), "--priority: 99999 is not between -1000 and 1000"),
        (("--clear", "--per-hour", "3"), "--clear removes the schedule"),
        ((), "nothing to set"),
    ],
)
def test_bad_values_exit_2_naming_the_flag_and_write_nothing(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    assert run(env, tmp_path, "import", str(_csv(tmp_path, "night", PARTIES[:1])), "--per-hour", "5").returncode == 0
    result = run(env, tmp_path, "batch", "schedule", "night", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert as_json(run(env, tmp_path, "batch", "show", "night", "--json"))["schedule"]["per_hour"] == 5
    assert len(schedule_events(env, tmp_path, PARTIES[0])) == 1


def test_an_unknown_batch_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    for args in (("batch", "schedule", "ghost", "--per-hour", "5"), ("batch", "show", "ghost")):
        result = run(env, tmp_path, *args)
        assert result.returncode == 2 and "no batch named 'ghost'" in result.stderr, result.stderr


def test_an_import_with_a_bad_schedule_imports_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    path = _csv(tmp_path, "refused", PARTIES[:2])
    for flags in (("--window", "Sun 25:00-26:00"), ("--timezone", "Moon/Base"), ("--priority", "x")):
        result = run(env, tmp_path, "import", str(path), *flags)
        assert result.returncode == 2 and flags[0] in result.stderr, result.stderr
    assert as_json(run(env, tmp_path, "status", "--json"))["total"] == 0
    assert run(env, tmp_path, "batch", "show", "refused").returncode == 2
    # a dry run shows the schedule it would set, and sets nothing
    dry = as_json(run(env, tmp_path, "import", str(path), "--dry-run", "--json", "--per-hour", "9"))
    assert dry["schedule"]["per_hour"] == 9
    assert as_json(run(env, tmp_path, "status", "--json"))["total"] == 0
