"""The agent's input (`snake_purejaxrl.agent_input`): the heading read from the board, the
egocentric view, actions in the snake's frame, mirroring, and the flood-fill look-ahead."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snake_env import ORDER_CHANNEL, SnakeEnv
from snake_purejaxrl import agent_input
from snake_purejaxrl.config import validate_config


def random_states(grid_size, n, steps, seed=0):
    """`n` games after `steps` random moves that never die at once (one compiled program)."""
    env = SnakeEnv(grid_size)
    return env, _play_randomly(grid_size, n, steps, seed)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _play_randomly(grid_size, n, steps, seed):
    env = SnakeEnv(grid_size)
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    _, state = jax.vmap(env.reset)(keys)

    def move(t, state):
        mask = jax.vmap(env.action_mask)(state)
        action = jnp.argmax(mask * jax.random.uniform(jax.random.PRNGKey(t), mask.shape), -1)
        return jax.vmap(env.step)(jax.random.split(keys[t % n], n), state, action)[1]

    return jax.lax.fori_loop(0, steps, move, state)


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
    config = validate_config(
        {"GRID_SIZE": 7, "FLOOD_FILL": True, "FOOD_DISTANCE": True, "TIMED_FLOOD": True}
    )
    plain = agent_input.observe(config, obs)
    flipped = agent_input.observe(config, obs, jnp.ones(16, bool))
    layout = agent_input.CELL_LAYOUTS["egocentric"]
    flat, flat_mirrored = (
        np.asarray(agent_input.flat_input(x.features, layout)) for x in (plain, flipped)
    )
    view_size = 13 * 13 * 3
    view = flat[:, :view_size].reshape(16, 13, 13, 3)
    view_mirrored = flat_mirrored[:, :view_size].reshape(16, 13, 13, 3)
    np.testing.assert_array_equal(view_mirrored, view[:, :, ::-1])
    np.testing.assert_array_equal(view, agent_input.egocentric_view(obs)[0].reshape(view.shape))
    flood, flood_mirrored = flat[:, view_size:], flat_mirrored[:, view_size:]
    # room, tail, food; then the timed fill's tail and food
    right_left = [1, 3, 5, 7, 10, 12, 14, 16, 18, 20]
    left_right = [3, 1, 7, 5, 12, 10, 16, 14, 20, 18]
    np.testing.assert_array_equal(flood_mirrored[:, right_left], flood[:, left_right])
    same = [0, 2, 4, 6, 8, 9, 11, 13, 15, 17, 19]  # ahead, back, how full the board is
    np.testing.assert_array_equal(flood_mirrored[:, same], flood[:, same])
    assert flood.shape[1] == 21 and (flood[:, 13:] > 0).any()
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


@pytest.mark.parametrize("longer, escapes", [(0, True), (2, True), (3, False)])
def test_the_timed_flood_fill_sees_a_pocket_open_as_the_body_frees(longer, escapes):
    """The pocket above (the top-left corner: 3 cells) is walled in by the body; (2, 0) below it
    frees 2 + `longer` moves from now. Going in (ahead or right), the snake fills the pocket in
    3 moves: it gets out if (2, 0) has freed by the 4th, and is trapped if it has not."""
    env = SnakeEnv(6)
    cells = [(1, 1), (1, 2), (0, 2), (0, 3), (1, 3), (2, 3), (2, 2), (2, 1), (2, 0), (3, 0)]
    cells += [(4, 0), (5, 0), (5, 1)][:longer]
    obs = env.observation(env.make_state(cells, food=(0, 0)))[None]
    heading = agent_input.heading_of(obs)[1]
    follows_tail, food = np.split(np.asarray(agent_input.timed_flood_features(obs, heading))[0], 2)
    np.testing.assert_array_equal(follows_tail, [escapes, escapes, 0, 0])  # left: into the body
    np.testing.assert_allclose(food, [1 - 2 / 36, 1 - 2 / 36, 0, 0])  # 2 moves to (0, 0)
    static_tail = np.asarray(agent_input.flood_features(obs, heading))[0, 4:8]
    np.testing.assert_array_equal(static_tail, [0, 0, 0, 0])  # the static fill never sees it


MOVE_DELTAS = [(-1, 0), (0, 1), (1, 0), (0, -1)]  # up, right, down, left


def random_snake(grid_size, rng):
    """(row, col) cells head to tail of a random snake: a random self-avoiding walk (pockets
    and dead ends), or a random stretch of a serpentine through the board (up to nearly full)."""
    g = grid_size
    if rng.random() < 0.5:
        rows, cols = np.divmod(np.arange(g * g), g)
        path = list(zip(rows, np.where(rows % 2 == 0, cols, g - 1 - cols)))
        if rng.random() < 0.5:
            path = [(c, r) for r, c in path]
        length = int(rng.integers(2, g * g))
        start = int(rng.integers(0, g * g - length + 1))
        cells = path[start : start + length]
        return [(int(r), int(c)) for r, c in (cells if rng.random() < 0.5 else cells[::-1])]
    cells = [(int(rng.integers(g)), int(rng.integers(g)))]
    target = int(rng.integers(2, g * g))
    while len(cells) < target:
        r, c = cells[-1]
        steps = [(r + dr, c + dc) for dr, dc in MOVE_DELTAS]
        free = [(r, c) for r, c in steps if 0 <= r < g and 0 <= c < g and (r, c) not in cells]
        if not free:
            break
        cells.append(free[int(rng.integers(len(free)))])
    return cells if len(cells) >= 2 else random_snake(grid_size, rng)


def random_game(grid_size, rng):
    """A `random_snake` and a food cell on a random free cell."""
    cells = random_snake(grid_size, rng)
    free = sorted({(r, c) for r in range(grid_size) for c in range(grid_size)} - set(cells))
    return cells, free[int(rng.integers(len(free)))]


def reference_flood_features(cells, g, food=None):
    """flood_features by a plain breadth-first search over (row, col) cells; with `food`, the
    food's closeness per move too."""
    occupied = set(cells[:-1])  # the tail's cell frees as the snake moves
    (hr, hc), (nr, nc) = cells[0], cells[1]
    heading = MOVE_DELTAS.index((hr - nr, hc - nc))
    free = np.float32(g * g - len(cells) + 1)
    area, tail, closeness = [0.0] * 4, [0.0] * 4, [0.0] * 4
    for relative in (agent_input.AHEAD, agent_input.RIGHT, agent_input.LEFT):
        dr, dc = MOVE_DELTAS[(heading + relative) % 4]
        start = (hr + dr, hc + dc)
        if not (0 <= start[0] < g and 0 <= start[1] < g) or start in occupied:
            continue
        distance, frontier = {start: 0}, [start]
        while frontier:  # level by level: `distance` holds each cell's moves from `start`
            next_frontier = []
            for r, c in frontier:
                for dr, dc in MOVE_DELTAS:
                    cell = (r + dr, c + dc)
                    inside = 0 <= cell[0] < g and 0 <= cell[1] < g
                    if inside and cell not in occupied and cell not in distance:
                        distance[cell] = distance[(r, c)] + 1
                        next_frontier.append(cell)
            frontier = next_frontier
        area[relative] = np.float32(len(distance)) / free
        tail[relative] = float(cells[-1] in distance)
        if food in distance:
            closeness[relative] = 1 - np.float32(distance[food]) / np.float32(g * g)
    fill = np.float32(len(cells)) / np.float32(g * g)
    return np.array([*area, *tail, fill, *(closeness if food else [])], np.float32)


@pytest.mark.parametrize("grid_size, stored_as", [(12, np.uint8), (16, np.uint16)])
def test_the_view_holds_the_envs_body_order_exactly_while_storing_it_as_small_integers(
    grid_size, stored_as
):
    """On random snakes up to nearly full boards (a 16x16 countdown passes 255)."""
    env, rng = SnakeEnv(grid_size), np.random.default_rng(grid_size)
    states = [env.make_state(*random_game(grid_size, rng)) for _ in range(40)]
    obs = jnp.stack([env.observation(s) for s in states])
    features = agent_input.observe(validate_config({"GRID_SIZE": grid_size}), obs).features
    assert features.cells.dtype == stored_as  # a quarter (a half) of float32's bytes
    order = np.asarray(agent_input.dense_cells(features)[..., 0])
    g, w = grid_size, 2 * grid_size - 1
    padded = np.pad(np.asarray(obs[..., ORDER_CHANNEL]), ((0, 0), (g - 1,) * 2, (g - 1,) * 2))
    for game, state in enumerate(states):
        row, col = divmod(int(state.head), g)
        window = padded[game, row : row + w, col : col + w]  # centred on the head, heading up
        reference = np.rot90(window, k=int(state.direction))  # turned so the snake heads up
        assert np.array_equal(order[game], reference), game  # bit for bit: countdown / length
    assert max(int(s.length) for s in states) > (200 if g == 16 else 100)


@pytest.mark.parametrize("food_distance", [False, True])
@pytest.mark.parametrize("grid_size", [4, 7, 12, 32, 33, 40])
def test_flood_features_equal_a_breadth_first_search_on_random_boards(grid_size, food_distance):
    """Equal on 60 random snakes per board size (short and long, walled-in pockets, nearly full
    boards; packed rows up to 32 columns, bool cells beyond): the same cells reached, the same
    tail flags, the same distances to the food. Shares to 1e-6: XLA's division may differ from
    numpy's in the last bit, while one cell more or less moves a share by more than 1/4096."""
    env, rng = SnakeEnv(grid_size), np.random.default_rng(grid_size)
    snakes, foods = zip(*(random_game(grid_size, rng) for _ in range(60)))
    obs = jnp.stack([env.observation(env.make_state(*game)) for game in zip(snakes, foods)])
    heading = agent_input.heading_of(obs)[1]
    features = np.asarray(agent_input.flood_features(obs, heading, food_distance))
    expected = np.stack([
        reference_flood_features(cells, grid_size, food if food_distance else None)
        for cells, food in zip(snakes, foods)
    ])  # fmt: skip
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=0)
    if food_distance:  # the food within reach of some move, at least once per board size
        assert (features[:, 9:] > 0).any()


def reference_timed_flood_features(cells, food, g):
    """timed_flood_features by sets of (row, col) cells, a move at a time."""
    countdown = {cell: len(cells) - k for k, cell in enumerate(cells)}
    (hr, hc), (nr, nc) = cells[0], cells[1]
    heading = MOVE_DELTAS.index((hr - nr, hc - nc))
    escapes, closeness = [0.0] * 4, [0.0] * 4
    for relative in (agent_input.AHEAD, agent_input.RIGHT, agent_input.LEFT):
        dr, dc = MOVE_DELTAS[(heading + relative) % 4]
        start = (hr + dr, hc + dc)
        if not (0 <= start[0] < g and 0 <= start[1] < g) or countdown.get(start, 0) > 1:
            continue
        t, reach, escaped, trapped, food_time = 1, {start}, False, False, None
        while True:
            escaped = escaped or any(cell in countdown for cell in reach)
            trapped = not escaped and len(reach) < t
            if food_time is None and food in reach:
                food_time = t
            if trapped or (escaped and food_time is not None):
                break
            t += 1
            grown = {(r + dr, c + dc) for r, c in reach for dr, dc in MOVE_DELTAS} | reach
            reach = {
                (r, c)
                for r, c in grown
                if 0 <= r < g and 0 <= c < g and countdown.get((r, c), 0) <= t
            }
        escapes[relative] = float(escaped)
        if food_time is not None:
            closeness[relative] = 1 - np.float32(food_time) / np.float32(g * g)
    return np.array([*escapes, *closeness], np.float32)


@pytest.mark.parametrize("grid_size", [7, 12, 33])
def test_timed_flood_features_equal_a_move_by_move_search_on_random_boards(grid_size):
    """Equal on 60 random snakes per board size (packed rows up to 32 columns, bool cells
    beyond), and some moves find their way out only through the body as it frees."""
    env, rng = SnakeEnv(grid_size), np.random.default_rng(grid_size + 100)
    games = [random_game(grid_size, rng) for _ in range(60)]
    obs = jnp.stack([env.observation(env.make_state(*game)) for game in games])
    heading = agent_input.heading_of(obs)[1]
    features = np.asarray(agent_input.timed_flood_features(obs, heading))
    expected = np.stack([reference_timed_flood_features(*game, grid_size) for game in games])
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=0)
    static = np.asarray(agent_input.flood_features(obs, heading))
    assert (features[:, :4] > static[:, 4:8]).any()  # tails the static fill does not see


def test_in_the_board_view_each_moves_look_ahead_is_that_of_the_same_move_in_the_snakes_frame():
    """The board view acts in the env's moves (heading 0): down, too, gets its features (it is
    a move whenever the snake is not heading up), and only the reverse of the heading scores 0."""
    env, rng = SnakeEnv(7), np.random.default_rng(7)
    obs = jnp.stack([env.observation(env.make_state(*random_game(7, rng))) for _ in range(60)])
    heading = agent_input.heading_of(obs)[1]
    board_frame = jnp.zeros_like(heading)
    games, heading = np.arange(60)[:, None], np.asarray(heading)[:, None]
    same_move = (np.arange(4) - heading) % 4  # each env move's action in the snake's frame
    for features, blocks in [
        (functools.partial(agent_input.flood_features, food_distance=True), (0, 4, 9)),
        (agent_input.timed_flood_features, (0, 4)),
    ]:
        own, board = (
            np.asarray(features(obs, jnp.asarray(heading[:, 0]))),
            np.asarray(features(obs, board_frame)),
        )
        for first in blocks:
            np.testing.assert_array_equal(
                board[:, first : first + 4], own[games, first + same_move]
            )
        assert (board[:, 2] > 0).any()  # down leads somewhere on some boards
