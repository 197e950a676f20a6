"""``python -m bench [--quick] [--only CASE ...] [--rounds N] [--out FILE]``: run, print the table, write the results.

Only the full run writes bench/results.json by default; a partial run (``--quick``, ``--only``,
``--rounds``) writes to the temporary folder unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

from bench import cases, console, preflight, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every case runs")
    parser.add_argument("--out", type=Path, help="where to write the results (default: see above)")
    parser.add_argument("--only", nargs="*", choices=sorted(cases.CASES), help="run only these cases")
    parser.add_argument("--rounds", type=int, help=f"rounds of the repeated cases (default {cases.FULL.rounds})")
    parser.add_argument("--postgres-url", default=cases.FULL.postgres_url)
    args = parser.parse_args(argv)
    # The engine runs in this process too: its warnings show, the ticker's "skipped" notes do not.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    params = cases.QUICK if args.quick else cases.FULL
    if args.postgres_url != params.postgres_url:
        params = dataclasses.replace(params, postgres_url=args.postgres_url)
    if args.rounds is not None:
        params = dataclasses.replace(params, rounds=max(1, args.rounds))
    partial = bool(args.quick or args.only or args.rounds is not None)
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "peppol-bench-results.json" if partial else Path(__file__).parent / "results.json"
    )
    results = report.with_targets(
        cases.run_all(params, only=args.only, progress=lambda m: print(m, file=sys.stderr, flush=True))
    )
    if not args.only:  # the preflight runs once, after the cases (alone: python -m bench.preflight)
        print("bench: preflight, once…", file=sys.stderr, flush=True)
        results["preflight"] = preflight.run(200 if args.quick else preflight.DEFAULT_PARTIES)
        print("bench: the console, once…", file=sys.stderr, flush=True)  # alone: python -m bench.console
        results["console"] = console.run(parties=2_000 if args.quick else console.DEFAULT_PARTIES)
    if args.quick:
        print("quick run: tiny sizes, so the figures say nothing about performance")
    print(report.table(results))
    if "preflight" in results:
        print("\n" + "\n".join(preflight.lines(results["preflight"])))
    if "console" in results:
        print("\n" + console.table(results["console"]))
    print(
        f"\n{results['cores']} cores; load average after the run {results['load_average_after']}; "
        f"took {results['raw']['total_s']} s; written to {out}"
    )
    report.write(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
