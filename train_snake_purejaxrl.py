"""Train a PPO agent to play Snake: flags -> config -> jitted chunks of updates -> outputs.

    python train_snake_purejaxrl.py --lr 2.5e-4 --anneal-lr --wandb
    python train_snake_purejaxrl.py --use-muon --muon-lr 0.02 --aux-adam-lr 2.5e-4 --anneal-lr \
        --wandb
    python train_snake_purejaxrl.py --eval runs/snake-...  --render-gif game.gif

Training runs as jitted chunks of updates (no host round-trip inside one). After each chunk the
whole state is checkpointed (orbax, `--checkpoint-dir`), then that chunk's metric rows go to
`--metrics-out` (JSON Lines) and WandB (`train/<metric>` over `env_steps`); a console line per
update comes from the running chunk. Ctrl-C or SIGTERM saves at the end of the running chunk;
`--resume` continues bit-exactly. Logging never stops training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import train_snake_purejaxrl_impl as impl
from checkpointing import CheckpointError, Checkpoints, require_checkpoint_dir
from settings import Bool, Choice, ConfigError, Int, Setting, Text

WANDB_MODES = ("online", "offline", "disabled")
EXIT_NAN, EXIT_SIGINT, EXIT_SIGTERM = 3, 130, 143
MAX_CHUNK = 50  # updates; with the default --checkpoint-every, also the most between saves

# How a run is driven and what it writes: declared like the training settings (and parsed and
# checked by the same code), but not part of the training config nor of WandB's.
# fmt: off
RUN_OPTIONS: tuple[Setting, ...] = (
    Text("CHECKPOINT_DIR", None, "where the run's checkpoints go (default: "
         "runs/snake-<date>-<time>; 'none': no checkpoints)", group="checkpoints"),
    Int("CHECKPOINT_EVERY", None, "updates between checkpoints (a final one is always "
        "written)", low=1, auto=f"every 10% of the run, at most {MAX_CHUNK} apart",
        group="checkpoints"),
    Int("KEEP_CHECKPOINTS", 3, "checkpoints kept (the newest)", low=1, group="checkpoints"),
    Bool("RESUME", False, "continue the run in --checkpoint-dir from its latest checkpoint; only "
         "settings marked [resume] may then differ", group="checkpoints"),
    Text("EVAL", None, "instead of training, play games with the agent of DIR's latest "
         "checkpoint", group="evaluation"),
    Int("EVAL_EPISODES", 1000, "games an evaluation plays (side by side, one jit)", low=1,
        group="evaluation"),
    Choice("EVAL_POLICY", "greedy", "greedy: the most likely move; sample: moves drawn from "
           "the policy", choices=("greedy", "sample"), group="evaluation"),
    Text("RENDER_GIF", None, "with --eval: write one game as an animated GIF here (a frame per "
         "move)", group="evaluation"),
    Bool("RENDER_ASCII", False, "with --eval: print one game in the terminal, frame by frame",
         group="evaluation"),
    Text("METRICS_OUT", None, "write every update's metrics here (JSON Lines); with --eval, "
         "the figures (JSON)", group="outputs"),
    Bool("QUIET", False, "no progress lines, summary only", group="outputs"),
    Bool("WANDB", False, "log to Weights & Biases", group="outputs"),
    Text("WANDB_PROJECT", "snake-purejaxrl", "WandB project", group="outputs"),
    Text("WANDB_ENTITY", None, "WandB entity (team or user)", group="outputs"),
    Text("WANDB_NAME", None, "WandB run name", group="outputs"),
    Text("WANDB_GROUP", None, "WandB group (default with several runs: <name>-<date>-<time>)",
         group="outputs"),
    Choice("WANDB_MODE", os.environ.get("WANDB_MODE", "online"), "online, offline (sync later "
           "with `wandb sync`) or disabled", choices=WANDB_MODES, group="outputs"),
    Text("COORDINATOR_ADDRESS", None, "jax.distributed: host:port of process 0 (or "
         "$JAX_COORDINATOR_ADDRESS)", group="hosts"),
    Int("NUM_PROCESSES", None, "jax.distributed: number of processes", low=1, auto="detected",
        group="hosts"),
    Int("PROCESS_ID", None, "jax.distributed: this process's index, 0 .. NUM_PROCESSES-1",
        low=0, auto="detected", group="hosts"),
)
# fmt: on
OPTION = {o.key: o for o in RUN_OPTIONS}
FLAG_OF_KEY = {s.key: s.flag for s in (*impl.SETTINGS, *RUN_OPTIONS)}
GROUP_TITLES = {
    "game": "the game",
    "agent": "the agent",
    "PPO": "PPO",
    "optimizer": "the optimizer",
    "runs": "runs side by side (seeds x learning rates) and devices",
    "checkpoints": "checkpoints",
    "evaluation": "evaluation and watching it play",
    "outputs": "outputs",
    "hosts": "several hosts (jax.distributed)",
}


# ================================================================== flags


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Every setting and run option as a flag, with its doc and default, from the declarations.
    Defaults are left out of the parsed namespace, so the flags a user gave are known."""
    parser = OneLineErrorParser(
        usage="%(prog)s [--setting VALUE ...]   (train; --resume continues a run)\n"
        "       %(prog)s --eval DIR [--render-gif PATH] [--eval-episodes N]   (evaluate)",
        description="PPO on Snake in pure JAX (Adam or Muon, learning-rate schedules). "
        "Settings marked [resume] may change when a run is resumed.",
    )
    groups = {name: parser.add_argument_group(title) for name, title in GROUP_TITLES.items()}
    for setting in (*impl.SETTINGS, *RUN_OPTIONS):
        tag = " [resume]" if setting.on_resume and setting.key in impl.SETTING else ""
        help_text = f"{setting.doc} (default: {setting.show(setting.default)}){tag}"
        kwargs: dict[str, Any] = {"dest": setting.key, "default": argparse.SUPPRESS}
        if isinstance(setting, Bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = setting.key.split("_")[-1] if setting.key != "EVAL" else "DIR"
        groups[setting.group].add_argument(
            setting.flag, help=help_text.replace("%", "%%"), **kwargs
        )
    return parser


def parse_given(parser: argparse.ArgumentParser, argv: list[str] | None) -> dict[str, Any]:
    """{KEY: checked value} of the flags given on the command line (ConfigError if bad)."""
    given = vars(parser.parse_args(argv))
    declared = {**impl.SETTING, **OPTION}
    return {
        key: value if isinstance(declared[key], Bool) else declared[key].parse(value)
        for key, value in given.items()
    }


def in_flag_names(message: str) -> str:
    """Config-key names in an error message -> the flags a CLI user types."""
    for key in sorted(FLAG_OF_KEY, key=len, reverse=True):
        message = re.sub(rf"\b{key}\b", FLAG_OF_KEY[key], message)
    return message


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ================================================================== outputs


class Console:
    """A progress line per update while a chunk runs (from its host callback), the time of
    each update (for the rows' `time_s`), and a closing summary."""

    def __init__(self, config: dict[str, Any], quiet: bool, start_update: int, offset_s: float):
        self.num_updates, self.num_runs = config["NUM_UPDATES"], config["NUM_RUNS"]
        self.steps_per_update = config["NUM_ENVS"] * config["NUM_STEPS"] * self.num_runs
        self.quiet, self.start_update, self.offset_s = quiet, start_update, offset_s
        self.recent = deque(maxlen=max(1, self.num_updates // 10))  # (score sum, episodes)
        self.best, self.times = 0.0, {}
        self.start = self.last_print = time.perf_counter()
        self.live = sys.stdout.isatty()
        self.lock = threading.Lock()

    def started(self) -> None:
        self.start = self.last_print = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training, earlier processes of a resumed run included."""
        return self.offset_s + time.perf_counter() - self.start

    def recent_score(self) -> float:
        episodes = sum(n for _, n in self.recent)
        return sum(s for s, _ in self.recent) / max(episodes, 1)

    def report(self, metrics: dict[str, np.ndarray]) -> None:
        """One update's metrics (arrays over runs), straight from the running chunk."""
        with self.lock:
            update = int(metrics["update"])
            if update in self.times:  # a callback may repeat on several devices
                return
            self.times[update] = self.elapsed()
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
    """JSON Lines, one row per update and run. A write that fails (disk full, a closed file)
    is reported once and training goes on: the rows stay in the checkpoints."""

    def __init__(self, path: str | None, rows_so_far: list[dict]) -> None:
        """A new file holding `rows_so_far` (a resumed run's saved rows, nothing else)."""
        self.path, self.file = path, None
        if path:
            self.file = open(path, "w")  # noqa: SIM115 - kept open for the run, closed in close()
            self.write(rows_so_far)

    def write(self, rows: list[dict]) -> None:
        if self.file is None or not rows:
            return
        try:
            for row in rows:
                self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        except (OSError, ValueError) as error:
            warn(f"metrics: cannot write {self.path} ({error}); training goes on without it")
            self.file = None

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass


class WandbRuns:
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
            init = dict(
                project=options["WANDB_PROJECT"],
                entity=options["WANDB_ENTITY"],
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
    rates = impl.swept_rates(config)
    key = impl.rate_keys(config)[0]
    return (f"lr{run[key]:g}-" if len(rates) > 1 else "") + f"seed{run['SEED']}"


# ================================================================== metric rows and history


def rows_of(history: dict[str, np.ndarray], config: dict, first: int, last: int) -> list[dict]:
    """JSON rows of updates first..last (1-based, inclusive), one per run, update-major."""
    grid = impl.run_grid(config)
    key = impl.rate_keys(config)[0]
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


def first_unhealthy(metrics: dict[str, np.ndarray]) -> tuple[int, str] | None:
    """(index, metric) of the first update whose loss or gradient norm is not finite."""
    bad = np.zeros(len(next(iter(metrics.values()))), bool)
    names = {}
    for name in impl.HEALTH_METRICS:
        not_finite = ~np.isfinite(metrics[name]).all(axis=-1)
        for i in np.flatnonzero(not_finite & ~bad):
            names[i] = name
        bad |= not_finite
    if not bad.any():
        return None
    index = int(np.argmax(bad))
    return index, names[index]


# ================================================================== setting a run up


def auto_checkpoint_dir() -> str:
    return os.path.join("runs", f"snake-{time.strftime('%Y%m%d-%H%M%S')}")


def checkpoint_every(options: dict, config: dict) -> int:
    every = options["CHECKPOINT_EVERY"]
    if every is None:
        every = min(max(1, -(-config["NUM_UPDATES"] // 10)), MAX_CHUNK)
    return min(every, config["NUM_UPDATES"])


def settings_of(stored: dict) -> dict:
    """The declared settings of a stored config (derived keys dropped)."""
    return {k: v for k, v in stored.items() if k in impl.SETTING}


def resumed_config(checkpoints: Checkpoints, given: dict) -> tuple[dict, dict]:
    """(config, meta): the checkpoint's settings with the given ones on top; ConfigError if a
    given setting may not change on resume, or the run would end before its checkpoint."""
    meta = checkpoints.meta()
    stored = impl.validate_config(settings_of(meta["config"]))
    for key, value in given.items():
        if not impl.SETTING[key].on_resume and value != stored[key]:
            raise ConfigError(
                f"{key} cannot change when a run resumes: {checkpoints.directory} was trained "
                f"with {impl.SETTING[key].show(stored[key])}, got {impl.SETTING[key].show(value)}"
                " (a new --checkpoint-dir starts a new run)"
            )
    config = impl.validate_config({**stored, **given})
    done = checkpoints.latest()
    if config["NUM_UPDATES"] < done:
        raise ConfigError(
            f"TOTAL_TIMESTEPS must keep at least the {done} updates already done "
            f"({done * config['NUM_ENVS'] * config['NUM_STEPS']:,} env steps), got "
            f"{config['TOTAL_TIMESTEPS']:,}"
        )
    return config, meta


def relocated(stored: dict, meta: dict, directory: str, given: dict) -> tuple[dict, dict, list]:
    """(stored options, meta, notices) for a run resumed from another directory than it was
    saved in. A metrics file inside the old directory moves with it. A copy (the old directory
    still holds its run) is a new run from the copy's state: the original's metrics file
    outside it is left alone and WandB gets new runs, the saved rows first; a moved run goes
    on as it was. The notices are shown once the checkpoint has loaded."""
    old, notices = stored.get("CHECKPOINT_DIR"), []
    if old in (None, "none") or os.path.realpath(old) == os.path.realpath(directory):
        return stored, meta, notices
    stored, metrics = dict(stored), stored.get("METRICS_OUT")
    inside = bool(metrics) and Path(metrics).is_relative_to(old)
    if inside:
        stored["METRICS_OUT"] = str(Path(directory) / Path(metrics).relative_to(old))
    if not (Path(old).is_dir() and Checkpoints(old, read_only=True).latest() is not None):
        return stored, meta, notices  # moved
    if metrics and not inside and "METRICS_OUT" not in given:
        notices.append(
            f"resuming a copy of {old}: its metrics file {metrics} is left alone "
            "(--metrics-out FILE writes this run's rows, the saved ones first)"
        )
        stored["METRICS_OUT"] = None
    if meta.get("wandb_ids"):
        notices.append(f"resuming a copy of {old}: WandB gets new runs, the saved rows first")
        meta = {**meta, "wandb_ids": None}
    return stored, meta, notices


def check_writable_file(path: str, key: str) -> None:
    """Fail before compiling if `path` cannot be written (parents are created; a file that
    did not exist is not left behind)."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        existed = os.path.exists(path)
        with open(path, "a"):
            pass
        if not existed:
            os.remove(path)
    except OSError as error:
        raise ConfigError(f"{key} {path} cannot be written ({error.strerror or error})") from None


def check_writable_dir(path: str, key: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe = Path(path) / f".write-probe-{os.getpid()}"  # processes of a run share the dir
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{key} {path} cannot be written ({error.strerror or error})") from None


def start_distributed(options: dict) -> None:
    """jax.distributed.initialize when any of its flags (or $JAX_COORDINATOR_ADDRESS) is set;
    must run before JAX computes anything."""
    wanted = ("COORDINATOR_ADDRESS", "NUM_PROCESSES", "PROCESS_ID")
    if not any(options[k] is not None for k in wanted) and not os.environ.get(
        "JAX_COORDINATOR_ADDRESS"
    ):
        return
    import jax

    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=options["COORDINATOR_ADDRESS"],
        num_processes=options["NUM_PROCESSES"],
        process_id=options["PROCESS_ID"],
    )


class Signals:
    """First Ctrl-C / SIGTERM: finish the running chunk, save, exit 130 / 143. Second: exit at
    once (the last checkpoint on disk is whole: saves are atomic)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum, _frame) -> None:
        code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
        if self.received is not None:
            warn("\nstopped at once; the last checkpoint is kept")
            os._exit(code)
        self.received = signum
        warn(f"\n{signal.Signals(signum).name}: stopping after the running chunk "
             "(send it again to stop at once)")  # fmt: skip

    def exit_code(self) -> int:
        return EXIT_SIGINT if self.received == signal.SIGINT else EXIT_SIGTERM

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def wait_for(tree) -> None:
    """Block until every array of `tree` is computed, staying responsive to signals."""
    import jax

    leaves = jax.tree.leaves(tree)
    while not all(leaf.is_ready() for leaf in leaves):
        time.sleep(0.02)


# ================================================================== training


class Run(NamedTuple):
    """A training run as set up: its config, run options, checkpoint directory (or None), the
    meta of the checkpoint it resumes (empty for a new run) and what to tell once it loads."""

    config: dict
    options: dict
    checkpoints: Checkpoints | None
    meta: dict
    notices: list[str]


def prepare(given: dict, given_options: dict) -> Run:
    """A new run, or the one in --checkpoint-dir with --resume; every check that can fail is
    done here, before anything compiles."""
    options = {**{o.key: o.default for o in RUN_OPTIONS}, **given_options}
    if options["RESUME"]:
        if options["CHECKPOINT_DIR"] in (None, "none"):
            raise ConfigError("RESUME needs CHECKPOINT_DIR: the directory of the run to continue")
        found = require_checkpoint_dir(options["CHECKPOINT_DIR"])
        config, meta = resumed_config(found, given)
        stored = {k: v for k, v in meta.get("options", {}).items() if k in OPTION}
        stored, meta, notices = relocated(stored, meta, str(found.directory), given_options)
        options = {**options, **stored, **given_options, "RESUME": True}
    else:
        config, meta, notices = impl.validate_config(given), {}, []
        if options["CHECKPOINT_DIR"] is None:
            options["CHECKPOINT_DIR"] = auto_checkpoint_dir()
        directory = options["CHECKPOINT_DIR"]
        if directory != "none":
            check_writable_dir(directory, "CHECKPOINT_DIR")
            latest = Checkpoints(directory, read_only=True).latest()
            if latest is not None:
                raise ConfigError(
                    f"CHECKPOINT_DIR {directory} already holds a run (update {latest}): add "
                    "--resume to continue it, or pick a new one"
                )
    if options["METRICS_OUT"]:
        check_writable_file(options["METRICS_OUT"], "METRICS_OUT")
    checkpoints = None
    if options["CHECKPOINT_DIR"] != "none":
        checkpoints = Checkpoints(options["CHECKPOINT_DIR"], keep=options["KEEP_CHECKPOINTS"])
    return Run(config, options, checkpoints, meta, notices)


def start_state(run: Run, init, shardings):
    """(runner, history, update): restored from the latest checkpoint, or fresh."""
    import jax

    if run.checkpoints is None or run.checkpoints.latest() is None:
        return impl.init_placed(init, shardings), None, 0
    abstract = jax.tree.map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(init),
        shardings,
    )
    runner, history, _ = run.checkpoints.restore(abstract)
    return runner, history, int(history["update"][-1, 0])


def train_command(given: dict, given_options: dict) -> int:
    """Train (a new run, or --resume): returns the exit status."""
    start_distributed({**{o.key: o.default for o in RUN_OPTIONS}, **given_options})
    return Trainer(prepare(given, given_options)).train()


class Trainer:
    """One run driven from the host: jitted chunks of updates; after each, the checkpoint, then
    the chunk's rows to --metrics-out and WandB. Only process 0 writes outputs."""

    def __init__(self, run: Run) -> None:
        import jax

        self.config, self.options, self.checkpoints = run.config, run.options, run.checkpoints
        mesh = impl.make_mesh(self.config["DEVICES"])
        impl.check_divisible(self.config, mesh)
        self.is_main = jax.process_index() == 0
        parts = impl.make_parts(self.config)
        init = impl.init_runs(parts)
        shardings = impl.runner_shardings(jax.eval_shape(init), mesh)
        self.runner, self.history, self.update = start_state(run, init, shardings)
        for notice in run.notices if self.is_main else ():
            warn(notice)
        offset_s = float(self.history["time_s"][-1]) if self.history else 0.0
        quiet = self.options["QUIET"] or not self.is_main
        self.console = Console(self.config, quiet, self.update, offset_s)
        self.every = checkpoint_every(self.options, self.config)
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        chunk = jax.jit(
            impl.make_chunk(parts, min(self.every, MAX_CHUNK), report=self.console.report),
            out_shardings=(shardings, replicated, replicated),
        )
        compile_start = time.perf_counter()
        self.chunk = chunk.lower(self.runner, np.int32(0)).compile()
        self.compile_s = time.perf_counter() - compile_start
        saved_rows = rows_of(self.history, self.config, 1, self.update) if self.history else []
        self.metrics_file = MetricsFile(self.options["METRICS_OUT"] if self.is_main else None,
                                        saved_rows)  # fmt: skip
        ids = run.meta.get("wandb_ids")
        grid = impl.run_grid(self.config)
        self.wandb = WandbRuns(self.options, self.config, grid, ids, enabled=self.is_main)
        self.wandb_through = (  # what went to the WandB runs of `ids`; none: nothing yet
            self.checkpoints.wandb_logged_through() if self.checkpoints and ids else 0
        )
        self.meta = {"config": self.config, "options": stored_options(self.options),
                     "wandb_ids": self.wandb.ids() or ids}  # fmt: skip

    def train(self) -> int:
        if self.is_main and not self.options["QUIET"]:
            resumed = f"; resuming at update {self.update}" if self.update else ""
            print(f"compiled in {self.compile_s:.1f} s; training {self.config['NUM_UPDATES']} "
                  f"updates of {self.config['NUM_RUNS']} run(s){resumed}")  # fmt: skip
            if self.wandb.group:
                print(f"wandb group: {self.wandb.group}")
        self.log_to_wandb(self.update)  # rows a killed process saved but never logged
        signals = Signals()
        self.console.started()
        status = 0
        try:
            while self.update < self.config["NUM_UPDATES"] and status == 0:
                status = self.run_chunk(signals)
                if status == 0 and signals.received is not None:
                    status = signals.exit_code()
        finally:
            signals.restore()
            self.metrics_file.close()
        return self.finish(status, time.perf_counter() - self.console.start)

    def run_chunk(self, signals: Signals) -> int:
        """One chunk: compute, keep the healthy updates (checkpoint, rows); 0 or EXIT_NAN."""
        import jax

        stop = min((self.update // self.every + 1) * self.every, self.config["NUM_UPDATES"])
        runner, metrics, ran = self.chunk(self.runner, np.int32(stop))
        wait_for((runner, metrics, ran))
        attempted = np.asarray(jax.device_get(ran))
        metrics = {k: np.asarray(v)[attempted] for k, v in jax.device_get(metrics).items()}
        unhealthy = first_unhealthy(metrics)
        good = int(attempted.sum()) if unhealthy is None else unhealthy[0]
        if good:  # the chunk's runner is the state after its last healthy update
            stopping = unhealthy is not None or signals.received is not None
            self.commit(runner, {k: v[:good] for k, v in metrics.items()}, stopping)
        if unhealthy is None:
            return 0
        kept = self.checkpoints.latest() if self.checkpoints is not None else None
        warn(f"update {self.update + 1}: {unhealthy[1]} is not finite; training stopped"
             + (f"; the last good checkpoint (update {kept}) is kept in "
                f"{self.checkpoints.directory}" if kept else ""))  # fmt: skip
        return EXIT_NAN

    def commit(self, runner, metrics: dict, stopping: bool) -> None:
        """Updates done: into the history, a checkpoint (every `every`, at the end, or when
        stopping), then the rows."""
        count = len(metrics["total_loss"])
        updates = np.arange(self.update + 1, self.update + count + 1)
        times = np.array([self.console.times.get(u, self.console.elapsed()) for u in updates])
        metrics["update"] = np.repeat(updates[:, None], self.config["NUM_RUNS"], 1)
        self.history = extend_history(self.history, metrics, times)
        first, self.runner, self.update = self.update + 1, runner, int(updates[-1])
        at_boundary = self.update % self.every == 0 or self.update == self.config["NUM_UPDATES"]
        if self.checkpoints is not None and (at_boundary or stopping):
            save_checkpoint(self.checkpoints, self.update, self.runner, self.history, self.meta)
        self.metrics_file.write(rows_of(self.history, self.config, first, self.update))
        self.log_to_wandb(self.update)

    def log_to_wandb(self, last: int) -> None:
        """Rows up to `last` not yet handed to WandB (claimed first: never logged twice)."""
        if not self.wandb.runs or last <= self.wandb_through:
            return
        if self.checkpoints is not None:
            self.checkpoints.claim_wandb(last)
        rows = rows_of(self.history, self.config, self.wandb_through + 1, last)
        self.wandb.log(split_by_run(rows, self.config))
        self.wandb_through = last

    def finish(self, status: int, train_s: float) -> int:
        """Signals: say how to resume. Success: the summary (with WandB, a final evaluation)."""
        if status in (EXIT_SIGINT, EXIT_SIGTERM) and self.checkpoints is not None:
            if self.checkpoints.latest() is not None:
                warn(f"saved at update {self.checkpoints.latest()}; resume with:\n"
                     f"  python train_snake_purejaxrl.py --resume --checkpoint-dir "
                     f"{self.checkpoints.directory}")  # fmt: skip
        if status != 0:
            self.wandb.finish()
            return status
        summary = summarize(self.config, self.history, self.update, train_s, self.compile_s,
                            self.console, self.checkpoints, self.options)  # fmt: skip
        if self.wandb.runs:
            summaries, gifs = final_evaluation(self.config, self.runner, self.options)
            self.wandb.log_evaluation(summaries, gifs)
            summary["evaluation"] = summaries
        summary["wandb"] = self.wandb.where()
        self.wandb.finish()
        if self.is_main:
            print_summary(summary)
        return status


def stored_options(options: dict) -> dict:
    """The run options a checkpoint keeps for --resume: output paths made absolute, so a
    resumed run writes to the same files from any directory."""
    stored = {k: v for k, v in options.items() if k in OPTION and k != "RESUME"}
    for key in ("METRICS_OUT", "CHECKPOINT_DIR"):
        if stored[key] not in (None, "none"):
            stored[key] = os.path.abspath(stored[key])
    return stored


def split_by_run(rows: list[dict], config: dict) -> list[list[dict]]:
    runs = config["NUM_RUNS"]
    return [rows[r::runs] for r in range(runs)]


def save_checkpoint(checkpoints: Checkpoints, update: int, runner, history, meta) -> None:
    """Save, or say once why not and go on (a failed save never removes an older one)."""
    start = time.perf_counter()
    try:
        checkpoints.save(update, runner, history, meta)
    except Exception as error:
        if not getattr(checkpoints, "failed", False):
            warn(f"checkpoint: saving update {update} failed ({error.__class__.__name__}: "
                 f"{str(error).splitlines()[0] if str(error) else ''}); training goes on, the "
                 "earlier checkpoints are kept")  # fmt: skip
            checkpoints.failed = True
        return
    checkpoints.seconds = getattr(checkpoints, "seconds", []) + [time.perf_counter() - start]


def summarize(config, history, update, train_s, compile_s, console, checkpoints, options) -> dict:
    """The closing figures: speed, final score per run (last 10% of updates), where things went."""
    score = history["episode_score"].T if history else np.zeros((config["NUM_RUNS"], 0))
    episodes = history["episodes"].T if history else np.zeros((config["NUM_RUNS"], 0))
    steps = (update - console.start_update) * console.steps_per_update
    saves = getattr(checkpoints, "seconds", [])
    return {
        "config": config,
        "updates": update,
        "env_steps": update * config["NUM_ENVS"] * config["NUM_STEPS"],
        "steps_per_s": steps / max(train_s, 1e-9),
        "train_s": train_s,
        "compile_s": compile_s,
        "final_scores": impl.final_score(score, episodes) if update else np.zeros(len(score)),
        "final_episodes": int(episodes[:, impl.final_updates(max(update, 1))].sum()),
        "best_score": float(np.max(history["episode_score_max"])) if history else 0.0,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "checkpoints": str(checkpoints.directory) if checkpoints is not None else None,
        "save_s": float(np.median(saves)) if saves else None,
        "metrics_out": options["METRICS_OUT"],
    }


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
    if summary["checkpoints"]:
        saved = f"; a save took {summary['save_s']:.2f} s" if summary["save_s"] else ""
        print(f"checkpoints: {summary['checkpoints']}{saved}; evaluate with "
              f"python train_snake_purejaxrl.py --eval {summary['checkpoints']}")  # fmt: skip
    if summary["metrics_out"]:
        print(f"metrics: {summary['metrics_out']}")
    if summary["wandb"]:
        print(f"wandb: {summary['wandb']}")


def print_score_table(config: dict, scores: np.ndarray) -> None:
    """Final score per swept rate: mean and spread over its seeds."""
    key = impl.rate_keys(config)[0]
    seeds = config["NUM_SEEDS"]
    print(
        f"final mean score per {FLAG_OF_KEY[key][2:]} ({seeds} seed(s) each, last 10% of updates):"
    )
    print("| rate | mean | min | max | per seed |")
    print("|---|---|---|---|---|")
    for i, rate in enumerate(impl.swept_rates(config)):
        s = scores[i * seeds : (i + 1) * seeds]
        per_seed = ", ".join(f"{x:.1f}" for x in s)
        print(f"| {rate:g} | {s.mean():.2f} | {s.min():.2f} | {s.max():.2f} | {per_seed} |")


# ================================================================== evaluation


def describe(f: dict) -> str:
    return (
        f"mean score {f['mean_score']:.2f}, median {f['median_score']:.1f}, max {f['max_score']}, "
        f"win rate {f['win_rate']:.1%}, starved {f['starved_rate']:.1%}, mean length "
        f"{f['mean_length']:.0f} moves, "
        f"{f['steps_per_food']:.1f} steps per food ({f['episodes']} games)"
    )


def evaluate_params(config: dict, params, episodes: int, greedy: bool, seed: int) -> list[dict]:
    """Figures of each run's agent (params with a leading run axis)."""
    import jax

    evaluate = jax.jit(jax.vmap(impl.make_evaluate(config, episodes, greedy), in_axes=(0, None)))
    results = jax.device_get(evaluate(params, jax.random.PRNGKey(seed)))
    max_score = impl.eval_env(config).max_score
    return [
        impl.eval_summary(jax.tree.map(lambda x, r=r: x[r], results), max_score)
        for r in range(config["NUM_RUNS"])
    ]


def replay_game(config: dict, params, greedy: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(observations, scores) of one game of one run's agent: the start, then a board per move."""
    import jax

    frames, done, score = jax.device_get(
        jax.jit(impl.make_replay(config, greedy))(params, jax.random.PRNGKey(seed))
    )
    end = int(np.argmax(done)) if done.any() else len(done) - 1
    return frames[: end + 1], score[: end + 1]


def write_gif(config: dict, frames: np.ndarray, scores: np.ndarray, path: str) -> None:
    from snake_env import save_gif

    env = impl.eval_env(config)
    images = [env.render_rgb(f, cell_px=12 if config["GRID_SIZE"] <= 16 else 6) for f in frames]
    captions = [f"score {s}  move {t}" for t, s in enumerate(scores)]
    save_gif(images, path, captions)


def final_evaluation(config: dict, runner, options: dict):
    """Evaluate the final agent of every run and render one game each as a GIF (for WandB)."""
    import tempfile

    import jax

    greedy = options["EVAL_POLICY"] == "greedy"
    params = jax.device_get(runner.params)
    summaries = evaluate_params(config, params, options["EVAL_EPISODES"], greedy, 0)
    gifs = []
    folder = tempfile.mkdtemp(prefix="snake-eval-")
    for r in range(config["NUM_RUNS"]):
        one = jax.tree.map(lambda x, r=r: x[r], params)
        frames, scores = replay_game(config, one, greedy, r)
        gifs.append(os.path.join(folder, f"run{r}.gif"))
        write_gif(config, frames, scores, gifs[-1])
    return summaries, gifs


def evaluate_command(given: dict, options: dict) -> int:
    """--eval DIR: play games with the agent of DIR's latest checkpoint; print the figures."""
    extra = sorted(set(given) - {"SEED"})
    if extra:
        raise ConfigError(f"EVAL takes its settings from the checkpoint; of them only SEED may "
                          f"be given, got {', '.join(extra)}")  # fmt: skip
    if options["METRICS_OUT"]:
        check_writable_file(options["METRICS_OUT"], "METRICS_OUT")
    if options["RENDER_GIF"]:
        check_writable_file(options["RENDER_GIF"], "RENDER_GIF")
    import jax

    checkpoints = require_checkpoint_dir(options["EVAL"])
    config = impl.validate_config(settings_of(checkpoints.meta()["config"]))
    abstract = jax.eval_shape(impl.init_runs(impl.make_parts(config)))
    runner, _, _ = checkpoints.restore(abstract)
    greedy, seed = options["EVAL_POLICY"] == "greedy", given.get("SEED", 0)
    env = impl.eval_env(config)
    start = time.perf_counter()
    figures = evaluate_params(config, runner.params, options["EVAL_EPISODES"], greedy, seed)
    seconds = time.perf_counter() - start
    update = checkpoints.latest()
    print(
        f"evaluation of {checkpoints.directory} (update {update}, "
        f"{update * config['NUM_ENVS'] * config['NUM_STEPS']:,} env steps per run): "
        f"{options['EVAL_POLICY']} policy, seed {seed}, {seconds:.1f} s"
    )
    print(
        f"rules: {env.grid_size}x{env.grid_size}, starvation after {env.starvation_steps} moves "
        f"without food, at most {env.max_steps:,} moves, win = {env.max_score} food"
    )
    grid = impl.run_grid(config)
    for run, f in zip(grid, figures):
        label = f"{run_label(config, run)}: " if len(grid) > 1 else ""
        print(f"{label}{describe(f)}")
    if options["METRICS_OUT"]:
        rows = [{"seed": run["SEED"], **f} for run, f in zip(grid, figures)]
        with open(options["METRICS_OUT"], "w") as out:
            if len(rows) == 1:
                out.write(json.dumps(figures[0]) + "\n")
            else:
                out.writelines(json.dumps(row) + "\n" for row in rows)
    if options["RENDER_GIF"] or options["RENDER_ASCII"]:
        first = jax.tree.map(lambda x: x[0], runner.params)
        frames, scores = replay_game(config, first, greedy, seed)
        if options["RENDER_GIF"]:
            write_gif(config, frames, scores, options["RENDER_GIF"])
            print(f"gif: {options['RENDER_GIF']} ({len(frames)} frames: the start and "
                  f"{len(frames) - 1} moves, score {scores[-1]})")  # fmt: skip
        if options["RENDER_ASCII"]:
            play_ascii(env, frames, scores)
    return 0


def play_ascii(env, frames: np.ndarray, scores: np.ndarray, frame_s: float = 0.05) -> None:
    live = sys.stdout.isatty()
    for t, (frame, score) in enumerate(zip(frames, scores)):
        text = f"move {t}  score {score}\n{env.render_ascii(frame)}"
        print(("\x1b[H\x1b[2J" + text) if live else text + "\n", flush=True)
        if live:
            time.sleep(frame_s)


# ================================================================== main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        given = parse_given(parser, argv)
        settings = {k: v for k, v in given.items() if k in impl.SETTING}
        options = {**{o.key: o.default for o in RUN_OPTIONS},
                   **{k: v for k, v in given.items() if k in OPTION}}  # fmt: skip
        if options["EVAL"]:
            return evaluate_command(settings, options)
        for key in ("RENDER_GIF", "RENDER_ASCII"):
            if options[key]:
                raise ConfigError(f"{key} needs EVAL: it shows a game of a saved agent")
        return train_command(settings, {k: v for k, v in given.items() if k in OPTION})
    except (ConfigError, CheckpointError) as error:
        parser.error(in_flag_names(str(error)))
    except KeyboardInterrupt:
        warn("interrupted")
        return EXIT_SIGINT


if __name__ == "__main__":
    sys.exit(main())
