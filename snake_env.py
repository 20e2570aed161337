"""Snake in pure JAX: the game as a fast, jit/vmap-able, auto-resetting core.

`snake_gymnax.SnakeGymnax` wraps it as a gymnax 1.x environment; `snake_purejaxrl.rendering`
draws it.

The board is stored as one small countdown grid: a body cell holds how many more moves it stays
occupied (head = length, tail = 1, free = 0). A move is then one elementwise decrement plus writing
the new head, so a step costs a few passes over `grid_size**2` int16 cells and needs no body list.

Rules (exact; `tests/test_snake_env.py` holds us to them):
- Actions are absolute moves: 0 up (row-1), 1 right (col+1), 2 down (row+1), 3 left (col-1).
  The move opposite to the current direction is ignored (the snake goes straight). So is an
  out-of-range action (any value outside 0..3): it never corrupts the state.
- Leaving the board or entering a body cell is death, except the cell the tail leaves on this
  same move (legal when not eating). Eating grows the snake by one and spawns new food on a
  uniformly random free cell; with no free cell left the game is won.
- Rewards: `food_reward` for eating, `death_reward` for dying, `step_reward` otherwise; with
  `approach_reward` (a training option, off by default), plus that much per cell a move brings
  the head closer to the food (Manhattan distance; minus per cell farther). It is a potential
  difference: over any path from one food to the next it sums to the same, so it says "go to the
  food now" without changing which path is best. With `win_reward` (a training option, off by
  default), the move that fills the board earns that much on top of its food reward.
- Truncation (reward as usual, never a death): `max_steps` moves in the episode, or
  `starvation_steps` moves since the last food (with `starvation_is_death`, a training option,
  starving is a death instead: `death_reward`, terminated).
- Curriculum (off by default, never used to score an agent): with `long_start_prob`, a new game
  starts as a long snake (a share of the board drawn from `long_start_fill`) laid along a
  serpentine path; its score counts the food eaten from there.

Observation `(grid_size, grid_size, 4) float32`, channels:
  0 head (one cell), 1 body other than the head (tail included), 2 food,
  3 body order: countdown / length, so 1.0 at the head, 1/length at the tail. It tells the agent
    where the tail is, which way the snake faces (the neck is the (length-1)/length cell) and
    when each body cell frees up.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
NUM_ACTIONS = 4
NUM_CHANNELS = 4
HEAD_CHANNEL, BODY_CHANNEL, FOOD_CHANNEL, ORDER_CHANNEL = 0, 1, 2, 3
START_LENGTH = 3
MIN_GRID, MAX_GRID = 4, 64

# Row / column offsets of the four moves, indexed by action.
MOVE_ROW = np.array([-1, 0, 1, 0], np.int32)
MOVE_COL = np.array([0, 1, 0, -1], np.int32)


# The random uint32 words drawn per reset/step, by use: a new snake's heading, row and column, the
# food cell; with a curriculum also whether the new game starts long, and its length, path and
# offset (`_spawn_long_snake`).
HEADING_BITS, ROW_BITS, COL_BITS, FOOD_BITS = 0, 1, 2, 3
_NUM_DRAWS = 4
LONG_START_BITS, LONG_SHAPE_BITS = 4, slice(5, 8)
_NUM_DRAWS_LONG = 8


def _uniform_below(bits: jax.Array, n: jax.Array | int) -> jax.Array:
    """floor(bits * n / 2**32) as int32: uniform on [0, n) up to n / 2**32 (< 1e-6 here) bias.

    One threefry draw per step serves every random choice; this is jax.random.randint's job
    done without its second draw. The 64-bit product is built from 16-bit halves (no x64 needed)."""
    n = jnp.asarray(n, jnp.uint32)
    high, low = bits >> 16, bits & 0xFFFF
    return ((high * n + ((low * n) >> 16)) >> 16).astype(jnp.int32)


@struct.dataclass
class SnakeState:
    """One game. Scalars are int32; a batch of games has a leading axis on every field.

    body: (grid_size**2,) int16, moves each cell stays occupied (head = length, tail = 1, free = 0)
    head: flat index row * grid_size + col of the head
    direction: last move taken (0..3), pointing from the neck to the head
    length: snake length (start_length + food eaten)
    food: flat index of the food cell
    steps: moves taken in this episode
    steps_since_food: moves since the last food (or the start)
    start_length: length the game started with (START_LENGTH unless a curriculum start)
    """

    body: jax.Array
    head: jax.Array
    direction: jax.Array
    length: jax.Array
    food: jax.Array
    steps: jax.Array
    steps_since_food: jax.Array
    start_length: jax.Array


def step_cell(cell: jax.Array, move: jax.Array, grid_size: int) -> tuple[jax.Array, jax.Array]:
    """(flat index of the cell `move` enters from flat `cell`, clipped onto the board; whether it
    is on the board). Broadcasts `cell` against `move`: every neighbour lookup of the game and
    of the agent's input goes through here."""
    g = grid_size
    row = cell // g + jnp.asarray(MOVE_ROW)[move]
    col = cell % g + jnp.asarray(MOVE_COL)[move]
    inside = (row >= 0) & (row < g) & (col >= 0) & (col < g)
    return jnp.clip(row, 0, g - 1) * g + jnp.clip(col, 0, g - 1), inside


def _serpentine_paths(grid_size: int) -> np.ndarray:
    """(8, G*G) flat cells of a boustrophedon path through the whole board, under each of the
    board's 8 symmetries: a long snake laid along one is a valid snake."""
    g = grid_size
    k = np.arange(g * g)
    row, col = k // g, np.where((k // g) % 2 == 0, k % g, g - 1 - k % g)
    paths = []
    for transpose in (False, True):
        r0, c0 = (col, row) if transpose else (row, col)
        for flip_r in (False, True):
            for flip_c in (False, True):
                r = g - 1 - r0 if flip_r else r0
                c = g - 1 - c0 if flip_c else c0
                paths.append(r * g + c)
    return np.stack(paths).astype(np.int32)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return `value` as int, or raise ValueError naming the argument and its allowed range."""
    allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def _check_float(name: str, value: Any) -> float:
    """Return `value` as a finite float, or raise ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def _distance(a: jax.Array, b: jax.Array, grid_size: int) -> jax.Array:
    """Manhattan distance between flat cell indices `a` and `b`."""
    return jnp.abs(a // grid_size - b // grid_size) + jnp.abs(a % grid_size - b % grid_size)


class SnakeEnv:
    """Single-snake game on a square board; `reset`/`step` are pure, `vmap` them for a batch.

    Defaults: `starvation_steps = grid_size**2` (time to visit every cell once: a circling agent
    is cut after that), `max_steps = 64 * grid_size**2` (far above what filling the board takes).
    """

    def __init__(
        self,
        grid_size: int = 12,
        food_reward: float = 1.0,
        death_reward: float = -1.0,
        step_reward: float = 0.0,
        max_steps: int | None = None,
        starvation_steps: int | None = None,
        long_start_prob: float = 0.0,
        long_start_fill: tuple[float, float] = (0.5, 0.85),
        starvation_is_death: bool = False,
        approach_reward: float = 0.0,
        win_reward: float = 0.0,
    ) -> None:
        self.grid_size = _check_int("grid_size", grid_size, MIN_GRID, MAX_GRID)
        cells = self.grid_size**2
        self.food_reward = _check_float("food_reward", food_reward)
        self.death_reward = _check_float("death_reward", death_reward)
        self.step_reward = _check_float("step_reward", step_reward)
        self.max_steps = _check_int(
            "max_steps", 64 * cells if max_steps is None else max_steps, 1, 2**30
        )
        self.starvation_steps = _check_int(
            "starvation_steps", cells if starvation_steps is None else starvation_steps, 1, 2**30
        )
        self.long_start_prob = _check_float("long_start_prob", long_start_prob)
        if not 0 <= self.long_start_prob <= 1:
            raise ValueError(f"long_start_prob must be in [0, 1], got {long_start_prob}")
        lo, hi = (_check_float("long_start_fill", f) for f in long_start_fill)
        if not 0 < lo <= hi < 1:
            raise ValueError(f"long_start_fill must be (low, high), 0 < low <= high < 1, got "
                             f"{long_start_fill}")  # fmt: skip
        shortest = max(START_LENGTH, round(lo * cells))
        self.long_start_lengths = (shortest, min(cells - 1, max(shortest, round(hi * cells))))
        self.starvation_is_death = bool(starvation_is_death)
        self.approach_reward = _check_float("approach_reward", approach_reward)
        self.win_reward = _check_float("win_reward", win_reward)
        # A curriculum needs more random words a reset; without one, games stay as they were.
        self._draws = _NUM_DRAWS_LONG if self.long_start_prob > 0 else _NUM_DRAWS

    # ----------------------------------------------------------------- public API
    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (self.grid_size, self.grid_size, NUM_CHANNELS)

    @property
    def max_score(self) -> int:
        """Food eaten when the board is full (the win)."""
        return self.grid_size**2 - START_LENGTH

    def reset(self, key: jax.Array) -> tuple[jax.Array, SnakeState]:
        """Start a game: a straight length-3 snake at a random place and heading."""
        bits = jax.random.bits(key, (self._draws,), jnp.uint32)
        state = self._spawn(bits)
        state = state.replace(
            food=self._sample_free_cell(bits[FOOD_BITS], state.body, state.length)
        )
        return self.observation(state), state

    def step(
        self, key: jax.Array, state: SnakeState, action: jax.Array
    ) -> tuple[jax.Array, SnakeState, jax.Array, jax.Array, dict[str, jax.Array]]:
        """One move; when the episode ends the returned obs/state are a new game's (gymnax style).

        info: terminated (death or win), truncated, won, starved (ended for going too long
        without food), score (food eaten in the episode that just ended, or so far),
        episode_length (its moves), final_obs and final_hunger (the observation and `hunger`
        before an auto-reset, for bootstrapping the value on truncation; unused outputs cost
        nothing in jit).
        """
        bits = jax.random.bits(key, (self._draws,), jnp.uint32)
        moved, reward, terminated, won, ate = self._move(state, action)
        starved = ~terminated & (moved.steps_since_food >= self.starvation_steps)
        if self.starvation_is_death:
            terminated = terminated | starved
            reward = jnp.where(starved, jnp.float32(self.death_reward), reward)
        truncated = ~terminated & ((moved.steps >= self.max_steps) | starved)
        done = terminated | truncated
        fresh = self._spawn(bits)
        next_state = jax.tree.map(lambda f, m: jnp.where(done, f, m), fresh, moved)
        # One food draw serves both cases: after eating, and for the new game after `done`.
        new_food = self._sample_free_cell(bits[FOOD_BITS], next_state.body, next_state.length)
        next_state = next_state.replace(food=jnp.where(ate | done, new_food, moved.food))
        info = {
            "terminated": terminated,
            "truncated": truncated,
            "won": won,
            "starved": starved,
            "score": moved.length - state.start_length,
            "episode_length": moved.steps,
            "final_obs": self.observation(moved),
            "final_hunger": self.hunger(moved),
        }
        return self.observation(next_state), next_state, reward, done, info

    def hunger(self, state: SnakeState) -> jax.Array:
        """Moves since the last food as a share of `starvation_steps` (1: the game is cut)."""
        return state.steps_since_food.astype(jnp.float32) / self.starvation_steps

    def make_state(
        self,
        cells: list[tuple[int, int]],
        food: tuple[int, int],
        steps: int = 0,
        start_length: int = START_LENGTH,
    ) -> SnakeState:
        """A game from its snake, `cells` as (row, col) from head to tail, and the food cell.

        For puzzles, tests and replays; the direction is the one from the neck to the head. The
        score counts food from `start_length` (by default: as if it grew from a new game)."""
        g = self.grid_size
        if len(cells) < 2 or len(set(cells)) != len(cells):
            raise ValueError(f"cells must list at least 2 distinct (row, col) cells, got {cells}")
        for (r0, c0), (r1, c1) in zip(cells, cells[1:]):
            if abs(r0 - r1) + abs(c0 - c1) != 1:
                raise ValueError(f"cells {(r0, c0)} and {(r1, c1)} are not neighbours")
        if any(not (0 <= r < g and 0 <= c < g) for r, c in [*cells, food]) or food in cells:
            raise ValueError(f"cells and food must be distinct cells on the {g}x{g} board")
        body = np.zeros(g * g, np.int16)
        for k, (r, c) in enumerate(cells):
            body[r * g + c] = len(cells) - k
        (head_r, head_c), (neck_r, neck_c) = cells[0], cells[1]
        direction = [(-1, 0), (0, 1), (1, 0), (0, -1)].index((head_r - neck_r, head_c - neck_c))
        as_int = lambda x: jnp.asarray(x, jnp.int32)  # noqa: E731
        return SnakeState(
            body=jnp.asarray(body),
            head=as_int(head_r * g + head_c),
            direction=as_int(direction),
            length=as_int(len(cells)),
            food=as_int(food[0] * g + food[1]),
            steps=as_int(steps),
            steps_since_food=as_int(steps),
            start_length=as_int(start_length),
        )

    def action_mask(self, state: SnakeState) -> jax.Array:
        """bool[4]: the moves that do not die this step. The reverse move is always False: it is
        ignored (the snake goes straight), so allowing it would double-count going straight."""
        target, inside = step_cell(state.head, jnp.arange(NUM_ACTIONS), self.grid_size)
        # Countdown 1 is the tail, which leaves this move unless we eat (and food is never on it).
        free = state.body[target] <= 1
        not_reverse = jnp.arange(NUM_ACTIONS) != (state.direction + 2) % NUM_ACTIONS
        return inside & free & not_reverse

    def observation(self, state: SnakeState) -> jax.Array:
        """(grid_size, grid_size, 4) float32, channels as in the module docstring."""
        cells = jnp.arange(self.grid_size**2, dtype=jnp.int32)
        body = state.body.astype(jnp.int32)
        head = cells == state.head
        channels = {
            HEAD_CHANNEL: head,
            BODY_CHANNEL: (body > 0) & ~head,
            FOOD_CHANNEL: cells == state.food,
            ORDER_CHANNEL: body.astype(jnp.float32) / state.length.astype(jnp.float32),
        }
        obs = jnp.stack([channels[c].astype(jnp.float32) for c in range(NUM_CHANNELS)], axis=-1)
        return obs.reshape(self.observation_shape)

    # ----------------------------------------------------------------- dynamics
    def _spawn(self, bits: jax.Array) -> SnakeState:
        """A new game's snake: the usual length-3 one, or with `long_start_prob` a long one."""
        short = self._spawn_snake(bits)
        if self.long_start_prob == 0:
            return short
        use_long = bits[LONG_START_BITS] < jnp.uint32(min(self.long_start_prob * 2**32, 2**32 - 1))
        long = self._spawn_long_snake(bits[LONG_SHAPE_BITS])
        return jax.tree.map(lambda a, b: jnp.where(use_long, a, b), long, short)

    def _spawn_long_snake(self, bits: jax.Array) -> SnakeState:
        """A snake of a length drawn from `long_start_lengths`, along a random serpentine path
        (one of 8 symmetries, at a random offset), heading where the path goes on: the next cell
        of the path is always free, so it can always move.

        bits: (3,) uint32 random words: length, symmetry, offset."""
        g, cells = self.grid_size, self.grid_size**2
        lo, hi = self.long_start_lengths
        length = lo + _uniform_below(bits[0], hi - lo + 1)
        path = jnp.asarray(_serpentine_paths(g))[_uniform_below(bits[1], 8)]
        offset = _uniform_below(bits[2], cells - length)  # the path's next cell stays free
        along = jnp.arange(cells)
        countdown = jnp.where((along >= offset) & (along < offset + length), along - offset + 1, 0)
        body = jnp.zeros(cells, jnp.int16).at[path].set(countdown.astype(jnp.int16))
        head, neck = path[offset + length - 1], path[offset + length - 2]
        d_row, d_col = head // g - neck // g, head % g - neck % g
        direction = jnp.argmax((jnp.asarray(MOVE_ROW) == d_row) & (jnp.asarray(MOVE_COL) == d_col))
        zero = jnp.zeros((), jnp.int32)
        return SnakeState(
            body=body,
            head=head.astype(jnp.int32),
            direction=direction.astype(jnp.int32),
            length=length.astype(jnp.int32),
            food=zero,
            steps=zero,
            steps_since_food=zero,
            start_length=length.astype(jnp.int32),
        )

    def _spawn_snake(self, bits: jax.Array) -> SnakeState:
        """A length-3 straight snake, uniform over headings and the placements that fit.

        bits: (_NUM_DRAWS,) uint32 random words; this uses HEADING_BITS, ROW_BITS, COL_BITS."""
        g = self.grid_size
        direction = _uniform_below(bits[HEADING_BITS], NUM_ACTIONS)
        d_row, d_col = jnp.asarray(MOVE_ROW)[direction], jnp.asarray(MOVE_COL)[direction]
        # The body trails the head by up to 2 cells against the heading: keep that on the board.
        lo_row, lo_col = jnp.maximum(2 * d_row, 0), jnp.maximum(2 * d_col, 0)
        hi_row, hi_col = g + jnp.minimum(2 * d_row, 0), g + jnp.minimum(2 * d_col, 0)
        row = lo_row + _uniform_below(bits[ROW_BITS], hi_row - lo_row)
        col = lo_col + _uniform_below(bits[COL_BITS], hi_col - lo_col)
        head = row * g + col
        step_back = d_row * g + d_col
        cells = jnp.arange(g * g, dtype=jnp.int32)
        segments = range(START_LENGTH)  # head first: countdown START_LENGTH .. 1
        body = sum(jnp.where(cells == head - k * step_back, START_LENGTH - k, 0) for k in segments)
        zero = jnp.zeros((), jnp.int32)
        return SnakeState(
            body=body.astype(jnp.int16),
            head=head.astype(jnp.int32),
            direction=direction.astype(jnp.int32),
            length=jnp.full((), START_LENGTH, jnp.int32),
            food=zero,
            steps=zero,
            steps_since_food=zero,
            start_length=jnp.full((), START_LENGTH, jnp.int32),
        )

    def _sample_free_cell(self, bits: jax.Array, body: jax.Array, length: jax.Array) -> jax.Array:
        """Flat index of a uniformly random free cell (the k-th free cell, k uniform).

        On a full board (the win) it returns some cell; the episode has ended by then."""
        g = self.grid_size
        free = (body == 0).reshape(g, g).astype(jnp.int32)
        num_free = jnp.maximum(g * g - length, 1)
        k = _uniform_below(bits, num_free)
        # Two levels (row, then column) keep the prefix sums O(grid_size): a flat cumsum over
        # every cell was 2/3 of the step's time on CPU.
        row_free = free.sum(axis=1)
        rows_before = jnp.cumsum(row_free)
        row = jnp.argmax(rows_before > k)
        k_in_row = k - (rows_before[row] - row_free[row])
        col = jnp.argmax(jnp.cumsum(free[row]) > k_in_row)
        return (row * g + col).astype(jnp.int32)

    def _move(self, state: SnakeState, action: jax.Array):
        """Advance the snake one cell without resetting; food is not respawned here."""
        g = self.grid_size
        action = jnp.asarray(action, jnp.int32)
        legal = (action >= 0) & (action < NUM_ACTIONS) & (action != (state.direction + 2) % 4)
        direction = jnp.where(legal, action, state.direction)
        head, inside = step_cell(state.head, direction, g)
        hit_wall = ~inside
        ate = (head == state.food) & ~hit_wall
        # Without food every segment moves up one place: the tail cell frees before the head lands.
        body = jnp.where(ate, state.body, jnp.maximum(state.body - 1, 0).astype(jnp.int16))
        hit_body = body[head] > 0
        terminated_by_death = hit_wall | hit_body
        length = state.length + ate.astype(jnp.int32)
        cells = jnp.arange(g * g, dtype=jnp.int32)
        body = jnp.where(cells == head, length.astype(jnp.int16), body)
        won = ate & (length == g * g)
        alive_reward = jnp.where(ate, self.food_reward, self.step_reward)
        if self.approach_reward:  # off: the reward is exactly as without the option
            closer = _distance(state.head, state.food, g) - _distance(head, state.food, g)
            alive_reward = alive_reward + self.approach_reward * closer
        if self.win_reward:
            alive_reward = alive_reward + jnp.where(won, self.win_reward, 0.0)
        reward = jnp.where(terminated_by_death, self.death_reward, alive_reward).astype(jnp.float32)
        moved = state.replace(
            body=body,
            head=head,
            direction=direction,
            length=length,
            steps=state.steps + 1,
            steps_since_food=jnp.where(ate, 0, state.steps_since_food + 1),
        )
        return moved, reward, terminated_by_death | won, won, ate
