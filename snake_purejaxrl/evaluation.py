"""Scoring an agent: games played side by side by its policy under the scoring rules (the
board's default starvation and move limits, never a curriculum start), greedy or sampled, in one
jit; one game replayed move by move for a GIF; the figures a user reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snake_env import SnakeEnv
from snake_purejaxrl.agent_input import to_env_action
from train_snake_purejaxrl_impl import make_parts, policy


def eval_env(config: dict[str, Any]) -> SnakeEnv:
    """The game as it is scored: the board of `config` under the default rules (starvation
    after GRID_SIZE**2 moves without food, at most 64 * GRID_SIZE**2 moves), whatever the
    training rules were."""
    return SnakeEnv(grid_size=config["GRID_SIZE"])


def choose(logits: jax.Array, key: jax.Array, greedy: bool) -> jax.Array:
    """The most likely action, or one drawn from the policy."""
    return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)


def make_evaluate(config: dict[str, Any], episodes: int, greedy: bool) -> Callable:
    """evaluate(params, key) -> {"score", "length", "won", "starved"}, each `(episodes,)`: the
    first game of `episodes` games played side by side by the policy (argmax, or sampled), one
    jit. "starved": the game was cut for going too long without food."""
    parts = make_parts(config)._replace(env=eval_env(config))
    env = parts.env

    def evaluate(params, key: jax.Array) -> dict[str, jax.Array]:
        key, key_reset = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(key_reset, episodes))
        zeros = jnp.zeros(episodes, jnp.int32)
        result = {"score": zeros, "length": zeros, "won": zeros.astype(bool),
                  "starved": zeros.astype(bool)}  # fmt: skip
        finished = zeros.astype(bool)

        def play(carry):
            obs, state, key, finished, result = carry
            key, key_act, key_env = jax.random.split(key, 3)
            agent_input, _, logits, _ = policy(parts, params, obs, state)
            action = to_env_action(choose(logits, key_act, greedy), agent_input.moves)
            keys = jax.random.split(key_env, episodes)
            obs, state, _, done, info = jax.vmap(env.step)(keys, state, action)
            first = done & ~finished
            result = {
                "score": jnp.where(first, info["score"], result["score"]),
                "length": jnp.where(first, info["episode_length"], result["length"]),
                "won": jnp.where(first, info["won"], result["won"]),
                "starved": jnp.where(first, info["starved"], result["starved"]),
            }
            return obs, state, key, finished | done, result

        carry = (obs, state, key, finished, result)
        return jax.lax.while_loop(lambda c: ~c[3].all(), play, carry)[4]

    return evaluate


def make_replay(config: dict[str, Any], greedy: bool) -> Callable:
    """replay(params, key) -> (observations `(T, G, G, C)`, done `(T,)`, score `(T,)`): one
    game under the scoring rules, T = MAX moves + 1; row 0 is the start, row t the board after
    move t (the last one included: the observation before the auto-reset)."""
    parts = make_parts(config)._replace(env=eval_env(config))
    env = parts.env

    def replay(params, key: jax.Array):
        key, key_reset = jax.random.split(key)
        obs, state = env.reset(key_reset)

        def move(carry, key):
            obs, state = carry
            key_act, key_env = jax.random.split(key)
            batch_obs, batch_state = obs[None], jax.tree.map(lambda x: x[None], state)
            agent_input, _, logits, _ = policy(parts, params, batch_obs, batch_state)
            action = to_env_action(choose(logits, key_act, greedy), agent_input.moves)
            obs, state, _, done, info = env.step(key_env, state, action[0])
            return (obs, state), (info["final_obs"], done, info["score"])

        keys = jax.random.split(key, env.max_steps)
        _, (frames, done, score) = jax.lax.scan(move, (obs, state), keys)
        zero = jnp.zeros((), jnp.int32)
        return (
            jnp.concatenate([obs[None], frames]),
            jnp.concatenate([jnp.zeros((1,), bool), done]),
            jnp.concatenate([zero[None], score]),
        )

    return replay


def _median_or_none(scores: np.ndarray) -> float | None:
    return float(np.median(scores)) if scores.size else None


def eval_summary(result: dict[str, np.ndarray], max_score: int) -> dict[str, float]:
    """The figures of an evaluation: score distribution, win rate, length, steps per food, and
    how the other games were lost (starved, or crashed: any other loss, which includes the rare
    game cut at the overall move limit; and the median score at which each came: early losses
    and endgame losses need different fixes)."""
    score, length = np.asarray(result["score"]), np.asarray(result["length"])
    won, starved = np.asarray(result["won"]), np.asarray(result["starved"])
    crashed = ~won & ~starved
    return {
        "episodes": int(score.size),
        "mean_score": float(score.mean()),
        "median_score": float(np.median(score)),
        "max_score": int(score.max()),
        "win_rate": float(np.mean(won)),
        "starved_rate": float(np.mean(starved)),
        "crashed_rate": float(np.mean(crashed)),
        "starved_median_score": _median_or_none(score[starved]),
        "crashed_median_score": _median_or_none(score[crashed]),
        "mean_length": float(length.mean()),
        "steps_per_food": float(length.sum() / max(score.sum(), 1)),
        "fill": float(score.mean() / max_score),
    }


def make_evaluator(config: dict, episodes: int, greedy: bool):
    """`(params, seed) -> figures (eval_summary) of each run's agent`, compiled once: a tool that
    scores many checkpoints of one run pays the compile once. `params` has a leading run axis."""
    evaluate = jax.jit(jax.vmap(make_evaluate(config, episodes, greedy), in_axes=(0, None)))
    max_score = eval_env(config).max_score

    def figures(params, seed: int) -> list[dict]:
        results = jax.device_get(evaluate(params, jax.random.PRNGKey(seed)))
        return [
            eval_summary(jax.tree.map(lambda x, r=r: x[r], results), max_score)
            for r in range(config["NUM_RUNS"])
        ]

    return figures


def evaluate_params(config: dict, params, episodes: int, greedy: bool, seed: int) -> list[dict]:
    """The figures (`eval_summary`) of each run's agent; `params` has a leading run axis."""
    return make_evaluator(config, episodes, greedy)(params, seed)


def replay_game(config: dict, params, greedy: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(observations, scores) of one game of one run's agent: the start, then a board per move."""
    frames, done, score = jax.device_get(
        jax.jit(make_replay(config, greedy))(params, jax.random.PRNGKey(seed))
    )
    end = int(np.argmax(done)) if done.any() else len(done) - 1
    return frames[: end + 1], score[: end + 1]


def _at_median(score: float | None) -> str:
    return "" if score is None else f" at median score {score:.0f}"


def describe(figures: dict) -> str:
    """The figures of an evaluation as one line."""
    f = figures
    return (
        f"mean score {f['mean_score']:.2f}, median {f['median_score']:.1f}, max {f['max_score']}, "
        f"win rate {f['win_rate']:.1%}, starved {f['starved_rate']:.1%}"
        f"{_at_median(f['starved_median_score'])}, crashed {f['crashed_rate']:.1%}"
        f"{_at_median(f['crashed_median_score'])}, mean length {f['mean_length']:.0f} moves, "
        f"{f['steps_per_food']:.1f} steps per food ({f['episodes']} games)"
    )
