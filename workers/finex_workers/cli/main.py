"""The ``finex`` command: the runbook's verbs, the database, demo data and local development.

Every ``workers`` verb takes ``--worker matrix|growth|probability`` to act on one queue (default:
all three). Listings take ``--json``. Destructive verbs ask first unless ``--yes``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from finex_workers.console import ProgressBar
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.settings import Settings, SettingsError

#: Metrics ports listen on every interface by default: Prometheus scrapes them from another pod.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def _queues(args: argparse.Namespace) -> list[str]:
    return [args.worker] if args.worker else list(QUEUE_NAMES)


def _redis(settings: Settings) -> Any:
    from finex_workers.infra.redisconn import redis_from_url

    return redis_from_url(settings.redis_url)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Refusing without a terminal; pass --yes to confirm.", file=sys.stderr)
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in {"y", "yes"}


# -- workers verbs ---------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.runtime.supervisor import Supervisor, configure_logging

    configure_logging(args.log_level)
    return Supervisor(
        settings,
        _queues(args),
        burst=args.burst,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    ).run()


def cmd_exporter(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.observability.exporter import serve
    from finex_workers.runtime.supervisor import configure_logging

    configure_logging(args.log_level)
    return serve(settings, _queues(args), host=args.host, port=args.port)


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    code = 0
    for queue in _queues(args):
        report = control.stop_workers(conn, queue)
        print(f"{queue}: asked {len(report.asked)} worker(s) to finish their job and exit")
        if report.unreachable:
            code = 1
            print(
                f"{queue}: {len(report.unreachable)} registered worker(s) are not listening for "
                f"commands (probably dead): {', '.join(report.unreachable)}. "
                "`finex workers clean-stuck-jobs` recovers their jobs.",
                file=sys.stderr,
            )
    return code


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    for queue in _queues(args):
        changed = control.pause(conn, queue, by="cli")
        print(f"{queue}: {'paused' if changed else 'already paused'}")
    return 0


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    for queue in _queues(args):
        changed = control.resume(conn, queue)
        print(f"{queue}: {'resumed' if changed else 'was not paused'}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    states = [control.queue_state(conn, q) for q in _queues(args)]
    if args.json:
        _print_json([s.as_dict() for s in states])
        return 0
    cols = ("queue", "paused", "waiting", "active", "delayed", "failed", "completed", "workers")
    print("".join(f"{c:<12}" for c in cols))
    for s in states:
        row = s.as_dict()
        print(
            "".join(
                f"{('yes' if row[c] is True else 'no' if row[c] is False else row[c])!s:<12}"
                for c in cols
            )
        )
    return 0


def cmd_clean(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    reports = [control.clean_stuck_jobs(conn, q) for q in _queues(args)]
    if args.json:
        _print_json([r.as_dict() for r in reports])
        return 0
    for r in reports:
        print(f"{r.queue}: {len(r.requeued)} requeued, {len(r.dead_lettered)} dead-lettered")
        for job_id, reason in r.reasons.items():
            verdict = "requeued" if job_id in r.requeued else "dead-lettered"
            print(f"  {job_id}: {verdict} ({reason})")
    return 0


def cmd_list_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    jobs = [j for q in _queues(args) for j in control.list_dlq(conn, q, limit=args.limit)]
    if args.json:
        _print_json([j.as_dict() for j in jobs])
        return 0
    if not jobs:
        print("the DLQ is empty")
        return 0
    for j in jobs:
        print(f"{j.queue:<12} {j.id:<40} {j.failed_at or '-':<28} retried {j.dlq_retries}x")
        print(f"    {j.func}({', '.join(f'{k}={v!r}' for k, v in j.kwargs.items())})")
        print(f"    {j.error}")
    return 0


def cmd_retry_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    total = 0
    for queue in _queues(args):
        sent = control.retry_dlq(
            conn, queue, args.id or None, progress=ProgressBar(f"retry-dlq {queue}")
        )
        total += len(sent)
        print(f"{queue}: sent {len(sent)} job(s) back to the queue")
    return 0 if total or not args.id else 1


def cmd_empty_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    queues = _queues(args)
    counts = {q: len(control.list_dlq(conn, q)) for q in queues}
    if not sum(counts.values()):
        print("the DLQ is empty; nothing to do")
        return 0
    summary = ", ".join(f"{q}: {n}" for q, n in counts.items())
    if not _confirm(f"Delete {sum(counts.values())} dead-lettered job(s) ({summary})?", args.yes):
        print("aborted; nothing deleted", file=sys.stderr)
        return 1
    for queue in queues:
        removed = control.empty_dlq(conn, queue, progress=ProgressBar(f"empty-dlq {queue}"))
        print(f"{queue}: removed {removed} job(s)")
    return 0


# -- data ------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.infra import migrate

    applied = migrate.migrate(settings.database_url)
    print(
        f"applied {len(applied)} migration(s): {', '.join(applied)}"
        if applied
        else "database is up to date"
    )
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from finex_workers import domain

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        summary = domain.seed(
            conn,
            assets=args.assets,
            scenarios=args.scenarios,
            days=args.days,
            seed=args.seed,
            replace=args.replace,
        )
    print(f"seeded: {summary}")
    return 0


def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.runtime import recompute

    conn = _redis(settings)
    if args.what == "full":
        plan = recompute.enqueue_full(conn, settings, progress=ProgressBar("enqueue"))
        print(f"enqueued {plan.created} job(s), {plan.deduplicated} already pending")
    elif args.what == "growth":
        for aid in args.ids:
            print(recompute.enqueue_one(conn, settings, "growth", aid))
    elif args.what == "probability":
        for sid in args.ids:
            print(recompute.enqueue_one(conn, settings, "probability", sid))
    elif args.what == "matrix":
        print(recompute.enqueue_one(conn, settings, "matrix", *args.ids))
    if args.wait:
        return recompute.wait_until_idle(conn, progress=ProgressBar("computing"))
    return 0


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.dev import devserver

    return devserver.run(assets=args.assets, scenarios=args.scenarios)


# -- parser ----------------------------------------------------------------------------------


def _add_worker_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--worker", choices=QUEUE_NAMES, help="act on this queue only (default: all three)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finex",
        description="Finex worker fleet: RQ queues (matrix, growth, probability) on Redis, "
        "results in PostgreSQL. Reads REDIS_URL, DATABASE_URL and "
        "*_WORKER_CONCURRENCY from the environment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    workers = sub.add_parser("workers", help="the runbook's worker verbs")
    wsub = workers.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs: list[tuple[str, str, Callable[[argparse.Namespace, Settings], int]]] = [
        (
            "start",
            "run worker processes in the foreground (N per queue, from "
            "*_WORKER_CONCURRENCY); SIGTERM finishes running jobs first",
            cmd_start,
        ),
        (
            "stop",
            "ask live workers to finish their current job and exit; exits 1 naming any "
            "registered worker that is not listening (dead)",
            cmd_stop,
        ),
        ("pause", "stop workers taking new jobs; enqueues still land", cmd_pause),
        ("resume", "let workers take jobs again", cmd_resume),
        (
            "status",
            "queue counts: paused, waiting, active, delayed, failed, completed, workers",
            cmd_status,
        ),
        (
            "clean-stuck-jobs",
            "recover jobs whose worker died: retry, or dead-letter with reason",
            cmd_clean,
        ),
        ("list-dlq", "list dead-lettered jobs with their last error", cmd_list_dlq),
        ("retry-dlq", "send dead-lettered jobs back to their queue (crash-safe)", cmd_retry_dlq),
        ("empty-dlq", "delete dead-lettered jobs (asks first)", cmd_empty_dlq),
    ]
    for name, help_text, func in verbs:
        p = wsub.add_parser(name, help=help_text, description=help_text)
        _add_worker_arg(p)
        p.set_defaults(func=func)
        if name in {"status", "clean-stuck-jobs", "list-dlq"}:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "start":
            p.add_argument(
                "--burst",
                action="store_true",
                help="exit when the queues are empty (for batch runs and tests)",
            )
            p.add_argument("--log-level", default="INFO")
            p.add_argument(
                "--metrics-port",
                type=int,
                default=None,
                help="serve the workers' job metrics (durations, outcomes) on this port",
            )
            p.add_argument(
                "--metrics-host", default=ALL_INTERFACES, help="address for --metrics-port"
            )
        if name == "list-dlq":
            p.add_argument("--limit", type=int, default=None, help="show at most N per queue")
        if name == "retry-dlq":
            p.add_argument("--id", action="append", help="retry only this job id (repeatable)")
        if name == "empty-dlq":
            p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    p = sub.add_parser(
        "exporter",
        help="serve queue metrics (job counts, paused, workers, oldest job) on /metrics",
        description="Prometheus exporter for the queues: reads Redis at every scrape.",
    )
    _add_worker_arg(p)
    p.add_argument("--port", type=int, default=9121)
    p.add_argument("--host", default=ALL_INTERFACES, help="address to listen on")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_exporter)

    db = sub.add_parser("db", help="database schema")
    dbsub = db.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = dbsub.add_parser("migrate", help="apply pending migrations (idempotent)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load deterministic demo data")
    p.add_argument("--assets", type=int, default=1000)
    p.add_argument("--scenarios", type=int, default=20)
    p.add_argument("--days", type=int, default=260, help="price history length per asset")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--replace", action="store_true", help="wipe existing domain data first")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("enqueue", help="enqueue recomputes (deduplicated)")
    p.add_argument(
        "what",
        choices=("full", "growth", "probability", "matrix"),
        help="full: growth for every asset, probability for every scenario, then the "
        "whole matrix; growth/probability IDS: those assets/scenarios; "
        "matrix IDS: those assets' rows",
    )
    p.add_argument("ids", nargs="*", type=int)
    p.add_argument("--wait", action="store_true", help="show progress until the queues are idle")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("dev", help="run the whole fleet locally (what `make dev` runs)")
    p.add_argument("--assets", type=int, default=2000)
    p.add_argument("--scenarios", type=int, default=24)
    p.set_defaults(func=cmd_dev, skip_settings_check=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"finex: configuration error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        code = int(args.func(args, settings))
    except SettingsError as exc:
        print(f"finex: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted after {time.monotonic() - started:.1f}s", file=sys.stderr)
        return 130
    return code
