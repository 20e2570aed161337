"""The epoch's shuffle: a permutation for every size, whose minibatches look like a uniform
shuffle's (each sample's, each pair's, each game's share)."""

import jax
import numpy as np
import pytest

from snake_purejaxrl import shuffle

NUM_ENVS, NUM_STEPS, NUM_MINIBATCHES = 256, 128, 8  # the default rollout
N = NUM_ENVS * NUM_STEPS  # samples, step-major as `make_batch` lays them out


def minibatch_of_each_sample(keys):
    """(keys, N): the minibatch each sample falls in, for each key's shuffle."""
    order = np.asarray(jax.vmap(lambda key: shuffle.permutation(key, N))(keys))
    position = np.argsort(order, axis=1)
    return position // (N // NUM_MINIBATCHES)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 1000, 1024, N])
def test_every_index_comes_once_and_another_key_gives_another_order(n):
    first = np.asarray(shuffle.permutation(jax.random.PRNGKey(0), n))
    assert first.dtype == np.int32
    np.testing.assert_array_equal(np.sort(first), np.arange(n))
    if n >= 8:
        orders = [shuffle.permutation(jax.random.PRNGKey(k), n) for k in range(5)]
        assert len({tuple(np.asarray(order)) for order in orders}) == 5


def test_minibatches_are_drawn_as_a_uniform_shuffle_would_draw_them():
    """Over 1000 keys: a sample lands in each minibatch 1/8 of the time; two samples share one
    1/8 of the time, whether they are neighbours, the same game's consecutive moves or far
    apart; and one key's minibatches hold each game's moves in the spread (hypergeometric
    variance) a uniform shuffle gives, neither evener nor lumpier."""
    batches = minibatch_of_each_sample(jax.random.split(jax.random.PRNGKey(1), 1000))
    share = 1 / NUM_MINIBATCHES
    counts = np.stack([np.bincount(b, minlength=NUM_MINIBATCHES) for b in batches.T[:: N // 64]])
    np.testing.assert_allclose(counts / len(batches), share, atol=0.045)  # 4 std of 1000 draws

    rng = np.random.default_rng(0)
    for distance in (1, 3, NUM_ENVS, 5 * NUM_ENVS, N // NUM_MINIBATCHES, N // 2):
        first = rng.integers(0, N - distance, 2000)
        together = (batches[:, first] == batches[:, first + distance]).mean()
        assert together == pytest.approx(share, abs=0.004), distance

    game = np.arange(N) % NUM_ENVS
    expected = NUM_STEPS * share * (1 - share) * (N - NUM_STEPS) / (N - 1)
    for b in batches[:5]:
        moves = np.zeros((NUM_MINIBATCHES, NUM_ENVS))
        np.add.at(moves, (b, game), 1)
        assert moves.var() == pytest.approx(expected, rel=0.15)
