"""Train one config and print its learning curve against wall-clock: the ablation harness.

    python bench/learning_curve.py --set VIEW=board --set TOTAL_TIMESTEPS=2000000 --label board

Each `--set KEY=VALUE` overrides `default_config()` (values parsed as Python literals). Prints
mean score (food per finished episode, counted by the env) at fixed env-step marks and the
wall-clock to reach them, then one markdown row for bench/RESULTS.md. `--jsonl PATH` appends
the summary as JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_snake_purejaxrl_impl as impl  # noqa: E402


def parse_sets(pairs: list[str]) -> dict:
    config = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            config[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[key] = value
    return config


def run_curve(config: dict, window: int = 5) -> dict:
    """Train; return per-update env_steps, seconds since start, and windowed mean score."""
    rows, start = [], time.perf_counter()

    def record(metrics):
        rows.append({**metrics, "time": time.perf_counter() - start})

    train = jax.jit(impl.make_train_with_callback(config, record))
    compile_start = time.perf_counter()
    compiled = train.lower(jax.random.PRNGKey(config.get("SEED", 0))).compile()
    compile_s = time.perf_counter() - compile_start
    start = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.PRNGKey(config.get("SEED", 0))))
    total_s = time.perf_counter() - start
    steps = np.array([int(r["env_steps"]) for r in rows])
    scores = np.array([float(r["episode_score"]) for r in rows])
    episodes = np.array([int(r["episodes"]) for r in rows])
    smooth = impl.trailing_score(scores, episodes, window)
    return {
        "env_steps": steps,
        "time": np.array([r["time"] for r in rows]),
        "score": smooth,
        "compile_s": compile_s,
        "train_s": total_s,
        "best": max(float(r["episode_score_max"]) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE config override")
    parser.add_argument("--label", default="")
    parser.add_argument("--jsonl", help="append the summary here")
    args = parser.parse_args()
    config = parse_sets(args.set)
    curve = run_curve(config)
    marks = [m for m in (250_000, 500_000, 1e6, 2e6, 3e6, 4e6, 5e6, 7.5e6, 1e7, 1.5e7, 2e7)]
    reached = []
    for mark in marks:
        index = np.searchsorted(curve["env_steps"], mark)
        if index < len(curve["env_steps"]):
            reached.append((int(mark), float(curve["score"][index]), float(curve["time"][index])))
    first_23 = np.argmax(curve["score"] >= 23.4) if (curve["score"] >= 23.4).any() else None
    summary = {
        "label": args.label,
        "config": config,
        "compile_s": round(curve["compile_s"], 1),
        "train_s": round(curve["train_s"], 1),
        "env_steps_per_s": round(float(curve["env_steps"][-1] / curve["train_s"])),
        "final_score": round(float(curve["score"][-1]), 2),
        "best_score": curve["best"],
        "s_to_23.4": None if first_23 is None else round(float(curve["time"][first_23]), 1),
        "marks": [(m, round(s, 2), round(t, 1)) for m, s, t in reached],
    }
    print(json.dumps(summary))
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
