"""Where one PPO update's time goes, on a fresh agent's games or on a trained agent's (long
snakes: the flood fill's late-game cost).

    python -m bench.update_breakdown                          # the default agent, fresh
    python -m bench.update_breakdown --checkpoint-dir DIR     # the games and weights DIR kept

Each piece is jitted on its own and timed in interleaved rounds (median), on the same games:
the whole update (`update_step`), its rollout (`collect_rollout`), and the pieces of a rollout
step, each called NUM_STEPS times (dispatch included): the env step, the agent's input
(`observe`, flood fill included), the flood fill alone (and the timed one, if the run uses it)
and the policy's forward pass.
"learning" is the update less its rollout: GAE, the minibatch shuffle, the epochs of loss and
optimizer steps, the figures. Pieces timed alone do not fuse with their neighbours, so they need
not add up to the rollout exactly.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

import train_snake_purejaxrl_impl as impl
from bench.common import machine_line
from snake_purejaxrl import agent_input
from snake_purejaxrl.run_dir import SavedRun


def first_run(runner):
    """A run's state out of a state with a leading run axis."""
    return jax.tree.map(lambda x: x[0], runner)


def pieces(parts: impl.Parts, runner: impl.RunnerState) -> dict[str, tuple]:
    """Name -> (jitted function, its arguments, calls per update)."""
    cfg, env = parts.config, parts.env
    n, steps = cfg["NUM_ENVS"], cfg["NUM_STEPS"]
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    hunger = jax.vmap(env.hunger)(runner.env_state)
    agent = agent_input.observe(cfg, runner.obs, runner.mirrored, hunger)
    _, heading = agent_input.heading_of(runner.obs)
    mask = jnp.ones((n, 4), bool)
    timed_flood = {  # with --timed-flood
        "    timed flood fill alone": (jax.jit(agent_input.timed_flood_features),
                                      (runner.obs, heading), steps),
    } if cfg["TIMED_FLOOD"] else {}  # fmt: skip
    return {
        "update (rollout + learning)": (jax.jit(functools.partial(impl.update_step, parts)),
                                        (runner,), 1),
        "rollout": (jax.jit(functools.partial(impl.collect_rollout, parts)), (runner,), 1),
        "  env step": (jax.jit(jax.vmap(env.step)),
                       (keys, runner.env_state, jnp.zeros(n, jnp.int32)), steps),
        "  agent input (observe)": (jax.jit(functools.partial(agent_input.observe, cfg)),
                                    (runner.obs, runner.mirrored, hunger), steps),
        "    flood fill alone": (jax.jit(agent_input.flood_features), (runner.obs, heading), steps),
        **timed_flood,
        "  policy forward": (jax.jit(parts.network.apply),
                             (runner.params, agent.features, mask), steps),
    }  # fmt: skip


def snake_lengths(runner: impl.RunnerState) -> np.ndarray:
    return np.asarray(runner.env_state.length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", help="a run's checkpoints: its latest games, weights")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.checkpoint_dir:
        saved = SavedRun(args.checkpoint_dir)
        parts = impl.make_parts(saved.config)
        runner = first_run(saved.restore()[0])
        source = f"the games and weights of {args.checkpoint_dir}"
    else:
        parts = impl.make_parts({})
        runner = impl.init_runner(parts, jax.random.PRNGKey(0))
        source = "a fresh default agent's new games"
    lengths = snake_lengths(runner)
    print(machine_line())
    print(f"{source}: snake length mean {lengths.mean():.1f}, max {lengths.max()} "
          f"({parts.config['NUM_ENVS']} games)\n")  # fmt: skip
    timed = pieces(parts, runner)
    for fn, call_args, _ in timed.values():
        jax.block_until_ready(fn(*call_args))  # compile
    seconds = {name: [] for name in timed}
    for _ in range(args.rounds):
        for name, (fn, call_args, calls) in timed.items():
            start = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(fn(*call_args))
            seconds[name].append(time.perf_counter() - start)
    median = {name: float(np.median(s)) for name, s in seconds.items()}
    update = median["update (rollout + learning)"]
    median["learning (update - rollout)"] = update - median["rollout"]
    print("| piece | ms per update | share of the update |")
    print("|---|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value * 1e3:.0f} | {value / update:.1%} |")


if __name__ == "__main__":
    main()
