"""The rules of Snake, checked through the public API of `snake_env.SnakeEnv`."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snake_env import DOWN, LEFT, RIGHT, UP, SnakeEnv

MOVES = {UP: (-1, 0), RIGHT: (0, 1), DOWN: (1, 0), LEFT: (0, -1)}
jit_step = jax.jit(SnakeEnv.step, static_argnums=0)


def step(env, state, action, seed=0):
    return jit_step(env, jax.random.PRNGKey(seed), state, jnp.int32(action))


def cells_in(obs):
    """Snake cells (row, col) from head to tail, read from an observation's order channel."""
    order = np.asarray(obs)[..., 3]
    rows, cols = np.nonzero(order)
    return [(r, c) for _, r, c in sorted(zip(-order[rows, cols], rows, cols))]


def food_in(obs):
    rows, cols = np.nonzero(np.asarray(obs)[..., 2])
    assert len(rows) == 1
    return int(rows[0]), int(cols[0])


def cells_of(env, state):
    return cells_in(env.observation(state))


def food_of(env, state):
    return food_in(env.observation(state))


# --------------------------------------------------------------------------- reset
@pytest.mark.parametrize("grid_size", [4, 5, 12, 64])
def test_reset_places_a_straight_length3_snake_heading_away_from_its_body(grid_size):
    env = SnakeEnv(grid_size)
    for seed in range(20):
        obs, state = env.reset(jax.random.PRNGKey(seed))
        cells = cells_of(env, state)
        assert len(cells) == 3 and int(state.length) == 3
        (hr, hc), (nr, nc), (tr, tc) = cells
        assert (hr - nr, hc - nc) == (nr - tr, nc - tc)  # straight
        assert MOVES[int(state.direction)] == (hr - nr, hc - nc)  # neck -> head
        assert food_of(env, state) not in cells
        assert obs.shape == env.observation_shape == (grid_size, grid_size, 4)
        assert obs[..., 0].sum() == 1 and obs[hr, hc, 0] == 1
        assert obs[..., 1].sum() == 2 and obs[tr, tc, 1] == 1 and obs[hr, hc, 1] == 0


def test_reset_covers_every_heading_and_the_board_corners():
    env = SnakeEnv(4)
    headings, heads = set(), set()
    for seed in range(400):
        _, state = env.reset(jax.random.PRNGKey(seed))
        headings.add(int(state.direction))
        heads.add(int(state.head))
    assert headings == {0, 1, 2, 3}
    assert heads == set(range(16))  # every cell can hold the head for some heading


def test_same_key_gives_same_game():
    env = SnakeEnv(12)
    key = jax.random.PRNGKey(7)
    _, a = env.reset(key)
    _, b = env.reset(key)
    for action in [0, 1, 1, 2, 3]:
        key, sub = jax.random.split(key)
        obs_a, a, r_a, *_ = jit_step(env, sub, a, jnp.int32(action))
        obs_b, b, r_b, *_ = jit_step(env, sub, b, jnp.int32(action))
        np.testing.assert_array_equal(obs_a, obs_b)
        assert r_a == r_b
    _, c = env.reset(jax.random.PRNGKey(8))
    assert not np.array_equal(env.observation(a), env.observation(c))


# --------------------------------------------------------------------------- moves
def test_each_action_moves_the_head_one_cell():
    env = SnakeEnv(8)
    for action, (dr, dc) in MOVES.items():
        if action == DOWN:  # the reverse of the start heading below
            continue
        state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(0, 0))  # heading up
        _, nxt, reward, done, info = step(env, state, action)
        assert cells_of(env, nxt)[0] == (4 + dr, 4 + dc)
        assert cells_of(env, nxt)[1:] == [(4, 4), (5, 4)]  # the tail cell freed
        assert reward == 0.0 and not done and int(info["score"]) == 0


@pytest.mark.parametrize("action", [DOWN, -1, 4, 99])
def test_reverse_and_out_of_range_actions_keep_the_snake_going_straight(action):
    env = SnakeEnv(8)
    state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(0, 0))  # heading up
    _, nxt, reward, done, _ = step(env, state, action)
    assert cells_of(env, nxt) == [(3, 4), (4, 4), (5, 4)]
    assert int(nxt.direction) == UP and not done and reward == 0.0


def test_eating_grows_the_snake_scores_and_respawns_food_on_a_free_cell():
    env = SnakeEnv(8)
    state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(3, 4))
    _, nxt, reward, done, info = step(env, state, UP)
    assert reward == 1.0 and not done
    assert cells_of(env, nxt) == [(3, 4), (4, 4), (5, 4), (6, 4)]  # the tail stayed
    assert int(info["score"]) == 1 and int(nxt.length) == 4
    assert food_of(env, nxt) not in cells_of(env, nxt)
    assert int(nxt.steps_since_food) == 0


def test_new_food_is_uniform_over_the_free_cells():
    env = SnakeEnv(4)
    state = env.make_state([(1, 1), (1, 2), (1, 3)], food=(0, 1))
    keys = jax.random.split(jax.random.PRNGKey(0), 12_000)
    _, nxt, _, _, _ = jax.vmap(env.step, in_axes=(0, None, None))(keys, state, jnp.int32(UP))
    counts = Counter(np.asarray(nxt.food).tolist())
    occupied = {0 * 4 + 1, 1 * 4 + 1, 1 * 4 + 2, 1 * 4 + 3}
    assert set(counts) == set(range(16)) - occupied  # every free cell, never the body
    expected = 12_000 / 12
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 35.0  # 11 dof: p < 0.0005 for a fair die


# --------------------------------------------------------------------------- death
@pytest.mark.parametrize(
    "cells, action",
    [
        ([(0, 4), (1, 4), (2, 4)], UP),
        ([(4, 7), (4, 6), (4, 5)], RIGHT),
        ([(7, 4), (6, 4), (5, 4)], DOWN),
        ([(4, 0), (4, 1), (4, 2)], LEFT),
    ],
)
def test_leaving_the_board_is_death_and_the_next_obs_is_a_new_game(cells, action):
    env = SnakeEnv(8)
    state = env.make_state(cells, food=(3, 3), steps=5)
    obs, nxt, reward, done, info = step(env, state, action)
    assert reward == -1.0 and done
    assert info["terminated"] and not info["truncated"] and not info["won"]
    assert int(info["episode_length"]) == 6
    assert int(nxt.length) == 3 and int(nxt.steps) == 0  # auto-reset
    np.testing.assert_array_equal(obs, env.observation(nxt))


def test_running_into_the_body_is_death():
    env = SnakeEnv(8)
    # A hook: moving down from (2, 2) enters (3, 2), which the body still holds next move.
    cells = [(2, 2), (2, 3), (3, 3), (3, 2), (3, 1)]
    _, _, reward, done, info = step(env, env.make_state(cells, food=(0, 0)), DOWN)
    assert reward == -1.0 and done and info["terminated"]
    assert info["final_obs"][3, 2, 0] == 1.0  # the head ended inside the body


def test_moving_into_the_cell_the_tail_leaves_is_legal():
    env = SnakeEnv(8)
    cells = [(2, 2), (2, 3), (3, 3), (3, 2)]  # a 2x2 ring: the tail is below the head
    _, nxt, reward, done, _ = step(env, env.make_state(cells, food=(0, 0)), DOWN)
    assert not done and reward == 0.0
    assert cells_of(env, nxt) == [(3, 2), (2, 2), (2, 3), (3, 3)]


def test_moving_into_the_tail_while_eating_is_impossible_since_food_never_lies_there():
    env = SnakeEnv(8)
    cells = [(2, 2), (2, 3), (3, 3), (3, 2)]
    with pytest.raises(ValueError, match="distinct cells"):
        env.make_state(cells, food=(3, 2))


# --------------------------------------------------------------------------- win and truncation
# Every cell of a 4x4 board, row by row, turning at each end: a snake laid on path[k:] has its
# head at path[k] and its tail at (3, 0), with path[:k] free.
SERPENTINE_4X4 = [(r, c if r % 2 == 0 else 3 - c) for r in range(4) for c in range(4)]


def test_filling_the_board_wins_the_game():
    env = SnakeEnv(4)
    # A snake of 15 on a 4x4 board, food in the last free cell next to the head.
    cells = SERPENTINE_4X4[1:]  # head at (0, 1), tail at (3, 0)
    _, nxt, reward, done, info = step(env, env.make_state(cells, food=(0, 0)), LEFT)
    assert reward == 1.0 and done
    assert info["won"] and info["terminated"] and not info["truncated"]
    assert int(info["score"]) == env.max_score == 13
    assert int(nxt.length) == 3  # a new game


def test_the_win_reward_pays_only_the_move_that_fills_the_board():
    env = SnakeEnv(4, win_reward=10.0)
    _, _, reward, done, info = step(env, env.make_state(SERPENTINE_4X4[1:], food=(0, 0)), LEFT)
    assert done and info["won"] and reward == 11.0  # the food's 1 plus the win's 10
    state = env.make_state(SERPENTINE_4X4[3:], food=(0, 2))  # eats, two cells still free: no win
    _, _, reward, done, info = step(env, state, LEFT)
    assert not done and not info["won"] and reward == 1.0
    with pytest.raises(ValueError, match="win_reward"):
        SnakeEnv(4, win_reward=float("nan"))


def test_starvation_truncates_without_a_death_penalty():
    env = SnakeEnv(8, starvation_steps=3)
    state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(0, 7))
    for i in range(3):
        _, state, reward, done, info = step(env, state, [RIGHT, UP, LEFT][i])
        assert reward == 0.0 and not info["terminated"]
    assert done and info["truncated"] and int(info["episode_length"]) == 3
    assert info["final_obs"][3, 4, 0] == 1.0  # the truncated game's last head, for bootstrapping


def test_max_steps_truncates_even_while_eating_regularly():
    env = SnakeEnv(8, max_steps=2, starvation_steps=100)
    state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(3, 4))
    _, state, _, done, info = step(env, state, UP)
    assert not done
    _, _, _, done, info = step(env, state, UP)
    assert done and info["truncated"] and not info["terminated"]


def test_custom_rewards_are_used():
    env = SnakeEnv(8, food_reward=2.0, death_reward=-5.0, step_reward=-0.01)
    state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(2, 4))
    _, state, reward, *_ = step(env, state, UP)
    assert reward == pytest.approx(-0.01)
    _, state, reward, *_ = step(env, state, UP)
    assert reward == 2.0
    state = env.make_state([(0, 4), (1, 4), (2, 4)], food=(5, 5))
    assert step(env, state, UP)[2] == -5.0


# --------------------------------------------------------------------------- action mask
def test_action_mask_allows_exactly_the_moves_that_do_not_die():
    env = SnakeEnv(8)
    # Head in the top-left corner heading up: up and left are walls, down is the reverse.
    corner = env.make_state([(0, 0), (1, 0), (1, 1)], food=(5, 5))
    np.testing.assert_array_equal(env.action_mask(corner), [False, True, False, False])
    ring = env.make_state([(2, 2), (2, 3), (3, 3), (3, 2)], food=(0, 0))  # heading left
    np.testing.assert_array_equal(env.action_mask(ring), [True, False, True, True])


# --------------------------------------------------------------------------- properties
def reference_step(grid_size, cells, direction, food, action):
    """A plain-Python Snake following the written rules: returns (cells, direction, outcome)."""
    if 0 <= action < 4 and action != (direction + 2) % 4:
        direction = action
    dr, dc = MOVES[direction]
    head = (cells[0][0] + dr, cells[0][1] + dc)
    eats = head == food
    stays = cells if eats else cells[:-1]
    if not (0 <= head[0] < grid_size and 0 <= head[1] < grid_size) or head in stays:
        return None, direction, "death"
    return [head, *stays], direction, ("eat" if eats else "move")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    grid_size=st.integers(4, 7),
    actions=st.lists(st.integers(-1, 4), min_size=1, max_size=60),
)
def test_random_games_follow_the_reference_rules_and_keep_the_state_consistent(
    seed, grid_size, actions
):
    env = SnakeEnv(grid_size)
    key = jax.random.PRNGKey(seed)
    _, state = env.reset(key)
    for action in actions:
        cells, direction, food = cells_of(env, state), int(state.direction), food_of(env, state)
        mask = np.asarray(env.action_mask(state))
        key, sub = jax.random.split(key)
        obs, nxt, reward, done, info = jit_step(env, sub, state, jnp.int32(action))
        expected_cells, _, outcome = reference_step(grid_size, cells, direction, food, action)
        if 0 <= action < 4 and action != (direction + 2) % 4:
            assert mask[action] == (outcome != "death")
        if outcome == "death":
            assert done and info["terminated"] and reward == -1.0
        elif info["won"]:
            assert outcome == "eat" and done and reward == 1.0
        else:
            assert reward == (1.0 if outcome == "eat" else 0.0)
            # The board right after the move (before any auto-reset) is the reference's.
            final = np.asarray(info["final_obs"])
            assert cells_in(final) == expected_cells
            assert food_in(final) == food  # the food eaten on this move, or the one not reached
            if not done:
                assert cells_of(env, nxt) == expected_cells
        # Invariants of every state, fresh or continued.
        body = np.asarray(nxt.body)
        length = int(nxt.length)
        assert sorted(body[body > 0].tolist()) == list(range(1, length + 1))
        assert body[int(nxt.food)] == 0
        assert obs[..., 0].sum() == 1 and obs[..., 2].sum() == 1
        assert obs[..., 1].sum() == length - 1
        chain = cells_of(env, nxt)
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(chain, chain[1:]))
        state = nxt


# --------------------------------------------------------------------------- batching
def test_jit_vmap_over_thousands_of_games_matches_single_games():
    env = SnakeEnv(12)
    n = 2048
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    obs, state = jax.jit(jax.vmap(env.reset))(keys)
    assert obs.shape == (n, 12, 12, 4)
    actions = jax.random.randint(jax.random.PRNGKey(4), (n,), 0, 4)
    batched = jax.jit(jax.vmap(env.step))(keys, state, actions)
    for i in [0, 17, n - 1]:
        single_state = jax.tree.map(lambda x, i=i: x[i], state)
        single = env.step(keys[i], single_state, actions[i])
        np.testing.assert_array_equal(batched[0][i], single[0])
        assert batched[2][i] == single[2] and batched[3][i] == single[3]


def test_a_long_random_rollout_scores_and_auto_resets():
    env = SnakeEnv(6)
    n, steps = 256, 200

    @jax.jit
    def rollout(key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, n))

        def body(state, k):
            ka, ks = jax.random.split(k)
            actions = jax.random.randint(ka, (n,), 0, 4)
            keys = jax.random.split(ks, n)
            _, state, reward, done, info = jax.vmap(env.step)(keys, state, actions)
            return state, (reward, done, info["score"])

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1]

    reward, done, score = rollout(jax.random.PRNGKey(0))
    assert done.sum() > n  # games end and restart
    assert (reward == 1.0).sum() > 0 and score.max() >= 1


# --------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"grid_size": 3}, "grid_size"),
        ({"grid_size": 65}, "grid_size"),
        ({"grid_size": 12.5}, "grid_size"),
        ({"max_steps": 0}, "max_steps"),
        ({"starvation_steps": -4}, "starvation_steps"),
        ({"food_reward": float("nan")}, "food_reward"),
        ({"death_reward": "big"}, "death_reward"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SnakeEnv(**kwargs)


# --------------------------------------------------------------------------- curriculum starts
def test_long_starts_are_valid_snakes_whose_score_counts_from_their_start():
    env = SnakeEnv(8, long_start_prob=0.5, long_start_fill=(0.5, 0.8))
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    _, states = jax.vmap(env.reset)(keys)
    lengths = np.asarray(states.length)
    long = lengths > 3
    assert 0.4 < long.mean() < 0.6  # about half the games
    assert lengths[long].min() >= 32 and lengths[long].max() <= 51  # 50%..80% of 64 cells
    assert (np.asarray(states.start_length) == lengths).all()
    for i in np.flatnonzero(long)[:40]:
        state = jax.tree.map(lambda x, i=i: x[i], states)
        chain = cells_of(env, state)  # head to tail: neighbours all along, as a snake must be
        assert len(chain) == int(state.length)
        assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(chain, chain[1:]))
        assert food_of(env, state) not in chain
        head, neck = chain[0], chain[1]
        assert MOVES[int(state.direction)] == (head[0] - neck[0], head[1] - neck[1])
        assert np.asarray(env.action_mask(state)).any()  # the path goes on: a move survives
    # Eating from a long start scores 1, not the length it started with.
    state = jax.tree.map(lambda x: x[np.flatnonzero(long)[0]], states)
    chain = cells_of(env, state)
    free = [(r, c) for r in range(8) for c in range(8) if (r, c) not in chain]
    target = next(
        (chain[0][0] + dr, chain[0][1] + dc)
        for a, (dr, dc) in MOVES.items()
        if np.asarray(env.action_mask(state))[a] and (chain[0][0] + dr, chain[0][1] + dc) in free
    )
    action = next(a for a, d in MOVES.items() if (chain[0][0] + d[0], chain[0][1] + d[1]) == target)
    state = state.replace(food=jnp.int32(target[0] * 8 + target[1]))
    _, _, reward, _, info = step(env, state, action)
    assert reward == 1.0 and int(info["score"]) == 1


def test_without_a_curriculum_every_game_starts_at_length_three():
    _, states = jax.vmap(SnakeEnv(8).reset)(jax.random.split(jax.random.PRNGKey(1), 200))
    assert (np.asarray(states.length) == 3).all()


def test_the_approach_reward_pays_the_food_distance_whatever_the_path():
    """A potential difference: a direct path and a detour to the food earn the same in total,
    each move is paid as it comes, a death earns only the death reward, and off means off."""
    start, food = [(4, 4), (5, 4), (6, 4)], (1, 6)  # Manhattan distance 5
    direct = [UP, UP, RIGHT, RIGHT, UP]
    detour = [RIGHT, RIGHT, RIGHT, UP, UP, UP, LEFT]  # out past the food's column and back
    for coef in (0.0, 0.1):
        env = SnakeEnv(8, approach_reward=coef)
        for path in (direct, detour):
            state, rewards = env.make_state(start, food), []
            for move in path:
                _, state, reward, done, info = step(env, state, move)
                rewards.append(float(reward))
            assert int(info["score"]) == 1 and rewards[-1] == pytest.approx(1.0 + coef)
            assert sum(rewards) == pytest.approx(1.0 + 5 * coef)
        assert rewards[:3] == pytest.approx([coef, coef, -coef])  # detour: closer twice, then past
        dead = env.make_state([(0, 3), (1, 3), (2, 3)], food=(5, 3))
        _, _, reward, done, _ = step(env, dead, UP)  # into the wall
        assert done and float(reward) == -1.0


def test_starving_can_be_made_a_death_for_training_and_hunger_counts_towards_it():
    moves = [RIGHT, UP, LEFT]
    for as_death in (False, True):
        env = SnakeEnv(8, starvation_steps=3, starvation_is_death=as_death)
        state = env.make_state([(4, 4), (5, 4), (6, 4)], food=(0, 7))
        for i, move in enumerate(moves):
            assert float(env.hunger(state)) == pytest.approx(i / 3)
            _, state, reward, done, info = step(env, state, move)
        assert done and info["starved"] and float(info["final_hunger"]) == 1.0
        assert bool(info["terminated"]) == as_death and bool(info["truncated"]) == (not as_death)
        assert float(reward) == (-1.0 if as_death else 0.0)
        assert int(info["score"]) == 0  # the score is food eaten either way
