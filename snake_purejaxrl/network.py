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
from snake_purejaxrl.config import SETTING_BY_KEY

INPUT_LAYER = "input_dense"  # the first layer's name: MUON_INPUT_LAYER=False keeps it on Adam
TRUNK, CRITIC_TRUNK, POLICY_HEAD, VALUE_HEAD = "trunk", "critic_trunk", "policy_head", "value_head"
_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def layer_names(hidden_sizes: Sequence[int]) -> list[str]:
    """Names of an MLP's layers, input first: the network and the Muon split both use these."""
    return [INPUT_LAYER if i == 0 else f"hidden_dense_{i}" for i in range(len(hidden_sizes))]


class MLP(nn.Module):
    """Hidden layers computed in `dtype` (their weights are float32 either way); float32 out."""

    hidden_sizes: Sequence[int]
    activation: str
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        for width, name in zip(self.hidden_sizes, layer_names(self.hidden_sizes)):
            init = nn.initializers.orthogonal(np.sqrt(2))
            dense = nn.Dense(width, kernel_init=init, dtype=self.dtype, name=name)
            x = _ACTIVATIONS[self.activation](dense(x))
        return x.astype(jnp.float32)


class ActorCritic(nn.Module):
    """Policy logits and value from a batch of agent inputs `(B, F)`.

    torso "shared": one trunk, two heads; "separate": a critic trunk of its own. Masked moves
    get a logit of -1e9 (never -inf, which would make the entropy NaN)."""

    hidden_sizes: Sequence[int] = SETTING_BY_KEY["HIDDEN_SIZES"].default
    torso: str = "shared"
    activation: str = "tanh"
    precision: str = "float32"  # of the trunks; the heads are float32

    def setup(self):
        # Module names come from the attribute names; `module_split` lists the same ones.
        self.trunk = MLP(self.hidden_sizes, self.activation, self.precision)
        if self.torso == "separate":
            self.critic_trunk = MLP(self.hidden_sizes, self.activation, self.precision)
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
    return ActorCritic(config["HIDDEN_SIZES"], config["TORSO"], config["ACTIVATION"],
                       config["PRECISION"])  # fmt: skip


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
