"""A run directory that survives users' mistakes, through the real CLI: one writer at a time,
every refusal before anything is written, a full disk said plainly, and a metrics file that is
not the run's never overwritten unasked."""

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import read_rows, run_cli, start_cli

# 6x6, 16 games x 64 moves a update, a checkpoint every 4 updates (about 0.05 s an update here).
SMALL = ["--num-envs", "16", "--num-steps", "64", "--grid-size", "6", "--hidden-sizes", "32,32",
         "--checkpoint-every", "4", "--quiet"]  # fmt: skip
STEPS_PER_UPDATE = 16 * 64
EXIT_UNSAVED = 4


def listing(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`, with each file's size and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        found[str(path.relative_to(root))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
    return found


def wait_until(condition, timeout=120.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return condition()
        time.sleep(0.02)
    return False


def holder_pid(directory: Path) -> int | None:
    text = (directory / "run.lock").read_text() if (directory / "run.lock").exists() else ""
    match = re.search(r"pid (\d+)", text)
    return int(match.group(1)) if match else None


@pytest.fixture()
def started_run(tmp_path):
    """A run of 8 updates with its checkpoints and metrics file in tmp_path."""
    proc = run_cli([*SMALL, "--total-timesteps", str(8 * STEPS_PER_UPDATE), "--checkpoint-dir",
                    "run", "--metrics-out", "run.jsonl"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return tmp_path


def resume(updates: int, *extra: str) -> list[str]:
    """The command that resumes tmp_path/run and trains it to `updates` updates."""
    return [*SMALL, "--resume", "--checkpoint-dir", "run", "--total-timesteps",
            str(updates * STEPS_PER_UPDATE), *extra]  # fmt: skip


@contextlib.contextmanager
def holding(cwd: Path, updates: int, *extra: str):
    """A resume of cwd/run, yielded once it holds the run's lock; killed on the way out."""
    proc = start_cli(resume(updates, *extra), cwd)
    try:
        assert wait_until(lambda: holder_pid(cwd / "run") == proc.pid, proc=proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def test_two_resumes_at_once_the_second_is_refused_and_the_first_writes_every_row_once(
    started_run,
):
    cwd = started_run
    with holding(cwd, 40) as first:
        start = time.monotonic()
        second = run_cli(resume(40), cwd)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert str(cwd / "run") in lines[0] and f"pid {first.pid}" in lines[0]
        assert "host" in lines[0] and "compiled" not in second.stdout
        assert time.monotonic() - start < 30  # refused before compiling anything
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    rows = read_rows(cwd / "run.jsonl")
    assert [row["update"] for row in rows] == list(range(1, 41))  # whole, each exactly once


def test_a_sigkilled_holder_leaves_no_stale_lock_and_the_run_resumes(started_run):
    cwd = started_run
    with holding(cwd, 400) as holder:
        holder.send_signal(signal.SIGKILL)
    proc = run_cli(resume(12), cwd)
    assert proc.returncode == 0, proc.stderr
    assert [row["update"] for row in read_rows(cwd / "run.jsonl")] == list(range(1, 13))


def test_eval_reads_a_run_while_it_trains(started_run):
    with holding(started_run, 400):
        evaluation = run_cli(["--eval", "run", "--eval-episodes", "8"], started_run)
    assert evaluation.returncode == 0, evaluation.stderr
    assert "mean score" in evaluation.stdout


REFUSALS = {
    "a bad setting": ["--gamma", "2"],
    "a bad combination": ["--anneal-lr", "--lr-schedule", "cosine"],
    "games that do not split over the devices": ["--num-envs", "7"],
    "an existing metrics file that is not the run's": ["--metrics-out", "notes.txt"],
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_new_run_creates_nothing(tmp_path, case):
    (tmp_path / "notes.txt").write_text("my notes\n")
    before = listing(tmp_path)
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    # No --checkpoint-dir (it would default to runs/<date>-<time>), WandB asked for.
    proc = run_cli([*SMALL, *REFUSALS[case], "--wandb"], tmp_path, env_overrides=two_devices)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr  # one line, no traceback
    assert listing(tmp_path) == before  # no runs/, no wandb/, no metrics file, notes intact


def test_refusals_on_resume_leave_the_run_directory_as_it_was(started_run):
    cwd = started_run
    before = listing(cwd)
    for change in (["--num-envs", "32"], ["--lr", "0.1"], ["--num-steps", "7"]):
        proc = run_cli(resume(8, *change, "--wandb"), cwd)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert listing(cwd) == before


def test_a_busy_run_is_refused_and_left_as_it_was(started_run):
    cwd = started_run
    with holding(cwd, 400, "--checkpoint-every", "1000"):  # no save while we look
        time.sleep(1.0)  # let it open its metrics file
        before = listing(cwd / "run")
        proc = run_cli(resume(400, "--metrics-out", "other.jsonl", "--wandb"), cwd)
        assert proc.returncode == 2 and "in use by" in proc.stderr, proc.stderr
        assert listing(cwd / "run") == before
        assert not (cwd / "other.jsonl").exists() and not (cwd / "wandb").exists()


def test_a_metrics_file_that_is_not_the_runs_is_kept_unless_overwrite_is_asked(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    run = [*SMALL, "--total-timesteps", str(4 * STEPS_PER_UPDATE), "--checkpoint-dir", "none",
           "--metrics-out", "notes.txt"]  # fmt: skip
    refused = run_cli(run, tmp_path)
    assert refused.returncode == 2 and "--metrics-out-mode overwrite" in refused.stderr
    assert notes.read_text() == "my notes\n"
    replaced = run_cli([*run, "--metrics-out-mode", "overwrite"], tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert [row["update"] for row in read_rows(notes)] == [1, 2, 3, 4]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")  # an empty file holds nothing to lose
    ok = run_cli([*run[:-1], "empty.jsonl"], tmp_path)
    assert ok.returncode == 0, ok.stderr


def small_disk(path: Path):
    """A 200 KB tmpfs at `path` if this machine lets us mount one, else None."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(path)], capture_output=True
    )
    return path if mounted.returncode == 0 else None


def test_a_disk_that_fills_is_said_in_one_line_and_the_run_ends_with_status_4(tmp_path):
    disk = small_disk(tmp_path / "disk")
    # Without a mount, a cap on file sizes makes every checkpoint write fail the same way.
    limit = None if disk else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (65536,) * 2))
    where = disk or tmp_path / "disk"
    args = [*SMALL, "--hidden-sizes", "128,128", "--total-timesteps", str(24 * STEPS_PER_UPDATE),
            "--checkpoint-dir", str(where / "ckpt"),
            "--metrics-out", str(where / "m.jsonl")]  # fmt: skip
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).parents[1] / "train_snake_purejaxrl.py"), *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=limit,
            env={**os.environ, "HOME": str(tmp_path), "WANDB_MODE": "offline"},
        )  # fmt: skip
        leftovers = [p.name for p in (where / "ckpt").iterdir() if p.name != "run.lock"]
        metrics = (where / "m.jsonl").read_text()
    finally:
        if disk:
            subprocess.run(["umount", str(disk)], check=False)
    assert proc.returncode == EXIT_UNSAVED, proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("checkpoint: saving update 4 failed")
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr
    assert "no checkpoint saved: " in proc.stdout and "--eval" not in proc.stdout
    assert leftovers == []  # no half-written temporary checkpoint stays
    assert metrics.endswith("}\n")  # whole rows only
    assert all(line.startswith("{") for line in metrics.splitlines())
