"""Env steps per second of `SnakeEnv`, and of it through gymnax's interface (`SnakeGymnax`),
with the Jumanji anchor's harness, side by side.

    python -m bench.bench_env                                    # 12x12, 4096 games x 128 steps
    python -m bench.bench_env --anchor-python ~/anchor-venv/bin/python --num-envs 256 4096

The harness is the anchor's (../shared/anchors/jumanji_snake_env_sps.py), line for line: jit of
reset + `lax.scan` over T steps of `vmap`ped random-action steps with auto-reset, the state
AND the observation carried from step to step, the final observation summed, best of 3 after a
compile run. With `--anchor-python` the anchor runs in that interpreter after ours, for each
size, in the same session, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

from bench.common import machine_line, run_anchor
from snake_env import NUM_ACTIONS, SnakeEnv
from snake_gymnax import SnakeGymnax

ANCHOR = "jumanji_snake_env_sps.py"


def core_step(env: SnakeEnv):
    """(keys, states, actions) -> (obs, states, rewards) of `SnakeEnv`, vmapped."""

    def step(keys, state, actions):
        obs, state, reward, _, _ = jax.vmap(env.step)(keys, state, actions)
        return obs, state, reward

    return jax.vmap(env.reset), step


def gymnax_step(env: SnakeGymnax):
    """The same through gymnax's interface: PureJaxRL's vmap over (keys, states, actions),
    params shared."""
    params = env.default_params

    def step(keys, state, actions):
        obs, state, reward, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            keys, state, actions, params
        )
        return obs, state, reward

    return jax.vmap(lambda key: env.reset(key, params)), step


def make_rollout(reset, step, num_envs: int, num_steps: int):
    """jit(key) -> checksum: the anchor's rollout, with our env's batched reset and step."""

    def rollout(key):
        obs, state = reset(jax.random.split(key, num_envs))

        def body(carry, k):
            state, obs = carry
            actions = jax.random.randint(k, (num_envs,), 0, NUM_ACTIONS)
            step_keys = jax.random.split(jax.random.fold_in(k, 1), num_envs)
            obs, state, reward = step(step_keys, state, actions)
            return (state, obs), reward.sum()

        (state, obs), rewards = jax.lax.scan(body, (state, obs), jax.random.split(key, num_steps))
        return rewards.sum() + obs.sum()

    return jax.jit(rollout)


def measure(batched, num_envs: int, num_steps: int, repeats: int) -> tuple[float, float]:
    """(compile seconds incl. the first run, best env-steps/s over `repeats` runs)."""
    rollout = make_rollout(*batched, num_envs, num_steps)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-size", type=int, default=12)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[4096])
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--anchor-python", help="python of a venv with jumanji installed")
    args = parser.parse_args()

    env = SnakeEnv(args.grid_size)
    print(machine_line())
    print(f"command: python -m bench.bench_env {' '.join(sys.argv[1:])}")
    print(f"state bytes per env: {state_bytes(env)}\n")
    print("| system | grid | envs x steps | compile s | env-steps/s | vs Jumanji |")
    print("|---|---|---|---|---|---|")
    for num_envs in args.num_envs:
        compile_s, ours = measure(core_step(env), num_envs, args.num_steps, args.repeats)
        gymnax_compile_s, gymnax = measure(
            gymnax_step(SnakeGymnax(args.grid_size)), num_envs, args.num_steps, args.repeats
        )
        anchor_args = [str(num_envs), str(args.num_steps), str(args.grid_size)]
        anchor = (
            run_anchor(args.anchor_python, ANCHOR, anchor_args, r"([\d,]+) env-steps/s")
            if args.anchor_python
            else None
        )
        ratio = f"{ours / anchor:.2f}x" if anchor else "-"
        size = f"{num_envs} x {args.num_steps}"
        g = args.grid_size
        print(f"| snake_env | {g} | {size} | {compile_s:.2f} | {ours:,.0f} | {ratio} |")
        versus = f"{gymnax / anchor:.2f}x" if anchor else "-"
        print(f"| snake_gymnax (gymnax API) | {g} | {size} | {gymnax_compile_s:.2f} | "
              f"{gymnax:,.0f} ({gymnax / ours:.2f}x snake_env) | {versus} |")  # fmt: skip
        if anchor:
            print(f"| Jumanji Snake | {g} | {size} | - | {anchor:,.0f} | 1.00x |")


if __name__ == "__main__":
    jnp.zeros(()).block_until_ready()  # start the backend before timing anything
    main()
