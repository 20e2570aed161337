"""A run's directory: a new one or one to resume (with the checks that refuse either), a run
moved or copied elsewhere, the checkpoints it saves, and the state it starts from.

Every check that can refuse a command is made in `prepare`, before anything compiles.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import jax
from jax.sharding import Mesh

from snake_purejaxrl.checkpoints import Checkpoints, first_line, require_checkpoint_dir
from snake_purejaxrl.config import (
    MAX_CHUNK,
    OPTION_BY_KEY,
    SETTING_BY_KEY,
    check_optimizer_settings,
    option_defaults,
    validate_config,
)
from snake_purejaxrl.devices import check_divisible, init_placed, make_mesh
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


def check_writable(path: str, key: str, directory: bool = False) -> None:
    """ConfigError (one line) unless `path` can be written as a file (or a directory): tried
    with a probe file in the nearest folder that exists, removed at once, so a command that is
    then refused has created nothing."""
    target = Path(path)
    existing = next(p for p in (target, *target.parents) if p.exists())
    try:
        if existing == target and not directory:
            if target.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            with open(target, "a"):  # opened, nothing written
                pass
            return
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a directory")
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe-")
        probe.close()  # deleted on close
    except OSError as error:
        raise ConfigError(f"{key} {path} cannot be written ({error.strerror or error})") from None


def is_metrics_file(path: str) -> bool:
    """Whether `path` starts with a metric row of this project (a run's --metrics-out)."""
    try:
        with open(path) as file:
            row = json.loads(file.readline())
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and {"update", "env_steps"} <= set(row)


def check_metrics_out(path: str, own: str | None, resuming: bool, mode: str) -> None:
    """--metrics-out: writable, and never a file the run does not own overwritten unasked. A
    file that exists and is not empty is refused unless METRICS_OUT_MODE is overwrite, or the
    run resumes and the file is its own (`own`, the path it wrote) or a metrics file of this
    project (the rows of a copied run: it rewrites them)."""
    check_writable(path, "METRICS_OUT")
    mine = own is not None and os.path.realpath(own) == os.path.realpath(path)
    if resuming and (mine or is_metrics_file(path)):
        return
    if mode == "new" and os.path.isfile(path) and os.path.getsize(path) > 0:
        raise ConfigError(
            f"METRICS_OUT {path} already exists and is not this run's metrics file: pick "
            "another path, or add METRICS_OUT_MODE overwrite to replace it"
        )


class RunLock:
    """One writer per run directory: an exclusive `flock` on DIR/run.lock, held while the process
    lives. The OS drops it when the process ends in any way (SIGKILL included), so no stale lock
    is ever left; the file stays, naming the last holder (pid, host).

    On shared storage (NFS), Linux emulates flock with NFS byte-range locks: they hold between
    hosts on NFSv4 (and v3 with lockd), but a host that dies holding one keeps it until the
    server's lease runs out (about 90 s on NFSv4), and some mounts (`nolock`) make them local
    to each host. Of a multi-host run only process 0 takes it."""

    NAME = "run.lock"

    def __init__(self, directory: Path) -> None:
        self.path = directory / self.NAME
        self.file = open(self.path, "a+")  # noqa: SIM115 - held until the process ends
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(
                f"CHECKPOINT_DIR {directory.absolute()} is in use by {holder}: one process at a "
                "time writes a run (wait for it, or stop it; --eval may read it meanwhile)"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        self.file.flush()


class RunSetup(NamedTuple):
    """A training run as set up: its config, run options, the device mesh, its checkpoint
    directory (or None) and the lock held on it, the meta of the checkpoint it resumes (empty
    for a new run) and what to tell once it loads."""

    config: dict
    options: dict
    mesh: Mesh
    checkpoints: Checkpoints | None
    lock: RunLock | None
    meta: dict
    notices: list[str]


def prepare(given: dict, given_options: dict) -> RunSetup:
    """A new run, or the one in --checkpoint-dir with --resume. Every check that can refuse
    comes first; only then are the directory made, its lock taken and its checkpoints opened."""
    check_optimizer_settings(given)
    options = {**option_defaults(), **given_options}
    own_metrics = None
    if options["RESUME"]:
        if options["CHECKPOINT_DIR"] in (None, "none"):
            raise ConfigError("RESUME needs CHECKPOINT_DIR: the directory of the run to continue")
        found = require_checkpoint_dir(options["CHECKPOINT_DIR"])
        config, meta = resumed_config(found, given)
        stored = {k: v for k, v in meta.get("options", {}).items() if k in OPTION_BY_KEY}
        stored, meta, notices = relocated(stored, meta, str(found.directory), given_options)
        own_metrics = stored.get("METRICS_OUT")
        options = {**options, **stored, **given_options, "RESUME": True}
    else:
        config, meta, notices = validate_config(given), {}, []
        if options["CHECKPOINT_DIR"] is None:
            options["CHECKPOINT_DIR"] = auto_checkpoint_dir()
        directory = options["CHECKPOINT_DIR"]
        if directory != "none":
            check_writable(directory, "CHECKPOINT_DIR", directory=True)
            exists = Path(directory).is_dir()
            latest = Checkpoints(directory, read_only=True).latest() if exists else None
            if latest is not None:
                raise ConfigError(
                    f"CHECKPOINT_DIR {directory} already holds a run (update {latest}): add "
                    "--resume to continue it, or pick a new one"
                )
    if os.environ.get("WANDB_SWEEP_ID"):  # started by `wandb agent`: log to its run
        if config["NUM_RUNS"] > 1:
            raise ConfigError(
                "under a WandB sweep agent (WANDB_SWEEP_ID is set) a process is one run of the "
                "sweep: NUM_SEEDS must be 1 and LR_SWEEP / MUON_LR_SWEEP empty (let the sweep "
                "vary SEED, LR or MUON_LR)"
            )
        options["WANDB"] = True
    mesh = make_mesh(config["DEVICES"])
    check_divisible(config, mesh)
    if options["METRICS_OUT"]:
        check_metrics_out(
            options["METRICS_OUT"], own_metrics, options["RESUME"], options["METRICS_OUT_MODE"]
        )
    checkpoints = lock = None
    if options["CHECKPOINT_DIR"] != "none":
        directory = Path(options["CHECKPOINT_DIR"])
        directory.mkdir(parents=True, exist_ok=True)
        lock = RunLock(directory) if jax.process_index() == 0 else None
        checkpoints = Checkpoints(directory, keep=options["KEEP_CHECKPOINTS"])
    return RunSetup(config, options, mesh, checkpoints, lock, meta, notices)


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


def save_failure_cause(error: BaseException) -> str:
    """A failed save's cause in a few words: a full disk reads as one, whatever layer of orbax
    (tensorstore's RESOURCE_EXHAUSTED, an OSError) reported it."""
    text = f"{error.__class__.__name__}: {first_line(error)}"
    if getattr(error, "errno", None) == errno.ENOSPC or any(
        sign in text for sign in ("RESOURCE_EXHAUSTED", "No space left")
    ):
        return "no space left on device"
    return text


class Saver:
    """Saves a run's checkpoints. A save that fails (a full disk) is said once, its half-written
    files are removed, the earlier checkpoints are kept and training goes on; later saves are
    tried again. Keeps how long the saves took and the last update saved."""

    def __init__(self, checkpoints: Checkpoints) -> None:
        self.checkpoints = checkpoints
        self.failure: str | None = None  # the first failed save's cause
        self.seconds: list[float] = []
        self.saved = checkpoints.latest()  # the latest update on disk

    def save(self, update: int, runner, history, meta) -> None:
        start = time.perf_counter()
        try:
            self.checkpoints.save(update, runner, history, meta)
        except Exception as error:
            if self.failure is None:
                self.failure = save_failure_cause(error)
                kept = f"update {self.saved} is kept" if self.saved else "none saved yet"
                warn(f"checkpoint: saving update {update} failed ({self.failure}); training "
                     f"goes on and later saves are tried ({kept})")  # fmt: skip
            self.checkpoints.remove_partial_saves()
            return
        self.seconds.append(time.perf_counter() - start)
        self.saved = update


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
