"""Learning-rate metrics: present, annealed by the formula, and tracked per optimizer part.

Runs under pytest, or as `python test_lr_metrics.py` (one line per check; exit 1 if any fails).
Tiny configs: the whole file takes well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import functools
import sys

import jax
import numpy as np

import muon_jax
import train_snake_purejaxrl_impl as impl

TINY = {
    "GRID_SIZE": 6,
    "NUM_ENVS": 8,
    "NUM_STEPS": 8,
    "TOTAL_TIMESTEPS": 8 * 8 * 5,  # 5 updates
    "UPDATE_EPOCHS": 2,
    "NUM_MINIBATCHES": 2,
    "VIEW": "board",
    "HIDDEN_SIZES": (16, 16),
    "LR": 3e-4,
    "MUON_LR": 0.02,
    "AUX_ADAM_LR": 1e-3,
}
NUM_UPDATES = 5


@functools.cache
def metrics_of(**overrides) -> dict[str, np.ndarray]:
    out = jax.jit(impl.make_train({**TINY, **overrides}))(jax.random.PRNGKey(0))
    return {k: np.asarray(v) for k, v in out["metrics"].items()}


def annealed(initial_lr: float) -> np.ndarray:
    """initial_lr * (1 - i / N) for updates i = 0..N-1."""
    return initial_lr * (1 - np.arange(NUM_UPDATES) / NUM_UPDATES)


def test_learning_rate_is_in_the_metrics_of_every_update():
    metrics = metrics_of(ANNEAL_LR=False)
    assert metrics["learning_rate"].shape == (NUM_UPDATES,)
    np.testing.assert_allclose(metrics["learning_rate"], TINY["LR"], rtol=1e-6)
    assert "aux_learning_rate" not in metrics  # Adam has one rate


def test_adam_annealing_follows_the_linear_formula():
    np.testing.assert_allclose(
        metrics_of(ANNEAL_LR=True)["learning_rate"], annealed(TINY["LR"]), rtol=1e-5
    )


def test_muon_annealing_follows_the_formula_for_muon_and_aux_rates():
    metrics = metrics_of(USE_MUON=True, ANNEAL_LR=True)
    np.testing.assert_allclose(metrics["learning_rate"], annealed(TINY["MUON_LR"]), rtol=1e-5)
    np.testing.assert_allclose(
        metrics["aux_learning_rate"], annealed(TINY["AUX_ADAM_LR"]), rtol=1e-5
    )


def test_muon_tracks_both_rates_separately_and_reads_them_from_the_optimizer():
    metrics = metrics_of(USE_MUON=True, ANNEAL_LR=False)
    np.testing.assert_allclose(metrics["learning_rate"], TINY["MUON_LR"], rtol=1e-6)
    np.testing.assert_allclose(metrics["aux_learning_rate"], TINY["AUX_ADAM_LR"], rtol=1e-6)
    # The metric is the optimizer state's own value after the update, not a recomputation.
    init, step = impl.make_train_step({**TINY, "USE_MUON": True, "ANNEAL_LR": True})
    runner, step_metrics = step(init(jax.random.PRNGKey(0)))
    rates = muon_jax.applied_learning_rates(runner.opt_state)
    assert float(step_metrics["learning_rate"]) == float(rates["muon"])
    assert float(step_metrics["aux_learning_rate"]) == float(rates["adam"])


CHECKS = [
    ("learning rate in metrics", test_learning_rate_is_in_the_metrics_of_every_update),
    ("Adam annealing formula", test_adam_annealing_follows_the_linear_formula),
    (
        "Muon annealing (muon_lr and aux_lr)",
        test_muon_annealing_follows_the_formula_for_muon_and_aux_rates,
    ),
    (
        "Muon rates tracked separately",
        test_muon_tracks_both_rates_separately_and_reads_them_from_the_optimizer,
    ),
]


def main() -> int:
    failed = 0
    for name, check in CHECKS:
        try:
            check()
            print(f"PASS  {name}")
        except Exception as error:  # an error is a failed check too, reported on its line
            failed += 1
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            print(f"FAIL  {name}: {error.__class__.__name__} {first_line}")
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
