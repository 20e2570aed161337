"""Keeping the agent, through the real CLI: checkpoints that resume bit-exactly after SIGINT and
SIGKILL, refusals and broken directories in one line, evaluation and GIF, the NaN stop, and
outputs that fail without stopping training."""

import json
import random
import shutil
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import train_snake_purejaxrl as cli
import train_snake_purejaxrl_impl as impl
from snake_purejaxrl import checkpoints as checkpoints_module
from snake_purejaxrl.checkpoints import Checkpoints
from snake_purejaxrl.evaluation import evaluate_params
from snake_purejaxrl.run_dir import SavedRun, relocated
from snake_purejaxrl.training_loop import EXIT_NAN
from tests.cli_helpers import history, read_rows, run_cli, start_cli, wandb_records, without_time

# 48 updates of 16 games x 64 moves on 6x6 (about 0.05 s each here), a checkpoint every 4; the
# kept agent is the mean of the last 12 updates' weights (so resuming must restore it too).
ARGS = ["--total-timesteps", "49152", "--num-envs", "16", "--num-steps", "64", "--grid-size",
        "6", "--hidden-sizes", "32,32", "--checkpoint-every", "4", "--average-last", "0.25",
        "--quiet"]  # fmt: skip
CONFIG = {"TOTAL_TIMESTEPS": 49152, "NUM_ENVS": 16, "NUM_STEPS": 64, "GRID_SIZE": 6,
          "HIDDEN_SIZES": (32, 32), "AVERAGE_LAST": 0.25}  # fmt: skip
UPDATES = 48


def final_params(directory):
    """The trained weights and the kept (averaged) ones of the run's latest checkpoint."""
    parts = impl.make_parts(CONFIG)
    state, _, _ = Checkpoints(directory, read_only=True).restore(
        jax.eval_shape(impl.init_runs(parts))
    )
    return jax.device_get({"trained": state.params, "kept": state.average_params})


def assert_same_params(a, b):
    same = jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)
    assert all(jax.tree.leaves(same))


def saved_steps(directory):
    path = Path(directory)
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []


def wait_for_checkpoint_after(directory, step, proc, timeout=120):
    """Block until a checkpoint newer than `step` is on disk (or the process ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(s > step for s in saved_steps(directory)):
            return
        time.sleep(0.01)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its directory, checkpoints, rows and final parameters."""
    cwd = tmp_path_factory.mktemp("reference")
    proc = run_cli([*ARGS, "--checkpoint-dir", "ckpt", "--metrics-out", "rows.jsonl"], cwd)
    assert proc.returncode == 0, proc.stderr
    return {"cwd": cwd, "dir": cwd / "ckpt", "rows": read_rows(cwd / "rows.jsonl"),
            "params": final_params(cwd / "ckpt")}  # fmt: skip


def test_the_reference_run_wrote_a_row_per_update_and_its_final_checkpoint(reference):
    assert [r["update"] for r in reference["rows"]] == list(range(1, UPDATES + 1))
    assert saved_steps(reference["dir"]) == [40, 44, 48]  # the newest 3 kept, the final one last


def test_sigint_saves_prints_the_resume_command_and_resuming_is_bit_exact(reference, tmp_path):
    args = [*ARGS, "--checkpoint-dir", "ckpt", "--metrics-out", "rows.jsonl", "--wandb"]
    proc = start_cli(args, tmp_path)
    wait_for_checkpoint_after(tmp_path / "ckpt", 0, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    resume = [line.strip() for line in err.splitlines() if "--resume" in line]
    assert resume and resume[0].startswith("python train_snake_purejaxrl.py --resume")
    interrupted_at = saved_steps(tmp_path / "ckpt")[-1]
    assert interrupted_at < UPDATES
    assert len(read_rows(tmp_path / "rows.jsonl")) == interrupted_at

    command = resume[0].split()[2:]  # the exact printed command, minus "python <script>"
    done = run_cli(command, tmp_path)
    assert done.returncode == 0, done.stderr
    assert without_time(read_rows(tmp_path / "rows.jsonl")) == without_time(reference["rows"])
    assert_same_params(final_params(tmp_path / "ckpt"), reference["params"])

    # WandB: the same run id resumed, every env_steps logged exactly once across both processes.
    run_dirs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and len({d.name.split("-")[-1] for d in run_dirs} - {"1"}) == 1
    logged = [row["env_steps"] for d in run_dirs for row in history(wandb_records(d))]
    assert sorted(logged) == [1024 * u for u in range(1, UPDATES + 1)]


def test_sigkills_at_random_moments_then_resume_lose_no_row_and_repeat_none(reference, tmp_path):
    """Killed outright three times (each also leaving rows past its checkpoint and a row torn
    in half, as a kill mid-write would), stopped by SIGTERM, then by a double Ctrl-C: every
    --resume repairs the cut and goes on, and the run ends exactly as one never interrupted."""
    rng = random.Random(0)
    args = [*ARGS, "--checkpoint-dir", "ckpt", "--metrics-out", "rows.jsonl"]
    stops = ["kill", "kill", "kill", "term", "double-int"]
    last = 0
    for stop in stops:
        proc = start_cli(args + (["--resume"] if last else []), tmp_path)
        wait_for_checkpoint_after(tmp_path / "ckpt", last, proc)
        time.sleep(rng.uniform(0.0, 0.25))  # mid-chunk, mid-save or mid-write: wherever it lands
        if stop == "kill":
            proc.kill()
        elif stop == "term":
            proc.send_signal(signal.SIGTERM)
        else:  # a second Ctrl-C exits at once, keeping the last checkpoint
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        expected = {"kill": -signal.SIGKILL, "term": 143, "double-int": 130}[stop]
        assert proc.returncode in (expected, 0), (stop, proc.returncode)  # 0: it had finished
        last = saved_steps(tmp_path / "ckpt")[-1]
        if stop == "kill":
            with open(tmp_path / "rows.jsonl", "a") as f:  # as if cut while writing a row
                f.write('{"update": 999, "seed": 0}\n{"update": 1000, "se')
    done = run_cli([*args, "--resume"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert without_time(read_rows(tmp_path / "rows.jsonl")) == without_time(reference["rows"])
    assert_same_params(final_params(tmp_path / "ckpt"), reference["params"])


def copy_of(reference, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(reference["dir"], target)
    return target


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "change, flag",
    [
        (["--grid-size", "8"], "--grid-size"),
        (["--num-envs", "32"], "--num-envs"),
        (["--hidden-sizes", "64,64"], "--hidden-sizes"),
        (["--no-use-muon"], "--use-muon"),
        (["--view", "board"], "--view"),
        (["--lr", "0.001"], "--lr"),
        (["--total-timesteps", "20000"], "--total-timesteps"),
    ],  # fmt: skip
)
def test_resuming_with_a_setting_that_may_not_change_is_refused_in_one_line(
    reference, tmp_path, capsys, monkeypatch, change, flag
):
    monkeypatch.chdir(tmp_path)
    directory = copy_of(reference, tmp_path)
    status, _, err = run_main(["--resume", "--checkpoint-dir", str(directory), *change], capsys)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and flag in err and "Traceback" not in err
    assert saved_steps(directory) == [40, 44, 48]  # nothing written or lost


def test_a_new_run_refuses_a_directory_that_holds_one(reference, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    directory = copy_of(reference, tmp_path)
    status, _, err = run_main(["--checkpoint-dir", str(directory)], capsys)
    assert status == 2 and "--resume" in err and len(err.strip().splitlines()) == 1


def test_resuming_a_copy_trains_on_and_leaves_the_originals_metrics_file_alone(reference, tmp_path):
    original_rows = (reference["cwd"] / "rows.jsonl").read_text()
    directory = copy_of(reference, tmp_path)
    more = ["--resume", "--checkpoint-dir", str(directory), "--total-timesteps", str(52 * 1024)]
    proc = run_cli(more, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming a copy of" in proc.stderr and "--metrics-out" in proc.stderr
    assert (reference["cwd"] / "rows.jsonl").read_text() == original_rows
    assert saved_steps(directory)[-1] == 52 and saved_steps(reference["dir"])[-1] == UPDATES


def test_a_moved_run_keeps_its_outputs_and_a_copy_gets_new_wandb_runs(reference, tmp_path):
    old, gone, new = str(reference["dir"]), str(tmp_path / "gone"), str(tmp_path / "new")
    meta = {"wandb_ids": ["abc"]}
    # Moved (the old directory gone): the same WandB runs; a metrics file inside moves along,
    # one outside is written as before.
    inside = {"CHECKPOINT_DIR": gone, "METRICS_OUT": f"{gone}/logs/rows.jsonl"}
    options, kept, notices = relocated(inside, meta, new, {})
    assert options["METRICS_OUT"] == f"{new}/logs/rows.jsonl" and kept == meta and not notices
    outside = {"CHECKPOINT_DIR": gone, "METRICS_OUT": "/x/rows.jsonl"}
    assert relocated(outside, meta, new, {}) == (outside, meta, [])
    # Copied (the old directory still holds its run): new WandB runs, the original's file alone.
    options, copied, notices = relocated({**outside, "CHECKPOINT_DIR": old}, meta, new, {})
    assert options["METRICS_OUT"] is None and copied["wandb_ids"] is None
    assert len(notices) == 2 and all(old in notice for notice in notices)
    inside_copy = {"CHECKPOINT_DIR": old, "METRICS_OUT": f"{old}/rows.jsonl"}
    options, copied, _ = relocated(inside_copy, meta, new, {})
    assert options["METRICS_OUT"] == f"{new}/rows.jsonl" and copied["wandb_ids"] is None
    # The same directory, by any path, is no move at all.
    same = f"{old}/../{Path(old).name}"
    assert relocated(inside_copy, meta, same, {}) == (inside_copy, meta, [])


def corrupt(directory):
    """Overwrite every array file of the newest checkpoint with junk."""
    newest = Path(directory) / str(saved_steps(directory)[-1])
    files = [p for p in (newest / "state").rglob("*") if p.is_file()]
    assert files
    for path in files:
        path.write_bytes(b"\x00junk" * 7)


@pytest.mark.parametrize("mode", ["--resume", "--eval"])
@pytest.mark.parametrize("broken", ["missing", "empty", "foreign", "corrupt"])
def test_a_missing_corrupt_or_foreign_checkpoint_gets_one_clear_line(
    reference, tmp_path, capsys, monkeypatch, mode, broken
):
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "ckpt"
    if broken == "empty":
        directory.mkdir()
    elif broken == "foreign":
        (directory / "7").mkdir(parents=True)
        (directory / "7" / "notes.txt").write_text("not a checkpoint")
    elif broken == "corrupt":
        directory = copy_of(reference, tmp_path)
        corrupt(directory)
    args = ["--checkpoint-dir", str(directory)] if mode == "--resume" else []
    args = [mode, *args] if mode == "--resume" else [mode, str(directory)]
    status, _, err = run_main(args, capsys)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(directory.name) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"] or broken == "missing"


def test_eval_prints_and_writes_the_figures_and_renders_a_gif_with_a_frame_per_move(
    reference, tmp_path
):
    args = ["--eval", str(reference["dir"]), "--eval-episodes", "20", "--seed", "3",
            "--metrics-out", "eval.json", "--render-gif", "game.gif"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads((tmp_path / "eval.json").read_text())
    keys = {"episodes", "mean_score", "median_score", "max_score", "win_rate", "mean_length",
            "steps_per_food"}  # fmt: skip
    assert keys <= set(figures)
    assert figures["episodes"] == 20 and 0 <= figures["win_rate"] <= 1
    assert 0 <= figures["median_score"] <= figures["max_score"] and figures["mean_length"] > 0
    assert "mean score" in proc.stdout and "win rate" in proc.stdout

    gif = Image.open(tmp_path / "game.gif")
    heads = []
    for i in range(gif.n_frames):
        gif.seek(i)
        board = np.asarray(gif.convert("RGB"))[16:]  # below the caption strip
        centres = board[6::12, 6::12].astype(int)  # one pixel per 12-pixel cell, 6x6 cells
        yellow = (centres[..., 0] > 200) & (centres[..., 1] > 180) & (centres[..., 2] < 120)
        assert yellow.sum() == 1, f"frame {i}: one head"
        heads.append(np.argwhere(yellow)[0])
    steps = [int(np.abs(a - b).sum()) for a, b in zip(heads, heads[1:])]
    assert all(step == 1 for step in steps[:-1])  # one frame per move: the head moves one cell
    assert steps[-1] <= 1  # the last move may end against a wall
    moves = int(proc.stdout.split(" moves, score")[0].split()[-1])
    assert gif.n_frames == moves + 1  # the start, then a frame per move

    # The agent evaluated is the kept one (the weights' mean over the tail), not the last weights.
    config, params = SavedRun(reference["dir"]).config, reference["params"]
    (kept,) = evaluate_params(config, params["kept"], 20, True, 3)
    (last,) = evaluate_params(config, params["trained"], 20, True, 3)
    assert figures == kept and figures != last


def test_a_non_finite_loss_stops_keeps_the_last_good_checkpoint_and_the_rows(reference, tmp_path):
    """A food reward at float32's limit makes the value loss overflow once food is eaten."""
    directory = copy_of(reference, tmp_path)
    shutil.copy(reference["cwd"] / "rows.jsonl", tmp_path / "rows.jsonl")
    args = ["--resume", "--checkpoint-dir", str(directory), "--total-timesteps", "98304",
            "--food-reward", "3e38", "--metrics-out", "rows.jsonl"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert proc.returncode == EXIT_NAN
    line = proc.stderr.strip().splitlines()[-1]
    bad_update = int(line.split(":")[0].split()[-1])
    assert "is not finite" in line and "total_loss" in line
    assert saved_steps(directory)[-1] == bad_update - 1  # the last good state, never the NaN one
    assert [r["update"] for r in read_rows(tmp_path / "rows.jsonl")] == list(range(1, bad_update))
    assert (
        Checkpoints(directory, read_only=True)
        .restore(
            jax.eval_shape(impl.init_runs(impl.make_parts({**CONFIG, "TOTAL_TIMESTEPS": 98304})))
        )[0]
        .update[0]
        == bad_update - 1
    )


def test_a_metrics_file_failing_mid_run_is_reported_once_and_training_finishes(tmp_path):
    """/dev/full: opening works, every write fails with 'no space left on device'."""
    proc = run_cli([*ARGS, "--checkpoint-dir", "ckpt", "--metrics-out", "/dev/full"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    complaints = [line for line in proc.stderr.splitlines() if line.startswith("metrics:")]
    assert len(complaints) == 1 and "/dev/full" in complaints[0]
    assert saved_steps(tmp_path / "ckpt")[-1] == UPDATES  # the checkpoints all went on


def test_a_run_without_averaged_weights_keeps_the_checkpoint_layout_of_older_versions(tmp_path):
    """Its state on disk holds exactly the fields every earlier version wrote, so their
    checkpoints still resume and evaluate."""
    init = impl.init_runs(impl.make_parts({**CONFIG, "AVERAGE_LAST": 0.0}))
    runner = init()
    checkpoints = Checkpoints(tmp_path / "ckpt")
    checkpoints.save(1, runner, {"total_loss": np.zeros((1, 1))}, {"config": {}})
    ocp = checkpoints_module._orbax()
    on_disk = checkpoints.manager.restore(
        1, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    ).state
    assert set(on_disk) == {"params", "opt_state", "env_state", "obs", "episode_return", "key",
                            "update", "learning_rates", "mirrored"}  # fmt: skip
    restored, _, _ = checkpoints.restore(jax.eval_shape(init))
    assert restored.average_params is None
    assert_same_params(jax.device_get(restored.params), jax.device_get(runner.params))


@pytest.mark.parametrize("flag", ["--metrics-out", "--checkpoint-dir"])
def test_an_unwritable_output_is_refused_before_compiling(tmp_path, capsys, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    start_time = time.perf_counter()
    status, out, err = run_main([flag, "/proc/nope/out"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and flag in err
    assert "compiled" not in out and time.perf_counter() - start_time < 10
