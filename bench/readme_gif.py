"""A small GIF of a trained agent for the README: one greedy game, every k-th move.

    python -m bench.readme_gif runs/default bench/default_agent.gif --every 2

`--eval DIR --render-gif PATH` writes every move (a frame per move); a whole game of a good agent
is then a few megabytes, too much to commit. This keeps every k-th board (and the last one), at
8 pixels a cell, and says so in each frame's caption.
"""

from __future__ import annotations

import argparse

import jax

import train_snake_purejaxrl_impl as impl
from checkpointing import Checkpoints
from snake_env import save_gif
from train_snake_purejaxrl import replay_game, settings_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint_dir")
    parser.add_argument("gif")
    parser.add_argument("--every", type=int, default=2, help="keep every k-th move")
    parser.add_argument("--seed", type=int, default=0, help="which game")
    args = parser.parse_args()
    checkpoints = Checkpoints(args.checkpoint_dir, read_only=True)
    config = impl.validate_config(settings_of(checkpoints.meta()["config"]))
    runner, _, _ = checkpoints.restore(jax.eval_shape(impl.init_runs(impl.make_parts(config))))
    params = jax.tree.map(lambda x: x[0], runner.params)
    frames, scores = replay_game(config, params, True, args.seed)
    keep = list(range(0, len(frames), args.every))
    keep += [len(frames) - 1] if keep[-1] != len(frames) - 1 else []
    env = impl.eval_env(config)
    images = [env.render_rgb(frames[t], cell_px=8) for t in keep]
    captions = [f"score {scores[t]} move {t}" for t in keep]
    save_gif(images, args.gif, captions, frame_ms=40)
    print(f"{args.gif}: {len(keep)} frames of {len(frames) - 1} moves, final score {scores[-1]}")


if __name__ == "__main__":
    main()
