"""Optimizer builders: Adam, or Muon for hidden weight matrices plus an auxiliary Adam for the rest.

Which module goes to which optimizer is decided by exact module paths: the network declares a
complete split `{"params/trunk/input_dense": "muon", "params/policy_head": "adam", ...}` and
`muon_labels` refuses a split that misses a module or names one the parameters do not have, so a
renamed layer can never silently change sides.

Every learning rate is a float or an optax schedule (`count -> lr`), and each optimizer is wrapped
in `optax.inject_hyperparams`, so the rate it actually applied lives in its state:
`applied_learning_rates(opt_state)` reads it back (what the metrics report), never a recomputation.
Muon's momentum is optax's (`optax.contrib.scale_by_muon`, Nesterov); its Newton-Schulz steps
run here (`newton_schulz`), on the Gram matrix where a matrix is wide, 3x faster on the input
kernel.
`step_statistics` says how far an update moved each optimizer group's weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

MUON, ADAM = "muon", "adam"

LearningRate = float | Callable[[jax.Array], jax.Array]


def _key_name(key) -> str:
    return str(getattr(key, "key", getattr(key, "name", key)))


def module_path(path: tuple) -> str:
    """'params/trunk/input_dense' for the leaf path of 'params/trunk/input_dense/kernel'."""
    return "/".join(_key_name(k) for k in path[:-1])


def muon_labels(params, split: Mapping[str, str]):
    """Pytree of "muon" | "adam" like `params`, from `split`: module path -> MUON or ADAM.

    A "muon" module's >= 2-D leaves (its kernel) get Muon, its biases Adam; an "adam" module
    is all Adam. Raises ValueError if a module of `params` is missing from `split`, if `split`
    names a module `params` does not have, or if a value is neither MUON nor ADAM."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    modules = {module_path(path) for path, _ in flat}
    missing = sorted(modules - set(split))
    if missing:
        raise ValueError(f"modules {missing} are not in the Muon split; give each 'muon' or 'adam'")
    unknown = sorted(set(split) - modules)
    if unknown:
        raise ValueError(f"the Muon split names {unknown}, which are not modules of the params "
                         f"(those are {sorted(modules)})")  # fmt: skip
    bad = {name: side for name, side in split.items() if side not in (MUON, ADAM)}
    if bad:
        raise ValueError(f"the Muon split must map modules to {MUON!r} or {ADAM!r}, got {bad}")

    def label(path, leaf) -> str:
        return MUON if split[module_path(path)] == MUON and leaf.ndim >= 2 else ADAM

    return jax.tree_util.tree_map_with_path(label, params)


def muon_dimension_numbers(params):
    """Each matrix leaf as (inputs..., output): a conv kernel (h, w, in, out) is (h*w*in, out)."""
    return jax.tree.map(
        lambda leaf: MuonDimensionNumbers(tuple(range(leaf.ndim - 1)), leaf.ndim - 1), params
    )


NS_COEFFS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic, optax's default


GRAM_RESTART = 3  # Gram steps before A is recomputed from X: float32 error 1e-4 -> 1e-5


def newton_schulz(matrix: jax.Array, steps: int | jax.Array, eps: float = 1e-8) -> jax.Array:
    """Muon's orthogonalization of a matrix, optax's: Frobenius-normalized, `steps` quintic
    Newton-Schulz steps X -> M X, with A = X X^T on the short side and M = a + bA + cA^2.

    Where the long side n is at least twice the short side m, the steps run on the Gram matrix
    A alone: X_k = Q_k X_0 with Q_{k+1} = M_k Q_k and A_{k+1} = M_k A_k M_k, so X is touched
    twice per `GRAM_RESTART` steps, not twice per step (5 steps: 4m^2 n + 20m^3 flops against
    5(2m^2 n + m^3)). The Gram matrix squares X's condition number, so A is recomputed from X
    every `GRAM_RESTART` steps, and its matmuls run at full float32 precision (not a GPU's
    TF32)."""
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix
    x = x / (jnp.linalg.norm(x) + eps)
    matmul = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
    a, b, c = NS_COEFFS
    identity = jnp.eye(x.shape[0], dtype=x.dtype)

    def polynomial(gram):
        return a * identity + b * gram + c * matmul(gram, gram)

    def gram_steps(restart, x):
        def step(_, carry):
            product, gram = carry
            m = polynomial(gram)
            return matmul(m, product), matmul(matmul(m, gram), m)

        count = jnp.minimum(GRAM_RESTART, steps - restart * GRAM_RESTART)
        product, _ = jax.lax.fori_loop(0, count, step, (identity, matmul(x, x.T)))
        return matmul(product, x)

    def plain_step(_, x):
        return matmul(polynomial(matmul(x, x.T)), x)

    if x.shape[1] >= 2 * x.shape[0]:
        x = jax.lax.fori_loop(0, (steps + GRAM_RESTART - 1) // GRAM_RESTART, gram_steps, x)
    else:
        x = jax.lax.fori_loop(0, steps, plain_step, x)
    return x.T if tall else x


def orthogonalize_and_scale_by_width(ns_steps: int) -> optax.GradientTransformation:
    """Muon's direction for each matrix (a conv kernel (h, w, in, out) as (h*w*in, out)):
    `newton_schulz`, then Keller Jordan's width scaling x sqrt(max(1, fan_out / fan_in))
    (what optax's Muon applies, private there)."""

    def direction(u):
        fan_in, fan_out = math.prod(u.shape[:-1]), u.shape[-1]
        orthogonal = newton_schulz(u.reshape(fan_in, fan_out), ns_steps).reshape(u.shape)
        return orthogonal * jnp.sqrt(max(1.0, fan_out / fan_in)).astype(u.dtype)

    def update(updates, state, params=None):
        del params
        return jax.tree.map(direction, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def _muon(learning_rate, beta: float, ns_steps: int, nesterov: bool, weight_decay: float):
    """Muon: optax's Nesterov momentum (`scale_by_muon`, its own Newton-Schulz off: ns_steps=0
    leaves the Frobenius normalization), `orthogonalize_and_scale_by_width`, then the
    (schedulable) step size."""
    return optax.chain(
        scale_by_muon(
            ns_steps=0,
            beta=beta,
            nesterov=nesterov,
            weight_dimension_numbers=muon_dimension_numbers,
        ),
        orthogonalize_and_scale_by_width(ns_steps),
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
    labels: Callable,
    *,
    beta: float = 0.95,
    ns_steps: int = 5,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    aux_eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Muon on the leaves `labels(params)` marks "muon", `optax.adam` (b1 0.9, b2 0.999) on the
    rest. `labels` is typically `functools.partial(muon_labels, split=...)`."""
    muon = optax.inject_hyperparams(
        functools.partial(
            _muon, beta=beta, ns_steps=ns_steps, nesterov=nesterov, weight_decay=weight_decay
        )
    )(learning_rate=muon_lr)
    return optax.multi_transform({MUON: muon, ADAM: adam(aux_lr, eps=aux_eps)}, labels)


def chain_with_muon(
    muon_lr: LearningRate,
    aux_lr: LearningRate,
    max_grad_norm: float,
    labels: Callable,
    **muon_kwargs,
) -> optax.GradientTransformation:
    """Global-norm clipping of all gradients together, then `multi_transform_with_muon`."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        multi_transform_with_muon(muon_lr, aux_lr, labels, **muon_kwargs),
    )


def chain_with_adam(
    lr: LearningRate, max_grad_norm: float, eps: float = 1e-5
) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam (PureJaxRL's eps 1e-5)."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam(lr, eps=eps))


AUX = "aux"  # the Adam that takes what Muon does not, as step_statistics names its group


def step_statistics(before, after, split: Mapping[str, str] | None = None) -> dict[str, jax.Array]:
    """What an update did to each optimizer group's weights, from the weights before and after
    it (the sum of every step the optimizer returned): `update_rms/<g>`, the RMS of the change;
    `update_ratio/<g>`, |change| / |weights before|, the effective learning rate; and
    `param_norm/<g>`, |weights after|. Groups: "muon" and "aux" by the Muon `split`, or one
    "adam" group without one."""
    if split is None:
        groups = jax.tree.map(lambda _: ADAM, before)
    else:
        labels = muon_labels(before, split)
        groups = jax.tree.map(lambda label: MUON if label == MUON else AUX, labels)
    totals: dict[str, list] = {}
    for name, old, new in zip(jax.tree.leaves(groups), jax.tree.leaves(before),
                              jax.tree.leaves(after)):  # fmt: skip
        change = (new - old).astype(jnp.float32)
        sums = [jnp.sum(change**2), jnp.sum(old.astype(jnp.float32) ** 2),
                jnp.sum(new.astype(jnp.float32) ** 2), change.size]  # fmt: skip
        totals[name] = [a + b for a, b in zip(totals.get(name, [0.0] * 4), sums)]
    stats = {}
    for name, (change, old, new, size) in totals.items():
        stats[f"update_rms/{name}"] = jnp.sqrt(change / size)
        stats[f"update_ratio/{name}"] = jnp.sqrt(change) / jnp.maximum(jnp.sqrt(old), 1e-12)
        stats[f"param_norm/{name}"] = jnp.sqrt(new)
    return stats


def applied_learning_rates(opt_state) -> dict[str, jax.Array]:
    """{"muon": lr, "adam": lr} (Muon) or {"adam": lr} (Adam): the rates of the last update.

    Read from the `inject_hyperparams` states, so it is the optimizer's truth by construction."""
    rates = {}
    for path, value in optax.tree_utils.tree_get_all_with_path(opt_state, "learning_rate"):
        names = [_key_name(k).lower() for k in path]
        if "hyperparams" in names:  # not "hyperparams_states", which hold schedule counters
            rates[MUON if MUON in names else ADAM] = value
    return rates
