"""Running the real CLI in a subprocess and reading back what it wrote (shared by the tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "train_snake_purejaxrl.py")


def cli_env(cwd, env_overrides=None, drop=()):
    """The environment of a CLI subprocess: HOME in `cwd`, WandB offline unless dropped."""
    env = {**os.environ, "HOME": str(cwd), "WANDB_MODE": "offline", **(env_overrides or {})}
    for key in drop:
        env.pop(key, None)
    return env


def run_cli(args, cwd, env_overrides=None, drop=(), timeout=300):
    """Run the CLI to the end: a CompletedProcess with text stdout and stderr."""
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=cwd, env=cli_env(cwd, env_overrides, drop),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def start_cli(args, cwd, env_overrides=None):
    """Start the CLI and return at once (a Popen with text pipes)."""
    return subprocess.Popen(
        [sys.executable, SCRIPT, *args], cwd=cwd, env=cli_env(cwd, env_overrides), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def wandb_records(run_dir):
    """Every record of one offline WandB run directory, as dicts (`wandb leet inspect`)."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", str(run_dir), "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def history(records):
    """The metric rows (train/* with env_steps) among a run's records."""
    items = [r["history"]["item"] for r in records if r["type"] == "history"]
    return [item for item in items if "train/learning_rate" in item]


def read_rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]
