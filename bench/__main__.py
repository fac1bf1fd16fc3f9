"""``python -m bench``: the load benchmark (see bench/README.md).

python -m bench [run] [--duration S] [--scenarios a,b] [--connections N] ...
python -m bench profile [--duration S] [--scenarios order]   py-spy profile of one scenario
    [--scenarios mixed --mix-rate R]      ... or of the mix, paced at R req/s
python -m bench capacity RESULT.json      the capacity model (docs/performance.md) from a run
    [--write-deploy deploy/capacity.json]  ... and the deploy values deploy/ follows
python -m bench mix RESULT.json           the mix's CPU per request, by process, and cores busy
python -m bench processes A.json B.json   the order's CPU per request by process, one column each
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import procstats, report, runner, scenarios
from bench.platform import running_platform
from bench.profile import MIX_RATE


def parser_default() -> str:
    return ",".join(scenarios.ALL)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "profile", "capacity", "mix", "processes"],
    )
    parser.add_argument(
        "result", nargs="*", type=Path, help="capacity, mix: a result JSON; processes: several"
    )
    parser.add_argument(
        "--mix",
        help="another mix than the seed's, e.g. product_by_id=0.76,product_list=0.2,order=0.04",
    )
    parser.add_argument("--rps", type=float, default=10_000, help="capacity: the target rate")
    parser.add_argument(
        "--events",
        type=Path,
        help="capacity: a run with the event side, whose order scenario sizes an order with events",
    )
    parser.add_argument(
        "--write-deploy",
        type=Path,
        help="capacity: also write the deploy values (deploy/capacity.json) from this run",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument(
        "--scenarios",
        default=",".join(scenarios.ALL),
        help=f"comma-separated, of: {','.join(scenarios.ALL)}",
    )
    parser.add_argument("--connections", type=int, default=32, help="catalogue-read scenarios")
    parser.add_argument("--order-connections", type=int, default=8)
    parser.add_argument("--login-connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per service")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--no-baselines", action="store_true", help="skip the floor and pgbench")
    parser.add_argument("--pgbench-scale", type=int, default=10, help="pgbench -i --scale")
    parser.add_argument(
        "--mix-steps",
        default=",".join(f"{x:g}" for x in runner.MIX_STEPS),
        help="rates tried for the mix, as factors of its estimated capacity",
    )
    parser.add_argument(
        "--mix-rate",
        type=float,
        default=MIX_RATE,
        help="profile mixed: the paced rate, req/s",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="JSON file (default: bench/results/); profile: a directory (bench/results/profile)",
    )
    parser.add_argument(
        "--quick-counts",
        action="store_true",
        help="read commit counts without waiting for them to settle (the smoke test's; its"
        " transactions per order may miss the last second's commits)",
    )
    parser.add_argument(
        "--traced-rounds",
        type=int,
        default=5,
        help="mixed_traced: rounds of an untraced and a traced step (judged on their median)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        help="set it on the run's databases (an experiment; default: the server's)",
    )
    parser.add_argument(
        "--mail-folder",
        type=Path,
        help="the parent of the SMTP sink's folder (default: /dev/shm, tmpfs, where the machine"
        " has it; an experiment: the sink's cost on a disk's file system)",
    )
    parser.add_argument(
        "--relay",
        choices=["process", "in-process"],
        default="process",
        help="with SHOP_AMQP_URL set: relay the outboxes in a `shop relay` process (default,"
        " reported as its own line) or inside each service process (SHOP_RELAY_IN_PROCESS)",
    )
    parser.add_argument(
        "--no-events",
        action="store_true",
        help="leave the broker out: no relay, consumers or notification worker (before issue 31)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    mix = (
        {k: float(v) for k, v in (item.split("=") for item in args.mix.split(","))}
        if args.mix
        else None
    )
    if mix and set(mix) - set(scenarios.MIX):
        raise SystemExit(f"--mix takes shares of {sorted(scenarios.MIX)}")
    if args.command == "processes":
        if not args.result:
            raise SystemExit("usage: python -m bench processes RESULT.json [RESULT.json ...]")
        results = {path.stem: json.loads(path.read_text()) for path in args.result}
        print(report.processes_table(results))
        return 0
    if args.command in ("mix", "capacity"):
        if len(args.result) != 1:
            raise SystemExit(f"usage: python -m bench {args.command} RESULT.json")
        args.result = args.result[0]
    if args.command == "mix":
        print(report.render_mix_cost(report.mix_cost(json.loads(args.result.read_text()))))
        return 0
    if args.command == "capacity":
        from bench import capacity

        result = json.loads(args.result.read_text())
        if mix:
            result["options"]["mix"] = mix
        events = json.loads(args.events.read_text()) if args.events else None
        print(capacity.render(capacity.model(result, rps=args.rps, events=events)))
        if args.write_deploy:
            from bench import sizing

            if mix:
                raise SystemExit("--write-deploy takes the run's own mix (no --mix)")
            here = Path.cwd().resolve()
            source = args.result.resolve().relative_to(here).as_posix()
            events_source = (
                args.events.resolve().relative_to(here).as_posix() if args.events else None
            )
            values = sizing.deploy_values(
                result, source=source, rps=args.rps, events=events, events_source=events_source
            )
            sizing.write(values, args.write_deploy)
            print(f"wrote {args.write_deploy}")
        return 0
    if args.quick_counts:
        procstats.quick_counts()
    selected = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(selected) - set(scenarios.ALL)
    if unknown:
        raise SystemExit(f"unknown scenarios: {sorted(unknown)}")
    # profile: one scenario (order unless named).
    scenario = selected[0] if args.scenarios != parser_default() else "order"
    with running_platform(
        products=args.products,
        users=args.users,
        workers=args.workers,
        keep_logs=args.keep_logs,
        synchronous_commit=args.synchronous_commit,
        mail_folder=args.mail_folder,
        relay=args.relay,
        events=not args.no_events,
    ) as platform:
        if args.command == "profile":
            from bench import profile

            out_dir = args.output or report.RESULTS / "profile"
            result = profile.profile_scenario(
                platform,
                scenario=scenario,
                duration=args.duration,
                connections=(
                    args.order_connections if scenario in scenarios.ORDERS else args.connections
                ),
                out_dir=out_dir,
                mix_rate=args.mix_rate,
            )
            (out_dir / f"summary-{scenario}.json").write_text(json.dumps(result, indent=2) + "\n")
            print(profile.render(result))
            print(f"\nraw stacks and summary in {out_dir}")
            return 0
        options = scenarios.Options(
            duration=args.duration,
            connections=args.connections,
            order_connections=args.order_connections,
            login_connections=args.login_connections,
            traced_rounds=args.traced_rounds,
        )
        result = runner.run(
            platform,
            options=options,
            selected=selected,
            baselines=not args.no_baselines,
            pgbench_scale=args.pgbench_scale,
            mix_steps=tuple(float(x) for x in args.mix_steps.split(",")),
            mix=mix,
        )
    result["targets"] = report.targets(result)
    path = report.save(result, args.output)
    print()
    print(report.table(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
