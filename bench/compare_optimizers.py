"""Adam vs Muon on the default agent: a small LR sweep each, then both at their best LR.

    python bench/compare_optimizers.py                      # ~14 min on 2 CPU cores
    python bench/compare_optimizers.py --seeds 4 --total-timesteps 2000000

Seeds of one setting train together in one compile (`jax.vmap` over `make_train`). Scores are
food per finished episode, counted by the env, episode-weighted over seeds and a trailing window.
Wall-clock per seed is the vmapped run's time divided by the number of seeds. Writes
bench/compare_optimizers.png (score vs env steps and vs wall-clock, mean with min-max band) and
bench/compare_optimizers.md (the tables), and prints both tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import train_snake_purejaxrl_impl as impl  # noqa: E402

SWEEP = {"adam": ("LR", [1.25e-4, 2.5e-4, 5e-4]), "muon": ("MUON_LR", [0.005, 0.01, 0.02])}


def run_seeds(config: dict, seeds: int) -> dict:
    """Train `seeds` seeds in one vmapped jit; per-seed smoothed score curves and timings."""
    train = jax.jit(jax.vmap(impl.make_train(config)))
    keys = jax.random.split(jax.random.PRNGKey(config.get("SEED", 0)), seeds)
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = jax.device_get(compiled(keys)["metrics"])
    seconds = time.perf_counter() - start
    score, episodes = metrics["episode_score"], metrics["episodes"]  # (seeds, updates)
    smooth = impl.trailing_score(score, episodes, window=max(1, score.shape[1] // 20))
    final = impl.final_score(score, episodes)
    return {
        "env_steps": metrics["env_steps"][0],
        "score": smooth,
        "final": final,  # (seeds,) mean over the last 10% of updates
        "seconds_per_seed": seconds / seeds,
        "s_per_update_per_seed": seconds / seeds / score.shape[1],
        "compile_s": compile_s,
    }


def config_for(optimizer: str, lr: float, total: int, anneal: bool) -> dict:
    config = {"TOTAL_TIMESTEPS": total, "ANNEAL_LR": anneal, "USE_MUON": optimizer == "muon"}
    config[SWEEP[optimizer][0]] = lr
    return config


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for (name, r), color in zip(results.items(), ["tab:blue", "tab:orange"]):
        steps = r["env_steps"] / 1e6
        clock = np.arange(1, len(steps) + 1) * r["s_per_update_per_seed"]
        mean, low, high = r["score"].mean(0), r["score"].min(0), r["score"].max(0)
        for ax, x in zip(axes, [steps, clock]):
            ax.plot(x, mean, color=color, label=name)
            ax.fill_between(x, low, high, color=color, alpha=0.2)
    axes[0].set_xlabel("env steps (millions)")
    axes[1].set_xlabel("wall-clock per seed (s, 2-core CPU)")
    axes[0].set_ylabel("mean score (food per episode)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle("Adam vs Muon on 12x12 Snake (mean and min-max over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--total-timesteps", type=int, default=2_000_000)
    parser.add_argument("--sweep-seeds", type=int, default=2)
    parser.add_argument("--sweep-timesteps", type=int, default=1_000_000)
    parser.add_argument("--no-anneal", action="store_true", help="constant learning rates")
    args = parser.parse_args()
    anneal = not args.no_anneal
    lines = [f"command: python {' '.join(sys.argv)}", ""]
    lines += ["LR sweep (final mean score over the last 10% of updates, per seed):", ""]
    lines += ["| optimizer | LR | seeds | mean | worst | s/update/seed |", "|---" * 6 + "|"]
    best = {}
    for optimizer, (_, rates) in SWEEP.items():
        scores = {}
        for lr in rates:
            cfg = config_for(optimizer, lr, args.sweep_timesteps, anneal)
            r = run_seeds(cfg, args.sweep_seeds)
            scores[lr] = r["final"].mean()
            final, cost = r["final"], r["s_per_update_per_seed"]
            lines.append(f"| {optimizer} | {lr:g} | {args.sweep_seeds} | {final.mean():.1f} "
                         f"| {final.min():.1f} | {cost:.2f} |")  # fmt: skip
            print(lines[-1], flush=True)
        best[optimizer] = max(scores, key=scores.get)
    results = {}
    for optimizer, lr in best.items():
        cfg = config_for(optimizer, lr, args.total_timesteps, anneal)
        results[f"{optimizer} (lr {lr:g})"] = run_seeds(cfg, args.seeds)
    lines += ["", f"Best LR of each, {args.seeds} seeds, {args.total_timesteps:,} env steps:", ""]
    lines += ["| optimizer | final mean | median | worst | best | s/update/seed | compile s |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        f, cost = r["final"], r["s_per_update_per_seed"]
        lines.append(f"| {name} | {f.mean():.1f} | {np.median(f):.1f} | {f.min():.1f} | "
                     f"{f.max():.1f} | {cost:.2f} | {r['compile_s']:.1f} |")  # fmt: skip
    (HERE / "compare_optimizers.md").write_text("\n".join(lines) + "\n")
    plot(results, HERE / "compare_optimizers.png")
    print("\n".join(lines[lines.index("") + 1 :]))


if __name__ == "__main__":
    main()
