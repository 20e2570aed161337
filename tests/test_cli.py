"""The real CLI in a subprocess: the documented commands, WandB read back from disk, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "train_snake_purejaxrl.py")
# Small sizes appended to the documented commands: 4 updates of 16 games x 32 moves on 6x6.
SMALL = ["--total-timesteps", "2048", "--num-envs", "16", "--num-steps", "32", "--grid-size", "6",
         "--hidden-sizes", "32,32"]  # fmt: skip
NUM_UPDATES = 4
DOCUMENTED = {
    "adam_annealed": "--lr 2.5e-4 --anneal-lr --wandb",
    "muon_annealed": "--use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --anneal-lr --wandb",
    "muon_constant": "--use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --wandb",
}


def run_cli(args, cwd, env_overrides=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({"HOME": str(cwd), "WANDB_MODE": "offline", **(env_overrides or {})})
    for key in drop:
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def wandb_records(cwd):
    """Every record of the single offline run under cwd/wandb, as dicts (`wandb leet inspect`)."""
    runs = sorted((Path(cwd) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", str(runs[0]), "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def history(records):
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def annealed(lr):
    return lr * (1 - np.arange(NUM_UPDATES) / NUM_UPDATES)


@pytest.fixture(scope="module")
def documented_runs(tmp_path_factory):
    """Run each documented command once (small sizes); keep the process and its WandB records."""
    results = {}
    for name, command in DOCUMENTED.items():
        cwd = tmp_path_factory.mktemp(name)
        proc = run_cli([*command.split(), *SMALL], cwd)
        assert proc.returncode == 0, proc.stderr
        results[name] = (proc, wandb_records(cwd))
    return results


def test_adam_command_logs_a_linearly_annealed_learning_rate_per_update(documented_runs):
    _, records = documented_runs["adam_annealed"]
    rows = history(records)
    assert len(rows) == NUM_UPDATES  # one row per update
    lr = [row["train/learning_rate"] for row in rows]
    np.testing.assert_allclose(lr, annealed(2.5e-4), rtol=1e-5)
    assert all("train/aux_learning_rate" not in row for row in rows)
    assert [row["env_steps"] for row in rows] == [512, 1024, 1536, 2048]


def test_muon_annealed_command_logs_both_rates_falling_to_zero(documented_runs):
    rows = history(documented_runs["muon_annealed"][1])
    assert len(rows) == NUM_UPDATES
    np.testing.assert_allclose([r["train/learning_rate"] for r in rows], annealed(0.02), rtol=1e-5)
    aux = [r["train/aux_learning_rate"] for r in rows]
    np.testing.assert_allclose(aux, annealed(2.5e-4), rtol=1e-5)


def test_muon_without_anneal_flag_keeps_both_rates_constant(documented_runs):
    rows = history(documented_runs["muon_constant"][1])
    assert len(rows) == NUM_UPDATES
    np.testing.assert_allclose([r["train/learning_rate"] for r in rows], 0.02, rtol=1e-6)
    np.testing.assert_allclose([r["train/aux_learning_rate"] for r in rows], 2.5e-4, rtol=1e-6)


def test_wandb_gets_the_config_every_metric_and_env_steps_as_x_axis(documented_runs):
    proc, records = documented_runs["muon_annealed"]
    run = next(r["run"] for r in records if r["type"] == "run")
    config = run["config"]["update"]
    assert config["USE_MUON"] is True and config["MUON_LR"] == 0.02
    assert config["ANNEAL_LR"] is True and config["NUM_UPDATES"] == NUM_UPDATES
    metric_defs = [r["metric"] for r in records if r["type"] == "metric"]
    assert {"glob_name": "train/*", "step_metric": "env_steps"}.items() <= {
        k: v for d in metric_defs for k, v in d.items() if k in ("glob_name", "step_metric")
    }.items()
    names = {"total_loss", "value_loss", "actor_loss", "entropy", "approx_kl", "clip_frac",
             "grad_norm", "episode_return", "episode_length", "episode_score",
             "episodes"}  # fmt: skip
    for row in history(records):
        assert {f"train/{n}" for n in names} <= set(row)
    assert "final mean score" in proc.stdout and "wandb sync" in proc.stdout


def test_metrics_out_writes_one_json_row_per_update_with_every_metric(tmp_path):
    out = tmp_path / "logs" / "metrics.jsonl"
    proc = run_cli([*SMALL, "--metrics-out", str(out), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    assert {"learning_rate", "entropy", "episode_score", "env_steps"} <= set(rows[0])
    assert "update " not in proc.stdout  # --quiet: no progress lines, only the summary
    assert "final mean score" in proc.stdout


def test_without_a_wandb_key_it_says_so_in_one_line_and_logs_offline(tmp_path):
    proc = run_cli([*SMALL, "--wandb", "--quiet"], tmp_path, drop=("WANDB_MODE", "WANDB_API_KEY"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("wandb:")]
    assert len(warnings) == 1 and "offline" in warnings[0]
    assert len(history(wandb_records(tmp_path))) == NUM_UPDATES  # nothing lost


def test_progress_lines_show_updates_speed_score_and_learning_rate(tmp_path):
    proc = run_cli([*SMALL, "--use-muon"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = [line for line in proc.stdout.splitlines() if line.startswith("update ")][-1]
    assert f"{NUM_UPDATES}/{NUM_UPDATES}" in last
    for part in ("steps/s", "score", "lr 2.00e-02", "aux 2.50e-04"):
        assert part in last


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--num-envs", "0"], "--num-envs"),
        (["--lr", "-1"], "--lr"),
        (["--grid-size", "2"], "--grid-size"),
        (["--num-envs", "16", "--num-steps", "32", "--num-minibatches", "7"], "--num-minibatches"),
        (
            ["--num-envs", "16", "--num-steps", "32", "--total-timesteps", "100"],
            "--total-timesteps",
        ),
        (["--wandb-mode", "sometimes"], "--wandb-mode"),
        (["--muon-ns-steps", "0"], "--muon-ns-steps"),
    ],
)
def test_bad_input_exits_with_one_line_naming_the_flag(tmp_path, args, flag):
    proc = run_cli(args, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert flag in lines[0] and "Traceback" not in proc.stderr
    assert any(word in lines[0] for word in ("must", "choose from"))  # says what is allowed


def test_help_documents_every_flag_with_its_default(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    flags = ["--lr", "--anneal-lr", "--no-anneal-lr", "--use-muon", "--muon-lr", "--aux-adam-lr",
             "--muon-ns-steps",
             "--total-timesteps", "--num-envs", "--num-steps", "--update-epochs",
             "--num-minibatches", "--gamma", "--gae-lambda", "--clip-eps", "--ent-coef",
             "--vf-coef", "--max-grad-norm", "--grid-size", "--seed", "--wandb",
             "--wandb-project", "--wandb-entity", "--wandb-name", "--wandb-mode",
             "--metrics-out", "--quiet"]  # fmt: skip
    for flag in flags:
        assert flag in proc.stdout, flag
    assert "(default: snake-purejaxrl)" in proc.stdout
