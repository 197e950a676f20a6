"""``peppol-migrate run``: the worker, with the run contract (when it returns, what its exit code
says, how it stops on a signal). Parsed quickly; what it runs is imported when it runs."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime

log = logging.getLogger("migration_engine.cli")

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

EXIT_CODES = """\
exit codes of run:
  0    stopped: --until-idle found nothing left to do; --until-settled found every migration
       completed or cancelled; or SIGTERM asked it to stop (steps in flight were recorded)
  1    the worker could not run (the database or the PSB's identity server failed)
  2    bad input: a setting, missing or rejected PSB credentials, the key-encryption key,
       a missing or out-of-date database
  3    --until-settled: what is open waits on others (a new provider's takeover, a key from
       the current provider, an operator's resume or manual key export)
  4    --until-settled: some migrations need a person (needs_attention, key_rejected,
       key_expired): see `status`, then `retry`, `key set` or `cancel`
  130  interrupted (Ctrl-C): steps in flight were recorded first
"""

DESCRIPTION = """\
Run the worker: claim due migrations, run their steps, record the outcomes.

Without an option it serves until SIGTERM or Ctrl-C (then stops claiming, lets running steps
finish and record, and exits).
--until-settled returns as soon as nothing can progress without outside help: nothing in
  flight, leased or due, and every migration scheduled later is an outbound key_delivered
  (it waits for the new provider's takeover). The engine's own backoff retries, inbound
  takeover polls and re-issues are waited for. It prints what is still open, per state, and
  when the next poll is due; the exit code says whether all settled (0), the rest waits on
  others (3), or some need a person (4).
--until-idle drains: it also waits for every poll the engine has scheduled, outbound
  takeover polls included (up to keys.ttl_h), then exits 0.
"""


def add_parser(sub: Any) -> None:
    """Register the ``run`` subcommand on the CLI's subparsers."""
    run = sub.add_parser(
        "run",
        help="run the worker",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    until = run.add_mutually_exclusive_group()
    until.add_argument(
        "--until-settled", action="store_true", help="return when nothing can progress without outside help"
    )
    until.add_argument(
        "--until-idle", action="store_true", help="return when nothing is due, scheduled or in flight"
    )
    run.add_argument("--concurrency", type=int, help="steps in flight (default worker.concurrency)")
    run.add_argument(
        "--metrics-port", type=int, help="serve /healthz, /readyz and /metrics on this port (default: off)"
    )
    run.add_argument("--metrics-host", default="127.0.0.1", help="the address of --metrics-port (default 127.0.0.1)")


def run(rt: Runtime, args: argparse.Namespace) -> int:
    """The run contract: ``DESCRIPTION`` and ``EXIT_CODES`` above (and docs/operations.md).
    Checks everything it can before the first claim: the schema, the key-encryption key, the
    PSB credentials (one token request)."""
    import signal
    import threading

    from migration_engine.cli.progress import ProgressDisplay
    from migration_engine.cli.service import WorkerReadiness, serving
    from migration_engine.cli.serving import serving_switch_interval
    from migration_engine.engine.settlement import settlement
    from migration_engine.settings import with_overrides

    if args.concurrency is not None:
        if args.concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, not {args.concurrency}")
        rt.settings = with_overrides(rt.settings, worker={"concurrency": args.concurrency})
    rt.checked_vault(rt.checked_store())  # exit 2 before the network: schema, key-encryption key
    rt.check_psb_credentials()
    worker = rt.worker()

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if received:
            log.warning(
                "already stopping: the steps in flight finish (within worker.lease_s) and are recorded",
                extra={"action": "worker_stopping"},
            )
        received.append(signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    mode = "until settled" if args.until_settled else "until idle" if args.until_idle else "until stopped"
    log.info(
        f"worker started: {worker.worker_id}, concurrency {worker.concurrency}, database {rt.database_label()}, "
        f"psb {rt.settings.psb.base_url}, {mode}",
        extra={"action": "worker_started"},
    )
    readiness = WorkerReadiness(worker.store, lambda: worker.breaker.state)
    with (
        serving(worker.metrics.registry, readiness, port=args.metrics_port, host=args.metrics_host),
        serving_switch_interval(),
        ProgressDisplay(worker.store, extra=lambda: f"circuit={worker.breaker.state}"),
    ):
        worker.run(until_idle=args.until_idle, until_settled=args.until_settled, stop=stop)
    if received:
        why = "interrupted (SIGINT)" if received[0] == signal.SIGINT else "asked to stop (SIGTERM)"
    else:
        why = "settled" if args.until_settled else "idle" if args.until_idle else "stopped"
    log.info(
        f"worker stopped: {worker.worker_id}, {why}, {worker.steps_run} steps run",
        extra={"action": "worker_stopped"},
    )
    if args.until_settled or args.until_idle:
        result = settlement(worker.store)
        print("\n".join(result.lines() if args.until_settled else result.lines()[1:] or ["nothing is open"]))
        if not received:
            return int(result.outcome) if args.until_settled else 0
    return INTERRUPTED if received and received[0] == signal.SIGINT else 0
