"""``python -m bench [--quick] [--out FILE] [--only CASE ...]``: run, print the table, write the results."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench import cases, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every case runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument("--only", nargs="*", choices=sorted(cases.CASES), help="run only these cases")
    parser.add_argument("--postgres-url", default=cases.FULL.postgres_url)
    args = parser.parse_args(argv)
    # The engine runs in this process too: its warnings show, the ticker's "skipped" notes do not.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    params = cases.QUICK if args.quick else cases.FULL
    if args.postgres_url != params.postgres_url:
        params = cases.Params(**{**params.__dict__, "postgres_url": args.postgres_url})
    results = report.with_targets(
        cases.run_all(params, only=args.only, progress=lambda m: print(m, file=sys.stderr, flush=True))
    )
    if args.quick:
        print("quick run: tiny sizes, so the figures say nothing about performance")
    print(report.table(results))
    print(
        f"\n{results['cores']} cores; load average after the run {results['load_average_after']}; "
        f"took {results['raw']['total_s']} s; written to {args.out}"
    )
    report.write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
