"""Subcommands whose code lives in reports/, serving/ and llmcap/plan.py: parse, call, print."""

from __future__ import annotations

from pathlib import Path

from llmcap.rundir import PLAN_FILE, is_run_dir


def _user_error(message: str):
    from llmcap.errors import BadInput

    return BadInput(message)


def cmd_report(args) -> int:
    from reports.report import write_report

    run_dir = Path(args.run_dir)
    if (run_dir / PLAN_FILE).is_file() and not is_run_dir(run_dir):
        from llmcap.plan import rerender

        rerender(run_dir, args.prices)
        print(f"llmcap: {run_dir}: every run's report, comparison.md, comparison.html and index written again")
        return 0
    if not is_run_dir(run_dir):
        raise _user_error(f"{run_dir}: not a run directory (no result.json) nor a plan's (no {PLAN_FILE})")
    cap = write_report(run_dir, args.prices)
    rps = cap.get("max_sustained_rps")
    print(
        f"llmcap: {run_dir}/report.md, report.html, capacity.json written; max sustained "
        f"{f'{rps:.1f} req/s' if rps else 'none'}"
    )
    return 0


def cmd_compare(args) -> int:
    from reports.compare import write_comparison

    for d in args.run_dirs:
        if not is_run_dir(d):
            raise _user_error(f"{d}: not a run directory (no result.json)")
    out = Path(args.out or "comparison")
    data = write_comparison(args.run_dirs, out)
    print(
        f"llmcap: {out}/comparison.md, comparison.html, comparison.json written "
        f"({len(data['variants'])} runs, baseline {data['baseline']})"
    )
    return 0


def cmd_cost(args) -> int:
    from reports.cost import usd_per_million_requests

    if args.rps <= 0 or args.gpu_hourly < 0 or args.gpus < 1:
        raise _user_error("--rps must be > 0, --gpu-hourly >= 0, --gpus >= 1")
    for u in args.utilization:
        if not 0 < u <= 1:
            raise _user_error(f"--utilization {u}: expected a number in (0, 1]")
    print(f"{args.rps:g} req/s on {args.gpus} GPU(s) at ${args.gpu_hourly:.2f}/GPU-hour:")
    for u in args.utilization:
        cost = usd_per_million_requests(args.rps, args.gpu_hourly, args.gpus, u)
        print(f"  {u * 100:5.1f} % utilization: ${cost:,.2f} per million requests")
    return 0


def register_reports(sub) -> None:
    p = sub.add_parser("report", help="write the capacity report of a run directory")
    p.add_argument(
        "run_dir", help="a load test's run directory (it holds result.json), or a plan's: all of it written again"
    )
    p.add_argument("--prices", help="hosted-API price table (default profiles/hosted_prices.yaml)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare runs of one profile with different variants")
    p.add_argument("run_dirs", nargs="+", help="run directories; the first is the baseline")
    p.add_argument("--out", help="output directory (default ./comparison)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("cost", help="$ per million requests for a rate and a GPU price")
    p.add_argument("--rps", type=float, required=True, help="sustained requests per second of one replica")
    p.add_argument("--gpu-hourly", type=float, required=True, help="$ per GPU-hour")
    p.add_argument("--gpus", type=int, default=1, help="GPUs one replica uses (default 1)")
    p.add_argument(
        "--utilization",
        type=float,
        nargs="+",
        default=[1.0, 0.5, 0.1],
        help="share of the hour the replica is busy, one or more (default 1 0.5 0.1)",
    )
    p.set_defaults(func=cmd_cost)


def register_plan(sub) -> None:
    from llmcap.plan import register

    register(sub)


def register_exporter(sub) -> None:
    from serving.gpu_exporter import register

    register(sub)


def register_inspect(sub) -> None:
    from llmcap.inspect_cmd import register

    register(sub)


def register_accuracy(sub) -> None:
    from llmcap.accuracy_cmd import register

    register(sub)


def register_run(sub) -> None:
    from llmcap.run_cmd import register

    register(sub)


REGISTER: list = [register_run, register_reports, register_plan, register_exporter, register_inspect, register_accuracy]
