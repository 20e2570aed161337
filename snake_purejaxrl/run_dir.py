"""A run's directory: a new one or one to resume (with the checks that refuse either), a run
moved or copied elsewhere, the checkpoints it saves, and the state it starts from.

Every check that can refuse a command is made in `prepare`, before anything compiles.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import jax

from snake_purejaxrl.checkpoints import Checkpoints, first_line, require_checkpoint_dir
from snake_purejaxrl.config import (
    MAX_CHUNK,
    OPTION_BY_KEY,
    SETTING_BY_KEY,
    option_defaults,
    validate_config,
)
from snake_purejaxrl.devices import init_placed
from snake_purejaxrl.outputs import warn
from snake_purejaxrl.settings import ConfigError
from train_snake_purejaxrl_impl import init_runs, make_parts


def auto_checkpoint_dir() -> str:
    return os.path.join("runs", f"snake-{time.strftime('%Y%m%d-%H%M%S')}")


def checkpoint_every(options: dict, config: dict) -> int:
    every = options["CHECKPOINT_EVERY"]
    if every is None:
        every = min(max(1, -(-config["NUM_UPDATES"] // 10)), MAX_CHUNK)
    return min(every, config["NUM_UPDATES"])


def settings_of(stored: dict) -> dict:
    """The declared settings of a stored config (derived keys dropped)."""
    return {k: v for k, v in stored.items() if k in SETTING_BY_KEY}


def resumed_config(checkpoints: Checkpoints, given: dict) -> tuple[dict, dict]:
    """(config, meta): the checkpoint's settings with the given ones on top; ConfigError if a
    given setting may not change on resume, or the run would end before its checkpoint."""
    meta = checkpoints.meta()
    stored = validate_config(settings_of(meta["config"]))
    for key, value in given.items():
        if not SETTING_BY_KEY[key].on_resume and value != stored[key]:
            setting = SETTING_BY_KEY[key]
            raise ConfigError(
                f"{key} cannot change when a run resumes: {checkpoints.directory} was trained "
                f"with {setting.show(stored[key])}, got {setting.show(value)}"
                " (a new --checkpoint-dir starts a new run)"
            )
    config = validate_config({**stored, **given})
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


class RunSetup(NamedTuple):
    """A training run as set up: its config, run options, checkpoint directory (or None), the
    meta of the checkpoint it resumes (empty for a new run) and what to tell once it loads."""

    config: dict
    options: dict
    checkpoints: Checkpoints | None
    meta: dict
    notices: list[str]


def prepare(given: dict, given_options: dict) -> RunSetup:
    """A new run, or the one in --checkpoint-dir with --resume; every check that can fail is
    done here, before anything compiles."""
    options = {**option_defaults(), **given_options}
    if options["RESUME"]:
        if options["CHECKPOINT_DIR"] in (None, "none"):
            raise ConfigError("RESUME needs CHECKPOINT_DIR: the directory of the run to continue")
        found = require_checkpoint_dir(options["CHECKPOINT_DIR"])
        config, meta = resumed_config(found, given)
        stored = {k: v for k, v in meta.get("options", {}).items() if k in OPTION_BY_KEY}
        stored, meta, notices = relocated(stored, meta, str(found.directory), given_options)
        options = {**options, **stored, **given_options, "RESUME": True}
    else:
        config, meta, notices = validate_config(given), {}, []
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
    return RunSetup(config, options, checkpoints, meta, notices)


def start_state(run: RunSetup, init, shardings):
    """(runner, history, update): restored from the latest checkpoint, or fresh."""
    if run.checkpoints is None or run.checkpoints.latest() is None:
        return init_placed(init, shardings), None, 0
    abstract = jax.tree.map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(init),
        shardings,
    )
    runner, history, _ = run.checkpoints.restore(abstract)
    return runner, history, int(history["update"][-1, 0])


def stored_options(options: dict) -> dict:
    """The run options a checkpoint keeps for --resume: output paths made absolute, so a
    resumed run writes to the same files from any directory."""
    stored = {k: v for k, v in options.items() if k in OPTION_BY_KEY and k != "RESUME"}
    for key in ("METRICS_OUT", "CHECKPOINT_DIR"):
        if stored[key] not in (None, "none"):
            stored[key] = os.path.abspath(stored[key])
    return stored


class Saver:
    """Saves a run's checkpoints; a save that fails is said once (the earlier checkpoints are
    kept) and training goes on. Keeps how long the saves took."""

    def __init__(self, checkpoints: Checkpoints) -> None:
        self.checkpoints = checkpoints
        self.failure: str | None = None
        self.seconds: list[float] = []

    def save(self, update: int, runner, history, meta) -> None:
        start = time.perf_counter()
        try:
            self.checkpoints.save(update, runner, history, meta)
        except Exception as error:
            if self.failure is None:
                self.failure = f"{error.__class__.__name__}: {first_line(error)}"
                warn(f"checkpoint: saving update {update} failed ({self.failure}); training "
                     "goes on, the earlier checkpoints are kept")  # fmt: skip
            return
        self.seconds.append(time.perf_counter() - start)


class SavedRun:
    """A checkpointed run opened read-only (evaluation, benches): its config, and the state and
    metric history of any step it kept."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.checkpoints = require_checkpoint_dir(directory)
        self.config = validate_config(settings_of(self.checkpoints.meta()["config"]))
        self.abstract = jax.eval_shape(init_runs(make_parts(self.config)))

    def restore(self, step: int | None = None):
        """(runner, history) of `step` (default: the latest)."""
        runner, history, _ = self.checkpoints.restore(self.abstract, step)
        return runner, history
