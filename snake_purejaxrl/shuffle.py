"""The order in which an epoch visits a rollout's samples: a random permutation that costs no sort.

`jax.random.permutation` sorts the indices by random keys, twice (to make key ties vanishingly
rare), and XLA's CPU sort is slow enough to be a noticeable share of an update (bench/RESULTS.md,
"Today's CPU, the minibatch shuffle without a sort, ..."). For a power-of-two count, the
permutation here is a keyed hash that maps each index to a distinct index: rounds of
x -> (a x + c) mod n (a odd) then x -> x XOR (x >> bits/2), each of them a bijection of
[0, n), with a random multiplier and offset per round. It is elementwise, so it costs no sort.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HASH_ROUNDS = 4  # 2 already pass the uniformity checks of tests/test_shuffle.py; 1 does not


def permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of range(n), `(n,) int32`: the keyed hash for a power-of-two `n`,
    `jax.random.permutation` otherwise."""
    bits = n.bit_length() - 1
    if n < 2 or n != 1 << bits:
        return jax.random.permutation(key, n)
    multipliers = jax.random.bits(key, (HASH_ROUNDS,), jnp.uint32) | 1  # odd: invertible mod n
    offsets = jax.random.bits(jax.random.fold_in(key, 1), (HASH_ROUNDS,), jnp.uint32)
    mask, shift = jnp.uint32(n - 1), jnp.uint32(max(bits // 2, 1))
    index = jnp.arange(n, dtype=jnp.uint32)
    for multiplier, offset in zip(multipliers, offsets):
        index = (index * multiplier + offset) & mask
        index = index ^ (index >> shift)
    return index.astype(jnp.int32)
