"""How total throughput grows with seeds trained side by side in one compile (--num-seeds).

    python -m bench.seed_scaling                     # N = 1, 2, 4, 8, 16 on the default agent
    python -m bench.seed_scaling --seeds 1 16 --set "FLOOD_FILL=True"

Each N is the CLI's jitted chunk of updates (`impl.make_chunk`) with NUM_SEEDS=N, compiled once,
then timed over --rounds chunks interleaved with the other N; the figure is the median. Prints a
markdown table: total env-steps/s (all seeds), per seed, and the speed-up over N = 1.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from bench.bench_train import compile_case, parse_sets, time_chunk
from bench.common import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--updates", type=int, default=2, help="updates per timed chunk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", default="", help='config overrides: "KEY=VALUE ..."')
    args = parser.parse_args()
    print(machine_line())
    print(f"command: python -m bench.seed_scaling {shlex.join(sys.argv[1:])}\n")
    overrides = parse_sets(args.set)
    cases = {n: compile_case({**overrides, "NUM_SEEDS": n}, args.updates) for n in args.seeds}
    for _ in range(args.rounds):
        for case in cases.values():
            time_chunk(case)
    print("| seeds | total env-steps/s | per seed | vs 1 seed | s/update | compile+1st chunk s |")
    print("|---|---|---|---|---|---|")
    base = None
    for n, case in cases.items():
        cfg, seconds = case["parts"].config, float(np.median(case["seconds"]))
        total = cfg["NUM_ENVS"] * cfg["NUM_STEPS"] * n / seconds
        base = base or total / n
        print(f"| {n} | {total:,.0f} | {total / n:,.0f} | {total / base:.2f}x | {seconds:.2f} | "
              f"{case['compile_s']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
