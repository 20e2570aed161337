"""`SnakeGymnax` used as the field uses a gymnax env: its games are `SnakeEnv`'s, and gymnax's
own wrappers (PureJaxRL's loop, the Gymnasium wrapper) run it with no adapter."""

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces
from gymnax.wrappers.gym import GymnaxToGymWrapper
from gymnax.wrappers.purerl import FlattenObservationWrapper, LogWrapper

from snake_env import SnakeEnv
from snake_gymnax import SnakeGymnax

RULES = {"food_reward": 2.0, "death_reward": -3.0, "step_reward": -0.01, "starvation_steps": 30}


def test_it_is_a_gymnax_environment_with_spaces_and_default_params():
    env = SnakeGymnax(grid_size=7, **RULES)
    assert isinstance(env, environment.Environment)
    assert env.num_actions == 4
    assert isinstance(env.action_space(env.default_params), spaces.Discrete)
    box = env.observation_space(env.default_params)
    assert isinstance(box, spaces.Box) and box.shape == (7, 7, 4)
    assert env.default_params.max_steps_in_episode == 64 * 49
    obs, state = env.reset(jax.random.PRNGKey(0), env.default_params)
    assert box.contains(obs) and env.action_space(None).contains(jnp.int32(3))


def test_its_games_are_exactly_snake_envs_for_the_same_keys_and_actions():
    core, env = SnakeEnv(grid_size=6, **RULES), SnakeGymnax(grid_size=6, **RULES)
    params, n, steps = env.default_params, 64, 300
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    obs_a, state_a = jax.vmap(core.reset)(keys)
    obs_b, state_b = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    np.testing.assert_array_equal(obs_a, obs_b)
    deaths = cuts = 0
    for t in range(steps):
        step_keys = jax.random.split(jax.random.PRNGKey(1000 + t), n)
        action = jax.random.randint(jax.random.PRNGKey(t), (n,), 0, 4)
        obs_a, state_a, reward_a, done, info_a = jax.vmap(core.step)(step_keys, state_a, action)
        obs_b, state_b, reward_b, term, trunc, info_b = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            step_keys, state_b, action, params
        )
        np.testing.assert_array_equal(obs_a, obs_b)
        jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
        np.testing.assert_array_equal(reward_a, reward_b)
        # Death (or a win) is terminated, a cut game truncated; never both; done is either.
        np.testing.assert_array_equal(term, info_a["terminated"])
        np.testing.assert_array_equal(trunc, info_a["truncated"])
        assert not (term & trunc).any() and ((term | trunc) == done).all()
        np.testing.assert_array_equal(info_b["final_observation"], info_a["final_obs"])
        deaths, cuts = deaths + int(term.sum()), cuts + int(trunc.sum())
    assert deaths > n and cuts > 0  # games ended by death and by starvation, and restarted


def test_a_purejaxrl_loop_runs_it_under_gymnax_log_and_flatten_wrappers():
    env = LogWrapper(FlattenObservationWrapper(SnakeGymnax(grid_size=6, **RULES)))
    params, n, steps = env.default_params, 16, 400
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(0), n), params
    )
    assert obs.shape == (n, 6 * 6 * 4)

    def env_step(carry, key):  # PureJaxRL's shape: vmap over envs, params shared
        obs, state = carry
        key_act, key_step = jax.random.split(key)
        action = jax.random.randint(key_act, (n,), 0, env.num_actions)
        obs, state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key_step, n), state, action, params)
        return (obs, state), (reward, terminated | truncated, info)

    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    _, (reward, done, info) = jax.jit(lambda c: jax.lax.scan(env_step, c, keys))((obs, state))
    assert info["final_observation"].shape == (steps, n, 6 * 6 * 4)
    np.testing.assert_array_equal(info["returned_episode"], done)
    # LogWrapper's episode return is the sum of the rewards of the game that just ended.
    reward, done = np.asarray(reward), np.asarray(done)
    returns = np.asarray(info["returned_episode_returns"])
    checked = 0
    for e in range(n):
        running = 0.0
        for t in range(steps):
            running += reward[t, e]
            if done[t, e]:
                np.testing.assert_allclose(returns[t, e], running, rtol=1e-5, atol=1e-5)
                running, checked = 0.0, checked + 1
    assert checked > n


def test_a_gymnasium_user_plays_it_in_a_plain_python_loop_until_the_game_ends():
    gym_env = GymnaxToGymWrapper(SnakeGymnax(grid_size=5, **RULES), seed=0)
    obs, _ = gym_env.reset(seed=3)
    assert gym_env.observation_space.shape == (5, 5, 4) and gym_env.action_space.n == 4
    assert gym_env.observation_space.contains(np.asarray(obs))
    eaten = 0
    for move in range(10_000):  # circling up, right, down, left: it starves or dies
        obs, reward, terminated, truncated, info = gym_env.step(move % 4)
        assert float(reward) in (2.0, -3.0, np.float32(-0.01))
        eaten += float(reward) == 2.0
        if terminated or truncated:
            break
        assert gym_env.observation_space.contains(np.asarray(obs))
    assert terminated != truncated
    assert int(info["score"]) == eaten and int(info["episode_length"]) == move + 1
    assert info["final_observation"].shape == (5, 5, 4)
    assert gym_env.render().shape == (5 * 16, 5 * 16, 3)
