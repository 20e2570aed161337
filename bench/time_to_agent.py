"""Time to a good agent, as a user gets it: the CLI started, stopped with Ctrl-C --seconds after
it starts, and the checkpoint it kept evaluated (--episodes greedy games, the scoring rules).

    python -m bench.time_to_agent                                  # the default command, 125 s
    python -m bench.time_to_agent --case "" --case "--lr 2e-3" --seeds 0 1 2

Each case is extra CLI flags ("" is the default command); each runs once per seed, one at a time
(they would share the CPU otherwise). The clock starts when the process starts, so imports,
compilation and the first chunk count, as they do for a user. Prints a markdown table: per case
and seed, the env steps the kept checkpoint holds and its eval mean, median and win rate.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import CLI, machine_line


def stopped_run(flags: list[str], seed: int, seconds: float, directory: Path) -> dict:
    """Train with `flags` until Ctrl-C at `seconds`, then evaluate what was kept."""
    checkpoints = directory / "checkpoints"
    rows_path = directory / "rows.jsonl"
    command = [sys.executable, CLI, *flags, "--seed", str(seed), "--checkpoint-dir",
               str(checkpoints), "--metrics-out", str(rows_path), "--quiet"]  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(directory / "train.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # the first Ctrl-C: finish the chunk, save, exit
            process.wait()
    stopped_s = time.monotonic() - start
    if process.returncode not in (0, 130):
        raise RuntimeError(f"{shlex.join(command)} exited {process.returncode}")
    figures_path = directory / "eval.json"
    subprocess.run([sys.executable, CLI, "--eval", str(checkpoints), "--metrics-out",
                    str(figures_path)], check=True, capture_output=True)  # fmt: skip
    rows = rows_path.read_text().splitlines()
    figures = json.loads(figures_path.read_text())
    return {"env_steps": json.loads(rows[-1])["env_steps"], "stopped_s": stopped_s, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help='extra CLI flags; "" is the default')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seconds", type=float, default=125.0)
    parser.add_argument("--dir", help="keep the runs here (default: a temporary directory)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="time-to-agent-"))
    sys.stdout.reconfigure(line_buffering=True)  # each row as it is measured
    print(machine_line())
    print(f"command: python -m bench.time_to_agent {shlex.join(sys.argv[1:])}\n")
    print("| case | seed | stopped at s | env steps kept | eval mean | median | wins |")
    print("|---|---|---|---|---|---|---|")
    for case in args.case or [""]:
        means = []
        for seed in args.seeds:
            name = f"{case.replace(' ', '_').strip('-') or 'default'}_seed{seed}"
            result = stopped_run(shlex.split(case), seed, args.seconds, root / name)
            means.append(result["mean_score"])
            print(f"| {case or 'default'} | {seed} | {result['stopped_s']:.0f} | "
                  f"{result['env_steps']:,} | {result['mean_score']:.1f} | "
                  f"{result['median_score']:.0f} | {result['win_rate']:.1%} |")  # fmt: skip
        if len(means) > 1:
            print(f"| {case or 'default'} | mean | | | {np.mean(means):.1f} | | |")


if __name__ == "__main__":
    main()
