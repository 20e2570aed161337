"""`muon_jax`: which leaves get Muon, what each optimizer part does, and the applied rates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import muon_jax
import train_snake_purejaxrl_impl as impl
from snake_purejaxrl.agent_input import observe
from snake_purejaxrl.network import make_network, module_split


def grads_like(params, seed=0):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def test_labels_follow_the_split_kernels_of_muon_modules_get_muon_biases_adam():
    params = {"hidden": {"kernel": jnp.zeros((32, 64)), "bias": jnp.zeros(64)},
              "head": {"kernel": jnp.zeros((64, 4)), "bias": jnp.zeros(4)}}  # fmt: skip
    labels = muon_jax.muon_labels(params, {"hidden": "muon", "head": "adam"})
    assert labels == {"hidden": {"kernel": "muon", "bias": "adam"},
                      "head": {"kernel": "adam", "bias": "adam"}}  # fmt: skip


def test_a_module_missing_from_the_split_is_an_error():
    params = {"hidden": {"kernel": jnp.zeros((8, 8))}, "extra": {"kernel": jnp.zeros((8, 8))}}
    with pytest.raises(ValueError, match="'extra'"):
        muon_jax.muon_labels(params, {"hidden": "muon"})


def test_a_split_naming_a_module_the_params_lack_is_an_error():
    params = {"hidden": {"kernel": jnp.zeros((8, 8))}}
    with pytest.raises(ValueError, match="'hiden'"):
        muon_jax.muon_labels(params, {"hidden": "muon", "hiden": "adam"})


def actor_critic_params(config):
    network = make_network(config)
    features = observe(config, jnp.zeros((1, 6, 6, 4)), hunger=jnp.zeros(1)).features
    return network.init(jax.random.PRNGKey(0), features, jnp.ones((1, 4), bool))


def test_actor_critic_hidden_matrices_get_muon_and_heads_and_biases_get_adam():
    config = impl.validate_config({"GRID_SIZE": 6, "TORSO": "separate"})
    params = actor_critic_params(config)
    flat = jax.tree_util.tree_flatten_with_path(muon_jax.muon_labels(params, module_split(config)))[
        0
    ]
    labels = {jax.tree_util.keystr(path): label for path, label in flat}
    for path, label in labels.items():
        hidden_kernel = "trunk" in path and "kernel" in path
        assert label == ("muon" if hidden_kernel else "adam"), path
    assert sum(label == "muon" for label in labels.values()) == 4  # 2 layers x 2 trunks


def test_a_renamed_trunk_is_refused_instead_of_silently_moving_to_adam():
    """The old substring rule sent any module whose name held "value" to Adam: a trunk renamed
    "value_trunk" would have lost Muon without a word. Now it is an error."""
    config = impl.validate_config({"GRID_SIZE": 6, "TORSO": "separate"})
    params = actor_critic_params(config)
    renamed = {"params": {("value_trunk" if k == "critic_trunk" else k): v
                          for k, v in params["params"].items()}}  # fmt: skip
    with pytest.raises(ValueError, match="value_trunk"):
        muon_jax.muon_labels(renamed, module_split(config))


def test_conv_kernels_are_orthogonalized_as_matrices():
    params = {"Conv_0": {"kernel": jnp.zeros((3, 3, 4, 8))}, "Dense_0": {"bias": jnp.zeros(8)}}
    labels = functools.partial(muon_jax.muon_labels, split={"Conv_0": "muon", "Dense_0": "adam"})
    assert labels(params)["Conv_0"]["kernel"] == "muon"
    tx = muon_jax.multi_transform_with_muon(0.1, 1e-3, labels)
    updates, _ = tx.update(grads_like(params), tx.init(params), params)
    matrix = np.asarray(updates["Conv_0"]["kernel"]).reshape(36, 8) / -0.1
    singular = np.linalg.svd(matrix, compute_uv=False)
    assert updates["Conv_0"]["kernel"].shape == (3, 3, 4, 8)
    assert 0.3 < singular.min() and singular.max() < 1.6  # Newton-Schulz: near-orthogonal


HIDDEN = functools.partial(muon_jax.muon_labels, split={"hidden": "muon"})


def test_muon_part_orthogonalizes_and_aux_part_is_plain_adam():
    params = {"hidden": {"kernel": jnp.ones((16, 64)), "bias": jnp.ones(64)}}
    grads = grads_like(params)
    tx = muon_jax.multi_transform_with_muon(0.02, 1e-3, HIDDEN)
    updates, _ = tx.update(grads, tx.init(params), params)
    # The width scaling multiplies a (16, 64) update by sqrt(fan_out / fan_in) = 2.
    update = np.asarray(updates["hidden"]["kernel"]) / (-0.02 * 2.0)
    singular = np.linalg.svd(update, compute_uv=False)
    assert 0.3 < singular.min() and singular.max() < 1.6
    adam = optax.adam(1e-3)
    expected, _ = adam.update(grads["hidden"]["bias"], adam.init(params["hidden"]["bias"]))
    np.testing.assert_allclose(updates["hidden"]["bias"], expected, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_muon_step_size_scales_with_its_learning_rate_only(scale):
    params = {"hidden": {"kernel": jnp.ones((16, 16)), "bias": jnp.ones(16)}}
    grads = grads_like(params)
    base = muon_jax.multi_transform_with_muon(0.01, 1e-3, HIDDEN)
    scaled = muon_jax.multi_transform_with_muon(0.01 * scale, 1e-3, HIDDEN)
    u_base, _ = base.update(grads, base.init(params), params)
    u_scaled, _ = scaled.update(grads, scaled.init(params), params)
    np.testing.assert_allclose(
        u_scaled["hidden"]["kernel"], scale * u_base["hidden"]["kernel"], rtol=1e-5
    )
    np.testing.assert_allclose(u_scaled["hidden"]["bias"], u_base["hidden"]["bias"], rtol=1e-6)


def test_learning_rates_accept_schedules_and_report_what_was_applied():
    params = {"hidden": {"kernel": jnp.ones((8, 8)), "bias": jnp.ones(8)}}
    muon_sched = optax.linear_schedule(0.02, 0.0, 4)
    aux_sched = lambda count: 1e-3 / (1.0 + count)  # noqa: E731
    tx = muon_jax.chain_with_muon(muon_sched, aux_sched, max_grad_norm=1.0, labels=HIDDEN)
    state = tx.init(params)
    for count in range(4):
        _, state = tx.update(grads_like(params, count), state, params)
        rates = muon_jax.applied_learning_rates(state)
        assert float(rates["muon"]) == pytest.approx(float(muon_sched(count)))
        assert float(rates["adam"]) == pytest.approx(1e-3 / (1.0 + count))


def test_adam_chain_clips_gradients_and_reports_its_rate():
    params = {"w": jnp.zeros(3)}
    tx = muon_jax.chain_with_adam(0.1, max_grad_norm=1.0)
    state = tx.init(params)
    _, state = tx.update({"w": jnp.array([300.0, 400.0, 0.0])}, state, params)
    assert muon_jax.applied_learning_rates(state) == {"adam": pytest.approx(0.1)}
    clip_state = state[0]
    assert isinstance(clip_state, optax.EmptyState)  # clipping first, Adam second
    adam_mu = optax.tree_utils.tree_get(state, "mu")
    np.testing.assert_allclose(adam_mu["w"], 0.1 * np.array([0.6, 0.8, 0.0]), rtol=1e-5)


def textbook_newton_schulz(matrix, steps=5):
    """Muon's quintic iteration as Keller Jordan writes it, in float64: X <- aX + (bA + cA^2)X,
    A = X X^T, on the wide orientation."""
    a, b, c = muon_jax.NS_COEFFS
    x = np.asarray(matrix, np.float64)
    x = x.T if x.shape[0] > x.shape[1] else x
    x = x / np.linalg.norm(x)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if matrix.shape[0] > matrix.shape[1] else x


def with_singular_values(rows, cols, smallest, seed):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(rows, min(rows, cols))))
    v, _ = np.linalg.qr(rng.normal(size=(cols, min(rows, cols))))
    return (u * np.logspace(0, np.log10(smallest), min(rows, cols))) @ v.T


@pytest.mark.parametrize("shape", [(600, 32), (32, 600), (32, 32), (48, 32), (32, 96)])
@pytest.mark.parametrize("smallest, tolerance", [(0.1, 2e-5), (1e-8, 1e-4)])
def test_newton_schulz_is_the_textbook_iteration_on_the_gram_matrix_or_not(
    shape, smallest, tolerance
):
    """(600, 32), (32, 600) and (32, 96) run on the Gram matrix, (32, 32) and (48, 32) the
    plain way; both give Muon's iteration, also with singular values down to 1e-8 (the Gram
    matrix squares the condition number: recomputing it every 3 steps keeps float32 at ~1e-5)."""
    matrix = with_singular_values(*shape, smallest, seed=sum(shape))
    expected = textbook_newton_schulz(matrix)
    got = np.asarray(jax.jit(muon_jax.newton_schulz, static_argnums=1)(jnp.float32(matrix), 5))
    assert got.shape == shape
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < tolerance


def test_muon_gives_optax_muons_update_for_every_matrix_shape():
    """The same update as `optax.contrib.scale_by_muon` with its own Newton-Schulz, then the
    width scaling: a wide, a tall, a square matrix and a conv kernel, over three steps of
    momentum."""
    params = {"wide": {"kernel": jnp.zeros((16, 96))}, "tall": {"kernel": jnp.zeros((300, 24))},
              "square": {"kernel": jnp.zeros((24, 24))},
              "conv": {"kernel": jnp.zeros((3, 3, 8, 16))}}  # fmt: skip
    labels = functools.partial(muon_jax.muon_labels, split=dict.fromkeys(params, "muon"))

    def widen(u):  # Keller Jordan's width scaling
        return u * np.sqrt(max(1.0, u.shape[-1] / np.prod(u.shape[:-1])))

    ours = muon_jax.multi_transform_with_muon(0.02, 1e-3, labels)
    reference = optax.chain(
        optax.contrib.scale_by_muon(weight_dimension_numbers=muon_jax.muon_dimension_numbers),
        optax.stateless(lambda updates, params: jax.tree.map(widen, updates)),
        optax.scale(-0.02),
    )
    state, reference_state = ours.init(params), reference.init(params)
    is_muon_state = lambda s: isinstance(s, optax.contrib.MuonState)  # noqa: E731
    muon_states = [s for s in jax.tree.leaves(state, is_leaf=is_muon_state) if is_muon_state(s)]
    assert len(muon_states) == 1  # the momentum is optax's own state, as checkpoints hold it
    for step in range(3):
        grads = grads_like(params, step)
        got, state = ours.update(grads, state, params)
        expected, reference_state = reference.update(grads, reference_state, params)
        for name in params:
            np.testing.assert_allclose(got[name]["kernel"], expected[name]["kernel"], atol=2e-6)
