"""The agent's input (`snake_purejaxrl.agent_input`): the heading read from the board, the
egocentric view, actions in the snake's frame, mirroring, and the flood-fill look-ahead."""

import jax
import jax.numpy as jnp
import numpy as np

from snake_env import SnakeEnv
from snake_purejaxrl import agent_input
from snake_purejaxrl.config import validate_config


def random_states(grid_size, n, steps, seed=0):
    env = SnakeEnv(grid_size)
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    _, state = jax.vmap(env.reset)(keys)
    for t in range(steps):
        mask = jax.vmap(env.action_mask)(state)
        action = jnp.argmax(mask * jax.random.uniform(jax.random.PRNGKey(t), mask.shape), -1)
        _, state, *_ = jax.vmap(env.step)(jax.random.split(keys[t % n], n), state, action)
    return env, state


def test_heading_is_read_correctly_from_the_observation():
    env, state = random_states(7, 64, 12)
    obs = jax.vmap(env.observation)(state)
    head, heading = agent_input.heading_of(obs)
    np.testing.assert_array_equal(head, state.head)
    np.testing.assert_array_equal(heading, state.direction)


def test_egocentric_view_is_the_same_for_a_rotated_board():
    env, state = random_states(7, 32, 10, seed=3)
    obs = jax.vmap(env.observation)(state)
    rotated = jnp.rot90(obs, k=1, axes=(1, 2))  # the whole board turned a quarter, left
    view, heading = agent_input.egocentric_view(obs)
    view_rotated, heading_rotated = agent_input.egocentric_view(rotated)
    np.testing.assert_array_equal(view, view_rotated)
    np.testing.assert_array_equal((heading - 1) % 4, heading_rotated)  # right turns to up
    centre, order = view.shape[1] // 2, 1
    assert view.shape[1:] == (13, 13, 3)
    assert (view[:, centre, centre, order] == 1).all()  # the head sits in the centre
    neck = view[:, centre + 1, centre, order]
    assert (neck > view[:, centre, centre - 1, order]).all()  # right behind it: the neck
    assert (neck > view[:, centre - 1, centre, order]).all()


def test_agent_actions_are_moves_in_the_snakes_frame_mirrored_on_request():
    heading = jnp.arange(4)
    moves = np.asarray(agent_input.agent_moves(heading, jnp.zeros(4, bool)))
    for h in range(4):  # ahead, right, back, left of each heading
        assert moves[h].tolist() == [h, (h + 1) % 4, (h + 2) % 4, (h + 3) % 4]
    mirrored = np.asarray(agent_input.agent_moves(heading, jnp.ones(4, bool)))
    assert (mirrored[:, [0, 2]] == moves[:, [0, 2]]).all()  # ahead and back stay
    assert (mirrored[:, 1] == moves[:, 3]).all() and (mirrored[:, 3] == moves[:, 1]).all()
    absolute = jnp.array([[10.0, 11.0, 12.0, 13.0]] * 4)  # up, right, down, left
    in_frame = np.asarray(agent_input.to_agent_frame(absolute, jnp.asarray(moves)))
    for h in range(4):
        for a in range(4):  # an action's value is its move's, and it plays that move
            move = int(agent_input.to_env_action(jnp.array([a]), jnp.asarray(moves[h : h + 1]))[0])
            assert in_frame[h, a] == 10.0 + move and move == moves[h, a]


def test_a_mirrored_game_looks_flipped_and_acts_flipped():
    env, state = random_states(7, 16, 9, seed=5)
    obs = jax.vmap(env.observation)(state)
    config = validate_config({"GRID_SIZE": 7, "FLOOD_FILL": True})
    plain = agent_input.observe(config, obs)
    flipped = agent_input.observe(config, obs, jnp.ones(16, bool))
    view_size = 13 * 13 * 3
    view = np.asarray(plain.features[:, :view_size]).reshape(16, 13, 13, 3)
    view_mirrored = np.asarray(flipped.features[:, :view_size]).reshape(16, 13, 13, 3)
    np.testing.assert_array_equal(view_mirrored, view[:, :, ::-1])
    flood, flood_mirrored = (
        np.asarray(plain.features[:, view_size:]),
        np.asarray(flipped.features[:, view_size:]),
    )
    np.testing.assert_array_equal(flood_mirrored[:, [1, 3, 5, 7]], flood[:, [3, 1, 7, 5]])
    np.testing.assert_array_equal(flipped.moves[:, 1], plain.moves[:, 3])  # right acts as left


# --------------------------------------------------------------------------- look-ahead features
def test_flood_features_measure_the_room_each_move_leaves_and_whether_the_tail_is_in_it():
    env = SnakeEnv(6)
    # Heading left at (1, 1); the body walls off the top-left corner: (0,0), (0,1), (1,0).
    cells = [(1, 1), (1, 2), (0, 2), (0, 3), (1, 3), (2, 3), (2, 2), (2, 1), (2, 0), (3, 0)]
    obs = env.observation(env.make_state(cells, food=(5, 5)))[None]
    _, heading = agent_input.heading_of(obs)
    area, tail, fill = np.split(np.asarray(agent_input.flood_features(obs, heading))[0], [4, 8])
    free = 36 - len(cells) + 1  # the free cells and the tail's
    # ahead (left, into the corner) and right (up, into the corner) leave 3 cells; back is
    # never allowed; left (down) runs into the body.
    np.testing.assert_allclose(area, [3 / free, 3 / free, 0, 0])
    np.testing.assert_array_equal(tail, [0, 0, 0, 0])  # the tail (3, 0) is outside the pocket
    np.testing.assert_allclose(fill, [len(cells) / 36])
    # Cut the snake to 8 cells: its tail is now (2, 1), just below the head, and frees as the
    # snake moves, so every allowed move (left too: into the tail's cell) reaches the whole
    # board and the tail.
    obs = env.observation(env.make_state(cells[:8], food=(5, 5)))[None]
    features = agent_input.flood_features(obs, agent_input.heading_of(obs)[1])
    area, tail, _ = np.split(np.asarray(features)[0], [4, 8])
    np.testing.assert_allclose(area, [1, 1, 0, 1])
    np.testing.assert_array_equal(tail, [1, 1, 0, 1])
