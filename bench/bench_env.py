"""Env steps per second of `SnakeEnv`: random actions, auto-reset, vmapped games, `lax.scan` steps.

    python bench/bench_env.py                       # 12x12, 4096 games x 128 steps
    python bench/bench_env.py --anchor-python ~/anchor-venv/bin/python   # + Jumanji side by side

Prints one markdown table (compile time apart from the best-of-N steady state). With
`--anchor-python`, the Jumanji anchor (../shared/anchors/jumanji_snake_env_sps.py) runs in that
interpreter right after ours, with the same sizes, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from snake_env import SnakeEnv  # noqa: E402

ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "jumanji_snake_env_sps.py"


def make_rollout(env: SnakeEnv, num_envs: int, num_steps: int):
    """jit: reset `num_envs` games and play `num_steps` random moves; returns a checksum."""

    def rollout(key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def one_step(state, step_key):
            key_action, key_env = jax.random.split(step_key)
            actions = jax.random.randint(key_action, (num_envs,), 0, env.num_actions)
            env_keys = jax.random.split(key_env, num_envs)
            obs, state, reward, _, _ = jax.vmap(env.step)(env_keys, state, actions)
            return state, reward.sum() + obs.sum()

        state, sums = jax.lax.scan(one_step, state, jax.random.split(key, num_steps))
        return sums.sum()

    return jax.jit(rollout)


def measure(env: SnakeEnv, num_envs: int, num_steps: int, repeats: int) -> tuple[float, float]:
    """(compile seconds incl. first run, best steady-state env-steps/s over `repeats` runs)."""
    rollout = make_rollout(env, num_envs, num_steps)
    start = time.perf_counter()
    rollout(jax.random.PRNGKey(0)).block_until_ready()
    compile_s = time.perf_counter() - start
    best = 0.0
    for i in range(repeats):
        start = time.perf_counter()
        rollout(jax.random.PRNGKey(i + 1)).block_until_ready()
        best = max(best, num_envs * num_steps / (time.perf_counter() - start))
    return compile_s, best


def state_bytes(env: SnakeEnv) -> int:
    _, state = env.reset(jax.random.PRNGKey(0))
    return sum(x.nbytes for x in jax.tree.leaves(state))


def run_anchor(python: str, num_envs: int, num_steps: int, grid: int) -> float | None:
    """Jumanji's env-steps/s from the anchor script in its own venv, or None if it fails."""
    cmd = [python, str(ANCHOR), str(num_envs), str(num_steps), str(grid)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"([\d,]+) env-steps/s", result.stdout)
    if not found:
        print(f"anchor failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return float(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-size", type=int, default=12)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[4096])
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--anchor-python", help="python of a venv with jumanji installed")
    args = parser.parse_args()

    env = SnakeEnv(args.grid_size)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    print(f"command: python {' '.join(sys.argv)}")
    print(f"state bytes per env: {state_bytes(env)}\n")
    print("| system | grid | envs x steps | compile s | env-steps/s | vs Jumanji |")
    print("|---|---|---|---|---|---|")
    for num_envs in args.num_envs:
        compile_s, ours = measure(env, num_envs, args.num_steps, args.repeats)
        anchor = (
            run_anchor(args.anchor_python, num_envs, args.num_steps, args.grid_size)
            if args.anchor_python
            else None
        )
        ratio = f"{ours / anchor:.2f}x" if anchor else "-"
        size = f"{num_envs} x {args.num_steps}"
        g = args.grid_size
        print(f"| snake_env | {g} | {size} | {compile_s:.2f} | {ours:,.0f} | {ratio} |")
        if anchor:
            print(f"| Jumanji Snake | {g} | {size} | - | {anchor:,.0f} | 1.00x |")


if __name__ == "__main__":
    jnp.zeros(()).block_until_ready()  # start the backend before timing anything
    main()
