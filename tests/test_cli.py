"""The real CLI: the documented commands in subprocesses with WandB read back from disk, every
flag from the settings declaration, and bad input answered in one line."""

import json
from pathlib import Path

import numpy as np
import pytest

import train_snake_purejaxrl as cli
import train_snake_purejaxrl_impl as impl
from snake_purejaxrl.config import RUN_OPTIONS, SETTING_BY_KEY, SETTINGS
from snake_purejaxrl.evaluation import eval_env
from snake_purejaxrl.settings import Bool, Choice, Float, Int, Numbers, Text
from tests.cli_helpers import history, run_cli, wandb_records

# Small sizes appended to the documented commands: 4 updates of 16 games x 32 moves on 6x6.
SMALL = ["--total-timesteps", "2048", "--num-envs", "16", "--num-steps", "32", "--grid-size", "6",
         "--hidden-sizes", "32,32"]  # fmt: skip
NUM_UPDATES = 4
DOCUMENTED = {
    "adam_annealed": "--lr 2.5e-4 --anneal-lr --wandb",
    "muon_annealed": "--use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --anneal-lr --wandb",
    "muon_constant": "--use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --wandb",
}


def single_run_records(cwd):
    runs = sorted((Path(cwd) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return wandb_records(runs[0])


def annealed(lr):
    return lr * (1 - np.arange(NUM_UPDATES) / NUM_UPDATES)


@pytest.fixture(scope="module")
def documented_runs(tmp_path_factory):
    """Run each documented command once (small sizes); keep the process and its WandB records."""
    results = {}
    for name, command in DOCUMENTED.items():
        cwd = tmp_path_factory.mktemp(name)
        proc = run_cli([*command.split(), *SMALL, "--eval-episodes", "8"], cwd)
        assert proc.returncode == 0, proc.stderr
        results[name] = (proc, single_run_records(cwd))
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


def test_wandb_gets_every_setting_in_its_config_and_env_steps_as_x_axis(documented_runs):
    proc, records = documented_runs["muon_annealed"]
    run = next(r["run"] for r in records if r["type"] == "run")
    config = run["config"]["update"]
    assert set(SETTING_BY_KEY) <= set(config)  # generated from the declaration
    assert config["USE_MUON"] is True and config["MUON_LR"] == 0.02
    assert config["ANNEAL_LR"] is True and config["NUM_UPDATES"] == NUM_UPDATES
    assert config["GRID_SIZE"] == 6 and config["FOOD_REWARD"] == 1.0  # game settings too
    metric_defs = [r["metric"] for r in records if r["type"] == "metric"]
    assert {"glob_name": "train/*", "step_metric": "env_steps"}.items() <= {
        k: v for d in metric_defs for k, v in d.items() if k in ("glob_name", "step_metric")
    }.items()
    names = {"total_loss", "value_loss", "actor_loss", "entropy", "approx_kl", "clip_frac",
             "grad_norm", "episode_return", "episode_length", "episode_score",
             "episodes", "explained_variance", "update_rms/muon", "update_ratio/muon",
             "param_norm/muon", "update_rms/aux", "update_ratio/aux", "param_norm/aux"}  # fmt: skip
    for row in history(records):
        assert {f"train/{n}" for n in names} <= set(row)
    assert "final mean score" in proc.stdout and "wandb sync" in proc.stdout


def test_the_end_of_a_wandb_run_logs_the_final_agents_game_and_evaluation(documented_runs):
    proc, records = documented_runs["adam_annealed"]
    summary = {}
    for record in records:
        if record["type"] == "summary":
            summary.update(record["summary"].get("update", {}))
    for key in ("mean_score", "median_score", "max_score", "win_rate", "steps_per_food"):
        assert f"eval/{key}" in summary, key
    assert summary["eval/episodes"] == 8
    assert summary.get("eval/game._type") == "video-file"
    assert summary["eval/game.path"].endswith(".gif")
    assert "evaluation: mean score" in proc.stdout


def test_metrics_out_writes_one_json_row_per_update_with_every_metric(tmp_path):
    out = tmp_path / "logs" / "metrics.jsonl"
    proc = run_cli([*SMALL, "--metrics-out", str(out), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    expected = {
        "learning_rate",
        "entropy",
        "episode_score",
        "env_steps",
        "seed",
        "lr",
        "explained_variance",
        "aux_learning_rate",  # the default optimizer is Muon: two groups, two rates
        "update_rms/muon",
        "update_ratio/aux",
        "param_norm/muon",
    }
    assert all(expected <= set(row) for row in rows)
    assert "update " not in proc.stdout  # --quiet: no progress lines, only the summary
    assert "final mean score" in proc.stdout


def test_without_a_wandb_key_it_says_so_in_one_line_and_logs_offline(tmp_path):
    args = [*SMALL, "--wandb", "--quiet", "--checkpoint-dir", "none"]
    proc = run_cli(args, tmp_path, drop=("WANDB_MODE", "WANDB_API_KEY"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("wandb:")]
    assert len(warnings) == 1 and "offline" in warnings[0]
    rows = history(single_run_records(tmp_path))
    assert len(rows) == NUM_UPDATES  # nothing lost


def test_progress_lines_show_updates_speed_score_and_learning_rate(tmp_path):
    proc = run_cli([*SMALL, "--checkpoint-dir", "none"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = [line for line in proc.stdout.splitlines() if line.startswith("update ")][-1]
    assert f"{NUM_UPDATES}/{NUM_UPDATES}" in last
    for part in ("steps/s", "score", "lr 1.00e-02", "aux 2.50e-04"):  # Muon's default rates
        assert part in last


# --------------------------------------------------------------------------- flags, in-process
DECLARED = [*SETTINGS, *RUN_OPTIONS]


def run_main(argv, capsys):
    """The CLI's main() in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_help_lists_every_setting_and_option_with_its_doc_and_default(capsys):
    status, out, _ = run_main(["--help"], capsys)
    assert status == 0
    text = " ".join(out.split())  # argparse wraps lines
    for setting in DECLARED:
        assert setting.flag in text, setting.key
        assert " ".join(setting.doc.split()[:4]) in text, setting.key
        assert f"(default: {setting.show(setting.default)})" in text, setting.key
        if isinstance(setting, Bool):
            assert f"--no-{setting.flag[2:]}" in text, setting.key
    for key in ("FOOD_REWARD", "DEATH_REWARD", "STEP_REWARD", "MAX_STEPS", "STARVATION_STEPS"):
        assert SETTING_BY_KEY[key].flag in text


def bad_value(setting):
    """A value the declaration must refuse, as typed on the command line."""
    if isinstance(setting, Choice):
        return "bogus"
    if isinstance(setting, Numbers):
        return "0,-1"
    if isinstance(setting, Int):
        return str(setting.low - 1) if setting.low is not None else "2.5"
    if isinstance(setting, Float):
        if setting.low is not None:
            return str(setting.low - 1)
        return "nan"
    raise AssertionError(setting)


CHECKED = [s for s in DECLARED if not isinstance(s, (Bool, Text))]


@pytest.mark.parametrize("setting", CHECKED, ids=[s.key for s in CHECKED])
def test_a_bad_value_of_every_setting_gets_one_line_naming_its_flag(setting, capsys):
    status, out, err = run_main([setting.flag, bad_value(setting)], capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert setting.flag in lines[0] and "Traceback" not in err
    assert "must" in lines[0]  # says what is allowed


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--num-envs", "16", "--num-steps", "32", "--num-minibatches", "7"], "--num-minibatches"),
        (
            ["--num-envs", "16", "--num-steps", "32", "--total-timesteps", "100"],
            "--total-timesteps",
        ),  # fmt: skip
        (["--wandb-mode", "sometimes"], "--wandb-mode"),
        (["--lr", "abc"], "--lr"),
        (["--hidden-sizes", "32,x"], "--hidden-sizes"),
        (["--anneal-lr", "--lr-schedule", "cosine"], "--anneal-lr"),
        (["--food-distance", "--no-flood-fill"], "--food-distance"),  # the fill computes it
        (["--lr-sweep", "1e-4,1e-3", "--use-muon"], "--lr-sweep"),
        (["--use-muon", "--lr", "1e-3"], "--lr"),  # Muon would never read it
        (["--lr", "1e-3", "--muon-lr", "0.02"], "--muon-lr"),  # Adam would never read it
        (["--no-use-muon", "--aux-adam-lr", "1e-3"], "--aux-adam-lr"),
        (["--render-gif", "x.gif"], "--render-gif"),
        (["--eval", "somewhere", "--grid-size", "8"], "--eval"),
        (["--resume"], "--resume"),
        (["--anneal-lr=yes"], "--anneal-lr"),
    ],
)
def test_bad_combinations_get_one_line_naming_the_flag(args, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_main(args, capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert flag in lines[0] and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was made


@pytest.mark.parametrize(
    "argv, muon, rates",
    [
        ([], True, {"MUON_LR": 0.01, "AUX_ADAM_LR": 2.5e-4}),  # the study's winner
        (["--lr", "1e-3"], False, {"LR": 1e-3}),  # an Adam rate picks Adam
        (["--lr-sweep", "1e-4,1e-3"], False, {"LR_SWEEP": (1e-4, 1e-3)}),
        (["--no-use-muon"], False, {"LR": 2.5e-4}),
        (["--use-muon=False"], False, {"LR": 2.5e-4}),
        (["--use-muon=auto", "--lr", "1e-3"], False, {"LR": 1e-3}),
        (["--muon-lr-sweep", "0.01,0.02"], True, {"MUON_LR_SWEEP": (0.01, 0.02)}),
        (["--muon-lr", "0.02", "--lr-schedule", "cosine"], True, {"MUON_LR": 0.02}),
    ],
)
def test_muon_is_the_default_optimizer_unless_an_adam_rate_is_given(argv, muon, rates):
    config = impl.validate_config(cli.parse_given(cli.build_parser(), argv))
    assert config["USE_MUON"] is muon
    assert {key: config[key] for key in rates} == rates
    assert impl.validate_config({})["USE_MUON"] is True  # the Python API picks alike
    assert impl.validate_config({"LR": 1e-3})["USE_MUON"] is False


def test_training_only_rules_reach_the_training_env_and_never_the_scored_one():
    config = impl.validate_config(
        {"GRID_SIZE": 8, "APPROACH_REWARD": 0.05, "STARVATION_IS_DEATH": True,
         "LONG_START_PROB": 0.3, "STARVATION_STEPS": 40, "WIN_REWARD": 5.0}
    )  # fmt: skip
    trained, scored = impl.make_parts(config).env, eval_env(config)
    assert (trained.approach_reward, trained.starvation_is_death) == (0.05, True)
    assert (trained.long_start_prob, trained.starvation_steps) == (0.3, 40)
    assert trained.win_reward == 5.0 and scored.win_reward == 0.0
    assert (scored.approach_reward, scored.starvation_is_death) == (0.0, False)
    assert (scored.long_start_prob, scored.starvation_steps) == (0.0, 64)


def test_the_game_settings_reach_the_env():
    config = impl.validate_config(
        {
            "GRID_SIZE": 8,
            "FOOD_REWARD": 2.0,
            "DEATH_REWARD": -3.0,
            "STEP_REWARD": -0.01,
            "MAX_STEPS": 500,
            "STARVATION_STEPS": 40,
        }  # fmt: skip
    )
    env = impl.make_parts(config).env
    rules = (env.grid_size, env.food_reward, env.death_reward, env.step_reward)
    assert rules == (8, 2.0, -3.0, -0.01)
    assert (env.max_steps, env.starvation_steps) == (500, 40)
    defaults = impl.make_parts({"GRID_SIZE": 8}).env  # 'auto': the env's own defaults
    assert (defaults.max_steps, defaults.starvation_steps) == (64 * 64, 64)
