"""The network's first layer (`network.InputDense`): a dense layer over `flat_input`, computed
from the input's parts (the food as a cell, the board as a rectangle in the view)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snake_purejaxrl import agent_input, network
from snake_purejaxrl.config import validate_config
from snake_purejaxrl.network import InputDense
from tests.test_agent_input import random_states

INIT = nn.initializers.orthogonal(np.sqrt(2))


def net_inputs(view, grid_size, games=24):
    """Agent inputs of random games, a third mirrored, every fourth with no one-hot cell lit
    (a won game's board has no food)."""
    env, state = random_states(grid_size, games, 3 * grid_size, seed=grid_size)
    obs = jax.vmap(env.observation)(state)
    config = validate_config({"GRID_SIZE": grid_size, "VIEW": view, "HUNGER": True})
    mirrored = jnp.arange(games) % 3 == 0
    x = agent_input.observe(config, obs, mirrored, jnp.linspace(0, 1, games)).features
    unlit = (jnp.arange(games) % 4 == 0)[:, None]
    return x._replace(lit_cells=jnp.where(unlit, x.cells[0, ..., 0].size, x.lit_cells))


@pytest.mark.parametrize("view", ["egocentric", "board"])
def test_the_flat_input_is_the_view_then_the_look_aheads_then_hunger(view):
    env, state = random_states(7, 16, 9, seed=2)
    obs = jax.vmap(env.observation)(state)
    config = validate_config({"GRID_SIZE": 7, "VIEW": view, "TIMED_FLOOD": True, "HUNGER": True})
    hunger = jnp.linspace(0, 1, 16)
    x = agent_input.observe(config, obs, hunger=hunger).features
    image, heading = agent_input.egocentric_view(obs) if view == "egocentric" else (obs, 0 * hunger)
    look_ahead = agent_input.flood_features(obs, heading.astype(jnp.int32))
    timed = agent_input.timed_flood_features(obs, heading.astype(jnp.int32))
    expected = jnp.concatenate([image.reshape(16, -1), look_ahead, timed, hunger[:, None]], -1)
    flat = agent_input.flat_input(x, agent_input.CELL_LAYOUTS[view])
    np.testing.assert_array_equal(flat, expected)


@pytest.mark.parametrize("view", ["egocentric", "board"])
@pytest.mark.parametrize("grid_size", [4, 9])
def test_the_input_layer_is_a_dense_layer_over_the_flat_input(view, grid_size):
    x = net_inputs(view, grid_size)
    layout = agent_input.CELL_LAYOUTS[view]
    flat = agent_input.flat_input(x, layout)
    layer = InputDense(16, INIT, layout)
    params = layer.init(jax.random.PRNGKey(0), x)
    # The same weights as nn.Dense over the flat input: checkpoints carry over unchanged.
    dense = nn.Dense(16, kernel_init=INIT).init(jax.random.PRNGKey(0), flat)
    jax.tree.map(np.testing.assert_array_equal, params, dense)
    params = jax.tree.map(lambda p: p + 0.1 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)

    def loss(params, layer_input, apply):
        return (jnp.tanh(apply(params, layer_input)) * jnp.sin(jnp.arange(16))).sum()

    plain = nn.Dense(16).apply
    np.testing.assert_allclose(layer.apply(params, x), plain(params, flat), rtol=1e-5, atol=1e-5)
    grads = jax.grad(loss)(params, x, layer.apply)
    expected = jax.grad(loss)(params, flat, plain)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), grads, expected
    )
    # A rollout's (steps, games) leading axes give the same as the games one by one.
    stacked = jax.tree.map(lambda a: a.reshape(2, -1, *a.shape[1:]), x)
    np.testing.assert_allclose(
        layer.apply(params, stacked).reshape(-1, 16), layer.apply(params, x), rtol=1e-6, atol=1e-6
    )


def test_the_bfloat16_product_rounds_its_inputs_and_keeps_a_float32_kernel_gradient():
    """PRECISION "bfloat16-input": bfloat16 inputs summed in float32, and the kernel's gradient
    is the float32 one, inputs^T @ grad."""
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.uniform(0, 1, (64, 40)), jnp.float32)
    kernel = jnp.asarray(rng.normal(0, 0.3, (40, 8)), jnp.float32)
    upstream = jnp.asarray(rng.normal(0, 1, (64, 8)), jnp.float32)
    out = network.bfloat16_product(inputs, kernel)
    assert out.dtype == jnp.float32
    rounded = [np.asarray(a.astype(jnp.bfloat16), np.float64) for a in (inputs, kernel)]
    np.testing.assert_allclose(out, rounded[0] @ rounded[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out, np.float64(inputs) @ np.float64(kernel), rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda k: (network.bfloat16_product(inputs, k) * upstream).sum())(kernel)
    assert grad.dtype == jnp.float32
    expected = np.float64(inputs).T @ np.float64(upstream)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid_size", [4, 9])
def test_a_bfloat16_input_layer_multiplies_the_exact_body_order_by_a_rounded_kernel(grid_size):
    """The egocentric view's body order is stored as integers: in bfloat16 they stay exact, so
    the layer is the float32 layer with the body order's kernel rows rounded to bfloat16."""
    x = net_inputs("egocentric", grid_size)
    layout = agent_input.CELL_LAYOUTS["egocentric"]
    flat = agent_input.flat_input(x, layout)
    params = InputDense(16, INIT, layout).init(jax.random.PRNGKey(0), x)
    out = InputDense(16, INIT, layout, network.INPUT_BFLOAT16).apply(params, x)
    kernel = params["params"]["kernel"]
    row = np.arange(kernel.shape[0])
    dense = agent_input.channels_of(layout, "dense")
    dense_rows = (row < x.cells[0].size * len(layout)) & np.isin(row % len(layout), dense)
    bf16_kernel = kernel.astype(jnp.bfloat16).astype(jnp.float32)
    rounded = jnp.where(dense_rows[:, None], bf16_kernel, kernel)
    expected = nn.Dense(16).apply({"params": {**params["params"], "kernel": rounded}}, flat)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out, nn.Dense(16).apply(params, flat), rtol=1e-5, atol=1e-5)
