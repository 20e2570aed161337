"""PPO in `train_snake_purejaxrl_impl`: config checks, entry points, GAE, truncation, the view."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import muon_jax
import train_snake_purejaxrl_impl as impl
from snake_purejaxrl import agent_input
from snake_purejaxrl.devices import XLA_DEFAULTS
from snake_purejaxrl.network import module_split
from snake_purejaxrl.outputs import final_score, trailing_score

TINY = {
    "GRID_SIZE": 6,
    "NUM_ENVS": 8,
    "NUM_STEPS": 16,
    "TOTAL_TIMESTEPS": 8 * 16 * 3,
    "UPDATE_EPOCHS": 2,
    "NUM_MINIBATCHES": 4,
    "HIDDEN_SIZES": (32, 32),
    "ANNEAL_LR": True,
}
EXPECTED_METRICS = {
    "learning_rate", "total_loss", "value_loss", "actor_loss", "entropy", "approx_kl",
    "clip_frac", "grad_norm", "episode_return", "episode_length", "episode_score",
    "episode_score_max", "episodes", "env_steps", "explained_variance", "ent_coef",
}  # fmt: skip


def step_metrics(*groups):
    return {f"{figure}/{group}" for figure in ("update_rms", "update_ratio", "param_norm")
            for group in groups}  # fmt: skip


# --------------------------------------------------------------------------- config
def test_num_updates_is_derived_from_the_budget():
    cfg = impl.validate_config({"NUM_ENVS": 4, "NUM_STEPS": 10, "TOTAL_TIMESTEPS": 95})
    assert cfg["NUM_UPDATES"] == 2 and cfg["MINIBATCH_SIZE"] == 40 // cfg["NUM_MINIBATCHES"]


@pytest.mark.parametrize(
    "override, key",
    [
        ({"NUM_ENVS": 0}, "NUM_ENVS"),
        ({"LR": -1.0}, "LR"),
        ({"GRID_SIZE": 2}, "GRID_SIZE"),
        ({"NUM_MINIBATCHES": 7}, "NUM_MINIBATCHES"),
        ({"TOTAL_TIMESTEPS": 100}, "TOTAL_TIMESTEPS"),
        ({"GAMMA": 1.5}, "GAMMA"),
        ({"VIEW": "pixels"}, "VIEW"),
        ({"HIDDEN_SIZES": ()}, "HIDDEN_SIZES"),
        ({"NUM_STEPS": 2.5}, "NUM_STEPS"),
        ({"LEARNING_RATE": 1e-3}, "LEARNING_RATE"),
        ({"ANNEAL_LR": "yes"}, "ANNEAL_LR"),
        ({"MUON_NS_STEPS": 0}, "MUON_NS_STEPS"),
    ],
)
def test_bad_config_raises_value_error_naming_the_key(override, key):
    with pytest.raises(ValueError, match=key):
        impl.validate_config(override)


def test_muon_input_layer_switch_moves_the_first_layer_to_adam():
    shapes = {}
    for on in (True, False):
        parts = impl.make_parts({**TINY, "USE_MUON": True, "MUON_INPUT_LAYER": on})
        params = impl.init_runner(parts, jax.random.PRNGKey(0)).params
        split = module_split(parts.config)
        labels = muon_jax.muon_labels(params, split)["params"]["trunk"]
        shapes[on] = {name: leaf["kernel"] for name, leaf in labels.items()}
    assert shapes[True] == {"input_dense": "muon", "hidden_dense_1": "muon"}
    assert shapes[False] == {"input_dense": "adam", "hidden_dense_1": "muon"}


def test_muon_ns_steps_sets_how_far_updates_are_orthogonalized():
    """Newton-Schulz pushes every singular value of a Muon update towards 1: one step leaves
    them all below 0.75 (from a Frobenius-normalized start), five lift them all above 0.65."""
    singular = {}
    for steps in (1, 5):
        parts = impl.make_parts({**TINY, "USE_MUON": True, "MUON_NS_STEPS": steps})
        runner = impl.init_runner(parts, jax.random.PRNGKey(0))
        params, optimizer = runner.params, impl.optimizer_of(parts, runner)
        grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        kernel = np.asarray(updates["params"]["trunk"]["input_dense"]["kernel"])  # 363 x 32
        singular[steps] = np.linalg.svd(kernel, compute_uv=False) / parts.config["MUON_LR"]
    assert singular[1].max() < 0.75
    assert singular[5].min() > 0.65


# --------------------------------------------------------------------------- entry points
@pytest.mark.parametrize("use_muon", [False, True])
def test_the_four_entry_points_give_the_same_metrics(use_muon):
    config = {**TINY, "USE_MUON": use_muon}
    key = jax.random.PRNGKey(1)
    scanned = jax.jit(impl.make_train(config))(key)["metrics"]

    init, step = impl.make_train_step(config)
    runner, stepped = init(key), []
    for _ in range(3):
        runner, metrics = step(runner)
        stepped.append(metrics)

    rows = []
    jax.block_until_ready(jax.jit(impl.make_train_with_callback(config, rows.append))(key))

    # The CLI's chunks: seed 1 through init_runs, two chunks (stopping early at update 3).
    parts = impl.make_parts({**config, "SEED": 1})
    chunk = jax.jit(impl.make_chunk(parts, 2))
    runner, first, _ = chunk(jax.jit(impl.init_runs(parts))(), 2)
    _, second, ran = chunk(runner, 3)
    assert np.asarray(ran).tolist() == [True, False]
    chunked = {k: np.concatenate([first[k][:, 0], second[k][:1, 0]]) for k in first}

    by_optimizer = (
        {"aux_learning_rate", *step_metrics("muon", "aux")} if use_muon else step_metrics("adam")
    )
    assert set(scanned) == EXPECTED_METRICS | by_optimizer
    assert [int(r["update"]) for r in rows] == [1, 2, 3]
    for name, values in scanned.items():
        assert values.shape[0] == 3, name
        assert np.all(np.isfinite(values)), name
        # Same numbers up to float32 re-association between differently compiled programs.
        same = dict(rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(values, [m[name] for m in stepped], **same)
        np.testing.assert_allclose(values, [r[name] for r in rows], **same)
        np.testing.assert_allclose(values, chunked[name], **same)
    np.testing.assert_array_equal(scanned["env_steps"], [128, 256, 384])


def test_the_entropy_weight_runs_in_a_straight_line_and_each_update_trains_with_its_own():
    """ENT_COEF_FINAL: update u of n weighs the entropy ENT_COEF + (FINAL - ENT_COEF) u/(n-1),
    reports that weight, and trains exactly as a constant weight of that value would."""
    config = {**TINY, "ENT_COEF": 0.5, "ENT_COEF_FINAL": 0.001}
    key = jax.random.PRNGKey(2)
    scheduled = jax.jit(impl.make_train(config))(key)
    np.testing.assert_allclose(scheduled["metrics"]["ent_coef"], [0.5, 0.2505, 0.001], rtol=1e-6)
    runner = None
    for weight in (0.5, 0.2505, 0.001):  # one update each, a constant weight at a time
        init, step = impl.make_train_step({**TINY, "ENT_COEF": weight})
        runner, metrics = step(init(key) if runner is None else runner)
        assert float(metrics["ent_coef"]) == pytest.approx(weight)
    for a, b in zip(
        jax.tree.leaves(runner.params), jax.tree.leaves(scheduled["runner_state"].params)
    ):
        # Two differently compiled programs: float rounding apart (<= 6e-7 seen), while one
        # update at another weight moves some weight by >= 3e-5.
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6)
    constant = jax.jit(impl.make_train({**TINY, "ENT_COEF": 0.5}))(key)
    np.testing.assert_array_equal(constant["metrics"]["ent_coef"], np.float32([0.5] * 3))
    assert not np.allclose(jax.tree.leaves(constant["runner_state"].params)[0],
                           jax.tree.leaves(scheduled["runner_state"].params)[0])  # fmt: skip


@pytest.mark.parametrize("vf_clip, clipped", [(None, True), (0.0, False), (2.0, False)])
def test_the_value_clip_holds_the_value_near_the_rollouts_and_zero_turns_it_off(vf_clip, clipped):
    """The rollout valued each state 1 below the current value; the target is 5 above it. The
    default clip (VF_CLIP auto: CLIP_EPS 0.2) takes the clipped error, 5.8, whose gradient is 0:
    no pull. VF_CLIP 0 (no clip) and a clip wider than the move (2) pull with the error 5."""
    config = {**TINY, "VF_CLIP": vf_clip}
    parts = impl.make_parts(config)
    runner = impl.make_train_step(config)[0](jax.random.PRNGKey(0))
    agent_input, mask, logits, value = impl.policy(parts, runner.params, runner.obs,
                                                   runner.env_state)  # fmt: skip
    action = jnp.argmax(logits, -1)
    batch = impl.Batch(
        features=agent_input.features,
        mask=mask,
        action=action,
        log_prob=jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0],
        value=value - 1.0,
        advantage=jnp.zeros_like(value),
        target=value + 5.0,
    )

    def value_loss(params):
        return impl.ppo_loss(params, parts, batch, jnp.float32(0.0))[1]["value_loss"]

    loss, grads = jax.value_and_grad(value_loss)(runner.params)
    assert float(loss) == pytest.approx(0.5 * (5.8**2 if clipped else 5.0**2), rel=1e-5)
    pull = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))
    assert (pull == 0.0) if clipped else (pull > 1e-3)


def test_the_kept_agent_is_the_mean_of_the_weights_over_the_runs_tail():
    """AVERAGE_LAST 0.6 of 5 updates: the kept weights follow the trained ones through update 2,
    then are the mean of updates 3.. so far; training itself is the same as without it."""
    config = {**TINY, "TOTAL_TIMESTEPS": 8 * 16 * 5, "AVERAGE_LAST": 0.6}
    init, step = impl.make_train_step(config)
    runner, trained, kept = init(jax.random.PRNGKey(1)), [], []
    for _ in range(5):
        runner, _ = step(runner)
        trained.append(runner.params)
        kept.append(impl.agent_params(runner))
    expected = trained[:2] + [
        jax.tree.map(lambda *ps: np.mean(ps, axis=0), *trained[2:n]) for n in (3, 4, 5)
    ]
    for got, want in zip(kept, expected):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(kept[-1])[0], jax.tree.leaves(trained[-1])[0])
    init, step = impl.make_train_step({**config, "AVERAGE_LAST": 0.0})
    plain = init(jax.random.PRNGKey(1))
    for _ in range(5):
        plain, _ = step(plain)
    assert plain.average_params is None  # off: nothing extra carried or saved
    assert impl.agent_params(plain) is plain.params
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(trained[-1])):
        np.testing.assert_array_equal(a, b)


def test_training_vmaps_over_seeds_in_one_compile():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    batched = jax.jit(jax.vmap(impl.make_train(TINY)))(keys)["metrics"]
    single = jax.jit(impl.make_train(TINY))(keys[1])["metrics"]
    np.testing.assert_allclose(batched["total_loss"][1], single["total_loss"], rtol=1e-4)
    assert not np.allclose(batched["total_loss"][0], batched["total_loss"][1])


def test_importing_adds_the_xla_flags_it_needs_and_keeps_the_users_own():
    """Deterministic GPU sums (bit-exact resume there) unless the user's XLA_FLAGS decide."""
    code = "import os, train_snake_purejaxrl_impl\nprint(os.environ['XLA_FLAGS'])"
    root = Path(__file__).resolve().parents[1]

    def flags_after_import(user_flags):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env.update({"XLA_FLAGS": user_flags} if user_flags else {})
        proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()

    assert set(flags_after_import(None)) == set(XLA_DEFAULTS)
    mine = flags_after_import("--xla_gpu_deterministic_ops=false")
    assert "--xla_gpu_deterministic_ops=false" in mine
    assert "--xla_gpu_deterministic_ops=true" not in mine
    assert "--xla_cpu_enable_concurrency_optimized_scheduler=false" in mine


def test_vmapped_training_with_256_envs_does_not_hang():
    """Regression: XLA:CPU's concurrency-optimized scheduler deadlocked on exactly this."""
    code = (
        "import jax, train_snake_purejaxrl_impl as impl\n"
        "cfg = {'NUM_ENVS': 256, 'NUM_STEPS': 8, 'TOTAL_TIMESTEPS': 2048, 'NUM_MINIBATCHES': 4}\n"
        "keys = jax.random.split(jax.random.PRNGKey(0), 2)\n"
        "out = jax.jit(jax.vmap(impl.make_train(cfg)))(keys)\n"
        "print(jax.device_get(out['metrics']['env_steps']).tolist())\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[[2048], [2048]]"


# --------------------------------------------------------------------------- GAE
def test_gae_matches_a_plain_loop_and_stops_at_episode_ends():
    rng = np.random.default_rng(0)
    steps, envs, gamma, lam = 7, 3, 0.9, 0.8
    reward, value = rng.normal(size=(steps, envs)), rng.normal(size=(steps, envs))
    done = rng.random((steps, envs)) < 0.3
    last_value = rng.normal(size=envs)
    rollout = impl.Transition(*[None] * len(impl.Transition._fields))._replace(
        reward=jnp.asarray(reward), value=jnp.asarray(value), done=jnp.asarray(done)
    )
    advantages, targets = impl.compute_gae(rollout, jnp.asarray(last_value), gamma, lam)

    expected = np.zeros((steps, envs))
    gae, next_value = np.zeros(envs), last_value
    for t in reversed(range(steps)):
        delta = reward[t] + gamma * next_value * (1 - done[t]) - value[t]
        gae = delta + gamma * lam * (1 - done[t]) * gae
        expected[t], next_value = gae, value[t]
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targets, expected + value, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- rollout
def test_truncated_games_bootstrap_from_the_value_of_their_last_observation():
    parts = impl.make_parts({**TINY, "STARVATION_STEPS": 1})  # every move that survives truncates
    runner = impl.init_runner(parts, jax.random.PRNGKey(0))
    _, transition = impl.env_step(parts, runner, None)
    assert transition.done.all()
    # A move's outcome and final observation do not depend on the env key (only a new game's
    # placement does), so any key re-plays the move the rollout made.
    moves = agent_input.to_env_action(
        transition.action, agent_input.observe(parts.config, runner.obs).moves
    )
    keys = jax.random.split(jax.random.PRNGKey(123), TINY["NUM_ENVS"])
    _, _, reward, _, info = jax.vmap(parts.env.step)(keys, runner.env_state, moves)
    truncated = np.asarray(info["truncated"])
    assert truncated.any()
    final_value = np.asarray(impl.value_of(parts, runner.params, info["final_obs"]))
    expected = np.asarray(reward) + parts.config["GAMMA"] * final_value * truncated
    np.testing.assert_allclose(transition.reward, expected, rtol=1e-5, atol=1e-6)
    assert np.any(np.abs(final_value[truncated]) > 0)  # the bootstrap is not zero


@pytest.mark.parametrize("truncated_games", [0, 1, impl.TRUNCATED_ROWS + 1, 37])
def test_the_bootstrap_values_every_truncated_game_and_no_other(truncated_games):
    # 40 games: not a multiple of TRUNCATED_ROWS, so the last trip holds padding rows.
    config = {**TINY, "NUM_ENVS": 40, "TOTAL_TIMESTEPS": 40 * 16, "HUNGER": True, "MIRROR": True,
              "TIMED_FLOOD": True}  # fmt: skip
    parts = impl.make_parts(config)
    runner = impl.init_runner(parts, jax.random.PRNGKey(0))
    key_games, key_hunger, key_mirror = jax.random.split(jax.random.PRNGKey(1), 3)
    games = jax.random.permutation(key_games, 40)[:truncated_games]
    truncated = jnp.zeros(40, bool).at[games].set(True)
    hunger = jax.random.uniform(key_hunger, (40,))
    mirrored = jax.random.bernoulli(key_mirror, 0.5, (40,))
    every_value = impl.value_of(parts, runner.params, runner.obs, mirrored, hunger)
    expected = np.where(truncated, every_value, 0.0)

    values = functools.partial(impl.truncation_values, parts, runner.params)
    got = jax.jit(values)(truncated, runner.obs, mirrored, hunger)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Side by side (seeds under vmap) with a run that truncates nothing: each run its own.
    side_by_side = jax.jit(jax.vmap(values, in_axes=(0, None, None, None)))
    both = side_by_side(jnp.stack([truncated, jnp.zeros(40, bool)]), runner.obs, mirrored, hunger)
    np.testing.assert_allclose(both[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(both[1], np.zeros(40))


def test_the_value_alone_equals_the_value_of_the_full_forward_pass():
    parts = impl.make_parts({**TINY, "TORSO": "separate"})
    runner = impl.init_runner(parts, jax.random.PRNGKey(2))
    _, _, _, value = impl.policy(parts, runner.params, runner.obs, runner.env_state)
    np.testing.assert_allclose(impl.value_of(parts, runner.params, runner.obs), value, rtol=1e-6)


def test_masked_policy_never_picks_a_move_that_dies_when_another_survives():
    config = {**TINY, "NUM_ENVS": 64, "NUM_STEPS": 64, "TOTAL_TIMESTEPS": 4096}
    parts = impl.make_parts({**config, "STARVATION_STEPS": 10_000})  # every `done` is a death
    runner = impl.init_runner(parts, jax.random.PRNGKey(0))
    _, rollout = jax.jit(functools.partial(impl.collect_rollout, parts))(runner)
    chosen_allowed = np.take_along_axis(
        np.asarray(rollout.mask), np.asarray(rollout.action)[..., None], -1
    )
    assert chosen_allowed.all()
    # Deaths still happen, but only when every move dies (the mask then allows all four).
    died = np.asarray(rollout.done)
    assert died.any() and np.asarray(rollout.mask)[died].all()


def test_greedy_share_makes_the_first_games_play_the_most_likely_move():
    parts = impl.make_parts({**TINY, "GREEDY_SHARE": 0.5})  # games 0-3 of 8
    runner = impl.init_runner(parts, jax.random.PRNGKey(0))
    _, rollout = jax.jit(functools.partial(impl.collect_rollout, parts))(runner)
    logits, _ = parts.network.apply(runner.params, rollout.features, rollout.mask)
    # Each rollout step's logits came from the weights of the start: one rollout, no update.
    is_argmax = np.asarray(rollout.action == jnp.argmax(logits, -1))
    assert is_argmax[:, :4].all()
    assert not is_argmax[:, 4:].all()  # the other games sample (a fresh policy is near uniform)
    chosen = np.take_along_axis(
        np.asarray(jax.nn.log_softmax(logits)), np.asarray(rollout.action)[..., None], -1
    )[..., 0]
    np.testing.assert_allclose(rollout.log_prob, chosen, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- learning
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "bfloat16-input"])
def test_a_short_run_on_8x8_learns_far_beyond_a_random_policy(precision):
    config = dict(GRID_SIZE=8, NUM_ENVS=64, NUM_STEPS=64, TOTAL_TIMESTEPS=64 * 64 * 60,
                  NUM_MINIBATCHES=4, HIDDEN_SIZES=(128, 128), ANNEAL_LR=True, LR=1e-3,
                  PRECISION=precision)  # fmt: skip
    metrics = jax.jit(impl.make_train(config))(jax.random.PRNGKey(0))["metrics"]
    scores, episodes = np.asarray(metrics["episode_score"]), np.asarray(metrics["episodes"])
    first = final_score(scores[:5], episodes[:5], fraction=1.0)
    last = final_score(scores[-10:], episodes[-10:], fraction=1.0)
    # The first updates play a near-uniform masked policy (its logits start near zero).
    assert first < 2.0
    assert last > max(5.0, 4 * first), (first, last)


def test_bfloat16_computes_the_hidden_layers_in_bf16_and_keeps_weights_and_outputs_float32():
    config = {**TINY, "PRECISION": "bfloat16"}
    parts = impl.make_parts(config)
    runner = impl.init_runner(parts, jax.random.PRNGKey(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(runner.params))
    agent_input = agent_input_of(parts, runner)
    mask = jnp.ones((TINY["NUM_ENVS"], 4), bool)
    logits, value = parts.network.apply(runner.params, agent_input.features, mask)
    assert logits.dtype == jnp.float32 and value.dtype == jnp.float32
    f32 = impl.make_parts(TINY).network.apply(runner.params, agent_input.features, mask)
    # The same weights in float32: close (bf16 keeps 8 bits of mantissa), not equal.
    np.testing.assert_allclose(value, f32[1], atol=0.05)
    assert not np.array_equal(value, f32[1])
    jaxpr = str(jax.make_jaxpr(parts.network.apply)(runner.params, agent_input.features, mask))
    assert "bf16" in jaxpr and "dot_general" in jaxpr


def agent_input_of(parts, runner):
    hunger = jax.vmap(parts.env.hunger)(runner.env_state)
    return agent_input.observe(parts.config, runner.obs, hunger=hunger)


# --------------------------------------------------------------------------- score reading
def test_scores_are_weighted_by_episodes_and_updates_without_episodes_count_nothing():
    score = np.array([[10.0, 0.0, 30.0, 20.0]])
    episodes = np.array([[1, 0, 3, 1]])
    np.testing.assert_allclose(
        trailing_score(score, episodes, window=2), [[10.0, 10.0, 30.0, 27.5]]
    )
    np.testing.assert_allclose(final_score(score, episodes, fraction=0.5), [27.5])
    assert final_score(np.zeros((1, 4)), np.zeros((1, 4)))[0] == 0.0  # never NaN


def test_with_hunger_the_agent_sees_the_moves_since_food_over_the_limit():
    parts = impl.make_parts({**TINY, "HUNGER": True, "STARVATION_STEPS": 20})
    runner = impl.init_runner(parts, jax.random.PRNGKey(0))
    for _ in range(6):
        before = np.asarray(runner.env_state.steps_since_food)  # when the agent acts
        runner, transition = impl.env_step(parts, runner, None)
        np.testing.assert_allclose(transition.features.extras[:, -1], before / 20)
    assert before.max() > 0
    without = impl.make_parts({**TINY, "STARVATION_STEPS": 20})
    _, plain = impl.env_step(without, impl.init_runner(without, jax.random.PRNGKey(0)), None)
    assert plain.features.extras.shape[1] == transition.features.extras.shape[1] - 1
