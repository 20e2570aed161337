"""What the agent sees: the env's board turned into the network's input, once per env step.

- `egocentric_view`: the board centred on the head and turned so the snake always heads "up";
  the agent then acts in its own frame (ahead, right, back, left), and `agent_moves` maps those
  actions back to the env's absolute moves.
- `flood_features`: per move, the share of the free cells the head could still reach after it
  and whether the tail is among them, and optionally how far the food is through the free
  cells (a bit-parallel flood fill over packed board rows; bool cells on boards wider than 32).
- `timed_flood_features`: the same fill with time passing, the body freeing as the snake moves:
  per move, whether the snake can follow its tail out of there, and when it reaches the food.
- hunger: the moves since the last food (the board does not show it).

`observe(config, obs, ...)` assembles them as the config's VIEW / FLOOD_FILL / FOOD_DISTANCE /
TIMED_FLOOD / HUNGER say, into a `NetInput`: the view's one-hot channels as cell indices and its
off-board channel as a box, which the first layer reads without multiplying, and the egocentric
body order as whole moves in bytes (`dense_cells` divides them back; `flat_input` gives the flat
vector they all stand for). Snake-specific and independent of PPO: the trainer calls `observe`,
tests call each piece.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from snake_env import (
    FOOD_CHANNEL,
    HEAD_CHANNEL,
    NUM_ACTIONS,
    NUM_CHANNELS,
    ORDER_CHANNEL,
    SnakeEnv,
    SnakeState,
    step_cell,
)

# The agent's actions in its own frame, and each one's mirror image (right <-> left).
AHEAD, RIGHT, BACK, LEFT = 0, 1, 2, 3
MIRRORED_ACTIONS = (AHEAD, LEFT, BACK, RIGHT)

# Board offsets (d_row, d_col) of a view offset (v_row, v_col) when the snake heads up/right/
# down/left: the view is turned so the snake always looks "up".
_ROTATIONS = (
    lambda vr, vc: (vr, vc),
    lambda vr, vc: (vc, -vr),
    lambda vr, vc: (-vr, -vc),
    lambda vr, vc: (-vc, vr),
)


def _view_offsets(grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(4, W, W) board row and column offsets of every view cell, W = 2 * grid_size - 1."""
    v = np.arange(-(grid_size - 1), grid_size)
    vr, vc = np.meshgrid(v, v, indexing="ij")
    offsets = [rotate(vr, vc) for rotate in _ROTATIONS]
    return np.stack([o[0] for o in offsets]), np.stack([o[1] for o in offsets])


def heading_of(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(head flat index, heading 0..3) of each observation `obs: (B, G, G, C)`; read from the
    head channel and the neck, the body-order maximum among the head's four neighbours."""
    batch, g = obs.shape[0], obs.shape[1]
    head = jnp.argmax(obs[..., HEAD_CHANNEL].reshape(batch, g * g), axis=-1)
    neighbour, inside = step_cell(head[:, None], jnp.arange(NUM_ACTIONS), g)
    order = obs[..., ORDER_CHANNEL].reshape(batch, g * g)
    neck_order = jnp.where(inside, jnp.take_along_axis(order, neighbour, axis=1), -1.0)
    neck_side = jnp.argmax(neck_order, axis=-1)  # the move that would go back into the neck
    return head, (neck_side + 2) % NUM_ACTIONS


def egocentric_parts(
    obs: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """The head-centred, heading-up view (W = 2G - 1) in parts: the body order as whole moves
    `(B, W, W)` (each cell's countdown, 0 off the body: `countdown_dtype`), the snake's length
    `(B,)` float32 (the order is countdown / length, as the env computes it), the food's view
    cell `(B,)` (W * W: no food), the board's rows [r0, r1) and columns [c0, c1) in the view
    `(B, 4)`, and the heading `(B,)`. The food is one cell and the board a rectangle, so the
    network reads them as indices (`network.InputDense`); the order travels as small integers,
    a quarter of float32's bytes through the rollout and its shuffles. The env's head channel
    is left out (always the centre here), and so is its body channel (it repeats order > 0)."""
    batch, g = obs.shape[0], obs.shape[1]
    head, heading = heading_of(obs)
    off_row, off_col = _view_offsets(g)
    rows = (head // g)[:, None, None] + jnp.asarray(off_row)[heading]
    cols = (head % g)[:, None, None] + jnp.asarray(off_col)[heading]
    inside = (rows >= 0) & (rows < g) & (cols >= 0) & (cols < g)
    source = jnp.where(inside, rows * g + cols, g * g)  # g*g: an all-zero padding cell
    countdown, length = body_countdown(obs)
    kept = jnp.stack([obs[..., FOOD_CHANNEL] > 0, countdown], -1).astype(countdown_dtype(g))
    board = jnp.pad(kept.reshape(batch, g * g, 2), ((0, 0), (0, 1), (0, 0)))
    view = jnp.take_along_axis(board, source.reshape(batch, -1, 1), axis=1)
    rows_in, cols_in = inside.any(2), inside.any(1)  # the board is a rectangle in the view
    r0, c0 = jnp.argmax(rows_in, -1), jnp.argmax(cols_in, -1)
    box = jnp.stack([r0, r0 + rows_in.sum(-1), c0, c0 + cols_in.sum(-1)], -1)
    body = view[..., 1].reshape(source.shape)
    return body, length.astype(jnp.float32), _lit_cell(view[..., 0]), box, heading


def body_countdown(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Read back from the body order (countdown / length): how many more moves each cell stays
    occupied `(B, G, G)` (whole numbers as float32; 0: free) and the snake's length `(B,)`."""
    order = obs[..., ORDER_CHANNEL]
    length = (order > 0).sum((1, 2))
    return jnp.rint(order * length[:, None, None]), length


def countdown_dtype(grid_size: int) -> jnp.dtype:
    """The smallest unsigned integer that holds a countdown of up to G * G moves."""
    return jnp.dtype(jnp.uint8 if grid_size * grid_size <= 255 else jnp.uint16)


def _lit_cell(channel: jax.Array) -> jax.Array:
    """The index of the one lit cell of each one-hot channel `(..., cells)`; `cells` if none."""
    lit = jnp.where(channel.max(-1) > 0, jnp.argmax(channel, -1), channel.shape[-1])
    return lit.astype(jnp.int32)


def egocentric_view(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Head-centred, heading-up view `(B, W, W, 3)` (W = 2G - 1; channels: food, body order,
    off the board) and the heading `(B,)`. Every head position and heading looks the same to
    the agent, so what it learns in one place applies everywhere."""
    body, length, food_cell, box, heading = egocentric_parts(obs)
    parts = NetInput(body[..., None], None, food_cell[:, None], box, length)
    return _cell_image(parts, CELL_LAYOUTS["egocentric"]), heading


def agent_moves(heading: jax.Array, mirrored: jax.Array) -> jax.Array:
    """(B, 4) int32: the env's absolute move (up, right, down, left) for each of the agent's
    actions, which are in the snake's frame (ahead, right, back, left): action a is move
    (heading + a) % 4, with right and left swapped in a mirrored game."""
    actions = jnp.arange(NUM_ACTIONS)
    relative = jnp.where(mirrored[:, None], jnp.array(MIRRORED_ACTIONS), actions)
    return (heading[:, None] + relative) % NUM_ACTIONS


def allowed_moves(env: SnakeEnv, env_state: SnakeState, masking: bool) -> jax.Array:
    """(B, 4) absolute moves the agent may take: those that do not die at once (all four when
    `masking` is off, or when every move dies)."""
    if not masking:
        return jnp.ones((env_state.head.shape[0], NUM_ACTIONS), bool)
    mask = jax.vmap(env.action_mask)(env_state)
    return mask | ~mask.any(axis=-1, keepdims=True)


def next_mirrored(mirrored: jax.Array, done: jax.Array, key: jax.Array) -> jax.Array:
    """MIRROR augmentation: a game that just ended is replaced by one mirrored with
    probability 1/2."""
    coin = jax.random.bernoulli(jax.random.fold_in(key, 1), shape=mirrored.shape)
    return jnp.where(done, coin, mirrored)


def to_agent_frame(absolute: jax.Array, moves: jax.Array) -> jax.Array:
    """Per-move values over absolute moves `(B, 4)` -> per agent action (`moves` as above)."""
    return jnp.take_along_axis(absolute, moves, -1)


def to_env_action(action: jax.Array, moves: jax.Array) -> jax.Array:
    """The agent's actions `(B,)` -> the env's absolute moves."""
    return jnp.take_along_axis(moves, action[:, None], -1)[:, 0]


ROW_BITS = 32  # columns one packed row word holds: wider boards fill over bool cells


def _as_board(cells: jax.Array) -> jax.Array:
    """(..., G, G) bool -> the fill's board: up to 32 columns, one uint32 per row (bit c is
    column c; a neighbour is then a shift); on wider boards the bool cells themselves."""
    if cells.shape[-1] > ROW_BITS:
        return cells
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(cells.shape[-1], dtype=jnp.uint32))
    return (cells.astype(jnp.uint32) * weights).sum(-1, dtype=jnp.uint32)


def _row_axis(board: jax.Array) -> int:
    return -1 if board.dtype == jnp.uint32 else -2


def _both_neighbours(x: jax.Array, axis: int) -> jax.Array:
    """x's cells moved one place up and one place down `axis` (zero-filled), or-ed."""
    pad = lambda lo, hi: [(lo, hi) if a == axis % x.ndim else (0, 0) for a in range(x.ndim)]  # noqa: E731
    ahead = jnp.pad(jax.lax.slice_in_dim(x, 1, None, axis=axis), pad(0, 1))
    behind = jnp.pad(jax.lax.slice_in_dim(x, 0, -1, axis=axis), pad(1, 0))
    return ahead | behind


def _grow(reach: jax.Array) -> jax.Array:
    """A board's cells and their four neighbours (boards of `_as_board`): one fill step."""
    if reach.dtype == jnp.uint32:
        sideways = (reach << 1) | (reach >> 1)
    else:
        sideways = _both_neighbours(reach, -1)
    return reach | sideways | _both_neighbours(reach, _row_axis(reach))


def _flood(
    seed: jax.Array, passable: jax.Array, goal: jax.Array | None = None, steps_per_check: int = 4
) -> tuple[jax.Array, jax.Array | None]:
    """Cells reachable from `seed` through `passable` cells (boards of `_as_board`), grown a
    cell at a time until nothing changes, `steps_per_check` cells between convergence checks
    (fewer loop trips, same result). With a `goal` board, also the breadth-first distance from
    `seed` to it: the growth step at which the fill first touched it (-1: never)."""

    def grow(reach):
        return _grow(reach) & passable

    def touched(reach, distance, steps):
        if goal is None:
            return distance
        found = (_cells_in(reach & goal) > 0) & (distance < 0)
        return jnp.where(found, steps, distance)

    def step(carry):
        reach, _, distance, steps = carry
        grown = reach
        for _ in range(steps_per_check):
            grown, steps = grow(grown), steps + 1
            distance = touched(grown, distance, steps)
        return grown, (grown != reach).any(), distance, steps

    start = seed & passable
    no_distance = jnp.full(start.shape[: start.ndim - _board_axes(start)], -1, jnp.int32)
    carry = (start, jnp.array(True), touched(start, no_distance, 0), jnp.int32(0))
    reach, _, distance, _ = jax.lax.while_loop(lambda c: c[1], step, carry)
    return reach, None if goal is None else distance


def _board_axes(board: jax.Array) -> int:
    """How many trailing axes make one board: the rows if packed, rows and columns if bool."""
    return 1 if board.dtype == jnp.uint32 else 2


def _cells_in(board: jax.Array) -> jax.Array:
    """How many cells a board holds (over its last two axes if bool, its rows if packed)."""
    if board.dtype == jnp.uint32:
        return jax.lax.population_count(board).astype(jnp.int32).sum(-1)
    return board.sum((-2, -1), dtype=jnp.int32)


# `flood_features` layout: the reachable share per action (4), whether the tail is reachable per
# action (4), how full the board is (1), then, with the food distance, how close the food is per
# action (4). A mirrored game sees each action's features at its mirror image's place.
MIRRORED_FLOOD_FEATURES = np.array([*MIRRORED_ACTIONS, *(4 + a for a in MIRRORED_ACTIONS), 8])
MIRRORED_FOOD_FEATURES = np.array([*MIRRORED_FLOOD_FEATURES, *(9 + a for a in MIRRORED_ACTIONS)])


def flood_features(obs: jax.Array, heading: jax.Array, food_distance: bool = False) -> jax.Array:
    """(B, 9) float32 look-ahead features, per action in the frame of `heading` (the snake's
    own: ahead, right, back, left; 0 for the env's up, right, down, left): the share of the free
    cells the head can still reach after that move, and whether its tail is among them (a snake
    that can follow its tail survives); then how full the board is. A move into a wall or the
    body scores 0, 0 (so does the reverse of the snake's heading: never a move). After a move
    every body cell but the tail stays occupied (eating keeps the tail too: ignored here, a
    one-cell difference). With `food_distance`, (B, 13): per move also how close the food is
    through the cells it leaves free, 1 - d / G**2 for d moves after it (0: out of reach, or no
    move), from the same fill."""
    g = obs.shape[1]
    countdown, length = body_countdown(obs)
    passable = _as_board(countdown <= 1)  # free cells and the tail's
    tail = _as_board(countdown == 1)
    food = _as_board(obs[..., FOOD_CHANNEL] > 0)[:, None] if food_distance else None
    targets, actions = _move_targets(obs, heading)
    reach, distance = _flood(targets, passable[:, None], food)
    free = (g * g - length + 1)[:, None]  # the free cells and the tail's, which frees on a move
    area = _per_action(_cells_in(reach) / free, actions)
    tail_reachable = (_cells_in(reach & tail[:, None]) > 0).astype(jnp.float32)
    fill = (length / (g * g))[:, None]
    features = [area, _per_action(tail_reachable, actions), fill]
    if food_distance:
        closeness = jnp.where(distance >= 0, 1 - distance / (g * g), 0.0)
        features.append(_per_action(closeness, actions))
    return jnp.concatenate(features, -1).astype(jnp.float32)


_FILL_MOVES = (AHEAD, RIGHT, LEFT)  # in the snake's own frame; back is never a move: it scores 0


def _move_targets(obs: jax.Array, heading: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, 3, board) the cell each move of `_FILL_MOVES` enters (none if off the board), and
    (B, 3) that move's action in the frame of `heading` (the snake's own in the egocentric
    view; 0 in the board view, whose actions are the env's moves)."""
    g = obs.shape[1]
    head, direction = heading_of(obs)
    moves = (direction[:, None] + jnp.array(_FILL_MOVES)) % NUM_ACTIONS  # relative -> absolute
    target, inside = step_cell(head[:, None], moves, g)
    cells = (jnp.arange(g * g) == target[..., None]) & inside[..., None]
    return _as_board(cells.reshape(*target.shape, g, g)), (moves - heading[:, None]) % NUM_ACTIONS


def _per_action(per_move: jax.Array, actions: jax.Array) -> jax.Array:
    """(B, 3) values of `_FILL_MOVES` -> (B, 4) at their `actions`, the fourth (the reverse) 0."""
    return (jax.nn.one_hot(actions, NUM_ACTIONS) * per_move[..., None]).sum(1)


# `timed_flood_features` layout: per action, whether the snake can follow its tail (4), then how
# close the food is (4).
MIRRORED_TIMED_FEATURES = np.array([*MIRRORED_ACTIONS, *(4 + a for a in MIRRORED_ACTIONS)])


def timed_flood_features(obs: jax.Array, heading: jax.Array, steps_per_check: int = 4) -> jax.Array:
    """(B, 8) float32 look-ahead features per action (the frame as in `flood_features`), from a
    flood fill in which time passes: t moves from now a body cell whose countdown is <= t has
    freed, and the fill enters it. It is trapped when it holds fewer cells than the moves made
    (count < t). Per move: whether the fill reaches a freed body cell before it is trapped, i.e.
    whether the snake can follow its tail out of where the move takes it (the static tail flag
    of `flood_features` misses a tail that frees in time); then how close the food is, 1 - t /
    G**2 for the first t at which the fill holds it (0: trapped first), which sees food inside
    the body's pockets open up. The reverse and deadly moves score 0, 0. Relaxed as such fills
    are: the fill may wait where it is, the cells the head passes stay free, eating does not
    delay the tail."""
    g = obs.shape[1]
    countdown, _ = body_countdown(obs)
    body = _as_board(countdown > 0)[:, None]
    food = _as_board(obs[..., FOOD_CHANNEL] > 0)[:, None]
    holds = lambda reach, cells: _cells_in(reach & cells) > 0  # noqa: E731

    def finished(escaped, trapped, food_time):
        return trapped | (escaped & (food_time >= 0))

    def at_time(t, reach, escaped, trapped, food_time):  # what the fill at time t finds
        done = finished(escaped, trapped, food_time)
        escaped = escaped | (~done & holds(reach, body))
        trapped = trapped | (~done & ~escaped & (_cells_in(reach) < t))
        food_time = jnp.where(~done & (food_time < 0) & holds(reach, food), t, food_time)
        return t, reach, escaped, trapped, food_time

    def one_move_later(carry):
        t, reach, escaped, trapped, food_time = carry
        done = finished(escaped, trapped, food_time)
        freed = _as_board(countdown <= (t + 1).astype(countdown.dtype))[:, None]
        grown = jnp.where(done.reshape(*done.shape, *[1] * _board_axes(reach)), reach,
                          _grow(reach) & freed)  # fmt: skip
        return at_time(t + 1, grown, escaped, trapped, food_time)

    def step(carry):
        for _ in range(steps_per_check):
            carry = one_move_later(carry)
        return carry

    targets, actions = _move_targets(obs, heading)
    start = targets & _as_board(countdown <= 1)[:, None]
    nothing = jnp.zeros(start.shape[:2], bool)
    carry = at_time(jnp.int32(1), start, nothing, nothing, jnp.full(start.shape[:2], -1))
    unfinished = lambda c: (~finished(*c[2:])).any()  # noqa: E731
    _, _, escaped, _, food_time = jax.lax.while_loop(unfinished, step, carry)
    closeness = jnp.where(food_time >= 0, 1 - food_time / (g * g), 0.0)
    follows_tail = _per_action(escaped.astype(jnp.float32), actions)
    return jnp.concatenate([follows_tail, _per_action(closeness, actions)], -1)


class NetInput(NamedTuple):
    """The network's input, as `flat_input` lays it out, kept in parts that are cheap to
    multiply: a one-hot channel (the food; the board's head) is one cell, and the egocentric
    view's off-board channel is 1 outside a rectangle, so the first layer gathers their weights
    instead of multiplying by them (`network.InputDense`)."""

    cells: jax.Array  # (B, R, C, K): the view's channels of kind "dense" (`dense_cells`)
    extras: jax.Array | None  # (B, E) float32: the flood-fill look-ahead(s), then hunger
    lit_cells: jax.Array | None = None  # (B, L) int32: each "one-hot" channel's cell (R*C: none)
    board_box: jax.Array | None = None  # (B, 4) int32: the board's rows [r0, r1), columns [c0, c1)
    cells_scale: jax.Array | None = None  # (B,) float32: if set, `cells` are integers / this


def dense_cells(x: NetInput) -> jax.Array:
    """The "dense" channels' values, float32: `cells`, or `cells / cells_scale` when the cells
    are stored as integers (the egocentric body order: countdown / length, exactly the env's)."""
    if x.cells_scale is None:
        return x.cells.astype(jnp.float32)
    return x.cells.astype(jnp.float32) / x.cells_scale[..., None, None, None]


# Per view cell, the kind of each channel of the flat input, in the kernel's order. Egocentric:
# food, body order, off the board. The board: the env's channels (head, body, food, order).
CELL_LAYOUTS = {
    "egocentric": ("one-hot", "dense", "outside box"),
    "board": tuple(
        "one-hot" if c in (HEAD_CHANNEL, FOOD_CHANNEL) else "dense" for c in range(NUM_CHANNELS)
    ),
}


def channels_of(layout: tuple[str, ...], kind: str) -> list[int]:
    """The channels of `layout` (a `CELL_LAYOUTS` entry) that are of `kind`, in order."""
    return [c for c, k in enumerate(layout) if k == kind]


def _cell_image(x: NetInput, layout: tuple[str, ...]) -> jax.Array:
    """The input's view as an image `(B, R, C, len(layout))`, its channels as `layout` says."""
    *batch, rows, cols, _ = x.cells.shape
    dense = iter(jnp.moveaxis(dense_cells(x), -1, 0))
    lit = iter(jnp.moveaxis(x.lit_cells, -1, 0)) if x.lit_cells is not None else iter(())
    channels = []
    for kind in layout:
        if kind == "dense":
            channels.append(next(dense))
        elif kind == "one-hot":
            hot = jax.nn.one_hot(next(lit), rows * cols + 1)[..., : rows * cols]
            channels.append(hot.reshape(*batch, rows, cols))
        else:
            r0, r1, c0, c1 = (b[..., None] for b in jnp.moveaxis(x.board_box, -1, 0))
            rows_in = (jnp.arange(rows) >= r0) & (jnp.arange(rows) < r1)
            cols_in = (jnp.arange(cols) >= c0) & (jnp.arange(cols) < c1)
            channels.append((~(rows_in[..., :, None] & cols_in[..., None, :])).astype(jnp.float32))
    return jnp.stack(channels, -1)


def flat_input(x: NetInput, layout: tuple[str, ...]) -> jax.Array:
    """The input as one vector per game `(B, F)`: each view cell's channels (`layout`), row by
    row, then the extras. This is the layout of the first layer's kernel."""
    cells = _cell_image(x, layout)
    extras = [] if x.extras is None else [x.extras]
    return jnp.concatenate([cells.reshape(*cells.shape[:-3], -1), *extras], -1)


class AgentInput(NamedTuple):
    """What the network is given for a batch of games, computed once per env step."""

    features: NetInput  # the network's input
    moves: jax.Array  # (B, 4) int32, the env's move for each agent action (`agent_moves`)


def _mirror_view(body, food_cell, box, mirrored):
    """The view's parts flipped left-right where `mirrored`."""
    w = body.shape[1]
    flipped_food = jnp.where(food_cell < w * w, food_cell + w - 1 - 2 * (food_cell % w), food_cell)
    flipped_box = jnp.stack([box[:, 0], box[:, 1], w - box[:, 3], w - box[:, 2]], -1)
    return (
        jnp.where(mirrored[:, None, None], body[:, :, ::-1], body),
        jnp.where(mirrored, flipped_food, food_cell),
        jnp.where(mirrored[:, None], flipped_box, box),
    )


def observe(
    config: dict[str, Any],
    obs: jax.Array,
    mirrored: jax.Array | None = None,
    hunger: jax.Array | None = None,
) -> AgentInput:
    """The env's observations `(B, G, G, C)` -> AgentInput, as `VIEW` says: the egocentric
    view (actions in the snake's frame) or the board (actions are the env's moves); with
    FLOOD_FILL, the look-ahead `flood_features` too; with TIMED_FLOOD, `timed_flood_features`;
    with HUNGER, `hunger` (B,) (`env.hunger`:
    the board does not show it). `mirrored` games (B,) bool are shown flipped left-right, with
    their right and left actions swapped to match."""
    batch = obs.shape[0]
    mirrored = jnp.zeros(batch, bool) if mirrored is None else mirrored
    if config["VIEW"] == "egocentric":
        body, length, food_cell, box, heading = egocentric_parts(obs)
        body, food_cell, box = _mirror_view(body, food_cell, box, mirrored)
        net_input = NetInput(body[..., None], None, food_cell[:, None], box, length)
    else:
        heading = jnp.zeros(batch, jnp.int32)
        dense = channels_of(CELL_LAYOUTS["board"], "dense")
        hot = channels_of(CELL_LAYOUTS["board"], "one-hot")
        lit = _lit_cell(jnp.moveaxis(obs[..., hot].reshape(batch, -1, len(hot)), 1, 2))
        net_input = NetInput(obs[..., dense], None, lit)
    extras = []
    if config["FLOOD_FILL"]:
        food_distance = config["FOOD_DISTANCE"]
        flood = flood_features(obs, heading, food_distance)
        swap = MIRRORED_FOOD_FEATURES if food_distance else MIRRORED_FLOOD_FEATURES
        extras.append(jnp.where(mirrored[:, None], flood[:, swap], flood))
    if config["TIMED_FLOOD"]:
        timed = timed_flood_features(obs, heading)
        extras.append(jnp.where(mirrored[:, None], timed[:, MIRRORED_TIMED_FEATURES], timed))
    if config["HUNGER"]:
        extras.append(hunger[:, None])
    if extras:
        net_input = net_input._replace(extras=jnp.concatenate(extras, -1))
    return AgentInput(net_input, agent_moves(heading, mirrored))
