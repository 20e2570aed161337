"""What the benchmarks share: the machine line, running the real CLI, and reading its rows.

Learning benchmarks train through the CLI itself (a subprocess with --metrics-out), so what they
measure is what a user runs; throughput benchmarks time `impl.make_chunk` in-process, the same
jitted chunk of updates the CLI runs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from snake_purejaxrl.outputs import trailing_score

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "train_snake_purejaxrl.py")
ANCHORS = ROOT.parent / "shared" / "anchors"  # the anchor scripts, beside the checkout


def machine_line() -> str:
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on "
        f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind})"
    )


def run_anchor(python: str, script: str, args: list[str], pattern: str) -> float | None:
    """Run an anchor script of ../shared/anchors in its own interpreter (a venv with jumanji)
    and read the env-steps/s it prints (`pattern` captures the number); None if it fails."""
    result = subprocess.run([python, str(ANCHORS / script), *args], capture_output=True, text=True)
    found = re.search(pattern, result.stdout)
    if not found:
        print(f"anchor failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return float(found.group(1).replace(",", ""))


def train(args: list[str], workdir: str | None = None, env: dict | None = None) -> dict:
    """Run the CLI with `args` (+ --metrics-out); return its rows, compile time and stdout.
    Raises RuntimeError with the CLI's last error line if it fails."""
    workdir = workdir or tempfile.mkdtemp(prefix="snake-bench-")
    rows_path = os.path.join(workdir, "rows.jsonl")
    command = [sys.executable, CLI, *args, "--metrics-out", rows_path, "--quiet"]
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in Path(rows_path).read_text().splitlines()]
    compile_s = float(re.search(r"compile ([\d.]+) s", result.stdout).group(1))
    return {"rows": rows, "compile_s": compile_s, "stdout": result.stdout, "dir": workdir}


def by_run(rows: list[dict]) -> dict[tuple, dict[str, np.ndarray]]:
    """Rows -> {(lr, seed): {metric: array over updates}} (update order)."""
    runs: dict[tuple, dict[str, list]] = {}
    for row in rows:
        run = runs.setdefault((row["lr"], row["seed"]), {})
        for key, value in row.items():
            run.setdefault(key, []).append(value)
    return {key: {k: np.asarray(v) for k, v in run.items()} for key, run in runs.items()}


def smoothed_score(run: dict[str, np.ndarray], window: int) -> np.ndarray:
    """Episode-weighted mean score over each update's last `window` updates."""
    return trailing_score(run["episode_score"], run["episodes"], window)
