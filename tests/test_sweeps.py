"""WandB sweeps drive the CLI: every committed sweep file, one sampled configuration, the command
line wandb's own agent code builds for it, run as the agent runs it (WANDB_SWEEP_ID and
WANDB_RUN_ID set, offline), and the run read back from disk."""

import random
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

import train_snake_purejaxrl as cli
from tests.cli_helpers import ROOT, run_cli, wandb_records

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
TINY = ["--total-timesteps", "2048", "--num-envs", "16", "--num-steps", "32", "--grid-size", "6",
        "--hidden-sizes", "32,32", "--eval-episodes", "16", "--checkpoint-dir", "none"]  # fmt: skip


def sample(parameters: dict, rng: random.Random) -> dict:
    """One configuration of a sweep's parameters, as its `random` method would draw it."""
    chosen = {}
    for name, spec in parameters.items():
        if "value" in spec:
            chosen[name] = spec["value"]
        elif "values" in spec:
            chosen[name] = rng.choice(spec["values"])
        elif spec.get("distribution") == "log_uniform_values":
            low, high = spec["min"], spec["max"]
            chosen[name] = low * (high / low) ** rng.random()
        else:
            raise AssertionError(f"{name}: a parameter kind this test does not draw: {spec}")
    return chosen


def test_the_committed_sweeps_cover_adam_and_muon():
    assert {path.stem for path in SWEEPS} >= {"adam", "muon"}


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_an_agent_runs_a_sampled_configuration_into_its_own_run(path, tmp_path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] == "train_snake_purejaxrl.py" and sweep["method"] in ("bayes", "random")
    chosen = sample(sweep["parameters"], random.Random(path.stem))
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in chosen.items()}})
    agent_env = {"WANDB_SWEEP_ID": "sweep0001", "WANDB_RUN_ID": f"agentrun{path.stem}"}
    proc = run_cli([*args["args"], *TINY], tmp_path, env_overrides=agent_env)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-agentrun{path.stem}")
    records = wandb_records(run_dir)
    config = next(r["run"] for r in records if r["type"] == "run")["config"]["update"]
    for name, value in chosen.items():
        logged = config[name.upper().replace("-", "_")]
        assert logged == pytest.approx(value), name  # the sampled value reached the run
    summary = {}
    for record in records:
        if record["type"] == "summary":
            summary.update(record["summary"].get("update", {}))
    assert sweep["metric"]["name"] in summary and sweep["metric"]["goal"] == "maximize"


def test_under_an_agent_several_seeds_or_rates_in_one_process_are_refused(tmp_path):
    agent_env = {"WANDB_SWEEP_ID": "sweep0001", "WANDB_RUN_ID": "agentrun"}
    for many in (["--num-seeds=2"], ["--lr-sweep=[1e-4, 3e-4]"]):
        proc = run_cli([*many, *TINY], tmp_path, env_overrides=agent_env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "sweep agent" in lines[0]
        assert not Path(tmp_path / "wandb").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--flood-fill=False"], {"FLOOD_FILL": False}),
        (["--use-muon=True", "--anneal-lr=false"], {"USE_MUON": True, "ANNEAL_LR": False}),
        (["--mirror=1", "--hunger=0"], {"MIRROR": True, "HUNGER": False}),
        (["--flood-fill", "--no-mirror"], {"FLOOD_FILL": True, "MIRROR": False}),
        (["--hidden-sizes=[64, 32]"], {"HIDDEN_SIZES": (64, 32)}),
        (["--lr-sweep=[1e-4, 3e-4]"], {"LR_SWEEP": (1e-4, 3e-4)}),
    ],
)
def test_switches_and_lists_take_the_agents_forms(argv, expected):
    assert cli.parse_given(cli.build_parser(), argv) == expected


def test_a_bad_switch_value_gets_one_line_naming_the_flag(tmp_path):
    proc = run_cli(["--flood-fill=maybe"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--flood-fill" in proc.stderr and "True or False" in proc.stderr


def test_flood_fill_false_really_turns_the_flood_fill_off(tmp_path):
    proc = run_cli(["--flood-fill=False", *TINY, "--wandb"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    config = next(r["run"] for r in records if r["type"] == "run")["config"]["update"]
    assert config["FLOOD_FILL"] is False  # the default is on
