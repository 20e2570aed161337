"""Many runs side by side and many devices, through the real CLI: seeds and learning-rate sweeps
in one compile, a vmapped run checkpointed like a single one, one WandB run per configuration,
games sharded over 2 CPU devices, and two processes training one run (jax.distributed)."""

import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.cli_helpers import (
    ROOT,
    SCRIPT,
    cli_env,
    history,
    read_rows,
    run_cli,
    wandb_records,
    without_time,
)

# 8 updates of 16 games x 32 moves on 6x6.
SMALL = ["--total-timesteps", "4096", "--num-envs", "16", "--num-steps", "32", "--grid-size", "6",
         "--hidden-sizes", "32,32", "--quiet", "--checkpoint-dir", "none"]  # fmt: skip
TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
METRICS = ("total_loss", "value_loss", "actor_loss", "entropy", "grad_norm", "episode_score",
           "episodes", "learning_rate", "env_steps")  # fmt: skip


def assert_rows_close(rows, expected, atol=1e-6, rtol=1e-4):
    """Same updates and, metric by metric, equal within float32 re-association."""
    assert [r["update"] for r in rows] == [r["update"] for r in expected]
    for name in METRICS:
        got = np.array([r[name] for r in rows], float)
        np.testing.assert_allclose(got, [r[name] for r in expected], rtol=rtol, atol=atol,
                                   err_msg=name)  # fmt: skip


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Seeds 5 and 6 side by side (the reference for several tests)."""
    cwd = tmp_path_factory.mktemp("two_seeds")
    proc = run_cli([*SMALL, "--seed", "5", "--num-seeds", "2", "--metrics-out", "rows.jsonl"], cwd)
    assert proc.returncode == 0, proc.stderr
    return read_rows(cwd / "rows.jsonl")


def test_seed_s_plus_i_of_a_multi_seed_run_is_the_same_training_as_that_seed_alone(
    two_seeds, tmp_path
):
    assert sorted({r["seed"] for r in two_seeds}) == [5, 6]
    assert len(two_seeds) == 2 * 8
    proc = run_cli([*SMALL, "--seed", "6", "--metrics-out", "alone.jsonl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    alone = read_rows(tmp_path / "alone.jsonl")
    # Stated tolerance: rtol 1e-4 / atol 1e-6 (float32 sums in another order when batched).
    assert_rows_close([r for r in two_seeds if r["seed"] == 6], alone)
    seed5 = [r["total_loss"] for r in two_seeds if r["seed"] == 5]
    assert not np.allclose(seed5, [r["total_loss"] for r in alone])  # a different seed differs


def test_a_vmapped_run_resumes_bit_exactly_like_a_single_one(two_seeds, tmp_path):
    """Stop after 4 updates, resume to 8 (constant LR: the same run as one never stopped)."""
    args = [*SMALL[:-2], "--seed", "5", "--num-seeds", "2", "--checkpoint-dir", "ckpt",
            "--checkpoint-every", "2", "--metrics-out", "rows.jsonl"]  # fmt: skip
    first = run_cli([*args, "--total-timesteps", "2048"], tmp_path)
    assert first.returncode == 0, first.stderr
    resumed = run_cli([*args, "--resume", "--total-timesteps", "4096"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert without_time(read_rows(tmp_path / "rows.jsonl")) == without_time(two_seeds)


def test_the_learning_curve_of_seeds_side_by_side_scores_each_seed_at_each_checkpoint(tmp_path):
    """bench.learning_curve on a 2-seed run: a curve per seed, whose last point is what --eval
    scores for that seed (the same agent, games and evaluation seed)."""
    args = [*SMALL[:-2], "--seed", "5", "--num-seeds", "2", "--checkpoint-dir", "ckpt",
            "--checkpoint-every", "4"]  # fmt: skip
    assert (proc := run_cli(args, tmp_path)).returncode == 0, proc.stderr
    curve = subprocess.run(
        [sys.executable, "-m", "bench.learning_curve", str(tmp_path / "ckpt"), "--labels", "small",
         "--episodes", "16", "--json", str(tmp_path / "curve.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert curve.returncode == 0, curve.stderr
    curves = json.loads((tmp_path / "curve.json").read_text())
    assert list(curves) == ["small seed5", "small seed6"]
    assert [[p["update"] for p in points] for points in curves.values()] == [[4, 8], [4, 8]]
    evaluated = run_cli(["--eval", "ckpt", "--eval-episodes", "16", "--metrics-out", "eval.jsonl"],
                        tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    by_seed = {row["seed"]: row for row in read_rows(tmp_path / "eval.jsonl")}
    for seed, points in zip((5, 6), curves.values()):
        last = {k: v for k, v in points[-1].items() if k in by_seed[seed]}
        assert last == {k: v for k, v in by_seed[seed].items() if k != "seed"}


def test_a_learning_rate_sweep_trains_every_rate_and_seed_and_ends_with_a_table(tmp_path):
    args = [*SMALL, "--lr-sweep", "1e-4,1e-3", "--num-seeds", "2", "--anneal-lr", "--wandb",
            "--wandb-name", "sweep", "--eval-episodes", "4",
            "--metrics-out", "rows.jsonl"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "rows.jsonl")
    runs = sorted({(r["lr"], r["seed"]) for r in rows})
    assert runs == [(1e-4, 0), (1e-4, 1), (1e-3, 0), (1e-3, 1)]
    for row in rows:  # each run's learning_rate is its own rate, annealed
        assert row["learning_rate"] == pytest.approx(row["lr"] * (1 - (row["update"] - 1) / 8))
    table = proc.stdout[proc.stdout.index("| rate |") :]
    assert "| 0.0001 |" in table and "| 0.001 |" in table

    # WandB: one run per configuration, all in the group the console named.
    group = re.search(r"wandb: group (\S+),", proc.stdout).group(1)
    run_dirs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 4
    seen = set()
    for run_dir in run_dirs:
        records = wandb_records(run_dir)
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["run_group"] == group
        config = run["config"]["update"]
        seen.add((config["LR"], config["SEED"]))
        rates = [row["train/learning_rate"] for row in history(records)]
        assert rates == pytest.approx([config["LR"] * (1 - u / 8) for u in range(8)])
    assert sorted(seen) == runs


def test_bad_run_combinations_are_refused_in_one_line(tmp_path):
    for args, flag in ((["--num-envs", "15"], "--num-envs"), (["--devices", "3"], "--devices")):
        proc = run_cli([*SMALL, *args], tmp_path, env_overrides=TWO_DEVICES)
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1 and flag in proc.stderr


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("one_device")
    args = [*SMALL, "--devices", "1", "--num-seeds", "2", "--metrics-out", "rows.jsonl"]
    proc = run_cli(args, cwd, env_overrides=TWO_DEVICES)
    assert proc.returncode == 0, proc.stderr
    return read_rows(cwd / "rows.jsonl")


def test_games_sharded_over_two_devices_train_as_on_one(one_device, tmp_path):
    """Seeds x devices together (this combination once hung XLA:CPU), under a timeout."""
    args = [*SMALL, "--num-seeds", "2", "--metrics-out", "rows.jsonl"]
    proc = run_cli(args, tmp_path, env_overrides=TWO_DEVICES, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert_rows_close(read_rows(tmp_path / "rows.jsonl"), one_device)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_run_and_only_process_0_writes(one_device, tmp_path):
    port = free_port()
    procs = []
    for pid in (0, 1):
        args = [*SMALL[:-2], "--num-seeds", "2", "--checkpoint-dir", "ckpt",
                "--metrics-out", f"rows{pid}.jsonl", "--coordinator-address",
                f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(pid)]  # fmt: skip
        env = cli_env(tmp_path, {"JAX_PLATFORMS": "cpu"})
        command = [sys.executable, SCRIPT, *args]
        procs.append(subprocess.Popen(command, cwd=tmp_path, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outputs]
    assert (tmp_path / "rows0.jsonl").exists() and not (tmp_path / "rows1.jsonl").exists()
    assert "final mean score" in outputs[0][0] and "final mean score" not in outputs[1][0]
    assert (tmp_path / "ckpt" / "8").is_dir()  # orbax saved from both processes
    assert_rows_close(read_rows(tmp_path / "rows0.jsonl"), one_device)
