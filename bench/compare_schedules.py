"""Adam vs Muon, each with a constant, linear and cosine learning-rate schedule, several seeds.

    python -m bench.compare_schedules                       # 4 seeds x 2 M steps each, ~30 min
    python -m bench.compare_schedules --seeds 2 --total-timesteps 1000000

Each of the 6 configurations is one CLI run (`--num-seeds N`: its seeds vmapped in one compile).
Writes bench/compare_schedules.png (score against env steps: mean and min-max band over seeds,
plus the applied learning rate) and bench/compare_schedules.md (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from bench.common import by_run, machine_line, smoothed_score, train
from snake_purejaxrl.outputs import final_score

HERE = Path(__file__).resolve().parent
OPTIMIZERS = {"adam": ["--lr", "5e-4"], "muon": ["--use-muon", "--muon-lr", "0.02"]}
SCHEDULES = ("constant", "linear", "cosine")


def run_config(optimizer: str, schedule: str, seeds: int, total: int) -> dict:
    args = [*OPTIMIZERS[optimizer], "--lr-schedule", schedule, "--num-seeds", str(seeds),
            "--total-timesteps", str(total), "--checkpoint-dir", "none"]  # fmt: skip
    result = train(args)
    runs = list(by_run(result["rows"]).values())
    updates = len(runs[0]["update"])
    finals = np.array([final_score(r["episode_score"], r["episodes"]) for r in runs])
    return {
        "env_steps": runs[0]["env_steps"],
        "score": np.stack([smoothed_score(r, max(1, updates // 20)) for r in runs]),
        "learning_rate": runs[0]["learning_rate"],
        "final": finals,
        "train_s": float(runs[0]["time_s"][-1]),
        "compile_s": result["compile_s"],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    colors = dict(zip(SCHEDULES, ["tab:blue", "tab:orange", "tab:green"]))
    for column, optimizer in enumerate(OPTIMIZERS):
        for schedule in SCHEDULES:
            r = results[optimizer, schedule]
            steps = r["env_steps"] / 1e6
            mean, low, high = r["score"].mean(0), r["score"].min(0), r["score"].max(0)
            label = f"{schedule}: final {r['final'].mean():.1f}"
            axes[0, column].plot(steps, mean, color=colors[schedule], label=label)
            axes[0, column].fill_between(steps, low, high, color=colors[schedule], alpha=0.2)
            axes[1, column].plot(steps, r["learning_rate"], color=colors[schedule])
        axes[0, column].set_title(f"{optimizer} ({len(r['final'])} seeds, mean and min-max)")
        axes[0, column].legend(loc="lower right")
        axes[1, column].set_xlabel("env steps (millions)")
    axes[0, 0].set_ylabel("mean score (food per game)")
    axes[1, 0].set_ylabel("applied learning rate")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--total-timesteps", type=int, default=2_000_000)
    args = parser.parse_args()
    lines = [machine_line(), f"command: python -m bench.compare_schedules "
             f"{shlex.join(sys.argv[1:])}", ""]  # fmt: skip
    lines += ["| optimizer | schedule | final mean | min | max | per seed | train s | compile s |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    results = {}
    for optimizer in OPTIMIZERS:
        for schedule in SCHEDULES:
            r = results[optimizer, schedule] = run_config(
                optimizer, schedule, args.seeds, args.total_timesteps
            )
            f = r["final"]
            lines.append(f"| {optimizer} | {schedule} | {f.mean():.1f} | {f.min():.1f} | "
                         f"{f.max():.1f} | {', '.join(f'{x:.1f}' for x in f)} | "
                         f"{r['train_s']:.0f} | {r['compile_s']:.1f} |")  # fmt: skip
            print(lines[-1], flush=True)
    (HERE / "compare_schedules.md").write_text("\n".join(lines) + "\n")
    plot(results, HERE / "compare_schedules.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
