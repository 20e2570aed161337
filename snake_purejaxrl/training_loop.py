"""The training loop the command line drives: jitted chunks of updates on the devices; after
each chunk, its healthy updates are committed (history, checkpoint, then the rows to the metrics
file and WandB). Ctrl-C / SIGTERM stop it at the end of a chunk; a non-finite loss stops it and
keeps the last healthy state.
"""

from __future__ import annotations

import os
import resource
import signal
import tempfile
import threading
import time

import jax
import numpy as np

import train_snake_purejaxrl_impl as impl
from snake_purejaxrl.config import MAX_CHUNK, run_grid
from snake_purejaxrl.devices import runner_shardings
from snake_purejaxrl.evaluation import evaluate_params, replay_game
from snake_purejaxrl.outputs import (
    Clock,
    Console,
    MetricsFile,
    WandbLogger,
    extend_history,
    final_score,
    final_updates,
    print_summary,
    rows_of,
    split_by_run,
    warn,
)
from snake_purejaxrl.rendering import game_gif
from snake_purejaxrl.run_dir import RunSetup, Saver, checkpoint_every, start_state, stored_options

# Exit statuses besides 0 and argparse's 2 (a refused command): a non-finite loss stopped
# training; the final state could not be saved (a full disk); Ctrl-C; SIGTERM.
EXIT_NAN, EXIT_UNSAVED, EXIT_SIGINT, EXIT_SIGTERM = 3, 4, 130, 143


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
    leaves = jax.tree.leaves(tree)
    while not all(leaf.is_ready() for leaf in leaves):
        time.sleep(0.02)


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


def final_evaluation(config: dict, runner, options: dict):
    """Evaluate the final agent of every run and render one game each as a GIF (for WandB)."""
    greedy = options["EVAL_POLICY"] == "greedy"
    params = jax.device_get(impl.agent_params(runner))
    summaries = evaluate_params(config, params, options["EVAL_EPISODES"], greedy, 0)
    gifs = []
    folder = tempfile.mkdtemp(prefix="snake-eval-")
    for r in range(config["NUM_RUNS"]):
        one = jax.tree.map(lambda x, r=r: x[r], params)
        frames, scores = replay_game(config, one, greedy, r)
        gifs.append(os.path.join(folder, f"run{r}.gif"))
        game_gif(frames, scores, config["GRID_SIZE"], gifs[-1])
    return summaries, gifs


class Trainer:
    """One training command driven from the host: jitted chunks of updates; after each, the
    checkpoint, then the chunk's rows to --metrics-out and WandB. Only process 0 writes outputs."""

    def __init__(self, setup: RunSetup) -> None:
        self.config, self.options = setup.config, setup.options
        self.run_lock = setup.lock  # held as long as the trainer lives
        self.saver = Saver(setup.checkpoints) if setup.checkpoints is not None else None
        mesh = setup.mesh
        self.is_main = jax.process_index() == 0
        parts = impl.make_parts(self.config)
        init = impl.init_runs(parts)
        shardings = runner_shardings(jax.eval_shape(init), mesh)
        self.runner, self.history, self.update = start_state(setup, init, shardings)
        for notice in setup.notices if self.is_main else ():
            warn(notice)
        self.clock = Clock(float(self.history["time_s"][-1]) if self.history else 0.0)
        quiet = self.options["QUIET"] or not self.is_main
        self.console = Console(self.config, quiet, self.update)
        self.report_lock = threading.Lock()
        self.every = checkpoint_every(self.options, self.config)
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        chunk = jax.jit(
            impl.make_chunk(parts, min(self.every, MAX_CHUNK), report=self.report),
            out_shardings=(shardings, replicated, replicated),
        )
        compile_start = time.perf_counter()
        self.chunk = chunk.lower(self.runner, np.int32(0)).compile()
        self.compile_s = time.perf_counter() - compile_start
        saved_rows = rows_of(self.history, self.config, 1, self.update) if self.history else []
        self.metrics_file = MetricsFile(self.options["METRICS_OUT"] if self.is_main else None,
                                        saved_rows)  # fmt: skip
        ids = setup.meta.get("wandb_ids")
        grid = run_grid(self.config)
        self.wandb = WandbLogger(self.options, self.config, grid, ids, enabled=self.is_main)
        checkpoints = setup.checkpoints
        self.wandb_through = (  # what went to the WandB runs of `ids`; none: nothing yet
            checkpoints.wandb_logged_through() if checkpoints and ids else 0
        )
        self.meta = {"config": self.config, "options": stored_options(self.options),
                     "wandb_ids": self.wandb.ids() or ids}  # fmt: skip

    def report(self, metrics: dict[str, np.ndarray]) -> None:
        """Host callback of the running chunk: each update's time, and its progress line."""
        with self.report_lock:
            update = int(metrics["update"])
            if self.clock.mark(update):  # a callback may repeat on several devices
                self.console.show(update, metrics)

    def train(self) -> int:
        if self.is_main and not self.options["QUIET"]:
            resumed = f"; resuming at update {self.update}" if self.update else ""
            print(f"compiled in {self.compile_s:.1f} s; training {self.config['NUM_UPDATES']} "
                  f"updates of {self.config['NUM_RUNS']} run(s){resumed}")  # fmt: skip
            if self.wandb.group:
                print(f"wandb group: {self.wandb.group}")
        self.log_to_wandb(self.update)  # rows a killed process saved but never logged
        signals = Signals()
        self.clock.restart()
        self.console.started()
        start, status = time.perf_counter(), 0
        try:
            while self.update < self.config["NUM_UPDATES"] and status == 0:
                status = self.train_chunk(signals)
                if status == 0 and signals.received is not None:
                    status = signals.exit_code()
        finally:
            signals.restore()
            self.metrics_file.close()
        return self.finish(status, time.perf_counter() - start)

    def train_chunk(self, signals: Signals) -> int:
        """One chunk: compute, keep the healthy updates (checkpoint, rows); 0 or EXIT_NAN."""
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
        kept = self.saver.checkpoints.latest() if self.saver is not None else None
        warn(f"update {self.update + 1}: {unhealthy[1]} is not finite; training stopped"
             + (f"; the last good checkpoint (update {kept}) is kept in "
                f"{self.saver.checkpoints.directory}" if kept else ""))  # fmt: skip
        return EXIT_NAN

    def commit(self, runner, metrics: dict, stopping: bool) -> None:
        """Updates done: into the history, a checkpoint (every `every`, at the end, or when
        stopping), then the rows."""
        count = len(metrics["total_loss"])
        updates = np.arange(self.update + 1, self.update + count + 1)
        metrics["update"] = np.repeat(updates[:, None], self.config["NUM_RUNS"], 1)
        self.history = extend_history(self.history, metrics, self.clock.times(updates))
        first, self.runner, self.update = self.update + 1, runner, int(updates[-1])
        at_boundary = self.update % self.every == 0 or self.update == self.config["NUM_UPDATES"]
        if self.saver is not None and (at_boundary or stopping):
            self.saver.save(self.update, self.runner, self.history, self.meta)
        self.metrics_file.write(rows_of(self.history, self.config, first, self.update))
        self.log_to_wandb(self.update)

    def log_to_wandb(self, last: int) -> None:
        """Rows up to `last` not yet handed to WandB (claimed first: never logged twice)."""
        if not self.wandb.runs or last <= self.wandb_through:
            return
        if self.saver is not None:
            self.saver.checkpoints.claim_wandb(last)
        rows = rows_of(self.history, self.config, self.wandb_through + 1, last)
        self.wandb.log(split_by_run(rows, self.config))
        self.wandb_through = last

    def finish(self, status: int, train_s: float) -> int:
        """Signals: say how to resume. Success: the summary (with WandB, a final evaluation)."""
        checkpoints = self.saver.checkpoints if self.saver is not None else None
        if status in (EXIT_SIGINT, EXIT_SIGTERM) and checkpoints is not None:
            if checkpoints.latest() is not None:
                warn(f"saved at update {checkpoints.latest()}; resume with:\n"
                     f"  python train_snake_purejaxrl.py --resume --checkpoint-dir "
                     f"{checkpoints.directory}")  # fmt: skip
        if status != 0:
            self.wandb.finish()
            return status
        if self.saver is not None and self.saver.failure is not None:
            self.saver.checkpoints.remove_partial_saves()  # writes in flight have settled now
            if self.saver.saved != self.update:
                status = EXIT_UNSAVED
        summary = self.summary(train_s)
        if self.wandb.runs:
            summaries, gifs = final_evaluation(self.config, self.runner, self.options)
            self.wandb.log_evaluation(summaries, gifs)
            summary["evaluation"] = summaries
        summary["wandb"] = self.wandb.where()
        self.wandb.finish()
        if self.is_main:
            print_summary(summary)
        return status

    def summary(self, train_s: float) -> dict:
        """The closing figures: speed, final score per run (last 10% of updates), where the
        checkpoints and rows went."""
        runs, history, update = self.config["NUM_RUNS"], self.history, self.update
        score = history["episode_score"].T if history else np.zeros((runs, 0))
        episodes = history["episodes"].T if history else np.zeros((runs, 0))
        steps = (update - self.console.start_update) * self.console.steps_per_update
        saves = self.saver.seconds if self.saver is not None else []
        return {
            "config": self.config,
            "updates": update,
            "env_steps": update * self.config["NUM_ENVS"] * self.config["NUM_STEPS"],
            "steps_per_s": steps / max(train_s, 1e-9),
            "train_s": train_s,
            "compile_s": self.compile_s,
            "final_scores": final_score(score, episodes) if update else np.zeros(len(score)),
            "final_episodes": int(episodes[:, final_updates(max(update, 1))].sum()),
            "best_score": float(np.max(history["episode_score_max"])) if history else 0.0,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "checkpoints": str(self.saver.checkpoints.directory) if self.saver else None,
            "saved_update": self.saver.saved if self.saver else None,
            "save_failure": self.saver.failure if self.saver else None,
            "rows_unwritten": len(self.metrics_file.waiting) if self.metrics_file.failure else 0,
            "metrics_failure": self.metrics_file.failure,
            "save_s": float(np.median(saves)) if saves else None,
            "metrics_out": self.options["METRICS_OUT"],
        }
