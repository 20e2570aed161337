"""`--eval DIR`: play games with the agent of a run's latest checkpoint (read only: it works on a
run that is still training), print and write the figures, and show one game as a GIF or ASCII.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from snake_purejaxrl.config import run_grid
from snake_purejaxrl.evaluation import describe, eval_env, evaluate_params, replay_game
from snake_purejaxrl.outputs import run_label
from snake_purejaxrl.rendering import game_gif, render_ascii
from snake_purejaxrl.run_dir import SavedRun, check_writable
from snake_purejaxrl.settings import ConfigError
from train_snake_purejaxrl_impl import agent_params, first_averaged_update


def evaluate_command(given: dict, options: dict) -> int:
    """--eval DIR: play games with the agent of DIR's latest checkpoint; print the figures."""
    extra = sorted(set(given) - {"SEED"})
    if extra:
        raise ConfigError(f"EVAL takes its settings from the checkpoint; of them only SEED may "
                          f"be given, got {', '.join(extra)}")  # fmt: skip
    if options["METRICS_OUT"]:
        check_writable(options["METRICS_OUT"], "METRICS_OUT")
    if options["RENDER_GIF"]:
        check_writable(options["RENDER_GIF"], "RENDER_GIF")
    saved = SavedRun(options["EVAL"])
    checkpoints, config = saved.checkpoints, saved.config
    runner, _ = saved.restore()
    greedy, seed = options["EVAL_POLICY"] == "greedy", given.get("SEED", 0)
    env = eval_env(config)
    start = time.perf_counter()
    params = agent_params(runner)
    figures = evaluate_params(config, params, options["EVAL_EPISODES"], greedy, seed)
    seconds = time.perf_counter() - start
    update = checkpoints.latest()
    print(
        f"evaluation of {checkpoints.directory} (update {update}, "
        f"{update * config['NUM_ENVS'] * config['NUM_STEPS']:,} env steps per run): "
        f"{options['EVAL_POLICY']} policy, seed {seed}, {seconds:.1f} s"
    )
    if config["AVERAGE_LAST"]:
        first = first_averaged_update(config)
        kept = (
            f"the mean of its weights over updates {first}-{update}"
            if update >= first
            else f"its weights of update {update} (the mean starts at update {first})"
        )
        print(f"agent: {kept} (--average-last {config['AVERAGE_LAST']:g})")
    print(
        f"rules: {env.grid_size}x{env.grid_size}, starvation after {env.starvation_steps} moves "
        f"without food, at most {env.max_steps:,} moves, win = {env.max_score} food"
    )
    grid = run_grid(config)
    for run, f in zip(grid, figures):
        label = f"{run_label(config, run)}: " if len(grid) > 1 else ""
        print(f"{label}{describe(f)}")
    if options["METRICS_OUT"]:
        rows = [{"seed": run["SEED"], **f} for run, f in zip(grid, figures)]
        Path(options["METRICS_OUT"]).parent.mkdir(parents=True, exist_ok=True)
        with open(options["METRICS_OUT"], "w") as out:
            if len(rows) == 1:
                out.write(json.dumps(figures[0]) + "\n")
            else:
                out.writelines(json.dumps(row) + "\n" for row in rows)
    if options["RENDER_GIF"] or options["RENDER_ASCII"]:
        first = jax.tree.map(lambda x: x[0], params)
        frames, scores = replay_game(config, first, greedy, seed)
        if options["RENDER_GIF"]:
            Path(options["RENDER_GIF"]).parent.mkdir(parents=True, exist_ok=True)
            game_gif(frames, scores, config["GRID_SIZE"], options["RENDER_GIF"])
            print(f"gif: {options['RENDER_GIF']} ({len(frames)} frames: the start and "
                  f"{len(frames) - 1} moves, score {scores[-1]})")  # fmt: skip
        if options["RENDER_ASCII"]:
            play_ascii(env.grid_size, frames, scores)
    return 0


def play_ascii(grid_size: int, frames: np.ndarray, scores: np.ndarray, frame_s=0.05) -> None:
    """One game in the terminal, frame by frame (redrawn in place on a terminal)."""
    live = sys.stdout.isatty()
    for t, (frame, score) in enumerate(zip(frames, scores)):
        text = f"move {t}  score {score}\n{render_ascii(frame, grid_size)}"
        print(("\x1b[H\x1b[2J" + text) if live else text + "\n", flush=True)
        if live:
            time.sleep(frame_s)
