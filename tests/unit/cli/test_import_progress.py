"""The import's progress: a bar on a terminal, log lines off it."""

from __future__ import annotations

from migration_engine.cli.import_progress import ImportProgress, count_lines

# ---- import progress -------------------------------------------------------------------


def test_count_lines_counts_a_last_line_without_newline(tmp_path):
    f = tmp_path / "f.csv"
    f.write_bytes(b"h\n1\n2")
    assert count_lines(f) == 3
    f.write_bytes(b"")
    assert count_lines(f) == 0


def test_import_progress_off_a_terminal_logs_every_n_rows(tmp_path, caplog):
    f = tmp_path / "f.csv"
    f.write_text("h\n" + "r\n" * 25)
    caplog.set_level("INFO", logger="migration_engine.import")
    with ImportProgress(f, tty=False, log_every=10) as progress:
        progress.phase("checking")
        for _ in range(25):
            progress.advance(1)
        progress.phase("writing")
        progress.advance(25)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "import checking: 10 rows",
        "import checking: 20 rows",
        "import checking: 25 rows",
        "import writing: 25 rows",
    ]
    assert {r.action for r in caplog.records} == {"import.checking", "import.writing"}


def test_import_progress_on_a_terminal_uses_the_line_count(tmp_path):
    f = tmp_path / "f.csv"
    f.write_text("h\n" + "r\n" * 5)
    with ImportProgress(f, tty=True) as progress:
        progress.phase("checking")
        progress.advance(5)
        assert progress.done == 5
        task = progress._progress.tasks[0]
        assert task.total == 5 and task.completed == 5
