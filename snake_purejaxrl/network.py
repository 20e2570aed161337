"""The actor-critic network PPO trains, and which of its weights Muon steps: a tanh (or ReLU)
MLP trunk with a policy head and a value head, shared or with a critic trunk of its own.

`module_split` names every module by the same names the network gives them, so the Muon/Adam
split and the network cannot drift apart silently (`muon_jax.muon_labels` checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import muon_jax
from snake_env import NUM_ACTIONS
from snake_purejaxrl.agent_input import CELL_LAYOUTS, NetInput, channels_of, dense_cells
from snake_purejaxrl.config import SETTING_BY_KEY

INPUT_BFLOAT16 = "bfloat16-input"  # PRECISION: the input layer's product over the view alone
INPUT_LAYER = "input_dense"  # the first layer's name: MUON_INPUT_LAYER=False keeps it on Adam
TRUNK, CRITIC_TRUNK, POLICY_HEAD, VALUE_HEAD = "trunk", "critic_trunk", "policy_head", "value_head"
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def layer_names(hidden_sizes: Sequence[int]) -> list[str]:
    """Names of an MLP's layers, input first: the network and the Muon split both use these."""
    return [INPUT_LAYER if i == 0 else f"hidden_dense_{i}" for i in range(len(hidden_sizes))]


def layer_dtype(precision: str) -> str:
    """The dtype of the layers' matmuls and activations under PRECISION: bfloat16-input rounds
    only the input layer's product over the view, so every layer runs float32."""
    return "float32" if precision == INPUT_BFLOAT16 else precision


class InputDense(nn.Module):
    """`nn.Dense` over `flat_input(x, layout)` (the same kernel and bias, so the same weights
    and checkpoints), computed without the flat input: only the "dense" channels are
    multiplied; a "one-hot" channel's kernel row is gathered at its lit cell, and an "outside
    box" channel's rows are summed outside the box from a 2-D prefix sum. The egocentric view
    multiplies one channel of three (bench/RESULTS.md has what it bought)."""

    features: int
    kernel_init: Any
    layout: tuple[str, ...]  # `agent_input.CELL_LAYOUTS[VIEW]`
    dtype: str = "float32"  # of the dense channels' matmul and the output; the rest is float32
    # (INPUT_BFLOAT16: that matmul's inputs are bfloat16, its sum and everything else float32)

    @nn.compact
    def __call__(self, x: NetInput) -> jax.Array:
        *batch, rows, cols, _ = x.cells.shape
        view_size = rows * cols * len(self.layout)
        extras = 0 if x.extras is None else x.extras.shape[-1]
        kernel_shape = (view_size + extras, self.features)
        kernel = self.param("kernel", self.kernel_init, kernel_shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        view_kernel = kernel[:view_size].reshape(rows, cols, len(self.layout), self.features)

        dt = jnp.dtype(layer_dtype(self.dtype))
        dense = channels_of(self.layout, "dense")
        dense_kernel = view_kernel[:, :, dense].reshape(-1, self.features)
        if self.dtype == INPUT_BFLOAT16:
            out = _bfloat16_view_product(x, dense_kernel).reshape(*batch, self.features)
        else:
            out = dense_cells(x).reshape(*batch, -1).astype(dt) @ dense_kernel.astype(dt)
        if extras:
            out = out + (x.extras @ kernel[view_size:]).astype(dt)
        sparse = jnp.zeros(self.features)  # the gathered terms
        no_cell = jnp.zeros((1, self.features))  # the row of a one-hot channel with no cell lit
        for i, channel in enumerate(channels_of(self.layout, "one-hot")):
            hot_rows = view_kernel[:, :, channel].reshape(-1, self.features)
            sparse = sparse + jnp.concatenate([hot_rows, no_cell])[x.lit_cells[..., i]]
        for channel in channels_of(self.layout, "outside box"):
            sparse = sparse + _outside_box(view_kernel[:, :, channel], x.board_box)
        return out + sparse.astype(dt) + bias.astype(dt)


def _bfloat16_view_product(x: NetInput, kernel: jax.Array) -> jax.Array:
    """`dense_cells(x) @ kernel`, flat `(B, F)` float32, from bfloat16 inputs: stored integer
    cells (exact in bfloat16 up to 256) are multiplied before `cells_scale` divides the sum."""
    if x.cells_scale is None:
        return bfloat16_product(dense_cells(x).reshape(-1, kernel.shape[0]), kernel)
    cells = x.cells.reshape(-1, kernel.shape[0]).astype(jnp.bfloat16)
    return bfloat16_product(cells, kernel) / x.cells_scale.reshape(-1, 1)


@jax.custom_vjp
def bfloat16_product(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    """`inputs @ kernel` `(B, K) @ (K, F)` with both rounded to bfloat16 and the sum float32.
    The kernel's gradient is float32 (a bfloat16 one ran slower on this CPU); `inputs` are
    data, their gradient zero."""
    return jnp.dot(inputs.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16),
                   preferred_element_type=jnp.float32)  # fmt: skip


def _bfloat16_product_forward(inputs, kernel):
    return bfloat16_product(inputs, kernel), inputs


def _bfloat16_product_backward(inputs, grad):
    return jnp.zeros_like(inputs), inputs.astype(jnp.float32).T @ grad


bfloat16_product.defvjp(_bfloat16_product_forward, _bfloat16_product_backward)


def _outside_box(weights: jax.Array, box: jax.Array) -> jax.Array:
    """Sum of `weights` (R, C, F) over the cells outside each box `(..., 4)`: rows [r0, r1) x
    columns [c0, c1), by a 2-D prefix sum (four gathers a game)."""
    table = jnp.pad(weights.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
    r0, r1, c0, c1 = jnp.moveaxis(box, -1, 0)
    inside = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    return table[-1, -1] - inside


class MLP(nn.Module):
    """Hidden layers computed in `dtype` (their weights are float32 either way); float32 out.
    The first reads a `NetInput` whose view has the given cell layout."""

    hidden_sizes: Sequence[int]
    activation: str
    layout: tuple[str, ...]
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: NetInput) -> jax.Array:
        init = nn.initializers.orthogonal(np.sqrt(2))
        for i, (width, name) in enumerate(zip(self.hidden_sizes, layer_names(self.hidden_sizes))):
            if i == 0:
                layer = InputDense(width, init, self.layout, self.dtype, name=name)
            else:
                layer = nn.Dense(width, kernel_init=init, dtype=layer_dtype(self.dtype), name=name)
            x = _ACTIVATIONS[self.activation](layer(x))
        return x.astype(jnp.float32)


class ActorCritic(nn.Module):
    """Policy logits and value from a batch of agent inputs (`NetInput`).

    torso "shared": one trunk, two heads; "separate": a critic trunk of its own. Masked moves
    get a logit of -1e9 (never -inf, which would make the entropy NaN)."""

    hidden_sizes: Sequence[int] = SETTING_BY_KEY["HIDDEN_SIZES"].default
    torso: str = "shared"
    activation: str = "tanh"
    precision: str = "float32"  # of the trunks; the heads are float32
    view: str = "egocentric"  # VIEW: the cell layout of the input (`CELL_LAYOUTS`)

    def setup(self):
        # Module names come from the attribute names; `module_split` lists the same ones.
        layout = CELL_LAYOUTS[self.view]
        self.trunk = MLP(self.hidden_sizes, self.activation, layout, self.precision)
        if self.torso == "separate":
            self.critic_trunk = MLP(self.hidden_sizes, self.activation, layout, self.precision)
        self.policy_head = nn.Dense(NUM_ACTIONS, kernel_init=nn.initializers.orthogonal(0.01))
        self.value_head = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))

    def __call__(self, features: NetInput, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        actor_x = self.trunk(features)
        logits = self.policy_head(actor_x)
        critic_x = actor_x if self.torso == "shared" else self.critic_trunk(features)
        return jnp.where(mask, logits, -1e9), self.value_head(critic_x)[:, 0]

    def value(self, features: NetInput) -> jax.Array:
        """The value alone (no mask, no policy head): for bootstrapping."""
        trunk = self.trunk if self.torso == "shared" else self.critic_trunk
        return self.value_head(trunk(features))[:, 0]


def make_network(config: dict[str, Any]) -> ActorCritic:
    return ActorCritic(config["HIDDEN_SIZES"], config["TORSO"], config["ACTIVATION"],
                       config["PRECISION"], config["VIEW"])  # fmt: skip


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
