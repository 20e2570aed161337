"""Which mean of a run's last weights plays best: tail means and exponential averages of the
checkpoints it kept, evaluated side by side with its last weights (and the mean `--average-last`
kept, if it ran with it).

    python train_snake_purejaxrl.py --checkpoint-dir runs/a --checkpoint-every 5 \
        --keep-checkpoints 100
    python -m bench.average_snapshots runs/a --tails 0.1,0.2,0.3 --emas 25,50 --seed 7

The checkpoints stand in for every update's weights (one every --checkpoint-every updates): a
tail mean of share F averages those after update (1 - F) x NUM_UPDATES; an exponential average
over H updates weighs each checkpoint by (1 - 1/H) to the power of the updates after it. Each
average plays --episodes games (greedy, the scoring rules), every run of the directory.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import jax
import numpy as np

from bench.common import machine_line
from snake_purejaxrl.evaluation import make_evaluator
from snake_purejaxrl.run_dir import SavedRun


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def averages(steps: list[int], total: int, tails: list[float], emas: list[float]):
    """{name: weight per checkpoint (summing to 1)} of each average asked for."""
    steps_array = np.array(steps)
    weights = {"last weights": (steps_array == steps[-1]).astype(float)}
    for share in tails:
        weights[f"tail mean, last {share:.0%}"] = (steps_array > (1 - share) * total).astype(float)
    for horizon in emas:
        weights[f"exponential, {horizon:g} updates"] = (1 - 1 / horizon) ** (
            steps[-1] - steps_array
        )
    return {name: w / w.sum() for name, w in weights.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a checkpoint directory with many checkpoints")
    parser.add_argument("--tails", type=numbers, default=[0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--emas", type=numbers, default=[25, 50, 100])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="the evaluation's seed")
    args = parser.parse_args()
    print(machine_line())
    print(f"command: python -m bench.average_snapshots {shlex.join(sys.argv[1:])}")
    saved = SavedRun(args.dir)
    config, steps = saved.config, saved.checkpoints.steps()
    snapshots = [jax.device_get(saved.restore(step)[0]) for step in steps]
    print(f"{len(steps)} checkpoints, updates {steps[0]}-{steps[-1]} of {config['NUM_UPDATES']}")
    candidates = {
        name: jax.tree.map(lambda *xs, w=w: sum(wi * x for wi, x in zip(w, xs)).astype(xs[0].dtype),
                           *[s.params for s in snapshots])
        for name, w in averages(steps, config["NUM_UPDATES"], args.tails, args.emas).items()
    }  # fmt: skip
    last = snapshots[-1]
    if last.average_params is not None:
        candidates[f"kept (--average-last {config['AVERAGE_LAST']:g})"] = last.average_params
    evaluate = make_evaluator(config, args.episodes, greedy=True)
    print("\n| weights | win rate per run | mean score per run |\n|---|---|---|")
    for name, params in candidates.items():
        figures = evaluate(params, args.seed)
        wins = ", ".join(f"{f['win_rate']:.1%}" for f in figures)
        scores = ", ".join(f"{f['mean_score']:.2f}" for f in figures)
        print(f"| {name} | {wins} | {scores} |", flush=True)


if __name__ == "__main__":
    main()
