"""Snake as a gymnax 1.x environment: `SnakeGymnax` drops into gymnax and Gymnasium code as is.

    env = SnakeGymnax(grid_size=12)
    params = env.default_params
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

It is `snake_env.SnakeEnv` (the fast core the trainer uses) behind gymnax's interface: the same
rules, and for the same keys the same games. How our game maps onto gymnax's conventions:
- `terminated`: the game ended by itself (death, or the board filled: `info["won"]`);
  `truncated`: it was cut for going `starvation_steps` moves without food or `max_steps` moves
  in all (no death: bootstrap from `info["final_observation"]`).
- Auto-reset: when either is true, the returned `obs` and `state` are already a new game's, and
  `info["final_observation"]` is the last observation of the game that ended (gymnax 1.x's key).
  `step` is the core's own step, not gymnax's default `step_env` + `reset_env`: one random draw
  per move serves both the food and the next game, which is what keeps the games identical.
- `params`: the game's rules (board size, rewards, limits) are fixed when the env is built,
  since the board size fixes every array's shape; `default_params.max_steps_in_episode` says
  the move limit for tools that read it. `step` and `reset` accept params and do not read them.
- `info` also has `won`, `starved`, `score` (food eaten in the game that just ended, or so far)
  and `episode_length`.

gymnax's own wrappers apply (`gymnax.wrappers.purerl.LogWrapper`, `FlattenObservationWrapper`,
`gymnax.wrappers.gym.GymnaxToGymWrapper` for a Gymnasium env, the dm_env wrapper).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

from snake_env import NUM_ACTIONS, SnakeEnv, SnakeState
from snake_purejaxrl.rendering import render_rgb


class SnakeGymnax(environment.Environment[SnakeState, environment.EnvParams]):
    """The game of `SnakeEnv(grid_size, **rules)` as a gymnax `Environment`."""

    def __init__(self, grid_size: int = 12, **rules: Any) -> None:
        """`rules`: `SnakeEnv`'s other keywords (rewards, limits, curriculum)."""
        self.game = SnakeEnv(grid_size=grid_size, **rules)

    @property
    def default_params(self) -> environment.EnvParams:
        return environment.EnvParams(max_steps_in_episode=self.game.max_steps)

    @functools.partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: SnakeState,
        action: int | jax.Array,
        params: environment.EnvParams | None = None,
    ) -> tuple[jax.Array, SnakeState, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
        """One move, auto-resetting: (obs, state, reward, terminated, truncated, info)."""
        del params  # the rules are the env's own (module docstring)
        obs, state, reward, _, info = self.game.step(key, state, action)
        extra = {k: info[k] for k in ("won", "starved", "score", "episode_length")}
        return (
            obs,
            state,
            reward,
            info["terminated"],
            info["truncated"],
            {
                **extra,
                "final_observation": info["final_obs"],
            },
        )

    @functools.partial(jax.jit, static_argnames=("self",))
    def reset(
        self, key: jax.Array, params: environment.EnvParams | None = None
    ) -> tuple[jax.Array, SnakeState]:
        return self.reset_env(key, params)

    def reset_env(self, key: jax.Array, params: environment.EnvParams | None):
        del params
        return self.game.reset(key)

    @property
    def name(self) -> str:
        return f"Snake-{self.game.grid_size}x{self.game.grid_size}"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: environment.EnvParams | None = None) -> spaces.Discrete:
        """0 up, 1 right, 2 down, 3 left (the reverse of the last move is ignored)."""
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: environment.EnvParams | None = None) -> spaces.Box:
        """(G, G, 4) in [0, 1]: head, body, food, body order (see `snake_env`)."""
        return spaces.Box(0.0, 1.0, self.game.observation_shape, jnp.float32)

    def render(self, state: SnakeState, params: environment.EnvParams | None = None) -> np.ndarray:
        """One game as an RGB image (what `GymnaxToGymWrapper.render` shows)."""
        return render_rgb(state, self.game.grid_size)
