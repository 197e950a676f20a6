"""Benchmarks of the engine against the sandbox on loopback, printed as ratios (`make bench`).

    python -m bench            the full run (about ten minutes on two cores); writes bench/results.json
    python -m bench --quick    a tiny run of every case, for the smoke test

sandbox_proc.py  the sandbox in a process of its own (its CPU off the engine's GIL)
parties.py       parties seeded through the sandbox's HTTP endpoints, the batch file, the engine's settings
naive.py         the obvious alternative: an httpx loop making the same calls, party by party
engine.py        one engine run in this process (SQLite or PostgreSQL), timed, calls counted from the sandbox
scaleout.py      several `peppol-migrate run --until-idle` processes against one PostgreSQL database
size.py          the 100k import, `status` on it, and the worker's memory after 2k and 20k migrations
cases.py         the five cases and their figures
report.py        the targets, the table, results.json
"""
