"""PPO for Snake in one `jax.jit`, top to bottom in the order the data flows: optimizer and
schedules -> state -> rollout -> GAE -> loss -> `update_step` -> `make_train`, `make_train_step`,
`make_train_with_callback`, `make_chunk` (runs side by side, in chunks).

Each step is a named top-level pure function; closures bind only the static `Parts` (config,
env, network). All training state is one pytree (`RunnerState`): chunked, checkpointed and
`vmap`ped over seeds and rates. The network is `snake_purejaxrl.network`, its input
`snake_purejaxrl.agent_input`, the settings `snake_purejaxrl.config`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import muon_jax
from snake_env import NUM_ACTIONS, SnakeEnv, SnakeState
from snake_purejaxrl import shuffle
from snake_purejaxrl.agent_input import (
    NetInput,
    allowed_moves,
    next_mirrored,
    observe,
    to_agent_frame,
    to_env_action,
)
from snake_purejaxrl.config import make_env, rate_keys, run_grid, validate_config
from snake_purejaxrl.devices import add_xla_defaults
from snake_purejaxrl.network import ActorCritic, make_network, module_split

add_xla_defaults()  # before JAX starts its backend

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
    average_params: Any  # the weights' mean over the run's tail (AVERAGE_LAST; else None)


class Transition(NamedTuple):
    """One rollout step of every env; a rollout stacks these to (NUM_STEPS, NUM_ENVS, ...)."""

    features: NetInput  # the network's input (`observe`)
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


def agent_params(runner: RunnerState):
    """The weights of the agent a run keeps, as evaluation plays it: their mean over the run's
    tail with AVERAGE_LAST, else the current weights."""
    return runner.params if runner.average_params is None else runner.average_params


def init_runner(
    parts: Parts, key: jax.Array, learning_rates: dict[str, jax.Array] | None = None
) -> RunnerState:
    """A fresh run: new games, initial weights, optimizer state (rates from the config unless
    given)."""
    rates = learning_rates or {k: jnp.float32(parts.config[k]) for k in rate_keys(parts.config)}
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
        average_params=params if parts.config["AVERAGE_LAST"] else None,
    )


# ================================================================== acting, rollout and GAE


def policy(parts: Parts, params, obs: jax.Array, env_state: SnakeState, mirrored=None):
    """(agent input, allowed actions in the agent's frame, logits, value) for a batch of games."""
    agent_input = observe(parts.config, obs, mirrored, jax.vmap(parts.env.hunger)(env_state))
    allowed = allowed_moves(parts.env, env_state, parts.config["ACTION_MASKING"])
    mask = to_agent_frame(allowed, agent_input.moves)
    logits, value = parts.network.apply(params, agent_input.features, mask)
    return agent_input, mask, logits, value


def value_of(parts: Parts, params, obs: jax.Array, mirrored=None, hunger=None) -> jax.Array:
    """V(obs) for a batch of observations (no policy head, no mask)."""
    features = observe(parts.config, obs, mirrored, hunger).features
    return parts.network.apply(params, features, method=ActorCritic.value)


TRUNCATED_ROWS = 16  # games `truncation_values` values per trip of its loop


def truncation_values(
    parts: Parts, params, truncated: jax.Array, final_obs, mirrored, final_hunger
) -> jax.Array:
    """V(final observation) of the `truncated` games (B,), 0 for the others. Few games truncate
    on a step (most steps: none), so they are gathered and valued TRUNCATED_ROWS at a time, in a
    loop of as many trips as they need, rather than all B games behind a cond (which vmap, for
    seeds side by side, turns into a select that values all B on every step)."""
    n = truncated.shape[0]
    padded = -(-n // TRUNCATED_ROWS) * TRUNCATED_ROWS
    order = jnp.nonzero(truncated, size=padded, fill_value=n)[0]  # truncated first, then n
    trips = (truncated.sum() + TRUNCATED_ROWS - 1) // TRUNCATED_ROWS

    def value_rows(trip, values):
        rows = jax.lax.dynamic_slice(order, (trip * TRUNCATED_ROWS,), (TRUNCATED_ROWS,))
        game = jnp.minimum(rows, n - 1)  # a padding row (n) values some game, then is dropped
        row_values = value_of(parts, params, final_obs[game], mirrored[game], final_hunger[game])
        return values.at[rows].set(row_values, mode="drop")

    return jax.lax.fori_loop(0, trips, value_rows, jnp.zeros(n, jnp.float32))


def env_step(parts: Parts, runner: RunnerState, _) -> tuple[RunnerState, Transition]:
    """Act in every env once with the current policy."""
    cfg = parts.config
    key, key_action, key_env = jax.random.split(runner.key, 3)
    agent_input, mask, logits, value = policy(
        parts, runner.params, runner.obs, runner.env_state, runner.mirrored
    )
    action = jax.random.categorical(key_action, logits)
    greedy_games = round(cfg["GREEDY_SHARE"] * cfg["NUM_ENVS"])
    if greedy_games:  # the first games play as evaluation does; the loss treats them alike
        greedy = jnp.arange(cfg["NUM_ENVS"]) < greedy_games
        action = jnp.where(greedy, jnp.argmax(logits, -1), action)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
    env_keys = jax.random.split(key_env, cfg["NUM_ENVS"])
    obs, env_state, reward, done, info = jax.vmap(parts.env.step)(
        env_keys, runner.env_state, to_env_action(action, agent_input.moves)
    )
    # Truncation is not death: bootstrap from the value of the game's last observation.
    truncated = info["truncated"]
    final_value = truncation_values(
        parts, runner.params, truncated, info["final_obs"], runner.mirrored, info["final_hunger"]
    )
    episode_return = runner.episode_return + reward
    transition = Transition(
        features=agent_input.features,
        mask=mask,
        action=action,
        log_prob=log_prob,
        value=value,
        reward=reward + cfg["GAMMA"] * final_value * truncated,
        done=done,
        finished_return=jnp.where(done, episode_return, 0.0),
        finished_length=jnp.where(done, info["episode_length"], 0),
        finished_score=jnp.where(done, info["score"], 0),
    )
    mirrored = next_mirrored(runner.mirrored, done, key_env) if cfg["MIRROR"] else runner.mirrored
    runner = runner.replace(
        env_state=env_state,
        obs=obs,
        episode_return=jnp.where(done, 0.0, episode_return),
        key=key,
        mirrored=mirrored,
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
    """A rollout flattened to (NUM_STEPS * NUM_ENVS, ...) samples: what the loss trains on."""

    features: NetInput
    mask: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def make_batch(rollout: Transition, advantages: jax.Array, targets: jax.Array) -> Batch:
    acted = {name: getattr(rollout, name) for name in Batch._fields[:5]}  # what the agent did
    batch = Batch(**acted, advantage=advantages, target=targets)
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), batch)


def entropy_coefficient(cfg: dict[str, Any], update: jax.Array) -> jax.Array:
    """The entropy bonus weight of update `update` (0: the first): ENT_COEF, or with
    ENT_COEF_FINAL a straight line from ENT_COEF to ENT_COEF_FINAL at the last update."""
    first, last = cfg["ENT_COEF"], cfg["ENT_COEF_FINAL"]
    if last is None:
        return jnp.float32(first)
    progress = jnp.minimum(update / max(cfg["NUM_UPDATES"] - 1, 1), 1.0)
    return (first * (1 - progress) + last * progress).astype(jnp.float32)  # exact at both ends


def ppo_loss(
    params, parts: Parts, batch: Batch, ent_coef: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + value loss (clipped unless VF_CLIP is 0) - `ent_coef` x entropy, on
    one minibatch."""
    cfg = parts.config
    logits, value = parts.network.apply(params, batch.features, batch.mask)
    log_probs = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_probs, batch.action[:, None], -1)[:, 0]
    entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()

    value_error = (value - batch.target) ** 2
    vf_clip = cfg["CLIP_EPS"] if cfg["VF_CLIP"] is None else cfg["VF_CLIP"]
    if vf_clip > 0:  # the pessimistic clip: no pull beyond vf_clip from the rollout's value
        value_clipped = batch.value + (value - batch.value).clip(-vf_clip, vf_clip)
        value_error = jnp.maximum(value_error, (value_clipped - batch.target) ** 2)
    value_loss = 0.5 * value_error.mean()

    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    advantage = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    clipped_ratio = ratio.clip(1.0 - cfg["CLIP_EPS"], 1.0 + cfg["CLIP_EPS"])
    actor_loss = -jnp.minimum(ratio * advantage, clipped_ratio * advantage).mean()

    total = actor_loss + cfg["VF_COEF"] * value_loss - ent_coef * entropy
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


def update_minibatch(parts: Parts, optimizer, ent_coef, learner: Learner, batch: Batch):
    """One optimizer step on one minibatch; returns the loss metrics and the gradient norm."""
    grads, metrics = jax.grad(ppo_loss, has_aux=True)(learner.params, parts, batch, ent_coef)
    updates, opt_state = optimizer.update(grads, learner.opt_state, learner.params)
    params = optax.apply_updates(learner.params, updates)
    return Learner(params, opt_state), {**metrics, "grad_norm": optax.tree.norm(grads)}


def update_epoch(parts: Parts, optimizer, batch: Batch, ent_coef, learner: Learner, key: jax.Array):
    """Shuffle the rollout into NUM_MINIBATCHES minibatches and step on each."""
    cfg = parts.config
    permutation = shuffle.permutation(key, cfg["NUM_ENVS"] * cfg["NUM_STEPS"])
    minibatches = jax.tree.map(
        lambda x: x[permutation].reshape(cfg["NUM_MINIBATCHES"], -1, *x.shape[1:]), batch
    )
    step = functools.partial(update_minibatch, parts, optimizer, ent_coef)
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


def explained_variance(value: jax.Array, target: jax.Array) -> jax.Array:
    """1 - Var(target - value) / Var(target): the share of the returns' spread the value
    function predicted when the rollout was collected (1 perfect, 0 no better than a constant,
    negative worse; 0 when the targets do not vary)."""
    spread = jnp.var(target)
    return jnp.where(spread > 0, 1.0 - jnp.var(target - value) / spread, 0.0)


def first_averaged_update(cfg: dict[str, Any]) -> int:
    """The first update (counted from 1) of the last round(AVERAGE_LAST * NUM_UPDATES), whose
    weights the kept agent averages."""
    return cfg["NUM_UPDATES"] - round(cfg["AVERAGE_LAST"] * cfg["NUM_UPDATES"]) + 1


def average_weights(cfg: dict[str, Any], average, params, update: jax.Array):
    """The running mean of the weights since `first_averaged_update`, after update `update`
    (before it: the current weights). Averaging the run's tail evens out the last updates'
    noise, which greedy play magnifies."""
    averaged = jnp.maximum(update - first_averaged_update(cfg) + 1, 1)  # updates in the mean
    return optax.incremental_update(params, average, 1.0 / averaged)


def update_step(parts: Parts, runner: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
    """The one PPO update: rollout, GAE, UPDATE_EPOCHS epochs of minibatch steps, metrics.

    Learning rates are read from the optimizer state after the update: the rates it applied."""
    cfg = parts.config
    runner, rollout = collect_rollout(parts, runner)
    hunger = jax.vmap(parts.env.hunger)(runner.env_state)
    last_value = value_of(parts, runner.params, runner.obs, runner.mirrored, hunger)
    advantages, targets = compute_gae(rollout, last_value, cfg["GAMMA"], cfg["GAE_LAMBDA"])
    batch = make_batch(rollout, advantages, targets)
    key, key_epochs = jax.random.split(runner.key)
    ent_coef = entropy_coefficient(cfg, runner.update)
    epoch = functools.partial(update_epoch, parts, optimizer_of(parts, runner), batch, ent_coef)
    learner, losses = jax.lax.scan(
        epoch,
        Learner(runner.params, runner.opt_state),
        jax.random.split(key_epochs, cfg["UPDATE_EPOCHS"]),
    )
    update = runner.update + 1
    split = module_split(cfg) if cfg["USE_MUON"] else None  # groups: muon and aux, or adam
    steps = muon_jax.step_statistics(runner.params, learner.params, split)
    average = runner.average_params
    if average is not None:
        average = average_weights(cfg, average, learner.params, update)
    runner = runner.replace(
        params=learner.params,
        opt_state=learner.opt_state,
        key=key,
        update=update,
        average_params=average,
    )
    rates = muon_jax.applied_learning_rates(learner.opt_state)
    lr_metrics = (
        {"learning_rate": rates[muon_jax.MUON], "aux_learning_rate": rates[muon_jax.ADAM]}
        if cfg["USE_MUON"]
        else {"learning_rate": rates[muon_jax.ADAM]}
    )
    metrics = {
        **lr_metrics,
        "ent_coef": ent_coef,
        **steps,
        "explained_variance": explained_variance(batch.value, batch.target),
        **jax.tree.map(jnp.mean, losses),
        **episode_metrics(rollout),
        "env_steps": update * cfg["NUM_ENVS"] * cfg["NUM_STEPS"],
    }
    return runner, metrics


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
