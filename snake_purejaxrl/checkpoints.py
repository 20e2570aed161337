"""A run's checkpoint directory: orbax steps of (training state, metric history, meta).

Each step `DIR/<update>/` is written by orbax atomically (a save cut off half way is a temporary
directory that never loads, and is cleaned up by the next run); the last `keep` steps stay.
The metric history (every update's metrics so far) is committed together with the state it
belongs to, so a resumed run rewrites its JSON Lines file from the checkpoint: no row missing,
none twice, whatever moment the previous process was killed at (a rewrite cut off half way is
simply done again by the next resume). Nothing here is pickled: arrays
go through orbax's array format, the meta through JSON.

Problems reach the caller as `CheckpointError`, one line that names the directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "snake-purejaxrl/1"  # written into every checkpoint's meta; anything else is foreign
WANDB_CLAIM = "wandb_logged.json"  # updates already handed to WandB (see `claim_wandb`)


class CheckpointError(Exception):
    """A checkpoint directory that cannot be used; the message is one line."""


def written_part(state: Any) -> Any:
    """What of `state` goes to disk: of a dataclass, the fields that hold something. A field
    left None (the averaged weights of a run that keeps none) is not written, so such a field
    leaves the checkpoints of the runs without it as they were, and older ones restorable."""
    if not dataclasses.is_dataclass(state):
        return state
    fields = (field.name for field in dataclasses.fields(state))
    return {name: getattr(state, name) for name in fields if getattr(state, name) is not None}


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message, cut to `limit` characters."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{line[:limit]}{'...' if len(line) > limit else ''}"


def error_line(error: BaseException) -> str:
    """'ErrorType: the first line of its message'."""
    return f"{error.__class__.__name__}: {first_line(error)}"


def _orbax():
    import orbax.checkpoint as ocp  # imported on first use: argument errors answer at once

    _quiet_orbax()
    return ocp


def _quiet_orbax() -> None:
    """Keep orbax's own reports of a failing save off the console: the caller gets the
    exception and says its cause once. orbax also reports it as absl ERROR lines, as
    exceptions of its asyncio threads that reach `sys.unraisablehook`, through asyncio's
    "Task exception was never retrieved", and as RuntimeWarnings for the writes it abandoned
    ("coroutine ... was never awaited"); a full disk gave dozens of tracebacks."""
    warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    if getattr(sys.unraisablehook, "quiets_orbax", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback else []
        where = " ".join(f.filename for f in frames) + repr(unraisable.object)
        if "orbax" in where or "asyncio" in where:
            return
        previous(unraisable)

    hook.quiets_orbax = True
    sys.unraisablehook = hook


class Checkpoints:
    """Save and restore the steps of one run directory (every process calls save/restore)."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3, read_only: bool = False):
        """`read_only`: only look (no directory created, no leftovers of killed saves removed)."""
        self.directory = Path(directory).absolute()
        ocp = _orbax()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,  # a save cut off half way leaves a tmp dir
            enable_async_checkpointing=False,  # a save is done before its rows are written
        )
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as error:
            raise CheckpointError(f"cannot open {self.directory}: {error_line(error)}") from None

    def remove_partial_saves(self, settle_s: float = 0.5, limit_s: float = 10.0) -> None:
        """Delete the temporary directories of saves that failed half way. Writes of a failed
        save may still be in flight and recreate one after a sweep, so sweep until none has
        come back for `settle_s` (at most `limit_s`)."""
        deadline, quiet_since = time.monotonic() + limit_s, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < settle_s:
            partial = list(self.directory.glob("*.orbax-checkpoint-tmp*"))
            for path in partial:
                shutil.rmtree(path, ignore_errors=True)
            if partial:
                quiet_since = time.monotonic()
            time.sleep(0.05)

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, history: dict[str, np.ndarray], meta: dict) -> None:
        """Write step `step` atomically and wait until it is on disk."""
        ocp = _orbax()
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(written_part(state)),
            history=ocp.args.StandardSave(history),
            meta=ocp.args.JsonSave({**meta, "format": FORMAT}),
        )
        self.manager.save(step, args=args, force=True)
        self.manager.wait_until_finished()

    def meta(self, step: int | None = None) -> dict:
        """The meta (config, run options, WandB ids) of `step` (default: the latest)."""
        ocp = _orbax()
        step = self._step(step)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
            meta = restored.meta
        except Exception as error:
            raise CheckpointError(
                f"{self.directory} holds no snake-purejaxrl checkpoint: step {step} has no "
                f"readable meta ({error_line(error)})"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{self.directory} holds no snake-purejaxrl checkpoint")
        return meta

    def restore(self, abstract_state: Any, step: int | None = None):
        """(state, history, meta) of `step` (default: the latest); `abstract_state` gives the
        structure, shapes, dtypes and shardings to restore into."""
        ocp = _orbax()
        step = self._step(step)
        meta = self.meta(step)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(written_part(abstract_state)),
            history=ocp.args.StandardRestore(),
        )
        try:
            restored = self.manager.restore(step, args=args)
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} cannot be restored: damaged, or not "
                f"made by this version ({error_line(error)})"
            ) from None
        history = {k: np.asarray(v) for k, v in restored.history.items()}
        state = restored.state
        if dataclasses.is_dataclass(abstract_state):
            state = dataclasses.replace(abstract_state, **state)
        return state, history, meta

    def _step(self, step: int | None) -> int:
        if step is not None:
            return step
        latest = self.latest()
        if latest is None:
            raise CheckpointError(
                f"no checkpoint in {self.directory} yet (a run stopped before its first save "
                "has nothing to resume: start it again)"
            )
        return latest

    # ------------------------------------------------------------ WandB bookkeeping
    def wandb_logged_through(self) -> int:
        """The last update whose rows were handed to WandB (0: none)."""
        try:
            return int(json.loads((self.directory / WANDB_CLAIM).read_text())["through"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def claim_wandb(self, through: int) -> None:
        """Record, BEFORE logging them, that rows up to `through` go to WandB: a process killed
        while logging may leave a few of them out, but a resumed run never logs one twice."""
        tmp = self.directory / f".{WANDB_CLAIM}.tmp"
        tmp.write_text(json.dumps({"through": through}))
        os.replace(tmp, self.directory / WANDB_CLAIM)


def require_checkpoint_dir(directory: str | os.PathLike) -> Checkpoints:
    """An existing directory with at least one snake-purejaxrl checkpoint, or CheckpointError."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint directory {path} (it does not exist)")
    checkpoints = Checkpoints(path, read_only=True)
    checkpoints.meta()  # no step, or a foreign one: one line
    return checkpoints
