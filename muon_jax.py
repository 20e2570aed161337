"""Optimizer builders: Adam, or Muon for hidden weight matrices plus an auxiliary Adam for the rest.

Every learning rate is a float or an optax schedule (`count -> lr`), and each optimizer is wrapped
in `optax.inject_hyperparams`, so the rate it actually applied lives in its state:
`applied_learning_rates(opt_state)` reads it back (what the metrics report), never a recomputation.
Muon itself is optax's (`optax.contrib.scale_by_muon`: Newton-Schulz, Nesterov momentum), with
optax's shape scaling; this module only decides which leaves get it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon
from optax.contrib._muon import scale_by_shape  # optax.contrib.muon's own shape scaling; unexported

MUON, ADAM = "muon", "adam"

# Path names that mark a module as an output head (policy logits, value): those stay on Adam.
HEAD_NAMES = ("head", "logits", "policy", "value", "actor_out", "critic_out")

LearningRate = float | Callable[[jax.Array], jax.Array]


def _path_names(path: tuple) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))).lower() for k in path]


def muon_labels(params, head_names: tuple[str, ...] = HEAD_NAMES):
    """Pytree of "muon" | "adam" like `params`: >= 2-D weights of hidden layers get "muon";
    biases, norm scales and any leaf under a module whose name contains one of `head_names`
    (the output heads by default; add names to keep more layers on Adam) get "adam"."""

    def label(path, leaf) -> str:
        is_head = any(h in name for name in _path_names(path) for h in head_names)
        return MUON if leaf.ndim >= 2 and not is_head else ADAM

    return jax.tree_util.tree_map_with_path(label, params)


def muon_dimension_numbers(params):
    """Each matrix leaf as (inputs..., output): a conv kernel (h, w, in, out) is (h*w*in, out)."""
    return jax.tree.map(
        lambda leaf: MuonDimensionNumbers(tuple(range(leaf.ndim - 1)), leaf.ndim - 1), params
    )


def _muon(learning_rate, beta: float, ns_steps: int, nesterov: bool, weight_decay: float):
    """optax's Muon direction, rescaled for the matrix shape, then the (schedulable) step size."""
    return optax.chain(
        scale_by_muon(
            ns_steps=ns_steps,
            beta=beta,
            nesterov=nesterov,
            weight_dimension_numbers=muon_dimension_numbers,
        ),
        scale_by_shape(weight_dimension_numbers=muon_dimension_numbers),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def adam(learning_rate: LearningRate, eps: float = 1e-8, **adam_kwargs):
    """`optax.adam` whose applied learning rate is kept in its state."""
    return optax.inject_hyperparams(functools.partial(optax.adam, eps=eps, **adam_kwargs))(
        learning_rate=learning_rate
    )


def multi_transform_with_muon(
    muon_lr: LearningRate,
    aux_lr: LearningRate,
    *,
    beta: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    aux_eps: float = 1e-8,
    labels: Callable = muon_labels,
) -> optax.GradientTransformation:
    """Muon on the leaves `labels` marks "muon", `optax.adam` (b1 0.9, b2 0.999) on the rest."""
    muon = optax.inject_hyperparams(
        functools.partial(
            _muon, beta=beta, ns_steps=ns_steps, nesterov=nesterov, weight_decay=weight_decay
        )
    )(learning_rate=muon_lr)
    return optax.multi_transform({MUON: muon, ADAM: adam(aux_lr, eps=aux_eps)}, labels)


def chain_with_muon(
    muon_lr: LearningRate, aux_lr: LearningRate, max_grad_norm: float, **muon_kwargs
) -> optax.GradientTransformation:
    """Global-norm clipping of all gradients together, then `multi_transform_with_muon`."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        multi_transform_with_muon(muon_lr, aux_lr, **muon_kwargs),
    )


def chain_with_adam(
    lr: LearningRate, max_grad_norm: float, eps: float = 1e-5
) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam (PureJaxRL's eps 1e-5)."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam(lr, eps=eps))


def applied_learning_rates(opt_state) -> dict[str, jax.Array]:
    """{"muon": lr, "adam": lr} (Muon) or {"adam": lr} (Adam): the rates of the last update.

    Read from the `inject_hyperparams` states, so it is the optimizer's truth by construction."""
    rates = {}
    for path, value in optax.tree_utils.tree_get_all_with_path(opt_state, "learning_rate"):
        names = _path_names(path)
        if "hyperparams" in names:  # not "hyperparams_states", which hold schedule counters
            rates[MUON if MUON in names else ADAM] = value
    return rates
