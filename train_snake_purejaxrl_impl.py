"""PPO for `SnakeEnv` in one `jax.jit`: settings, agent, rollout, GAE, loss, update, entry points.

Read top to bottom: settings -> the agent's input -> network -> optimizer/schedules -> state ->
rollout -> GAE -> loss -> `update_step` (the ONE update function) -> `make_train`,
`make_train_step`, `make_train_with_callback`, `make_chunk` (many runs side by side, in chunks
of updates between checkpoints) -> evaluation. All training state is one pytree
(`RunnerState`), so a run can be chunked, checkpointed and `vmap`ped over seeds and rates.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import muon_jax
from settings import Bool, Choice, ConfigError, Float, Int, Numbers, Setting
from snake_env import (
    FOOD_CHANNEL,
    HEAD_CHANNEL,
    MAX_GRID,
    MIN_GRID,
    MOVE_COL,
    MOVE_ROW,
    NUM_ACTIONS,
    ORDER_CHANNEL,
    SnakeEnv,
    SnakeState,
)

# XLA flags this project needs, each added unless XLA_FLAGS already names it. XLA reads them
# when JAX starts its backend (first computation), not at import.
# - XLA:CPU's concurrency-optimized scheduler deadlocked (0% CPU, forever) on
#   jit(vmap(make_train)) with 256 envs and the egocentric network (jax 0.10.2); the default
#   scheduler ran as fast. tests/test_ppo.py guards it.
# - XLA:GPU sums with atomics by default, so two identical runs differed from the first update
#   and a resumed run was not bit-exact (H200, jax 0.11.2); deterministic ops made them equal
#   for 4% of the default run's speed (502,620 vs 525,172 env-steps/s). No effect on CPU.
XLA_DEFAULTS = (
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
    "--xla_gpu_deterministic_ops=true",
)
for _flag in XLA_DEFAULTS:
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

# ================================================================== settings


# Every training setting, declared once: default_config(), validate_config(), the CLI flags and
# help, the WandB config and the resume check all read this tuple. `on_resume=True`: may differ
# when a checkpointed run is resumed (everything that shapes the state, the network, the
# optimizer or the schedule may not).
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # ---- the game
    Int("GRID_SIZE", 12, "board side", low=MIN_GRID, high=MAX_GRID, group="game"),
    Float("FOOD_REWARD", 1.0, "reward for eating (scores always count food eaten)",
          group="game", on_resume=True),
    Float("DEATH_REWARD", -1.0, "reward for dying (wall or body)", group="game", on_resume=True),
    Float("STEP_REWARD", 0.0, "reward for any other move", group="game", on_resume=True),
    Int("MAX_STEPS", None, "moves before a game is truncated", low=1, auto="64 * GRID_SIZE**2",
        group="game", on_resume=True),
    Int("STARVATION_STEPS", None, "moves without food before a game is truncated", low=1,
        auto="GRID_SIZE**2", group="game", on_resume=True),
    Float("LONG_START_PROB", 0.0, "curriculum: share of training games that start as a long "
          "snake (evaluation never does)", low=0, high=1, group="game", on_resume=True),
    Numbers("LONG_START_FILL", (0.5, 0.85), "curriculum: a long start fills between these "
            "shares of the board", high=1, count=2, group="game", on_resume=True),
    Bool("STARVATION_IS_DEATH", False, "training only: starving ends a game as a death (death "
         "reward, no bootstrap) instead of a truncation", group="game", on_resume=True),
    # ---- the agent
    Choice("VIEW", "egocentric", "what the network sees: head-centred and heading-up, or the "
           "board as the env gives it", choices=("egocentric", "board"), group="agent"),
    Choice("TORSO", "shared", "one trunk for policy and value, or a separate network each",
           choices=("shared", "separate"), group="agent"),
    # 2x128: as much learning per env step as 2x256 in 2/3 of the time, and Muon at 0.93x
    # Adam's speed (bench/RESULTS.md, "Muon's cost"); 2x64 learned worse.
    Numbers("HIDDEN_SIZES", (128, 128), "MLP layer widths", integer=True, group="agent"),
    Choice("ACTIVATION", "tanh", "hidden-layer activation", choices=("tanh", "relu"),
           group="agent"),
    Bool("ACTION_MASKING", True, "never sample moves that die at once (env.action_mask)",
         group="agent"),
    # Flood fill: 60.0 vs 52.9 at 5 M steps, and it made gamma 0.999 pay (bench/RESULTS.md).
    Bool("FLOOD_FILL", True, "also give the network, per move, the share of free cells still "
         "reachable and whether the tail is", group="agent"),
    Bool("HUNGER", False, "also give the network the moves since the last food, as a share of "
         "the starvation limit", group="agent"),
    Bool("MIRROR", False, "augment: play a random half of the training games mirrored "
         "left-right (egocentric view)", group="agent"),
    # ---- PPO
    Int("TOTAL_TIMESTEPS", 10_000_000, "env steps of each run; may grow on --resume, and the "
        "learning-rate schedule then stretches to the new length", low=1, group="PPO",
        on_resume=True),
    Int("NUM_ENVS", 256, "games played in parallel per run", low=1, group="PPO"),
    Int("NUM_STEPS", 128, "moves per game per update (rollout length)", low=1, group="PPO"),
    Int("UPDATE_EPOCHS", 4, "passes over each rollout", low=1, group="PPO"),
    Int("NUM_MINIBATCHES", 8, "minibatches per pass", low=1, group="PPO"),
    # 0.999: a game lasts thousands of moves; 0.99 sees ~100 ahead (eval 53.8 -> 117.6 with the
    # flood fill and 10 M steps, bench/RESULTS.md, "What each idea bought").
    Float("GAMMA", 0.999, "discount", low=0, high=1, group="PPO", on_resume=True),
    Float("GAE_LAMBDA", 0.95, "GAE lambda", low=0, high=1, group="PPO", on_resume=True),
    Float("CLIP_EPS", 0.2, "PPO ratio clip", low=0, low_open=True, group="PPO", on_resume=True),
    Float("ENT_COEF", 0.01, "entropy bonus weight", low=0, group="PPO", on_resume=True),
    Float("VF_COEF", 0.5, "value loss weight", low=0, group="PPO", on_resume=True),
    Float("MAX_GRAD_NORM", 0.5, "global gradient-norm clip", low=0, low_open=True, group="PPO",
          on_resume=True),
    # ---- the optimizer
    Float("LR", 2.5e-4, "Adam learning rate (without --use-muon)", low=0, low_open=True,
          group="optimizer"),
    Bool("ANNEAL_LR", False, "decay every learning rate linearly to 0 over the run (short for "
         "--lr-schedule linear)", group="optimizer"),
    Choice("LR_SCHEDULE", "constant", "shape of every learning rate over the run, after any "
           "warm-up", choices=("constant", "linear", "cosine"), group="optimizer"),
    Float("WARMUP_FRACTION", 0.0, "linear warm-up of every learning rate over this fraction of "
          "the updates", low=0, high=1, high_open=True, group="optimizer"),
    Bool("USE_MUON", False, "Muon for hidden weight matrices, aux Adam for biases and heads",
         group="optimizer"),
    Float("MUON_LR", 0.02, "Muon learning rate", low=0, low_open=True, group="optimizer"),
    Float("AUX_ADAM_LR", 2.5e-4, "aux Adam learning rate (biases, heads) with Muon", low=0,
          low_open=True, group="optimizer"),
    Float("MUON_MOMENTUM", 0.95, "Muon's Nesterov momentum", low=0, high=1, group="optimizer"),
    Int("MUON_NS_STEPS", 5, "Newton-Schulz iterations per Muon update (cost grows linearly)",
        low=1, group="optimizer"),
    Bool("MUON_INPUT_LAYER", True, "Muon also for the first layer (else aux Adam takes it)",
         group="optimizer"),
    # ---- many runs in one compile, and devices
    Int("SEED", 0, "PRNG seed (of the first run)", low=0, high=2**32 - 1, group="runs"),
    Int("NUM_SEEDS", 1, "train seeds SEED .. SEED+N-1 side by side in one compile", low=1,
        group="runs"),
    Numbers("LR_SWEEP", (), "Adam learning rates trained side by side (x seeds), in place of "
            "--lr", empty_ok=True, group="runs"),
    Numbers("MUON_LR_SWEEP", (), "Muon learning rates trained side by side (x seeds), in place "
            "of --muon-lr", empty_ok=True, group="runs"),
    Int("DEVICES", 0, "devices to shard the games over (0: every visible device)", low=0,
        group="runs", on_resume=True),
)
# fmt: on
SETTING = {s.key: s for s in SETTINGS}
DERIVED_KEYS = ("NUM_UPDATES", "MINIBATCH_SIZE", "NUM_RUNS")


def default_config() -> dict[str, Any]:
    """Every setting's default, PureJaxRL's upper-case names; the derived keys are not in it."""
    return {s.key: s.default for s in SETTINGS}


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Checked copy of `config` (defaults filled in) with NUM_UPDATES, MINIBATCH_SIZE, NUM_RUNS.

    Raises ConfigError (a ValueError) naming the key and its allowed values; nothing deep in JAX
    ever sees a bad value."""
    unknown = sorted(set(config) - set(SETTING) - set(DERIVED_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known: {sorted(SETTING)}")
    cfg = {**default_config(), **{k: v for k, v in config.items() if k not in DERIVED_KEYS}}
    for setting in SETTINGS:
        cfg[setting.key] = setting.check(cfg[setting.key])
    _check_relations(cfg)
    batch = cfg["NUM_ENVS"] * cfg["NUM_STEPS"]
    cfg["NUM_UPDATES"] = cfg["TOTAL_TIMESTEPS"] // batch
    cfg["MINIBATCH_SIZE"] = batch // cfg["NUM_MINIBATCHES"]
    cfg["NUM_RUNS"] = len(swept_rates(cfg)) * cfg["NUM_SEEDS"]
    return cfg


def _check_relations(cfg: dict[str, Any]) -> None:
    """Checks that involve more than one setting; normalizes ANNEAL_LR <-> LR_SCHEDULE."""
    batch = cfg["NUM_ENVS"] * cfg["NUM_STEPS"]
    if batch % cfg["NUM_MINIBATCHES"]:
        raise ConfigError(
            f"NUM_MINIBATCHES must divide NUM_ENVS * NUM_STEPS = {batch}, "
            f"got {cfg['NUM_MINIBATCHES']}"
        )
    if cfg["TOTAL_TIMESTEPS"] < batch:
        raise ConfigError(
            f"TOTAL_TIMESTEPS must be >= NUM_ENVS * NUM_STEPS = {batch} (one update), "
            f"got {cfg['TOTAL_TIMESTEPS']}"
        )
    if cfg["ANNEAL_LR"] and cfg["LR_SCHEDULE"] == "cosine":
        raise ConfigError("ANNEAL_LR is short for LR_SCHEDULE linear; it cannot go with cosine")
    if cfg["ANNEAL_LR"]:
        cfg["LR_SCHEDULE"] = "linear"
    cfg["ANNEAL_LR"] = cfg["LR_SCHEDULE"] == "linear"
    if cfg["LR_SWEEP"] and cfg["USE_MUON"]:
        raise ConfigError("LR_SWEEP sweeps Adam's rate; with USE_MUON sweep MUON_LR_SWEEP")
    if cfg["MUON_LR_SWEEP"] and not cfg["USE_MUON"]:
        raise ConfigError("MUON_LR_SWEEP needs USE_MUON; without Muon sweep LR_SWEEP")
    if cfg["LONG_START_FILL"][0] > cfg["LONG_START_FILL"][1]:
        raise ConfigError(f"LONG_START_FILL must be low,high with low <= high, got "
                          f"{cfg['LONG_START_FILL']}")  # fmt: skip
    if cfg["SEED"] + cfg["NUM_SEEDS"] - 1 >= 2**32:
        raise ConfigError(f"SEED + NUM_SEEDS - 1 must be < 2**32, got SEED {cfg['SEED']}")


def swept_rates(config: dict[str, Any]) -> tuple[float, ...]:
    """The base learning rates of the swept optimizer part (one entry without a sweep)."""
    if config["USE_MUON"]:
        return config["MUON_LR_SWEEP"] or (config["MUON_LR"],)
    return config["LR_SWEEP"] or (config["LR"],)


def rate_keys(config: dict[str, Any]) -> tuple[str, ...]:
    """Config keys of the learning rates a run carries: ("LR",) or ("MUON_LR", "AUX_ADAM_LR")."""
    return ("MUON_LR", "AUX_ADAM_LR") if config["USE_MUON"] else ("LR",)


def run_grid(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs one invocation trains side by side: every swept rate x every seed, rate-major.
    Each is {"SEED": s, <rate key>: lr, ...}: the settings a run of its own would need."""
    swept_key = rate_keys(config)[0]
    return [
        {"SEED": config["SEED"] + i, **{k: config[k] for k in rate_keys(config)}, swept_key: lr}
        for lr in swept_rates(config)
        for i in range(config["NUM_SEEDS"])
    ]


def make_env(config: dict[str, Any]) -> SnakeEnv:
    return SnakeEnv(
        grid_size=config["GRID_SIZE"],
        food_reward=config["FOOD_REWARD"],
        death_reward=config["DEATH_REWARD"],
        step_reward=config["STEP_REWARD"],
        max_steps=config["MAX_STEPS"],
        starvation_steps=config["STARVATION_STEPS"],
        long_start_prob=config["LONG_START_PROB"],
        long_start_fill=config["LONG_START_FILL"],
        starvation_is_death=config["STARVATION_IS_DEATH"],
    )


# ================================================================== the agent's input

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
    n_row, n_col = (head // g)[:, None] + MOVE_ROW, (head % g)[:, None] + MOVE_COL
    inside = (n_row >= 0) & (n_row < g) & (n_col >= 0) & (n_col < g)
    order = obs[..., ORDER_CHANNEL].reshape(batch, g * g)
    neighbour = jnp.clip(n_row, 0, g - 1) * g + jnp.clip(n_col, 0, g - 1)
    neck_order = jnp.where(inside, jnp.take_along_axis(order, neighbour, axis=1), -1.0)
    neck_side = jnp.argmax(neck_order, axis=-1)  # the move that would go back into the neck
    return head, (neck_side + 2) % NUM_ACTIONS


# Env channels the egocentric view keeps: food and body order. The head channel is constant in
# this view (always the centre) and the body channel repeats `order > 0`; dropping both cut the
# first layer by 40% and learned as fast per env step (bench/RESULTS.md).
VIEW_CHANNELS = (FOOD_CHANNEL, ORDER_CHANNEL)


def egocentric_view(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Head-centred, heading-up view `(B, W, W, 3)` (W = 2G - 1; channels: food, body order,
    off the board) and the heading `(B,)`. Every head position and heading looks the same to
    the agent, so what it learns in one place applies everywhere."""
    batch, g = obs.shape[0], obs.shape[1]
    head, heading = heading_of(obs)
    off_row, off_col = _view_offsets(g)
    rows = (head // g)[:, None, None] + jnp.asarray(off_row)[heading]
    cols = (head % g)[:, None, None] + jnp.asarray(off_col)[heading]
    inside = (rows >= 0) & (rows < g) & (cols >= 0) & (cols < g)
    source = jnp.where(inside, rows * g + cols, g * g)  # g*g: an all-zero padding cell
    kept = obs[..., VIEW_CHANNELS].reshape(batch, g * g, len(VIEW_CHANNELS))
    board = jnp.concatenate([kept, jnp.zeros((batch, 1, len(VIEW_CHANNELS)))], axis=1)
    view = jnp.take_along_axis(board, source.reshape(batch, -1, 1), axis=1)
    view = view.reshape(*source.shape, len(VIEW_CHANNELS))
    return jnp.concatenate([view, (~inside)[..., None].astype(view.dtype)], -1), heading


def agent_moves(heading: jax.Array, mirrored: jax.Array) -> jax.Array:
    """(B, 4) int32: the env's absolute move (up, right, down, left) for each of the agent's
    actions, which are in the snake's frame (ahead, right, back, left): action a is move
    (heading + a) % 4, with right and left swapped in a mirrored game."""
    actions = jnp.arange(NUM_ACTIONS)
    relative = jnp.where(mirrored[:, None], (-actions) % NUM_ACTIONS, actions)
    return (heading[:, None] + relative) % NUM_ACTIONS


def to_agent_frame(absolute: jax.Array, moves: jax.Array) -> jax.Array:
    """Per-move values over absolute moves `(B, 4)` -> per agent action (`moves` as above)."""
    return jnp.take_along_axis(absolute, moves, -1)


def to_env_action(action: jax.Array, moves: jax.Array) -> jax.Array:
    """The agent's actions `(B,)` -> the env's absolute moves."""
    return jnp.take_along_axis(moves, action[:, None], -1)[:, 0]


def _pack_rows(cells: jax.Array) -> jax.Array:
    """(..., G, G) bool -> (..., G) uint32: bit c of a row word is column c."""
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(cells.shape[-1], dtype=jnp.uint32))
    return (cells.astype(jnp.uint32) * weights).sum(-1, dtype=jnp.uint32)


def _flood(seed: jax.Array, passable: jax.Array, steps_per_check: int = 4) -> jax.Array:
    """Cells reachable from `seed` through `passable` cells; both `(..., G)` row bitboards
    (one uint32 per row), grown a cell at a time until nothing changes. Growing 4 cells
    between checks made it 25% faster on late-game boards (fewer loop trips, same result)."""

    def grow(reach):
        up = jnp.pad(reach[..., 1:], [(0, 0)] * (reach.ndim - 1) + [(0, 1)])
        down = jnp.pad(reach[..., :-1], [(0, 0)] * (reach.ndim - 1) + [(1, 0)])
        return (reach | (reach << 1) | (reach >> 1) | up | down) & passable

    def step(carry):
        reach, _ = carry
        grown = reach
        for _ in range(steps_per_check):
            grown = grow(grown)
        return grown, (grown != reach).any()

    reach, _ = jax.lax.while_loop(lambda c: c[1], step, (seed & passable, jnp.array(True)))
    return reach


def _popcount(rows: jax.Array) -> jax.Array:
    return jax.lax.population_count(rows).astype(jnp.int32).sum(-1)


def flood_features(obs: jax.Array, heading: jax.Array) -> jax.Array:
    """(B, 9) float32 look-ahead features, per move in the snake's frame (ahead, right, back,
    left): the share of the free cells the head can still reach after that move, and whether
    its tail is among them (a snake that can follow its tail survives); then how full the board
    is. A move into a wall or the body scores 0, 0 (back always does). After a move every body
    cell but the tail stays occupied (eating keeps the tail too: ignored here, a one-cell
    difference)."""
    g = obs.shape[1]
    order = obs[..., ORDER_CHANNEL]
    length = (order > 0).sum((1, 2))
    countdown = jnp.rint(order * length[:, None, None])  # moves each cell stays occupied
    passable = _pack_rows(countdown <= 1)  # (B, G): free cells and the tail's
    tail = _pack_rows(countdown == 1)
    head, _ = heading_of(obs)
    relative = jnp.array([0, 1, 3])  # ahead, right, left: back is never a move
    moves = (heading[:, None] + relative) % NUM_ACTIONS  # relative -> absolute
    rows = (head // g)[:, None] + jnp.asarray(MOVE_ROW)[moves]
    cols = (head % g)[:, None] + jnp.asarray(MOVE_COL)[moves]
    inside = (rows >= 0) & (rows < g) & (cols >= 0) & (cols < g)
    target = jnp.clip(rows, 0, g - 1) * g + jnp.clip(cols, 0, g - 1)
    seed = _pack_rows(
        ((jnp.arange(g * g) == target[..., None]) & inside[..., None]).reshape(*target.shape, g, g)
    )  # (B, 3, G): the cell each move enters
    reach = _flood(seed, passable[:, None])
    free = (g * g - length + 1)[:, None]  # the free cells and the tail's, which frees on a move
    with_back = lambda x: jnp.insert(x, 2, 0.0, axis=1)  # noqa: E731 - back scores 0, 0
    area = with_back(_popcount(reach) / free)
    tail_reachable = with_back((reach & tail[:, None]).any(-1).astype(jnp.float32))
    fill = (length / (g * g))[:, None]
    return jnp.concatenate([area, tail_reachable, fill], -1).astype(jnp.float32)


class AgentInput(NamedTuple):
    """What the network is given for a batch of games, computed once per env step."""

    features: jax.Array  # (B, F) float32, the network's input
    moves: jax.Array  # (B, 4) int32, the env's move for each agent action (`agent_moves`)


def observe(
    config: dict[str, Any],
    obs: jax.Array,
    mirrored: jax.Array | None = None,
    hunger: jax.Array | None = None,
) -> AgentInput:
    """The env's observations `(B, G, G, C)` -> AgentInput, as `VIEW` says: the egocentric
    view (actions in the snake's frame) or the board (actions are the env's moves); with
    FLOOD_FILL, the look-ahead `flood_features` too; with HUNGER, `hunger` (B,) (`env.hunger`:
    the board does not show it). `mirrored` games (B,) bool are shown flipped left-right, with
    their right and left actions swapped to match."""
    batch = obs.shape[0]
    mirrored = jnp.zeros(batch, bool) if mirrored is None else mirrored
    if config["VIEW"] == "egocentric":
        view, heading = egocentric_view(obs)
        view = jnp.where(mirrored[:, None, None, None], view[:, :, ::-1], view)
    else:
        view, heading = obs, jnp.zeros(batch, jnp.int32)
    features = [view.reshape(batch, -1)]
    if config["FLOOD_FILL"]:
        per_move = flood_features(obs, heading)
        swapped = per_move[:, [0, 3, 2, 1, 4, 7, 6, 5, 8]]  # right <-> left, twice
        features.append(jnp.where(mirrored[:, None], swapped, per_move))
    if config["HUNGER"]:
        features.append(hunger[:, None])
    return AgentInput(jnp.concatenate(features, -1), agent_moves(heading, mirrored))


# ================================================================== network

INPUT_LAYER = "input_dense"  # the first layer's name: MUON_INPUT_LAYER=False keeps it on Adam
TRUNK, CRITIC_TRUNK, POLICY_HEAD, VALUE_HEAD = "trunk", "critic_trunk", "policy_head", "value_head"
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def layer_names(hidden_sizes: Sequence[int]) -> list[str]:
    """Names of an MLP's layers, input first: the network and the Muon split both use these."""
    return [INPUT_LAYER if i == 0 else f"hidden_dense_{i}" for i in range(len(hidden_sizes))]


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, x):
        for width, name in zip(self.hidden_sizes, layer_names(self.hidden_sizes)):
            init = nn.initializers.orthogonal(np.sqrt(2))
            x = _ACTIVATIONS[self.activation](nn.Dense(width, kernel_init=init, name=name)(x))
        return x


class ActorCritic(nn.Module):
    """Policy logits and value from a batch of agent inputs `(B, F)`.

    torso "shared": one trunk, two heads; "separate": a critic trunk of its own. Masked moves
    get a logit of -1e9 (never -inf, which would make the entropy NaN)."""

    hidden_sizes: Sequence[int] = SETTING["HIDDEN_SIZES"].default
    torso: str = "shared"
    activation: str = "tanh"

    def setup(self):
        # Module names come from the attribute names; `module_split` lists the same ones.
        self.trunk = MLP(self.hidden_sizes, self.activation)
        if self.torso == "separate":
            self.critic_trunk = MLP(self.hidden_sizes, self.activation)
        self.policy_head = nn.Dense(NUM_ACTIONS, kernel_init=nn.initializers.orthogonal(0.01))
        self.value_head = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))

    def __call__(self, features: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        actor_x = self.trunk(features)
        logits = self.policy_head(actor_x)
        critic_x = actor_x if self.torso == "shared" else self.critic_trunk(features)
        return jnp.where(mask, logits, -1e9), self.value_head(critic_x)[:, 0]

    def value(self, features: jax.Array) -> jax.Array:
        """The value alone (no mask, no policy head): for bootstrapping."""
        trunk = self.trunk if self.torso == "shared" else self.critic_trunk
        return self.value_head(trunk(features))[:, 0]


def make_network(config: dict[str, Any]) -> ActorCritic:
    return ActorCritic(
        hidden_sizes=config["HIDDEN_SIZES"], torso=config["TORSO"], activation=config["ACTIVATION"]
    )


def module_split(config: dict[str, Any]) -> dict[str, str]:
    """Every module of the network -> "muon" or "adam": hidden matrices on Muon (the input
    layer too unless MUON_INPUT_LAYER is off), the heads on Adam. Exact paths, so
    `muon_jax.muon_labels` refuses a network that no longer matches this list."""
    trunks = [TRUNK] + ([CRITIC_TRUNK] if config["TORSO"] == "separate" else [])
    split = {f"params/{head}": muon_jax.ADAM for head in (POLICY_HEAD, VALUE_HEAD)}
    for trunk in trunks:
        for i, layer in enumerate(layer_names(config["HIDDEN_SIZES"])):
            on_muon = i > 0 or config["MUON_INPUT_LAYER"]
            split[f"params/{trunk}/{layer}"] = muon_jax.MUON if on_muon else muon_jax.ADAM
    return split


# ================================================================== optimizer and schedules


def lr_multiplier(config: dict[str, Any]) -> optax.Schedule:
    """The schedule's shape by optimizer count, 1 at its peak: the learning rate of update u
    (u = count // minibatches per update) is base_lr * multiplier.

    Warm-up over the first W = round(WARMUP_FRACTION * NUM_UPDATES) updates: (u + 1) / W; then
    over the remaining updates, LR_SCHEDULE constant: 1; linear: 1 - (u - W) / (N - W);
    cosine: (1 + cos(pi (u - W) / (N - W))) / 2. Without warm-up, linear is PureJaxRL's
    `1 - u / NUM_UPDATES`."""
    per_update = config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"]
    total = config["NUM_UPDATES"]
    warmup = min(round(config["WARMUP_FRACTION"] * total), total - 1)
    decay_steps = total - warmup
    decay = {
        "constant": optax.constant_schedule(1.0),
        "linear": optax.linear_schedule(1.0, 0.0, decay_steps),
        "cosine": optax.cosine_decay_schedule(1.0, decay_steps),
    }[config["LR_SCHEDULE"]]
    if warmup:
        warm = optax.linear_schedule(1.0 / warmup, 1.0, max(warmup - 1, 1))
        by_update = optax.join_schedules([warm, decay], [warmup])
    else:
        by_update = decay
    return lambda count: by_update(count // per_update)


def make_optimizer(config: dict[str, Any], rates: dict[str, jax.Array]):
    """The optimizer of a run whose base learning rates are `rates` (config keys -> scalars,
    possibly traced: a vmapped sweep gives each run its own)."""
    shape = lr_multiplier(config)
    scheduled = {key: (lambda count, r=rate: r * shape(count)) for key, rate in rates.items()}
    if config["USE_MUON"]:
        return muon_jax.chain_with_muon(
            scheduled["MUON_LR"],
            scheduled["AUX_ADAM_LR"],
            config["MAX_GRAD_NORM"],
            labels=functools.partial(muon_jax.muon_labels, split=module_split(config)),
            beta=config["MUON_MOMENTUM"],
            ns_steps=config["MUON_NS_STEPS"],
            aux_eps=1e-5,
        )
    return muon_jax.chain_with_adam(scheduled["LR"], config["MAX_GRAD_NORM"])


def config_rates(config: dict[str, Any]) -> dict[str, jax.Array]:
    """The base learning rates of a single run, from the config."""
    return {key: jnp.float32(config[key]) for key in rate_keys(config)}


# ================================================================== state


@struct.dataclass
class RunnerState:
    """Everything a run carries from one update to the next (one pytree: checkpoint, vmap)."""

    params: Any
    opt_state: Any
    env_state: SnakeState  # (NUM_ENVS,) games
    obs: jax.Array  # (NUM_ENVS, G, G, C) float32
    episode_return: jax.Array  # (NUM_ENVS,) float32, reward so far in each running game
    key: jax.Array
    update: jax.Array  # int32, updates done
    learning_rates: dict[str, jax.Array]  # base rates by config key: a sweep varies these
    mirrored: jax.Array  # (NUM_ENVS,) bool, games shown mirrored (MIRROR; else all False)


class Transition(NamedTuple):
    """One rollout step of every env; a rollout stacks these to (NUM_STEPS, NUM_ENVS, ...)."""

    features: jax.Array  # the network's input (`observe`)
    mask: jax.Array  # bool[4], the moves allowed when acting, in the agent's frame
    action: jax.Array  # in the agent's frame
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array  # plus gamma * V(final obs) where the game was truncated
    done: jax.Array
    finished_return: jax.Array  # episode return where done, else 0
    finished_length: jax.Array
    finished_score: jax.Array


class Parts(NamedTuple):
    """The static pieces a run is built from; closures bind these, nothing else."""

    config: dict[str, Any]
    env: SnakeEnv
    network: ActorCritic


def make_parts(config: dict[str, Any]) -> Parts:
    config = validate_config(config)
    return Parts(config, make_env(config), make_network(config))


def optimizer_of(parts: Parts, runner: RunnerState) -> optax.GradientTransformation:
    return make_optimizer(parts.config, runner.learning_rates)


def action_masks(parts: Parts, env_state: SnakeState) -> jax.Array:
    """(NUM_ENVS, 4) allowed absolute moves; all four when masking is off or every move dies."""
    n = env_state.head.shape[0]
    if not parts.config["ACTION_MASKING"]:
        return jnp.ones((n, NUM_ACTIONS), bool)
    mask = jax.vmap(parts.env.action_mask)(env_state)
    return mask | ~mask.any(axis=-1, keepdims=True)


def init_runner(
    parts: Parts, key: jax.Array, learning_rates: dict[str, jax.Array] | None = None
) -> RunnerState:
    """A fresh run: new games, initial weights, optimizer state (rates from the config unless
    given)."""
    rates = config_rates(parts.config) if learning_rates is None else learning_rates
    key, key_params, key_env = jax.random.split(key, 3)
    n = parts.config["NUM_ENVS"]
    obs, env_state = jax.vmap(parts.env.reset)(jax.random.split(key_env, n))
    features = observe(parts.config, obs[:1], hunger=jnp.zeros(1)).features
    params = parts.network.init(key_params, features, jnp.ones((1, NUM_ACTIONS), bool))
    return RunnerState(
        params=params,
        opt_state=make_optimizer(parts.config, rates).init(params),
        env_state=env_state,
        obs=obs,
        episode_return=jnp.zeros(n, jnp.float32),
        key=key,
        update=jnp.zeros((), jnp.int32),
        learning_rates=rates,
        mirrored=jnp.zeros(n, bool),
    )


# ================================================================== acting, rollout and GAE


def hunger_of(parts: Parts, env_state: SnakeState) -> jax.Array:
    return jax.vmap(parts.env.hunger)(env_state)


def policy(parts: Parts, params, obs: jax.Array, env_state: SnakeState, mirrored=None):
    """(agent input, allowed actions in the agent's frame, logits, value) for a batch of games."""
    agent_input = observe(parts.config, obs, mirrored, hunger_of(parts, env_state))
    mask = to_agent_frame(action_masks(parts, env_state), agent_input.moves)
    logits, value = parts.network.apply(params, agent_input.features, mask)
    return agent_input, mask, logits, value


def value_of(parts: Parts, params, obs: jax.Array, mirrored=None, hunger=None) -> jax.Array:
    """V(obs) for a batch of observations (no policy head, no mask)."""
    features = observe(parts.config, obs, mirrored, hunger).features
    return parts.network.apply(params, features, method=ActorCritic.value)


def env_step(parts: Parts, runner: RunnerState, _) -> tuple[RunnerState, Transition]:
    """Act in every env once with the current policy."""
    key, key_action, key_env = jax.random.split(runner.key, 3)
    agent_input, mask, logits, value = policy(
        parts, runner.params, runner.obs, runner.env_state, runner.mirrored
    )
    action = jax.random.categorical(key_action, logits)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
    env_keys = jax.random.split(key_env, parts.config["NUM_ENVS"])
    obs, env_state, reward, done, info = jax.vmap(parts.env.step)(
        env_keys, runner.env_state, to_env_action(action, agent_input.moves)
    )
    # Truncation is not death: bootstrap from the value of the game's last observation. Most
    # steps truncate nothing, and then a single run skips this forward pass; under vmap (seeds
    # or rates side by side) the cond becomes a select and it always runs.
    truncated = info["truncated"]
    final_value = jax.lax.cond(
        truncated.any(),
        lambda: value_of(
            parts, runner.params, info["final_obs"], runner.mirrored, info["final_hunger"]
        ),
        lambda: jnp.zeros_like(value),
    )
    episode_return = runner.episode_return + reward
    transition = Transition(
        features=agent_input.features,
        mask=mask,
        action=action,
        log_prob=log_prob,
        value=value,
        reward=reward + parts.config["GAMMA"] * final_value * truncated,
        done=done,
        finished_return=jnp.where(done, episode_return, 0.0),
        finished_length=jnp.where(done, info["episode_length"], 0),
        finished_score=jnp.where(done, info["score"], 0),
    )
    runner = runner.replace(
        env_state=env_state,
        obs=obs,
        episode_return=jnp.where(done, 0.0, episode_return),
        key=key,
        mirrored=next_mirrored(parts, runner.mirrored, done, key_env),
    )
    return runner, transition


def next_mirrored(parts: Parts, mirrored: jax.Array, done: jax.Array, key: jax.Array):
    """With MIRROR, a game that just ended is replaced by one mirrored with probability 1/2."""
    if not parts.config["MIRROR"]:
        return mirrored
    coin = jax.random.bernoulli(jax.random.fold_in(key, 1), shape=mirrored.shape)
    return jnp.where(done, coin, mirrored)


def collect_rollout(parts: Parts, runner: RunnerState) -> tuple[RunnerState, Transition]:
    """NUM_STEPS moves of every env: a Transition of (NUM_STEPS, NUM_ENVS, ...) arrays."""
    step = functools.partial(env_step, parts)
    return jax.lax.scan(step, runner, None, parts.config["NUM_STEPS"])


def compute_gae(
    rollout: Transition, last_value: jax.Array, gamma: float, gae_lambda: float
) -> tuple[jax.Array, jax.Array]:
    """(advantages, value targets), both (NUM_STEPS, NUM_ENVS), by the reverse GAE recursion."""

    def backward(carry, t: Transition):
        gae, next_value = carry
        not_done = 1.0 - t.done
        delta = t.reward + gamma * next_value * not_done - t.value
        gae = delta + gamma * gae_lambda * not_done * gae
        return (gae, t.value), gae

    init = (jnp.zeros_like(last_value), last_value)
    _, advantages = jax.lax.scan(backward, init, rollout, reverse=True)
    return advantages, advantages + rollout.value


# ================================================================== loss and updates


class Batch(NamedTuple):
    """A rollout flattened to (NUM_STEPS * NUM_ENVS, ...) samples: what the loss trains on."""

    features: jax.Array
    mask: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def make_batch(rollout: Transition, advantages: jax.Array, targets: jax.Array) -> Batch:
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    return Batch(
        features=flat(rollout.features),
        mask=flat(rollout.mask),
        action=flat(rollout.action),
        log_prob=flat(rollout.log_prob),
        value=flat(rollout.value),
        advantage=flat(advantages),
        target=flat(targets),
    )


def ppo_loss(params, parts: Parts, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + clipped value loss - entropy bonus, on one minibatch."""
    cfg = parts.config
    logits, value = parts.network.apply(params, batch.features, batch.mask)
    log_probs = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_probs, batch.action[:, None], -1)[:, 0]
    entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()

    value_clipped = batch.value + (value - batch.value).clip(-cfg["CLIP_EPS"], cfg["CLIP_EPS"])
    value_loss = (
        0.5 * jnp.maximum((value - batch.target) ** 2, (value_clipped - batch.target) ** 2).mean()
    )

    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    advantage = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    clipped_ratio = ratio.clip(1.0 - cfg["CLIP_EPS"], 1.0 + cfg["CLIP_EPS"])
    actor_loss = -jnp.minimum(ratio * advantage, clipped_ratio * advantage).mean()

    total = actor_loss + cfg["VF_COEF"] * value_loss - cfg["ENT_COEF"] * entropy
    return total, {
        "total_loss": total,
        "value_loss": value_loss,
        "actor_loss": actor_loss,
        "entropy": entropy,
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "clip_frac": (jnp.abs(ratio - 1.0) > cfg["CLIP_EPS"]).mean(),
    }


class Learner(NamedTuple):
    """What gradient steps change: the weights and the optimizer state."""

    params: Any
    opt_state: Any


def update_minibatch(parts: Parts, optimizer, learner: Learner, batch: Batch):
    """One optimizer step on one minibatch; returns the loss metrics and the gradient norm."""
    grads, metrics = jax.grad(ppo_loss, has_aux=True)(learner.params, parts, batch)
    updates, opt_state = optimizer.update(grads, learner.opt_state, learner.params)
    params = optax.apply_updates(learner.params, updates)
    return Learner(params, opt_state), {**metrics, "grad_norm": optax.tree.norm(grads)}


def update_epoch(parts: Parts, optimizer, batch: Batch, learner: Learner, key: jax.Array):
    """Shuffle the rollout into NUM_MINIBATCHES minibatches and step on each."""
    cfg = parts.config
    permutation = jax.random.permutation(key, cfg["NUM_ENVS"] * cfg["NUM_STEPS"])
    minibatches = jax.tree.map(
        lambda x: x[permutation].reshape(cfg["NUM_MINIBATCHES"], -1, *x.shape[1:]), batch
    )
    step = functools.partial(update_minibatch, parts, optimizer)
    return jax.lax.scan(step, learner, minibatches)


def episode_metrics(rollout: Transition) -> dict[str, jax.Array]:
    """Means over the episodes that finished in this rollout (0 when none did; never NaN)."""
    episodes = rollout.done.sum()
    mean = lambda x: x.sum() / jnp.maximum(episodes, 1)  # noqa: E731
    return {
        "episode_return": mean(rollout.finished_return),
        "episode_length": mean(rollout.finished_length.astype(jnp.float32)),
        "episode_score": mean(rollout.finished_score.astype(jnp.float32)),
        "episode_score_max": rollout.finished_score.max().astype(jnp.float32),
        "episodes": episodes,
    }


def update_step(parts: Parts, runner: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
    """The one PPO update: rollout, GAE, UPDATE_EPOCHS epochs of minibatch steps, metrics.

    Learning rates are read from the optimizer state after the update: the rates it applied."""
    cfg = parts.config
    runner, rollout = collect_rollout(parts, runner)
    last_value = value_of(
        parts, runner.params, runner.obs, runner.mirrored, hunger_of(parts, runner.env_state)
    )
    advantages, targets = compute_gae(rollout, last_value, cfg["GAMMA"], cfg["GAE_LAMBDA"])
    batch = make_batch(rollout, advantages, targets)
    key, key_epochs = jax.random.split(runner.key)
    epoch = functools.partial(update_epoch, parts, optimizer_of(parts, runner), batch)
    learner, losses = jax.lax.scan(
        epoch,
        Learner(runner.params, runner.opt_state),
        jax.random.split(key_epochs, cfg["UPDATE_EPOCHS"]),
    )
    update = runner.update + 1
    runner = runner.replace(
        params=learner.params, opt_state=learner.opt_state, key=key, update=update
    )
    rates = muon_jax.applied_learning_rates(learner.opt_state)
    lr_metrics = (
        {"learning_rate": rates[muon_jax.MUON], "aux_learning_rate": rates[muon_jax.ADAM]}
        if cfg["USE_MUON"]
        else {"learning_rate": rates[muon_jax.ADAM]}
    )
    metrics = {
        **lr_metrics,
        **jax.tree.map(jnp.mean, losses),
        **episode_metrics(rollout),
        "env_steps": update * cfg["NUM_ENVS"] * cfg["NUM_STEPS"],
    }
    return runner, metrics


# ================================================================== reading scores (host side)


def trailing_score(score: np.ndarray, episodes: np.ndarray, window: int) -> np.ndarray:
    """Episode-weighted mean score over each update's last `window` updates; `(..., updates)`."""

    def trailing_sum(x):
        convolved = np.apply_along_axis(np.convolve, -1, x, np.ones(window))
        return convolved[..., : x.shape[-1]]

    return trailing_sum(score * episodes) / np.maximum(trailing_sum(episodes), 1)


def final_updates(num_updates: int, fraction: float = 0.1) -> slice:
    """The last `fraction` of the updates (at least one): where the final score is read."""
    return slice(-max(1, int(num_updates * fraction)), None)


def final_score(score: np.ndarray, episodes: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Mean score over the episodes of the last `fraction` of updates (the headline number)."""
    tail = final_updates(score.shape[-1], fraction)
    finished = episodes[..., tail]
    return (score[..., tail] * finished).sum(-1) / np.maximum(finished.sum(-1), 1)


# ================================================================== entry points: one run


def _train_by_scan(parts: Parts, update: Callable) -> Callable[[jax.Array], dict[str, Any]]:
    """train(rng): init, then NUM_UPDATES calls of `update(runner) -> (runner, metrics)`."""

    def train(rng: jax.Array) -> dict[str, Any]:
        runner = init_runner(parts, rng)
        step = lambda r, _: update(r)  # noqa: E731
        runner, metrics = jax.lax.scan(step, runner, None, parts.config["NUM_UPDATES"])
        return {"runner_state": runner, "metrics": metrics}

    return train


def make_train(config: dict[str, Any]) -> Callable[[jax.Array], dict[str, Any]]:
    """train(rng) -> {"runner_state", "metrics"}: the whole run as one jittable function;
    every metric has leading dimension NUM_UPDATES."""
    parts = make_parts(config)
    return _train_by_scan(parts, functools.partial(update_step, parts))


def make_train_step(config: dict[str, Any]):
    """(init(rng) -> runner_state, step(runner_state) -> (runner_state, metrics)), both jitted:
    one update per `step` call, for Python-driven loops (checkpoints, early stopping)."""
    parts = make_parts(config)
    init = jax.jit(functools.partial(init_runner, parts))
    step = jax.jit(functools.partial(update_step, parts))
    return init, step


def make_train_with_callback(
    config: dict[str, Any], callback: Callable[[dict[str, np.ndarray]], None]
) -> Callable[[jax.Array], dict[str, Any]]:
    """train(rng) like `make_train`, which also hands each update's metrics to `callback` on the
    host while the jitted run goes on (numpy scalars, with "update" counted from 1)."""
    parts = make_parts(config)

    def host_callback(metrics):
        callback({k: np.asarray(v) for k, v in metrics.items()})

    def update_and_report(runner):
        runner, metrics = update_step(parts, runner)
        jax.debug.callback(host_callback, {**metrics, "update": runner.update}, ordered=True)
        return runner, metrics

    return _train_by_scan(parts, update_and_report)


# ================================================================== many runs, in chunks


def over_runs(fn: Callable, num_runs: int) -> Callable:
    """`fn` on a state with a leading run axis: vmapped, or for a single run applied to its
    only element (so a lone run keeps `lax.cond` as a real branch instead of a select)."""
    if num_runs > 1:
        return jax.vmap(fn)

    def single(*args):
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return single


def init_runs(parts: Parts) -> Callable[[], RunnerState]:
    """init() -> RunnerState with a leading axis over `run_grid(config)` (seeds x rates); run
    i starts exactly as `init_runner` with PRNGKey(its seed) and its rates."""
    grid = run_grid(parts.config)

    def init() -> RunnerState:
        keys = jnp.stack([jax.random.PRNGKey(run["SEED"]) for run in grid])
        rates = {
            k: jnp.array([run[k] for run in grid], jnp.float32) for k in rate_keys(parts.config)
        }
        return over_runs(functools.partial(init_runner, parts), len(grid))(keys, rates)

    return init


HEALTH_METRICS = ("total_loss", "grad_norm")  # a non-finite one stops training


def make_chunk(
    parts: Parts, length: int, report: Callable[[dict[str, np.ndarray]], None] | None = None
) -> Callable:
    """chunk(runner, stop) -> (runner, metrics, ran): up to `length` updates of every run
    (leading run axis), stopping early at update `stop` or at an update whose loss or gradient
    norm is not finite: that update's metrics are returned (to name it) but its state is not,
    the runner is the last healthy one. metrics: `(length, runs)` arrays; ran: `(length,)`
    bool, the updates attempted. One compile serves every chunk: `stop` is an argument.
    `report(metrics)`, if given, gets each update's metrics on the host as it finishes (for a
    live console)."""
    num_runs = parts.config["NUM_RUNS"]
    update_runs = over_runs(functools.partial(update_step, parts), num_runs)

    def update_and_report(runner):
        runner, metrics = update_runs(runner)
        if report is not None:
            jax.debug.callback(report, {**metrics, "update": runner.update[0]})
        return runner, metrics

    def skip(runner):
        metrics_shape = jax.eval_shape(update_runs, runner)[1]
        return runner, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape)

    def chunk(runner: RunnerState, stop: jax.Array):
        def body(carry, _):
            runner, healthy = carry
            go = healthy & (runner.update[0] < stop)
            updated, metrics = jax.lax.cond(go, update_and_report, skip, runner)
            finite = [jnp.isfinite(metrics[name]).all() for name in HEALTH_METRICS]
            healthy = healthy & functools.reduce(jnp.logical_and, finite)
            runner = jax.tree.map(lambda new, old: jnp.where(healthy, new, old), updated, runner)
            return (runner, healthy), (metrics, go)

        (runner, _), (metrics, ran) = jax.lax.scan(body, (runner, jnp.array(True)), None, length)
        return runner, metrics, ran

    return chunk


# ================================================================== devices

GAMES_AXIS = "games"


def make_mesh(devices: int = 0) -> Mesh:
    """A 1-D mesh over the first `devices` devices of every process (0: all of them)."""
    available = jax.devices()
    count = len(available) if devices == 0 else devices
    if count > len(available):
        raise ConfigError(f"DEVICES must be <= the {len(available)} visible devices, got {count}")
    return Mesh(np.array(available[:count]), (GAMES_AXIS,))


def check_divisible(config: dict[str, Any], mesh: Mesh) -> None:
    devices = mesh.devices.size
    if config["NUM_ENVS"] % devices:
        raise ConfigError(
            f"NUM_ENVS must be a multiple of the {devices} devices it is sharded over, "
            f"got {config['NUM_ENVS']}"
        )


def runner_shardings(runner: RunnerState, mesh: Mesh) -> RunnerState:
    """Shardings for a runner with a leading run axis: every game's state and observation split
    over the mesh along the games axis; weights, optimizer state, keys and counters replicated
    (the compiler then all-reduces the gradients)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    by_game = NamedSharding(mesh, PartitionSpec(None, GAMES_AXIS))
    shardings = jax.tree.map(lambda _: replicated, runner)
    per_game = jax.tree.map(
        lambda _: by_game, (runner.env_state, runner.obs, runner.episode_return)
    )
    return shardings.replace(env_state=per_game[0], obs=per_game[1], episode_return=per_game[2])


def place(tree, shardings):
    """Host (numpy) arrays -> global arrays laid out by `shardings`: each process hands over
    the shards its devices hold, so this works across hosts too."""
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index, x=x: x[index]),
        tree,
        shardings,
    )


def init_placed(init: Callable[[], RunnerState], shardings) -> RunnerState:
    """A fresh runner computed on this process's first device, then laid out by `shardings`.

    Computing it partitioned over devices (`jit(init, out_shardings=...)`) deadlocked on
    XLA:CPU with 2 devices and several runs (jax 0.10.2; a vmapped init, at 0% CPU); this way
    costs one host copy of the initial state, once."""
    return place(jax.device_get(jax.jit(init)()), shardings)


# ================================================================== evaluation


def eval_env(config: dict[str, Any]) -> SnakeEnv:
    """The game as it is scored: the board of `config` under the default rules (starvation
    after GRID_SIZE**2 moves without food, at most 64 * GRID_SIZE**2 moves), whatever the
    training rules were."""
    return SnakeEnv(grid_size=config["GRID_SIZE"])


def choose(logits: jax.Array, key: jax.Array, greedy: bool) -> jax.Array:
    return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)


def make_evaluate(config: dict[str, Any], episodes: int, greedy: bool) -> Callable:
    """evaluate(params, key) -> {"score", "length", "won", "starved"}, each `(episodes,)`: the
    first game of `episodes` games played side by side by the policy (argmax, or sampled), one
    jit. "starved": the game was cut for going too long without food (or too long overall)."""
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


def eval_summary(result: dict[str, np.ndarray], max_score: int) -> dict[str, float]:
    """The figures of an evaluation: score distribution, win rate, length, steps per food."""
    score, length = np.asarray(result["score"]), np.asarray(result["length"])
    return {
        "episodes": int(score.size),
        "mean_score": float(score.mean()),
        "median_score": float(np.median(score)),
        "max_score": int(score.max()),
        "win_rate": float(np.mean(result["won"])),
        "starved_rate": float(np.mean(result["starved"])),
        "mean_length": float(length.mean()),
        "steps_per_food": float(length.sum() / max(score.sum(), 1)),
        "fill": float(score.mean() / max_score),
    }
