"""The learning curve of a run, scored the way the goals are: every checkpoint it kept, evaluated.

    python train_snake_purejaxrl.py --checkpoint-dir runs/a --keep-checkpoints 100
    python -m bench.learning_curve runs/a runs/b --labels default recipe --plot curve.png

For each checkpoint: --episodes games (default 1000; greedy, the scoring rules), the mean score,
win rate and steps per food, against env steps and the training wall-clock at that update (from
the metric history the checkpoint holds; compile excluded). A directory of several runs (seeds x
rates side by side) gives a curve per run. Prints a markdown table per curve; --plot draws score
and win rate against env steps and wall-clock; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np

from bench.common import machine_line
from snake_purejaxrl.config import run_grid
from snake_purejaxrl.evaluation import make_evaluator
from snake_purejaxrl.outputs import run_label
from snake_purejaxrl.run_dir import SavedRun
from train_snake_purejaxrl_impl import agent_params


def evaluated_checkpoints(directory: str, episodes: int, seed: int) -> list[dict]:
    """Every checkpoint `directory` kept, its agents (one per run: seeds x rates) evaluated:
    [{"update", "env_steps", "train_s", "runs": [figures of each run]}, ...]."""
    saved = SavedRun(directory)
    config, points = saved.config, []
    evaluate = make_evaluator(config, episodes, greedy=True)
    for step in saved.checkpoints.steps():
        runner, history = saved.restore(step)
        figures = evaluate(agent_params(runner), seed)
        points.append({
            "update": step,
            "env_steps": step * config["NUM_ENVS"] * config["NUM_STEPS"],
            "train_s": float(history["time_s"][step - 1]),
            "runs": figures,
        })  # fmt: skip
        scores = ", ".join(f"{f['mean_score']:.1f}" for f in figures)
        print(f"  {directory} update {step}: {scores}", file=sys.stderr)
    return points


def curves_of(directory: str, label: str, episodes: int, seed: int) -> dict[str, list[dict]]:
    """{name: one point per checkpoint} for each run of `directory`: `label` alone for a run of
    its own, `label seed3` (or `label lr0.001-seed3`) for runs trained side by side."""
    config = SavedRun(directory).config
    grid = run_grid(config)
    names = [label] if len(grid) == 1 else [f"{label} {run_label(config, run)}" for run in grid]
    points = evaluated_checkpoints(directory, episodes, seed)
    return {
        name: [{**{k: v for k, v in p.items() if k != "runs"}, **p["runs"][r]} for p in points]
        for r, name in enumerate(names)
    }


def plot(curves: dict[str, list[dict]], path: str, episodes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for label, points in curves.items():
        steps = np.array([p["env_steps"] for p in points]) / 1e6
        minutes = np.array([p["train_s"] for p in points]) / 60
        score = [p["mean_score"] for p in points]
        wins = [100 * p["win_rate"] for p in points]
        axes[0, 0].plot(steps, score, marker="o", label=label)
        axes[0, 1].plot(minutes, score, marker="o", label=label)
        axes[1, 0].plot(steps, wins, marker="o", label=label)
        axes[1, 1].plot(minutes, wins, marker="o", label=label)
    axes[0, 0].set_ylabel(f"eval mean score ({episodes} greedy games)")
    axes[1, 0].set_ylabel("eval win rate (%)")
    for ax in axes[1]:
        ax.set_xlabel("")
    axes[1, 0].set_xlabel("env steps (millions)")
    axes[1, 1].set_xlabel("training wall-clock (minutes, 2-core CPU)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="checkpoint directories")
    parser.add_argument("--labels", nargs="+", help="a name per directory")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="write the curves here (PNG)")
    parser.add_argument("--json", help="write the points here")
    args = parser.parse_args()
    labels = args.labels or args.dirs
    print(machine_line())
    print(f"command: python -m bench.learning_curve {shlex.join(sys.argv[1:])}")
    curves = {
        name: points
        for label, d in zip(labels, args.dirs)
        for name, points in curves_of(d, label, args.episodes, args.seed).items()
    }
    for label, points in curves.items():
        print(f"\n{label}:\n")
        print("| update | env steps | train min | mean score | median | win rate | steps/food |")
        print("|---|---|---|---|---|---|---|")
        for p in points:
            print(f"| {p['update']} | {p['env_steps']:,} | {p['train_s'] / 60:.1f} | "
                  f"{p['mean_score']:.1f} | {p['median_score']:.0f} | {p['win_rate']:.1%} | "
                  f"{p['steps_per_food']:.1f} |")  # fmt: skip
    if args.plot:
        plot(curves, args.plot, args.episodes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(curves, f)


if __name__ == "__main__":
    main()
