"""PPO for `SnakeEnv` in one `jax.jit`: network, rollout, GAE, loss, update, and three entry points.

Read top to bottom: config -> network -> optimizer/schedules -> rollout -> GAE -> loss ->
`update_step` (the ONE update function) -> `make_train`, `make_train_step`,
`make_train_with_callback`, which only differ in how they drive `update_step`.
All training state is one pytree (`RunnerState`), so a run can be chunked, checkpointed and
`vmap`ped over seeds.
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

import muon_jax
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

# XLA:CPU's concurrency-optimized scheduler deadlocked (0% CPU, forever) on
# jit(vmap(make_train)) with 256 envs and the egocentric network (jax 0.10.2); the default
# scheduler ran as fast. XLA reads this when JAX starts its backend (first computation), not
# at import. tests/test_ppo.py guards it.
_XLA_FIX = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if _XLA_FIX.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_FIX}".strip()

# ================================================================== config

# 2x128: as much learning per env step as 2x256 in 2/3 of the time, and Muon at 0.93x Adam's
# speed (bench/RESULTS.md, "Muon's cost"); 2x64 learned worse.
HIDDEN_SIZES = (128, 128)


def default_config() -> dict[str, Any]:
    """Every hyperparameter, PureJaxRL's upper-case names; NUM_UPDATES is derived."""
    return {
        "LR": 2.5e-4,  # Adam learning rate (without Muon)
        "NUM_ENVS": 256,  # games played in parallel
        "NUM_STEPS": 128,  # moves per game per update (rollout length)
        "TOTAL_TIMESTEPS": 5_000_000,  # env steps in the whole run
        "UPDATE_EPOCHS": 4,  # passes over each rollout
        "NUM_MINIBATCHES": 8,  # minibatches per pass
        "GAMMA": 0.99,  # discount
        "GAE_LAMBDA": 0.95,  # GAE lambda
        "CLIP_EPS": 0.2,  # PPO ratio clip
        "ENT_COEF": 0.01,  # entropy bonus
        "VF_COEF": 0.5,  # value loss weight
        "MAX_GRAD_NORM": 0.5,  # global gradient-norm clip
        "ANNEAL_LR": False,  # linear decay of every learning rate to 0 over the run
        "USE_MUON": False,  # Muon for hidden weight matrices, aux Adam for the rest
        "MUON_LR": 0.02,  # Muon learning rate
        "AUX_ADAM_LR": 2.5e-4,  # aux Adam learning rate (biases, heads) with Muon
        "MUON_MOMENTUM": 0.95,  # Muon's Nesterov momentum
        "MUON_NS_STEPS": 5,  # Newton-Schulz iterations per Muon update (cost grows linearly)
        "MUON_INPUT_LAYER": True,  # Muon also for the first layer (else aux Adam takes it)
        "GRID_SIZE": 12,  # board side
        "SEED": 0,  # PRNG seed
        "ACTION_MASKING": True,  # never sample moves that die at once (env.action_mask)
        "VIEW": "egocentric",  # "egocentric" (head-centred, heading-up) or "board" (as the env)
        "TORSO": "shared",  # "shared" actor-critic trunk or "separate" networks
        "HIDDEN_SIZES": HIDDEN_SIZES,  # MLP layer widths
        "ACTIVATION": "tanh",  # "tanh" or "relu"
    }


_POSITIVE_INTS = (
    "NUM_ENVS",
    "NUM_STEPS",
    "TOTAL_TIMESTEPS",
    "UPDATE_EPOCHS",
    "NUM_MINIBATCHES",
    "MUON_NS_STEPS",
)
_POSITIVE_FLOATS = ("LR", "MUON_LR", "AUX_ADAM_LR", "CLIP_EPS", "MAX_GRAD_NORM")
_UNIT_FLOATS = ("GAMMA", "GAE_LAMBDA", "MUON_MOMENTUM")  # in [0, 1]
_NONNEGATIVE_FLOATS = ("ENT_COEF", "VF_COEF")
_BOOLS = ("ANNEAL_LR", "USE_MUON", "ACTION_MASKING", "MUON_INPUT_LAYER")
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}
CHOICES = {
    "VIEW": ("egocentric", "board"),
    "TORSO": ("shared", "separate"),
    "ACTIVATION": tuple(_ACTIVATIONS),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Checked copy of `config` (defaults filled in) with NUM_UPDATES and MINIBATCH_SIZE.

    Raises ValueError naming the key and its allowed values; nothing deep in JAX ever sees a
    bad value."""
    unknown = sorted(set(config) - set(default_config()) - {"NUM_UPDATES", "MINIBATCH_SIZE"})
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(default_config())}")
    cfg = {**default_config(), **config}
    for key in _POSITIVE_INTS:
        if not _is_number(cfg[key]) or int(cfg[key]) != cfg[key] or cfg[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {cfg[key]!r}")
        cfg[key] = int(cfg[key])
    checks = [
        (_POSITIVE_FLOATS, lambda v: v > 0, "a number > 0"),
        (_UNIT_FLOATS, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        (_NONNEGATIVE_FLOATS, lambda v: v >= 0, "a number >= 0"),
    ]
    for keys, ok, allowed in checks:
        for key in keys:
            if not _is_number(cfg[key]) or not np.isfinite(cfg[key]) or not ok(cfg[key]):
                raise ValueError(f"{key} must be {allowed}, got {cfg[key]!r}")
            cfg[key] = float(cfg[key])
    for key in _BOOLS:
        if not isinstance(cfg[key], (bool, np.bool_)):
            raise ValueError(f"{key} must be True or False, got {cfg[key]!r}")
        cfg[key] = bool(cfg[key])
    seed = cfg["SEED"]
    if not _is_number(seed) or int(seed) != seed or not 0 <= seed < 2**32:
        raise ValueError(f"SEED must be an integer in [0, 2**32), got {seed!r}")
    cfg["SEED"] = int(seed)
    grid = cfg["GRID_SIZE"]
    if not _is_number(grid) or int(grid) != grid or not MIN_GRID <= grid <= MAX_GRID:
        raise ValueError(f"GRID_SIZE must be an integer in [{MIN_GRID}, {MAX_GRID}], got {grid!r}")
    for key, choices in CHOICES.items():
        if cfg[key] not in choices:
            raise ValueError(f"{key} must be one of {choices}, got {cfg[key]!r}")
    sizes = cfg["HIDDEN_SIZES"]
    if (
        not isinstance(sizes, Sequence)
        or not sizes
        or not all(_is_number(s) and int(s) == s and s >= 1 for s in sizes)
    ):
        raise ValueError(f"HIDDEN_SIZES must be a non-empty list of positive ints, got {sizes!r}")
    cfg["HIDDEN_SIZES"] = tuple(int(s) for s in sizes)
    batch = cfg["NUM_ENVS"] * cfg["NUM_STEPS"]
    if batch % cfg["NUM_MINIBATCHES"]:
        raise ValueError(
            f"NUM_MINIBATCHES must divide NUM_ENVS * NUM_STEPS = {batch}, "
            f"got {cfg['NUM_MINIBATCHES']}"
        )
    if cfg["TOTAL_TIMESTEPS"] < batch:
        raise ValueError(
            f"TOTAL_TIMESTEPS must be >= NUM_ENVS * NUM_STEPS = {batch} (one update), "
            f"got {cfg['TOTAL_TIMESTEPS']}"
        )
    cfg["NUM_UPDATES"] = cfg["TOTAL_TIMESTEPS"] // batch
    cfg["MINIBATCH_SIZE"] = batch // cfg["NUM_MINIBATCHES"]
    return cfg


def make_env(config: dict[str, Any]) -> SnakeEnv:
    return SnakeEnv(grid_size=config["GRID_SIZE"])


# ================================================================== network

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


def to_absolute(relative: jax.Array, heading: jax.Array) -> jax.Array:
    """Per-action values in the snake's frame (ahead, right, back, left) -> absolute moves."""
    moves = jnp.arange(NUM_ACTIONS)
    return jnp.take_along_axis(relative, (moves - heading[:, None]) % NUM_ACTIONS, axis=-1)


INPUT_LAYER = "input_dense"  # the first layer's name: MUON_INPUT_LAYER=False keeps it on Adam


class MLP(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.hidden_sizes):
            init = nn.initializers.orthogonal(np.sqrt(2))
            name = INPUT_LAYER if i == 0 else f"hidden_dense_{i}"
            x = _ACTIVATIONS[self.activation](nn.Dense(width, kernel_init=init, name=name)(x))
        return x


class ActorCritic(nn.Module):
    """Policy logits and value from a batch of observations `(B, G, G, C)`.

    view "egocentric": the MLP sees `egocentric_view` and scores moves relative to the heading;
    "board": the MLP sees the board as the env gives it. torso "shared": one trunk, two heads.
    Masked moves get a logit of -1e9 (never -inf, which would make the entropy NaN)."""

    hidden_sizes: Sequence[int] = HIDDEN_SIZES
    view: str = "egocentric"
    torso: str = "shared"
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.view == "egocentric":
            features, heading = egocentric_view(obs)
        else:
            features = obs
        x = features.reshape(features.shape[0], -1)
        trunk = functools.partial(MLP, self.hidden_sizes, self.activation)
        actor_x = trunk(name="trunk")(x)
        critic_x = actor_x if self.torso == "shared" else trunk(name="critic_trunk")(x)
        small = nn.initializers.orthogonal(0.01)
        logits = nn.Dense(NUM_ACTIONS, kernel_init=small, name="policy_head")(actor_x)
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="value_head")(
            critic_x
        )
        if self.view == "egocentric":
            logits = to_absolute(logits, heading)
        return jnp.where(mask, logits, -1e9), value[:, 0]


def make_network(config: dict[str, Any]) -> ActorCritic:
    return ActorCritic(
        hidden_sizes=config["HIDDEN_SIZES"],
        view=config["VIEW"],
        torso=config["TORSO"],
        activation=config["ACTIVATION"],
    )


# ================================================================== optimizer and schedules


def _schedule(initial_lr: float, config: dict[str, Any]) -> optax.Schedule:
    """initial_lr * (1 - update_idx / NUM_UPDATES), update_idx = count // minibatches per update;
    constant without ANNEAL_LR. The optimizer count advances once per minibatch."""
    if not config["ANNEAL_LR"]:
        return optax.constant_schedule(initial_lr)
    per_update = config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"]
    decay = optax.linear_schedule(initial_lr, 0.0, transition_steps=config["NUM_UPDATES"])
    return lambda count: decay(count // per_update)


def linear_schedule(config: dict[str, Any]) -> optax.Schedule:
    """Adam's learning rate by optimizer count."""
    return _schedule(config["LR"], config)


def muon_schedule(config: dict[str, Any]) -> optax.Schedule:
    """Muon's learning rate (hidden weight matrices) by optimizer count."""
    return _schedule(config["MUON_LR"], config)


def aux_schedule(config: dict[str, Any]) -> optax.Schedule:
    """Aux Adam's learning rate (biases, heads) by optimizer count."""
    return _schedule(config["AUX_ADAM_LR"], config)


def muon_split(config: dict[str, Any]) -> Callable:
    """Labels: Muon for hidden matrices, and for the input layer unless MUON_INPUT_LAYER is off."""
    adam_names = muon_jax.HEAD_NAMES + (() if config["MUON_INPUT_LAYER"] else (INPUT_LAYER,))
    return functools.partial(muon_jax.muon_labels, head_names=adam_names)


def make_optimizer(config: dict[str, Any]) -> optax.GradientTransformation:
    if config["USE_MUON"]:
        return muon_jax.chain_with_muon(
            muon_schedule(config),
            aux_schedule(config),
            config["MAX_GRAD_NORM"],
            beta=config["MUON_MOMENTUM"],
            ns_steps=config["MUON_NS_STEPS"],
            aux_eps=1e-5,
            labels=muon_split(config),
        )
    return muon_jax.chain_with_adam(linear_schedule(config), config["MAX_GRAD_NORM"])


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


class Transition(NamedTuple):
    """One rollout step of every env; a rollout stacks these to (NUM_STEPS, NUM_ENVS, ...)."""

    obs: jax.Array
    mask: jax.Array  # bool[4], the moves allowed when acting
    action: jax.Array
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
    optimizer: optax.GradientTransformation


def make_parts(config: dict[str, Any]) -> Parts:
    config = validate_config(config)
    return Parts(config, make_env(config), make_network(config), make_optimizer(config))


def action_masks(parts: Parts, env_state: SnakeState) -> jax.Array:
    """(NUM_ENVS, 4) allowed moves; all four when masking is off or every move dies."""
    n = parts.config["NUM_ENVS"]
    if not parts.config["ACTION_MASKING"]:
        return jnp.ones((n, NUM_ACTIONS), bool)
    mask = jax.vmap(parts.env.action_mask)(env_state)
    return mask | ~mask.any(axis=-1, keepdims=True)


def init_runner(parts: Parts, key: jax.Array) -> RunnerState:
    key, key_params, key_env = jax.random.split(key, 3)
    n = parts.config["NUM_ENVS"]
    obs, env_state = jax.vmap(parts.env.reset)(jax.random.split(key_env, n))
    params = parts.network.init(key_params, obs[:1], jnp.ones((1, NUM_ACTIONS), bool))
    return RunnerState(
        params=params,
        opt_state=parts.optimizer.init(params),
        env_state=env_state,
        obs=obs,
        episode_return=jnp.zeros(n, jnp.float32),
        key=key,
        update=jnp.zeros((), jnp.int32),
    )


# ================================================================== rollout and GAE


def env_step(parts: Parts, runner: RunnerState, _) -> tuple[RunnerState, Transition]:
    """Act in every env once with the current policy."""
    key, key_action, key_env = jax.random.split(runner.key, 3)
    mask = action_masks(parts, runner.env_state)
    logits, value = parts.network.apply(runner.params, runner.obs, mask)
    action = jax.random.categorical(key_action, logits)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
    env_keys = jax.random.split(key_env, parts.config["NUM_ENVS"])
    obs, env_state, reward, done, info = jax.vmap(parts.env.step)(
        env_keys, runner.env_state, action
    )
    # Truncation is not death: bootstrap from the value of the game's last observation. Most
    # steps truncate nothing, so the extra forward pass is skipped then.
    truncated = info["truncated"]
    final_value = jax.lax.cond(
        truncated.any(),
        lambda: parts.network.apply(runner.params, info["final_obs"], mask)[1],
        lambda: jnp.zeros_like(value),
    )
    reward_with_bootstrap = reward + parts.config["GAMMA"] * final_value * truncated
    episode_return = runner.episode_return + reward
    transition = Transition(
        obs=runner.obs,
        mask=mask,
        action=action,
        log_prob=log_prob,
        value=value,
        reward=reward_with_bootstrap,
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
    )
    return runner, transition


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
    obs: jax.Array
    mask: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def ppo_loss(params, parts: Parts, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + clipped value loss - entropy bonus, on one minibatch."""
    cfg = parts.config
    logits, value = parts.network.apply(params, batch.obs, batch.mask)
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


def update_minibatch(parts: Parts, train: tuple, batch: Batch):
    """One optimizer step on one minibatch; returns the loss metrics and the gradient norm."""
    params, opt_state = train
    grads, metrics = jax.grad(ppo_loss, has_aux=True)(params, parts, batch)
    updates, opt_state = parts.optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), {**metrics, "grad_norm": optax.tree.norm(grads)}


def update_epoch(parts: Parts, carry: tuple, _):
    """Shuffle the rollout into NUM_MINIBATCHES minibatches and step on each."""
    params, opt_state, batch, key = carry
    key, key_perm = jax.random.split(key)
    cfg = parts.config
    permutation = jax.random.permutation(key_perm, cfg["NUM_ENVS"] * cfg["NUM_STEPS"])
    minibatches = jax.tree.map(
        lambda x: x[permutation].reshape(cfg["NUM_MINIBATCHES"], -1, *x.shape[1:]), batch
    )
    step = functools.partial(update_minibatch, parts)
    (params, opt_state), metrics = jax.lax.scan(step, (params, opt_state), minibatches)
    return (params, opt_state, batch, key), metrics


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
    last_mask = action_masks(parts, runner.env_state)
    _, last_value = parts.network.apply(runner.params, runner.obs, last_mask)
    advantages, targets = compute_gae(rollout, last_value, cfg["GAMMA"], cfg["GAE_LAMBDA"])
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    batch = Batch(
        *map(flat, (rollout.obs, rollout.mask, rollout.action, rollout.log_prob, rollout.value)),
        advantage=flat(advantages),
        target=flat(targets),
    )
    key, key_epochs = jax.random.split(runner.key)
    epoch = functools.partial(update_epoch, parts)
    (params, opt_state, _, _), losses = jax.lax.scan(
        epoch, (runner.params, runner.opt_state, batch, key_epochs), None, cfg["UPDATE_EPOCHS"]
    )
    update = runner.update + 1
    runner = runner.replace(params=params, opt_state=opt_state, key=key, update=update)
    rates = muon_jax.applied_learning_rates(opt_state)
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


# ================================================================== entry points


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
