"""Which optimizer and schedule learn best: Adam and Muon, each with a constant, linear and cosine
learning rate, tuned, then trained at full budget on several seeds and scored by evaluation.

    python -m bench.study                                   # the whole study, resumable
    python -m bench.study --stage tune                      # only the rate tuning
    python -m bench.study --arms adam-constant muon-constant --budget 30000000 --dir study30m

Stage "tune": per arm, one CLI run that trains every candidate rate side by side (`--lr-sweep`
or `--muon-lr-sweep`, one compile) at --tune-budget env steps; the rate with the best final
training score (episodes of the last 10% of updates) wins. Stage "main": per arm, the tuned rate
on --seeds seeds side by side at --budget env steps, a checkpoint every 20% of the run, and every
kept checkpoint evaluated (--episodes greedy games under the scoring rules). Every run is the CLI
with its own checkpoint directory under --dir, so a study that is stopped resumes where it
stopped (`--resume`), and finished runs and evaluations are read back, not redone.
Prints a markdown table per stage, writes DIR/study.json and DIR/study.png (eval mean and win
rate against env steps and against wall-clock: mean over seeds, min-max band).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import CLI, by_run, machine_line
from bench.learning_curve import evaluated_checkpoints
from snake_purejaxrl.checkpoints import Checkpoints
from snake_purejaxrl.outputs import final_score

SCHEDULES = ("constant", "linear", "cosine")
CANDIDATES = {"adam": (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3), "muon": (0.005, 0.01, 0.02, 0.04)}
ARMS = [f"{optimizer}-{schedule}" for optimizer in CANDIDATES for schedule in SCHEDULES]
UPDATE_STEPS = 256 * 128  # env steps of one update at the default games and rollout length


def optimizer_args(arm: str, rates: tuple[float, ...]) -> list[str]:
    optimizer, schedule = arm.split("-")
    listed = ",".join(f"{r:g}" for r in rates)
    if optimizer == "muon":
        return ["--use-muon", "--muon-lr-sweep", listed, "--lr-schedule", schedule]
    return ["--lr-sweep", listed, "--lr-schedule", schedule]


def train(directory: Path, args: list[str], total: int) -> list[dict]:
    """Run, resume or just read back one CLI run in `directory`; its metric rows. The CLI's own
    output goes to stderr, the study's tables to stdout."""
    directory.mkdir(parents=True, exist_ok=True)
    checkpoints, rows_path = directory / "checkpoints", directory / "rows.jsonl"
    latest = Checkpoints(checkpoints, read_only=True).latest() if checkpoints.is_dir() else None
    if latest is not None and latest == total // UPDATE_STEPS:
        return [json.loads(line) for line in rows_path.read_text().splitlines()]
    command = [sys.executable, CLI, *args, "--total-timesteps", str(total), "--checkpoint-dir",
               str(checkpoints), "--metrics-out", str(rows_path), "--quiet"]  # fmt: skip
    if latest is not None:
        command.append("--resume")
    print(f"$ {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr)
    return [json.loads(line) for line in rows_path.read_text().splitlines()]


def tune(arm: str, root: Path, budget: int) -> dict:
    """The candidate rates of `arm` side by side (seed 0): final score per rate, the best.
    Each CLI run lives in tune/ARM/<its rates>/, so a grid extended later trains only the rates
    no earlier run of that arm covered."""
    finals, wall_s = {}, 0.0
    runs_dir = root / "tune" / arm
    done = sorted(runs_dir.glob("*/rows.jsonl")) if runs_dir.is_dir() else []
    missing = tuple(
        r for r in CANDIDATES[arm.split("-")[0]]
        if not any(f"{r:g}" in path.parent.name.split(",") for path in done)
    )  # fmt: skip
    grids = [path.parent.name for path in done] + (
        [",".join(f"{r:g}" for r in missing)] if missing else []
    )
    for grid in grids:
        rates = tuple(float(r) for r in grid.split(","))
        rows = train(runs_dir / grid, optimizer_args(arm, rates), budget)
        runs = by_run(rows)
        for (lr, _), run in runs.items():
            finals[float(lr)] = float(final_score(run["episode_score"], run["episodes"]))
        wall_s += max(float(run["time_s"][-1]) for run in runs.values())
    finals = dict(sorted(finals.items()))
    return {"finals": finals, "best": max(finals, key=finals.get), "wall_s": wall_s}


def main_run(arm: str, rate: float, root: Path, budget: int, seeds: int, episodes: int) -> dict:
    """`arm` at `rate` on `seeds` seeds: the evaluation of every kept checkpoint."""
    directory = root / "main" / arm
    cached = directory / "evaluated.json"
    updates = budget // UPDATE_STEPS
    args = [*optimizer_args(arm, (rate,)), "--num-seeds", str(seeds), "--checkpoint-every",
            str(max(1, updates // 5)), "--keep-checkpoints", "100"]  # fmt: skip
    rows = train(directory, args, budget)
    if cached.exists() and json.loads(cached.read_text())["episodes"] == episodes:
        points = json.loads(cached.read_text())["points"]
    else:
        points = evaluated_checkpoints(str(directory / "checkpoints"), episodes, seed=0)
        cached.write_text(json.dumps({"episodes": episodes, "points": points}))
    finals = [float(final_score(r["episode_score"], r["episodes"])) for r in by_run(rows).values()]
    return {"rate": rate, "points": points, "train_final": finals}


def summarize(main: dict) -> list[str]:
    """The main stage's table: the final checkpoint's evaluation per arm, over seeds."""
    lines = ["| arm | rate | eval mean (seeds) | spread | wins | train final | env steps | "
             "wall-clock (all seeds) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm, result in main.items():
        last = result["points"][-1]
        scores = np.array([f["mean_score"] for f in last["runs"]])
        wins = np.array([f["win_rate"] for f in last["runs"]])
        per_seed = ", ".join(f"{s:.1f}" for s in scores)
        lines.append(
            f"| {arm} | {result['rate']:g} | {scores.mean():.1f} ({per_seed}) | "
            f"{scores.max() - scores.min():.1f} | {wins.mean():.1%} | "
            f"{np.mean(result['train_final']):.1f} | {last['env_steps']:,} | "
            f"{last['train_s'] / 60:.1f} min |"
        )
    return lines


def curves(main: dict) -> list[str]:
    """Eval mean over seeds (its min-max) and mean win rate at every kept checkpoint, an arm
    per row: whether an early lead holds."""
    steps = [p["env_steps"] for p in next(iter(main.values()))["points"]]
    lines = ["| arm | " + " | ".join(f"{s / 1e6:.1f} M" for s in steps) + " |",
             "|---|" + "---|" * len(steps)]  # fmt: skip
    for arm, result in main.items():
        cells = []
        for point in result["points"]:
            scores = np.array([f["mean_score"] for f in point["runs"]])
            wins = np.mean([f["win_rate"] for f in point["runs"]])
            cells.append(f"{scores.mean():.1f} ({scores.min():.0f}-{scores.max():.0f}), {wins:.0%}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def plot(main: dict, path: Path, episodes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for arm, result in main.items():
        points = result["points"]
        steps = np.array([p["env_steps"] for p in points]) / 1e6
        minutes = np.array([p["train_s"] for p in points]) / 60
        style = "-" if arm.startswith("adam") else "--"
        for row, figure, scale in ((0, "mean_score", 1), (1, "win_rate", 100)):
            values = np.array([[f[figure] * scale for f in p["runs"]] for p in points])
            for column, x in enumerate((steps, minutes)):
                ax = axes[row, column]
                ax.plot(x, values.mean(1), style, marker="o", label=f"{arm} ({result['rate']:g})")
                ax.fill_between(x, values.min(1), values.max(1), alpha=0.12)
    axes[0, 0].set_ylabel(f"eval mean score ({episodes} greedy games)")
    axes[1, 0].set_ylabel("eval win rate (%)")
    axes[1, 0].set_xlabel("env steps (millions)")
    axes[1, 1].set_xlabel("training wall-clock of the seeds together (minutes)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="study", help="where every run of the study lives")
    parser.add_argument("--arms", nargs="+", default=ARMS, choices=ARMS)
    parser.add_argument("--stage", choices=("tune", "main", "all"), default="all")
    parser.add_argument("--tune-budget", type=int, default=2_000_000)
    parser.add_argument("--budget", type=int, default=10_000_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    root = Path(args.dir)
    results_path = root / "study.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(machine_line())
    print(f"command: python -m bench.study {shlex.join(sys.argv[1:])}\n")
    tuned = results.setdefault("tune", {})
    for arm in args.arms:
        tuned[arm] = tune(arm, root, args.tune_budget)
        results_path.write_text(json.dumps(results, indent=1))
    print(f"tuning: {args.tune_budget:,} env steps, seed 0, final training score per rate\n")
    print("| arm | rate: final score | best | wall-clock |")
    print("|---|---|---|---|")
    for arm in args.arms:
        t = tuned[arm]
        finals = ", ".join(f"{float(r):g}: {s:.1f}" for r, s in t["finals"].items())
        print(f"| {arm} | {finals} | {float(t['best']):g} | {t['wall_s'] / 60:.1f} min |")
    if args.stage == "tune":
        return
    main_results = results.setdefault(f"main_{args.budget}", {})
    for arm in args.arms:
        rate = float(tuned[arm]["best"])
        main_results[arm] = main_run(arm, rate, root, args.budget, args.seeds, args.episodes)
        results_path.write_text(json.dumps(results, indent=1))
    print(f"\nmain: {args.budget:,} env steps, {args.seeds} seeds, the final checkpoint's "
          f"evaluation ({args.episodes} greedy games)\n")  # fmt: skip
    print("\n".join(summarize(main_results)))
    print("\neval mean over seeds (min-max), win rate, at each kept checkpoint\n")
    print("\n".join(curves(main_results)))
    plot(main_results, root / "study.png", args.episodes)
    print(f"\nplot: {root / 'study.png'}; numbers: {results_path}")


if __name__ == "__main__":
    main()
