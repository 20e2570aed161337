"""Learning-rate metrics: present, scheduled by the formula, read from the optimizer, per run.

Runs under pytest, or as `python test_lr_metrics.py` (one line per check; exit 1 if any fails).
Tiny configs: the whole file takes well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import functools
import math
import sys

import jax
import numpy as np

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


def scheduled(initial_lr: float, schedule: str, warmup: int, total: int) -> np.ndarray:
    """The documented formula, written out plainly: warm-up (u + 1) / W for u < W, then
    constant 1, linear 1 - (u - W) / (N - W) or cosine (1 + cos(pi (u - W) / (N - W))) / 2."""
    shape = []
    for u in range(total):
        if u < warmup:
            shape.append((u + 1) / warmup)
            continue
        progress = (u - warmup) / (total - warmup)
        shape.append(
            {
                "constant": 1.0,
                "linear": 1 - progress,
                "cosine": (1 + math.cos(math.pi * progress)) / 2,
            }[schedule]  # fmt: skip
        )
    return initial_lr * np.array(shape)


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
    # Put the optimizer out of step with the run's update counter, as a restarted optimizer or
    # a hand-edited run would be: the metric must follow the optimizer, not the counter.
    init, step = impl.make_train_step({**TINY, "USE_MUON": True, "ANNEAL_LR": True})
    runner = init(jax.random.PRNGKey(0))
    for _ in range(2):
        runner, _ = step(runner)
    _, ahead = step(runner.replace(update=runner.update * 0))  # optimizer 2 updates ahead
    _, behind = step(init(jax.random.PRNGKey(0)).replace(update=runner.update + 1))
    expected_ahead, expected_behind = annealed(1.0)[2], annealed(1.0)[0]
    np.testing.assert_allclose(ahead["learning_rate"], TINY["MUON_LR"] * expected_ahead, 1e-5)
    aux = TINY["AUX_ADAM_LR"] * expected_ahead
    np.testing.assert_allclose(ahead["aux_learning_rate"], aux, 1e-5)
    np.testing.assert_allclose(behind["learning_rate"], TINY["MUON_LR"] * expected_behind, 1e-5)


def test_every_schedule_and_warmup_follows_its_formula():
    # constant and linear without warm-up are the checks above; these are the rest.
    cases = [("cosine", 0.0, 0, False), ("constant", 0.4, 2, False), ("linear", 0.4, 2, False),
             ("cosine", 0.4, 2, True)]  # fmt: skip
    for schedule, warmup_fraction, warmup, use_muon in cases:
        metrics = metrics_of(
            LR_SCHEDULE=schedule, WARMUP_FRACTION=warmup_fraction, USE_MUON=use_muon
        )
        base = TINY["MUON_LR"] if use_muon else TINY["LR"]
        expected = scheduled(base, schedule, warmup, NUM_UPDATES)
        message = f"{schedule}, warm-up {warmup}"
        np.testing.assert_allclose(metrics["learning_rate"], expected, 1e-5, err_msg=message)
    # --anneal-lr stays exactly what it was: short for the linear schedule.
    assert impl.validate_config({"ANNEAL_LR": True})["LR_SCHEDULE"] == "linear"
    assert impl.validate_config({"LR_SCHEDULE": "linear"})["ANNEAL_LR"] is True


def test_each_run_of_a_sweep_reports_its_own_applied_rate():
    sweeps = [(False, "LR_SWEEP", (1e-4, 1e-3)), (True, "MUON_LR_SWEEP", (0.01, 0.04))]
    for use_muon, key, sweep in sweeps:
        config = {**TINY, "USE_MUON": use_muon, key: sweep, "NUM_SEEDS": 2, "ANNEAL_LR": True}
        parts = impl.make_parts(config)
        runner = jax.jit(impl.init_runs(parts))()
        _, metrics, _ = jax.jit(impl.make_chunk(parts, NUM_UPDATES))(runner, NUM_UPDATES)
        rates = np.asarray(metrics["learning_rate"])  # (updates, runs): rate-major, seeds inner
        for run, lr in enumerate(np.repeat(sweep, 2)):
            np.testing.assert_allclose(rates[:, run], annealed(lr), rtol=1e-5, err_msg=key)
        if use_muon:  # the aux rate is not swept
            aux = np.asarray(metrics["aux_learning_rate"]).T
            np.testing.assert_allclose(aux, [annealed(TINY["AUX_ADAM_LR"])] * 4, 1e-5)


def weight_change(before, after, groups: dict[str, list[str]]) -> dict[str, tuple]:
    """(RMS of the change, |change| / |before|, |after|) of each group of named weights,
    measured here from two parameter trees with numpy."""
    flat = lambda tree: {  # noqa: E731
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf, np.float64)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    old, new = flat(before), flat(after)
    out = {}
    for group, names in groups.items():
        change = np.concatenate([(new[n] - old[n]).ravel() for n in names])
        weights = np.concatenate([old[n].ravel() for n in names])
        after_norm = np.sqrt(sum((new[n] ** 2).sum() for n in names))
        out[group] = (np.sqrt(np.mean(change**2)), np.linalg.norm(change) / np.linalg.norm(weights),
                      after_norm)  # fmt: skip
    return out


def step_stats_against_measured(**overrides) -> dict[str, float]:
    """Two updates through make_train_step; the second's logged step figures against the weight
    change between the two updates' parameters. Returns the logged ratios."""
    init, step = impl.make_train_step({**TINY, **overrides})
    runner, _ = step(init(jax.random.PRNGKey(1)))
    after, metrics = step(runner)
    names = [name for name in (
        "/".join(str(getattr(k, "key", k)) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(runner.params)[0]
    )]  # fmt: skip
    if overrides.get("USE_MUON"):  # Muon: the hidden kernels; aux Adam: biases and heads
        muon = [n for n in names if n.endswith("kernel") and "trunk" in n]
        groups = {"muon": muon, "aux": [n for n in names if n not in muon]}
    else:
        groups = {"adam": names}
    measured = weight_change(runner.params, after.params, groups)
    for group, (rms, ratio, norm) in measured.items():
        np.testing.assert_allclose(float(metrics[f"update_rms/{group}"]), rms, rtol=1e-3)
        np.testing.assert_allclose(float(metrics[f"update_ratio/{group}"]), ratio, rtol=1e-3)
        np.testing.assert_allclose(float(metrics[f"param_norm/{group}"]), norm, rtol=1e-4)
    assert {k.split("/")[1] for k in metrics if k.startswith("update_ratio/")} == set(groups)
    return {group: float(metrics[f"update_ratio/{group}"]) for group in groups}


def test_each_groups_logged_step_is_the_weight_change_between_two_updates():
    step_stats_against_measured()
    step_stats_against_measured(USE_MUON=True)


def test_muon_and_adam_at_the_same_nominal_rate_take_different_steps():
    adam = step_stats_against_measured(LR=0.01)
    muon = step_stats_against_measured(USE_MUON=True, MUON_LR=0.01, AUX_ADAM_LR=0.01)
    # Same nominal rate, different steps: Muon's orthogonalized update moves the hidden
    # matrices by another amount than Adam's normalized one moves all the weights.
    assert abs(muon["muon"] / adam["adam"] - 1) > 0.2, (muon, adam)


def test_a_bfloat16_network_reports_the_exact_scheduled_rates():
    for precision in ("bfloat16", "bfloat16-input"):
        adam = metrics_of(ANNEAL_LR=True, PRECISION=precision)["learning_rate"]
        np.testing.assert_allclose(adam, annealed(TINY["LR"]), rtol=1e-6)
        muon = metrics_of(USE_MUON=True, ANNEAL_LR=True, PRECISION=precision)
        np.testing.assert_allclose(muon["learning_rate"], annealed(TINY["MUON_LR"]), rtol=1e-6)
        aux = annealed(TINY["AUX_ADAM_LR"])
        np.testing.assert_allclose(muon["aux_learning_rate"], aux, rtol=1e-6)


def test_explained_variance_is_reported_every_update_and_at_most_1():
    ev = metrics_of()["explained_variance"]
    assert ev.shape == (NUM_UPDATES,) and np.isfinite(ev).all() and (ev <= 1).all()
    assert not np.allclose(ev, ev[0])  # it moves as the value function learns


CHECKS = [
    ("learning rate in metrics", test_learning_rate_is_in_the_metrics_of_every_update),
    ("Adam annealing formula", test_adam_annealing_follows_the_linear_formula),
    (
        "Muon annealing (muon_lr and aux_lr)",
        test_muon_annealing_follows_the_formula_for_muon_and_aux_rates,
    ),
    (
        "Muon rates tracked separately, read from the optimizer",
        test_muon_tracks_both_rates_separately_and_reads_them_from_the_optimizer,
    ),
    ("constant/linear/cosine, warm-up", test_every_schedule_and_warmup_follows_its_formula),
    ("each swept run its own rate", test_each_run_of_a_sweep_reports_its_own_applied_rate),
    (
        "each group's step = the weight change between two updates",
        test_each_groups_logged_step_is_the_weight_change_between_two_updates,
    ),
    (
        "Muon and Adam at one nominal rate: different steps",
        test_muon_and_adam_at_the_same_nominal_rate_take_different_steps,
    ),
    ("bfloat16 network: exact rates", test_a_bfloat16_network_reports_the_exact_scheduled_rates),
    (
        "explained variance every update",
        test_explained_variance_is_reported_every_update_and_at_most_1,
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
