"""`aztrain` command line: run the local stack, submit and watch jobs, inspect runs, check manifests."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aztrain.client import DEFAULT_URL, ApiError, Client
from aztrain.errors import AztrainError, ManifestError
from aztrain.manifest import manifest_schema, parse_manifest
from aztrain.settings import PROJECT_ROOT, Settings, load_local_settings


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, key=os.environ.get("AZTRAIN_FUNCTION_KEY", ""))


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def print_transition(row: dict[str, Any]) -> None:
    """One history row, as the CLI and the demo show it."""
    mark = "" if row["applied"] else "  (ignored)"
    before = row["from"] or "·"
    detail = f"  {row['detail']}" if row.get("detail") and row["applied"] else ""
    print(f"  {row['at'][11:23]}  {before:>16} → {row['to']:<16} {row['cause']}{mark}{detail}", flush=True)


def print_runs(runs: list[dict[str, Any]]) -> None:
    if not runs:
        print("no runs")
        return
    print(f"{'RUN':<22} {'JOB':<24} {'STATE':<17} {'TRIGGER':<9} {'CREATED':<20} ERROR / METRICS")
    for run in runs:
        extra = run["error"].splitlines()[0][:80] if run["error"] else json.dumps(run["metrics"])[:80]
        created = run["created_at"][:19]
        print(f"{run['id']:<22} {run['job'][:24]:<24} {run['state']:<17} {run['trigger']:<9} {created:<20} {extra}")


def cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        result = client.submit(Path(args.manifest).read_bytes(), force=args.force)
    except ApiError as exc:
        print(f"rejected: {exc.body.get('error')}", file=sys.stderr)
        return 1
    run = result["run"]
    note = "created" if result["created"] else f"existing run ({result['reason']})"
    print(f"run {run['id']} of job {run['job']}: {run['state']} — {note}")
    if not args.wait:
        return 0
    final = client.watch(run["id"], on_change=print_transition, timeout=args.timeout)
    print(f"{final['state']}: {json.dumps(final['metrics']) if final['metrics'] else final['error']}")
    return 0 if final["state"] == "COMPLETED" else 1


def cmd_runs(args: argparse.Namespace) -> int:
    runs = _client(args).runs(job=args.job, state=args.state, limit=args.limit)
    _print(runs) if args.json else print_runs(runs)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = _client(args).run(args.run_id)
    if args.json:
        _print(run)
        return 0
    print(f"run {run['id']}  job {run['job']}  {run['state']}  ({run['trigger']} from {run['source']})")
    if run["error"]:
        print(f"error: {run['error']}")
    if run["metrics"]:
        print(f"metrics: {json.dumps(run['metrics'])}")
    for row in run["history"]:
        print_transition(row)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    run = _client(args).cancel(args.run_id)
    print(f"run {run['id']}: {run['state']}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    _print(_client(args).jobs())
    return 0


def cmd_clusters(args: argparse.Namespace) -> int:
    _print(_client(args).clusters())
    return 0


def cmd_window(args: argparse.Namespace) -> int:
    window = _client(args).window(args.job)
    when = f", fires at {window['fires_at'][:19]}" if window["fires_at"] and window["action"] == "wait" else ""
    print(f"{window['job']}: {window['arrivals']} new blob(s) pending — {window['reason']}{when}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    models = _client(args).models(args.name)
    if args.json or not models:
        _print(models) if args.json else print("no models registered")
        return 0
    print(f"{'MODEL':<24} {'VER':>4} {'PROMOTED':<8} {'RUN':<22} METRICS / GATE")
    for m in models:
        flag = "yes" if m["promoted"] else ""
        metrics = json.dumps(m["metrics"])[:60]
        print(f"{m['name'][:24]:<24} {m['version']:>4} {flag:<8} {m['run_id']:<22} {metrics}  {m['gate']}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    name, sep, version = args.model.rpartition("@")
    if not sep or not version.isdigit():
        print("error: name the model as NAME@VERSION, e.g. digits-classifier@3", file=sys.stderr)
        return 2
    lineage = _client(args).lineage(name, int(version))
    if args.json:
        _print(lineage)
        return 0
    model, run, snap = lineage["model"], lineage["run"], lineage["snapshot"]
    promoted = "(promoted) " if model["promoted"] else ""
    print(f"model    {model['name']}@{model['version']}  {promoted}{model['artifact']}")
    print(f"  run    {run['id']}  {run['state']}  {run['trigger']} from {run['source']}")
    print(f"         manifest {run['manifest_hash'][:12]}  metrics {json.dumps(model['metrics'])}")
    print(f"  data   {snap['id']}  {len(snap['blobs'])} blob(s) in {snap['container']}/{snap['prefix']}")
    for blob in snap["blobs"]:
        print(f"    {blob['name']}  {blob['size']} B  etag {blob['etag']}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.manifest)
    try:
        manifest = parse_manifest(path.read_bytes(), source=str(path))
    except ManifestError as exc:
        print(f"{path}: invalid", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{path}: valid (job {manifest.name}, hash {manifest.content_hash[:12]})")
    if args.normalised:
        _print(manifest.normalised())
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from aztrain.plan import render_plan  # only this command loads azure.ai.ml

    load_local_settings(PROJECT_ROOT / "local.settings.json")  # the same profiles and environment as the app
    path = Path(args.manifest)
    try:
        sys.stdout.write(render_plan(path.read_bytes(), Settings.from_env()))
    except ManifestError as exc:
        print(f"{path}: cannot run on Azure ML", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    _print(manifest_schema())
    return 0


def configure_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO


def cmd_dev(args: argparse.Namespace) -> int:
    from aztrain.localstack import LocalStack

    configure_logging(logging.INFO)

    with LocalStack(
        state_dir=Path(args.state_dir),
        port=args.port,
        azurite_port=args.azurite_port,
        timer_interval=args.timer_interval,
    ) as stack:
        print(f"aztrain dev host on {stack.url} (Azurite on 127.0.0.1:{args.azurite_port}); Ctrl-C to stop", flush=True)
        stack.serve_forever()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from aztrain.demo import run_demo

    configure_logging(logging.WARNING)  # the demo narrates; only problems should interrupt it
    return run_demo(port=args.port, azurite_port=args.azurite_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aztrain", description=__doc__)
    parser.add_argument(
        "--url", default=os.environ.get("AZTRAIN_URL", DEFAULT_URL), help="API base URL (env AZTRAIN_URL)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run Azurite + the Functions dev host (HTTP, Event Grid, timers)")
    p.add_argument("--port", type=int, default=7071)
    p.add_argument("--azurite-port", type=int, default=10000, help="blob port; queue and table use the next two")
    p.add_argument("--state-dir", default=".aztrain/dev")
    p.add_argument("--timer-interval", type=float, default=2.0, help="seconds between reconciler runs")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("demo", help="end-to-end demo: data + manifest in, trained model out, cluster back to zero")
    p.add_argument("--port", type=int, default=7072)
    p.add_argument("--azurite-port", type=int, default=10010)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("submit", help="POST a manifest to /api/jobs")
    p.add_argument("manifest")
    p.add_argument("--force", action="store_true", help="run again even if an identical manifest already ran")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends")
    p.add_argument("--timeout", type=float, default=3600)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("runs", help="list runs, newest first (rejected manifests show as REJECTED)")
    p.add_argument("--job", default="")
    p.add_argument("--state", default="", help="e.g. RUNNING or REJECTED,FAILED")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="one run with its full history")
    p.add_argument("run_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("cancel", help="cancel a run")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_cancel)

    sub.add_parser("jobs", help="registered jobs and what they watch").set_defaults(func=cmd_jobs)

    p = sub.add_parser("window", help="a watched job's pending retraining window: arrivals, when it fires, why not")
    p.add_argument("job")
    p.set_defaults(func=cmd_window)

    p = sub.add_parser("models", help="registered model versions (all, or of one model)")
    p.add_argument("name", nargs="?", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("lineage", help="model → run → snapshot → blobs, for NAME@VERSION")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lineage)
    sub.add_parser("clusters", help="clusters: desired vs observed nodes").set_defaults(func=cmd_clusters)

    p = sub.add_parser("validate", help="check a manifest offline")
    p.add_argument("manifest")
    p.add_argument("--normalised", action="store_true", help="print the normalised manifest")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="print the Azure ML compute and job definitions of a manifest (offline)")
    p.add_argument("manifest")
    p.set_defaults(func=cmd_plan)

    sub.add_parser("schema", help="print the manifest JSON Schema").set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (AztrainError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
