"""The ``finex`` command: the runbook's verbs, the database, demo data and local development.

Every ``workers`` verb takes ``--worker matrix|growth|probability`` to act on one queue (default:
all three). Every verb that reports takes ``--json`` (fields: docs/cli.md). Destructive verbs
ask first unless ``--yes``. A configuration or connection problem is one line on stderr naming
the variable and the password-redacted URL: exit 2 for a bad value, 3 for an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from finex_workers.console import ProgressBar
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.core.settings import Settings, SettingsError
from finex_workers.dev import devstate

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


def _noop(done: int, total: int) -> None:
    return None


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
        respawn_stopped=args.respawn_stopped,
    ).run()


def cmd_exporter(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.observability.exporter import serve
    from finex_workers.runtime.supervisor import configure_logging

    configure_logging(args.log_level)
    return serve(settings, _queues(args), host=args.host, port=args.port)


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    reports = [control.stop_workers(conn, queue) for queue in _queues(args)]
    code = 1 if any(r.unreachable for r in reports) else 0
    if args.json:
        _print_json([asdict(r) for r in reports])
        return code
    for report in reports:
        queue = report.queue
        print(f"{queue}: asked {len(report.asked)} worker(s) to finish their job and exit")
        if report.unreachable:
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
    rows = [
        {"queue": q, "paused": True, "changed": control.pause(conn, q, by="cli")}
        for q in _queues(args)
    ]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        print(f"{row['queue']}: {'paused' if row['changed'] else 'already paused'}")
    return 0


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    rows = [
        {"queue": q, "paused": False, "changed": control.resume(conn, q)} for q in _queues(args)
    ]
    if args.json:
        _print_json(rows)
        return 0
    for row in rows:
        print(f"{row['queue']}: {'resumed' if row['changed'] else 'was not paused'}")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control
    from finex_workers.infra.rqworkers import registered_workers

    conn = _redis(settings)
    rows = []
    for queue in _queues(args):
        row = control.queue_state(conn, queue).as_dict()
        registered = registered_workers(conn, queue)
        live = [w.as_dict() for w in registered if w.alive]
        row["workers"] = len(live)  # queue_state counts registrations; dead ones are apart
        row["live_workers"] = live
        row["dead_workers"] = [w.as_dict() for w in registered if not w.alive]
        rows.append(row)
    if args.json:
        _print_json(rows)
        return 0
    cols = ("queue", "paused", "waiting", "active", "delayed", "failed", "completed", "workers")
    print("".join(f"{c:<12}" for c in cols))
    for row in rows:
        print(
            "".join(
                f"{('yes' if row[c] is True else 'no' if row[c] is False else row[c])!s:<12}"
                for c in cols
            )
        )
    for row in rows:
        if row["quarantined"]:
            print(
                f"\n{row['queue']}: {row['quarantined']} job(s) quarantined for crashing their "
                f"worker (see list-dlq); last: {row['last_quarantined']}"
            )
    for title, key in (("live workers", "live_workers"), ("dead but registered", "dead_workers")):
        workers = [w for row in rows for w in row[key]]
        if not workers:
            continue
        print(f"\n{title}:")
        for w in workers:
            job = f"{w['current_job']} ({w['job_age_seconds']}s)" if w["current_job"] else "no job"
            print(f"  {w['name']:<40} pid {w['pid']!s:<8} {w['host']!s:<20} {w['state']:<10} {job}")
        if key == "dead_workers":
            print(
                f"  (their registration expires within FINEX_WORKER_TTL={settings.worker_ttl}s; "
                "`finex workers clean-stuck-jobs` recovers their jobs)"
            )
    return 0


def cmd_restart(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.cli.restart import restart_queue

    conn = _redis(settings)
    reports = []
    for queue in _queues(args):

        def say(message: str, queue: str = queue) -> None:
            print(f"{queue}: {message}", file=sys.stderr if args.json else sys.stdout, flush=True)

        reports.append(
            restart_queue(
                conn,
                queue,
                drain_timeout=args.drain_timeout,
                stop_timeout=args.stop_timeout,
                start_timeout=args.start_timeout,
                say=say,
            )
        )
    if args.json:
        _print_json([r.as_dict() for r in reports])
    return 0 if all(r.ok for r in reports) else 1


def cmd_clean(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    reports = [
        control.clean_stuck_jobs(conn, q, max_crashes=settings.max_crashes) for q in _queues(args)
    ]
    if args.json:
        _print_json([r.as_dict() for r in reports])
        return 0
    for r in reports:
        print(
            f"{r.queue}: {len(r.requeued)} requeued, {len(r.dead_lettered)} dead-lettered"
            f" ({len(r.quarantined)} quarantined)"
        )
        for job_id, reason in r.reasons.items():
            verdict = "requeued" if job_id in r.requeued else "dead-lettered"
            verdict = "quarantined" if job_id in r.quarantined else verdict
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
        if j.quarantined:
            print(f"    QUARANTINED after {j.crashes} crashes (not auto-retried): {j.quarantined}")
    return 0


def cmd_retry_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    sent: dict[str, list[str]] = {}
    for queue in _queues(args):
        progress = None if args.json else ProgressBar(f"retry-dlq {queue}")
        sent[queue] = control.retry_dlq(conn, queue, args.id or None, progress=progress or _noop)
    found = {job_id for ids in sent.values() for job_id in ids}
    not_found = [job_id for job_id in dict.fromkeys(args.id or []) if job_id not in found]
    if args.json:
        _print_json({"sent": sent, "not_found": not_found})
    else:
        for queue, ids in sent.items():
            print(f"{queue}: sent {len(ids)} job(s) back to the queue")
    if not_found:
        where = args.worker or "any queue"
        print(
            f"finex: job id(s) not found in the DLQ of {where}: {', '.join(not_found)} "
            "(`finex workers list-dlq` lists them)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_empty_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers import control

    conn = _redis(settings)
    queues = _queues(args)
    counts = {q: len(control.list_dlq(conn, q)) for q in queues}
    if not sum(counts.values()):
        if args.json:
            _print_json({q: 0 for q in queues})
        else:
            print("the DLQ is empty; nothing to do")
        return 0
    summary = ", ".join(f"{q}: {n}" for q, n in counts.items())
    if not _confirm(f"Delete {sum(counts.values())} dead-lettered job(s) ({summary})?", args.yes):
        print("aborted; nothing deleted", file=sys.stderr)
        return 1
    removed = {}
    for queue in queues:
        progress = None if args.json else ProgressBar(f"empty-dlq {queue}")
        removed[queue] = control.empty_dlq(conn, queue, progress=progress or _noop)
    if args.json:
        _print_json(removed)
    else:
        for queue, n in removed.items():
            print(f"{queue}: removed {n} job(s)")
    return 0


# -- data ------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.infra import migrate

    applied = migrate.migrate(settings.database_url)
    if args.json:
        _print_json({"applied": applied})
        return 0
    print(
        f"applied {len(applied)} migration(s): {', '.join(applied)}"
        if applied
        else "database is up to date"
    )
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from finex_workers import domain
    from finex_workers.core.errors import AlreadySeededError

    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            summary = domain.seed(
                conn,
                assets=args.assets,
                scenarios=args.scenarios,
                days=args.days,
                seed=args.seed,
                replace=args.replace,
            )
    except AlreadySeededError:
        print(
            "finex seed: the database already has demo data; pass --replace to wipe the domain "
            "tables and seed again",
            file=sys.stderr,
        )
        return 1
    if args.json:
        _print_json(asdict(summary))
        return 0
    print(f"seeded: {summary}")
    return 0


def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    from finex_workers.runtime import enqueue, recompute

    if args.what == "full" and args.ids:
        print("finex enqueue: `full` takes no ids (it recomputes everything)", file=sys.stderr)
        return 2
    if args.what != "full" and not args.ids:
        print(
            f"finex enqueue: `{args.what}` needs at least one id "
            f"({'asset' if args.what != 'probability' else 'scenario'} ids, positive integers)",
            file=sys.stderr,
        )
        return 2
    conn = _redis(settings)
    jobs: list[dict[str, Any]] = []
    if args.what == "full":
        plan = recompute.enqueue_full(
            conn, settings, progress=None if args.json else ProgressBar("enqueue")
        )
        created, deduplicated = plan.created, plan.deduplicated
    else:
        if args.what == "growth":
            results = [(aid, enqueue.growth(conn, settings, aid)) for aid in args.ids]
        elif args.what == "probability":
            results = [(sid, enqueue.probability(conn, settings, sid)) for sid in args.ids]
        else:
            results = [(args.ids, enqueue.matrix_rows(conn, settings, args.ids))]
        jobs = [
            {
                "ids": ids if isinstance(ids, list) else [ids],
                "job_id": r.job_id,
                "created": r.created,
            }
            for ids, r in results
        ]
        created = sum(1 for j in jobs if j["created"])
        deduplicated = len(jobs) - created
    if args.json:
        _print_json(
            {"what": args.what, "created": created, "deduplicated": deduplicated, "jobs": jobs}
        )
    elif args.what == "full":
        print(f"enqueued {created} job(s), {deduplicated} already pending")
    else:
        for job in jobs:
            verb = "enqueued" if job["created"] else "already pending"
            print(f"{args.what} {job['ids']}: {verb} as {job['job_id']}")
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


def _add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="machine-readable output (fields: docs/cli.md)"
    )


def positive_id(raw: str) -> int:
    """An asset or scenario id: a positive integer (argparse type)."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an id (ids are positive integers)")
    return value


#: Verbs that report, and so take --json.
JSON_VERBS = {
    "stop",
    "pause",
    "resume",
    "status",
    "restart",
    "clean-stuck-jobs",
    "list-dlq",
    "retry-dlq",
    "empty-dlq",
}

RESTART_HELP = (
    "the runbook's safe restart, queue by queue: pause, wait for active jobs to drain, ask the "
    "workers to stop, wait until they exit and for their replacements, resume. It starts no "
    "process: replacements come from whatever supervises the workers (Kubernetes, or `finex "
    "workers start --respawn-stopped` as make dev runs); without one the queue is resumed with "
    "no workers and it exits 1"
)


def _add_verb_options(name: str, p: argparse.ArgumentParser) -> None:
    """The options only some workers verbs take."""
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
        p.add_argument("--metrics-host", default=ALL_INTERFACES, help="address for --metrics-port")
        p.add_argument(
            "--respawn-stopped",
            action="store_true",
            help="start a fresh worker when one exits after `finex workers stop` (so "
            "`finex workers restart` works on one machine; make dev uses it). Default: a "
            "stopped worker stays stopped and the supervisor exits after its last one",
        )
    if name == "restart":
        p.add_argument("--drain-timeout", type=float, default=600.0, metavar="SECONDS")
        p.add_argument("--stop-timeout", type=float, default=60.0, metavar="SECONDS")
        p.add_argument(
            "--start-timeout",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="how long to wait for replacement workers (0: do not wait)",
        )
    if name == "list-dlq":
        p.add_argument("--limit", type=int, default=None, help="show at most N per queue")
    if name == "retry-dlq":
        p.add_argument("--id", action="append", help="retry only this job id (repeatable)")
    if name == "empty-dlq":
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finex",
        description="Finex worker fleet: RQ queues (matrix, growth, probability) on Redis, "
        "results in PostgreSQL. Reads REDIS_URL, DATABASE_URL and "
        "*_WORKER_CONCURRENCY from the environment; with neither URL set, uses the servers of "
        "a running `make dev` (its .data/dev.env).",
        epilog="Exit codes: 0 done; 1 the verb did not fully succeed (it says why); "
        "2 bad usage or configuration; 3 Redis or PostgreSQL unreachable.",
    )
    from finex_workers import __version__

    parser.add_argument(
        "--version", action="version", version=f"finex {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    workers = sub.add_parser("workers", help="the runbook's worker verbs")
    wsub = workers.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs: list[tuple[str, str, Callable[[argparse.Namespace, Settings], int]]] = [
        (
            "start",
            "run worker processes in the foreground (N per queue, from "
            "*_WORKER_CONCURRENCY); SIGTERM finishes running jobs first. Waits (with "
            "capped backoff) while Redis is unreachable",
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
        ("restart", RESTART_HELP, cmd_restart),
        (
            "status",
            "queue counts (paused, waiting, active, delayed, failed, completed, live workers), "
            "then each live worker and, apart, dead-but-registered ones",
            cmd_status,
        ),
        (
            "clean-stuck-jobs",
            "recover jobs whose worker died: retry, or dead-letter with reason",
            cmd_clean,
        ),
        ("list-dlq", "list dead-lettered jobs with their last error", cmd_list_dlq),
        (
            "retry-dlq",
            "send dead-lettered jobs back to their queue (crash-safe); exits 1 naming any "
            "--id not found in the DLQ",
            cmd_retry_dlq,
        ),
        ("empty-dlq", "delete dead-lettered jobs (asks first)", cmd_empty_dlq),
    ]
    for name, help_text, func in verbs:
        p = wsub.add_parser(name, help=help_text, description=help_text)
        _add_worker_arg(p)
        p.set_defaults(func=func)
        if name in JSON_VERBS:
            _add_json_arg(p)
        _add_verb_options(name, p)

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
    _add_json_arg(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load deterministic demo data")
    p.add_argument("--assets", type=int, default=1000)
    p.add_argument("--scenarios", type=int, default=20)
    p.add_argument("--days", type=int, default=260, help="price history length per asset")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--replace", action="store_true", help="wipe existing domain data first")
    _add_json_arg(p)
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("enqueue", help="enqueue recomputes (deduplicated)")
    p.add_argument(
        "what",
        choices=("full", "growth", "probability", "matrix"),
        help="full (no ids): growth for every asset, probability for every scenario, then the "
        "whole matrix; growth/probability IDS: those assets/scenarios; "
        "matrix IDS: those assets' rows",
    )
    p.add_argument("ids", nargs="*", type=positive_id, metavar="ID")
    p.add_argument("--wait", action="store_true", help="show progress until the queues are idle")
    _add_json_arg(p)
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("dev", help="run the whole fleet locally (what `make dev` runs)")
    p.add_argument("--assets", type=int, default=2000)
    p.add_argument("--scenarios", type=int, default=24)
    p.set_defaults(func=cmd_dev, skip_settings_check=True)
    return parser


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """The process environment, plus a running ``make dev``'s URLs when neither is set."""
    env = dict(os.environ)
    if args.func is cmd_dev or any(env.get(name) for name in devstate.VARIABLES):
        return env
    directory = devstate.data_dir(env)
    urls = devstate.read(directory)
    if urls:
        print(
            f"finex: REDIS_URL and DATABASE_URL are unset; using make dev's servers "
            f"({directory / devstate.STATE_FILE})",
            file=sys.stderr,
        )
        env.update(urls)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from finex_workers.control.rqmirror import rq_mismatch

    refusal = rq_mismatch()
    if refusal is not None:
        print(f"finex: {refusal}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(_environment(args))
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
    except Exception as exc:
        from finex_workers.infra.reachability import describe

        unreachable = describe(exc, settings)
        if unreachable is None:
            raise
        print(f"finex: {unreachable}", file=sys.stderr)
        return 3
    return code
