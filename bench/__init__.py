"""Benchmarks of the engine against the sandbox on loopback, printed as ratios (`make bench`).

    python -m bench                    the full run (about 15 minutes on two cores); writes bench/results.json
    python -m bench --only efficiency  one case (efficiency, overhead, scaleout, size), full size
    python -m bench --quick            a tiny run of every case, for the smoke test

sandbox_proc.py  the sandbox in a process of its own (its CPU off the engine's GIL)
parties.py       parties seeded through the sandbox's HTTP endpoints, the batch file, the engine's settings
naive.py         the obvious alternative: an httpx loop making the same calls, party by party; on 32
                 threads, the bare httpx loop the engine is compared with
engine.py        one engine run in this process (SQLite or PostgreSQL), timed, its CPU, calls counted
scaleout.py      several `peppol-migrate run --until-idle` processes against one PostgreSQL database
size.py          the 100k import, `status` on it, and the worker's memory after 2k and 20k migrations
memory.py        the worker process whose memory size.py reads
cases.py         the cases, their rounds and their figures
report.py        the figures and targets, the table (median and range), results.json
cpu_breakdown.py `python -m bench.cpu_breakdown`: where the engine's CPU per call goes (a diagnostic)
"""
