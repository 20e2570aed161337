"""What a run reports: progress lines and the closing summary on the console, one JSON row per
update and run (`--metrics-out`), WandB runs, and the training scores read from the history.

Writers here never stop training: a failing file or WandB is reported once and dropped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from snake_purejaxrl.config import SETTING_BY_KEY, rate_keys, run_grid, swept_rates
from snake_purejaxrl.evaluation import describe


def warn(message: str) -> None:
    """One line (or a few) on stderr, at once."""
    print(message, file=sys.stderr, flush=True)


class Clock:
    """Seconds of training, earlier processes of a resumed run included, and the moment each
    update finished (the rows' `time_s`)."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s, self.finished = offset_s, {}
        self.start = time.perf_counter()

    def restart(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.offset_s + time.perf_counter() - self.start

    def mark(self, update: int) -> bool:
        """Record that `update` finished now; False if it was already recorded."""
        if update in self.finished:
            return False
        self.finished[update] = self.elapsed()
        return True

    def times(self, updates: np.ndarray) -> np.ndarray:
        """When each of `updates` finished (now, for one never marked)."""
        return np.array([self.finished.get(int(u), self.elapsed()) for u in updates])


class Console:
    """A progress line per update while a chunk runs: updates done, env-steps/s, the recent
    score, the best one and the current learning rate(s)."""

    def __init__(self, config: dict[str, Any], quiet: bool, start_update: int) -> None:
        self.num_updates, self.num_runs = config["NUM_UPDATES"], config["NUM_RUNS"]
        self.steps_per_update = config["NUM_ENVS"] * config["NUM_STEPS"] * self.num_runs
        self.quiet, self.start_update = quiet, start_update
        self.recent = deque(maxlen=max(1, self.num_updates // 10))  # (score sum, episodes)
        self.best = 0.0
        self.start = self.last_print = time.perf_counter()
        self.live = sys.stdout.isatty()

    def started(self) -> None:
        self.start = self.last_print = time.perf_counter()

    def recent_score(self) -> float:
        episodes = sum(n for _, n in self.recent)
        return sum(s for s, _ in self.recent) / max(episodes, 1)

    def show(self, update: int, metrics: dict[str, np.ndarray]) -> None:
        """One update's metrics (arrays over runs), straight from the running chunk (the
        trainer's report lock keeps callbacks from several devices apart)."""
        episodes = np.asarray(metrics["episodes"])
        self.recent.append((float((metrics["episode_score"] * episodes).sum()), episodes.sum()))
        self.best = max(self.best, float(np.max(metrics["episode_score_max"])))
        self._print(update, metrics)

    def _print(self, update: int, metrics: dict[str, np.ndarray]) -> None:
        now, done = time.perf_counter(), update == self.num_updates
        interval = 0.5 if self.live else 5.0  # a terminal redraws one line; a log gets a line/5 s
        if self.quiet or (now - self.last_print < interval and not done):
            return
        self.last_print = now
        rate = (update - self.start_update) * self.steps_per_update / max(now - self.start, 1e-9)
        lr = f"lr {float(np.mean(metrics['learning_rate'])):.2e}"
        if "aux_learning_rate" in metrics:
            lr += f" aux {float(np.mean(metrics['aux_learning_rate'])):.2e}"
        runs = f" ({self.num_runs} runs)" if self.num_runs > 1 else ""
        steps = int(np.max(metrics["env_steps"]))
        line = (
            f"update {update:>{len(str(self.num_updates))}}/{self.num_updates}"
            f" | {steps:,} steps{runs} | {rate:,.0f} steps/s"
            f" | score {self.recent_score():.1f} (best {self.best:.0f}) | {lr}"
        )
        print(("\r" + line) if self.live else line, end="" if self.live and not done else "\n")
        sys.stdout.flush()


class MetricsFile:
    """JSON Lines, one row per update and run, that always ends on a whole row. A write that
    fails (a full disk) is cut back to the last whole row and said once; its rows wait and go
    out whole with the next write that fits. Training goes on: the checkpoints hold every row."""

    def __init__(self, path: str | None, rows_so_far: list[dict]) -> None:
        """A new file holding `rows_so_far` (a resumed run's saved rows, nothing else)."""
        self.path, self.file, self.waiting, self.failure = path, None, [], None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
            self.write(rows_so_far)

    def write(self, rows: list[dict]) -> None:
        if self.file is None:
            return
        self.waiting.extend(rows)
        data = memoryview("".join(json.dumps(row) + "\n" for row in self.waiting).encode())
        try:
            end = self.file.tell()
        except OSError:
            end = None  # a device (/dev/full) has no place to cut back to
        try:
            while data:
                data = data[self.file.write(data) :]
        except OSError as error:
            self._failed(error, end)
            return
        self.waiting = []

    def _failed(self, error: OSError, end: int | None) -> None:
        if self.failure is None:
            self.failure = error.strerror or str(error)
            warn(f"metrics: cannot write {self.path} ({self.failure}); training goes on and "
                 "its rows wait for room")  # fmt: skip
        try:
            os.ftruncate(self.file.fileno(), end)
            self.file.seek(end)
        except (OSError, TypeError):  # cannot cut back: stop writing rather than leave half a row
            self.close()
            self.file = None

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass


class WandbLogger:
    """One WandB run per configuration (seed x rate), all in one group when there are several.
    Imported only when asked for; falls back online -> offline; never raises."""

    def __init__(
        self, options: dict, config: dict, grid: list[dict], ids: list[str] | None, enabled: bool
    ) -> None:
        self.runs: list = []
        self.group = None
        if not enabled or not options["WANDB"] or options["WANDB_MODE"] == "disabled":
            return
        try:
            import wandb
        except ImportError:
            warn("wandb: not installed (pip install wandb); training without it")
            return
        self.wandb = wandb
        name = options["WANDB_NAME"]
        if len(grid) > 1:
            self.group = (
                options["WANDB_GROUP"] or f"{name or 'snake'}-{time.strftime('%m%d-%H%M%S')}"
            )
        mode = options["WANDB_MODE"]
        for i, run in enumerate(grid):
            run_name = name if len(grid) == 1 else f"{name or 'snake'}-{run_label(config, run)}"
            # Started by `wandb agent`: its environment names the run, project and entity.
            agent = bool(os.environ.get("WANDB_SWEEP_ID"))
            init = dict(
                project=None if agent else options["WANDB_PROJECT"],
                entity=None if agent else options["WANDB_ENTITY"],
                name=run_name,
                group=self.group or options["WANDB_GROUP"],
                config={**config, **run},
                id=ids[i] if ids else None,
                resume="allow",
                reinit="create_new",
                settings=wandb.Settings(init_timeout=30, silent=True),
            )
            started = self._start(init, mode)
            if started is None:
                self.finish()
                return
            mode = started.settings.mode  # once offline, every run goes offline
            started.define_metric("env_steps")
            started.define_metric("train/*", step_metric="env_steps")
            self.runs.append(started)

    def _start(self, init: dict, mode: str):
        try:
            return self.wandb.init(mode=mode, **init)
        except Exception as error:  # no key, no network: keep everything, locally
            if mode != "online":
                warn(f"wandb: could not start ({error.__class__.__name__}); training without it")
                return None
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            warn(f"wandb: cannot log online ({reason}); logging offline, sync later")
            try:
                return self.wandb.init(mode="offline", **init)
            except Exception as offline_error:
                warn(f"wandb: offline start failed too ({offline_error}); training without it")
                return None

    def ids(self) -> list[str] | None:
        return [run.id for run in self.runs] or None

    def log(self, rows_by_run: list[list[dict]]) -> None:
        """Rows of each run (in grid order), as `train/<metric>` over env_steps."""
        try:
            for run, rows in zip(self.runs, rows_by_run):
                for row in rows:
                    skip = ("env_steps", "time_s", "seed", "lr", "run")
                    train = {f"train/{k}": v for k, v in row.items() if k not in skip}
                    run.log({"env_steps": row["env_steps"], **train})
        except Exception as error:
            warn(f"wandb: logging failed ({error}); continuing without it")
            self.runs = []

    def log_evaluation(self, summaries: list[dict], gifs: list[str | None]) -> None:
        """The final agent's evaluation figures as each run's summary, and its game as a GIF."""
        try:
            for run, summary, gif in zip(self.runs, summaries, gifs):
                for key, value in summary.items():
                    run.summary[f"eval/{key}"] = value
                if gif:
                    run.log({"eval/game": self.wandb.Video(gif, format="gif")})
        except Exception as error:
            warn(f"wandb: logging the evaluation failed ({error})")

    def where(self) -> str | None:
        if not self.runs:
            return None
        offline = self.runs[0].settings.mode == "offline"
        where = self.runs[0].dir.removesuffix("/files") + (
            " (offline: wandb sync it)" if offline else ""
        )
        return f"group {self.group}, {len(self.runs)} runs; first: {where}" if self.group else where

    def finish(self) -> None:
        for run in self.runs:
            try:
                run.finish()
            except Exception as error:
                warn(f"wandb: finishing a run failed ({error})")
        self.runs = []


def run_label(config: dict, run: dict) -> str:
    """'seed3' or 'lr0.001-seed3': how a configuration is named in WandB and tables."""
    rates = swept_rates(config)
    key = rate_keys(config)[0]
    return (f"lr{run[key]:g}-" if len(rates) > 1 else "") + f"seed{run['SEED']}"


# ================================================================== rows and scores


def rows_of(history: dict[str, np.ndarray], config: dict, first: int, last: int) -> list[dict]:
    """JSON rows of updates first..last (1-based, inclusive), one per run, update-major."""
    grid = run_grid(config)
    key = rate_keys(config)[0]
    names = [n for n in history if n not in ("update", "time_s")]
    rows = []
    for u in range(first, last + 1):
        for r, run in enumerate(grid):
            row = {"update": u, "seed": run["SEED"], "lr": run[key]}
            if len(grid) > 1:
                row["run"] = r
            for name in names:
                value = history[name][u - 1, r]
                row[name] = int(value) if np.issubdtype(value.dtype, np.integer) else float(value)
            row["time_s"] = round(float(history["time_s"][u - 1]), 3)
            rows.append(row)
    return rows


def extend_history(history: dict | None, metrics: dict, times: np.ndarray) -> dict:
    """History with the updates of one chunk appended; metrics `(updates, runs)`."""
    chunk = {**metrics, "time_s": times}
    if history is None:
        return {k: np.asarray(v) for k, v in chunk.items()}
    return {k: np.concatenate([history[k], np.asarray(chunk[k])]) for k in history}


def split_by_run(rows: list[dict], config: dict) -> list[list[dict]]:
    runs = config["NUM_RUNS"]
    return [rows[r::runs] for r in range(runs)]


def trailing_score(score: np.ndarray, episodes: np.ndarray, window: int) -> np.ndarray:
    """Episode-weighted mean score over each update's last `window` updates; `(..., updates)`."""

    def trailing_sum(x):
        convolved = np.apply_along_axis(np.convolve, -1, x, np.ones(window))
        return convolved[..., : x.shape[-1]]

    return trailing_sum(score * episodes) / np.maximum(trailing_sum(episodes), 1)


def final_updates(num_updates: int, fraction: float = 0.1) -> slice:
    """The last `fraction` of the updates (at least one): where the final score is read."""
    return slice(-max(1, int(num_updates * fraction)), None)


def final_score(score: np.ndarray, episodes: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Mean score over the episodes of the last `fraction` of updates (the headline number)."""
    tail = final_updates(score.shape[-1], fraction)
    finished = episodes[..., tail]
    return (score[..., tail] * finished).sum(-1) / np.maximum(finished.sum(-1), 1)


# ================================================================== the summary


def print_summary(summary: dict[str, Any]) -> None:
    config = summary["config"]
    print(
        f"done: {summary['updates']} updates, {summary['env_steps']:,} env steps per run in "
        f"{summary['train_s']:.1f} s ({summary['steps_per_s']:,.0f} env-steps/s), "
        f"compile {summary['compile_s']:.1f} s, peak RSS {summary['peak_rss_gib']:.2f} GiB"
    )
    scores = summary["final_scores"]
    if len(scores) == 1:
        print(
            f"final mean score {scores[0]:.2f} ({summary['final_episodes']} episodes of the "
            f"last 10% of updates), best score {summary['best_score']:.0f}"
        )
    else:
        print_score_table(config, scores)
    if summary.get("evaluation"):
        for i, figures in enumerate(summary["evaluation"]):
            print(f"evaluation{f' (run {i})' if len(scores) > 1 else ''}: {describe(figures)}")
    print_saved(summary)
    if summary["metrics_out"]:
        unwritten = summary["rows_unwritten"]
        lost = f" ({unwritten} rows could not be written: {summary['metrics_failure']})"
        print(f"metrics: {summary['metrics_out']}{lost if unwritten else ''}")
    if summary["wandb"]:
        print(f"wandb: {summary['wandb']}")


def print_saved(summary: dict[str, Any]) -> None:
    """Where the agent was kept, and how to evaluate it; never a directory with nothing in it."""
    directory, saved, failure = (
        summary[k] for k in ("checkpoints", "saved_update", "save_failure")
    )
    if directory is None:
        return
    if saved is None:
        print(f"no checkpoint saved: {failure}")
        return
    if saved != summary["updates"]:
        where = f"{directory} holds update {saved}, the latest it could save ({failure})"
    else:
        took = f"; a save took {summary['save_s']:.2f} s" if summary["save_s"] else ""
        where = f"{directory}{took}"
    print(f"checkpoints: {where}; evaluate with python train_snake_purejaxrl.py --eval {directory}")


def print_score_table(config: dict, scores: np.ndarray) -> None:
    """Final score per swept rate: mean and spread over its seeds."""
    key = rate_keys(config)[0]
    seeds, name = config["NUM_SEEDS"], SETTING_BY_KEY[key].flag[2:]
    print(f"final mean score per {name} ({seeds} seed(s) each, last 10% of updates):")
    print("| rate | mean | min | max | per seed |")
    print("|---|---|---|---|---|")
    for i, rate in enumerate(swept_rates(config)):
        s = scores[i * seeds : (i + 1) * seeds]
        per_seed = ", ".join(f"{x:.1f}" for x in s)
        print(f"| {rate:g} | {s.mean():.2f} | {s.min():.2f} | {s.max():.2f} | {per_seed} |")
