"""A small GIF of a trained agent for the README: one greedy game, every k-th move.

    python -m bench.readme_gif runs/default bench/default_agent.gif --every 2

`--eval DIR --render-gif PATH` writes every move (a frame per move); a whole game of a good agent
is then a few megabytes, too much to commit. This keeps every k-th board (and the last one), at
8 pixels a cell, and says so in each frame's caption.
"""

from __future__ import annotations

import argparse

import jax

from snake_purejaxrl.evaluation import replay_game
from snake_purejaxrl.rendering import render_rgb, save_gif
from snake_purejaxrl.run_dir import SavedRun
from train_snake_purejaxrl_impl import agent_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint_dir")
    parser.add_argument("gif")
    parser.add_argument("--every", type=int, default=2, help="keep every k-th move")
    parser.add_argument("--seed", type=int, default=0, help="which game")
    args = parser.parse_args()
    saved = SavedRun(args.checkpoint_dir)
    config, (runner, _) = saved.config, saved.restore()
    params = jax.tree.map(lambda x: x[0], agent_params(runner))
    frames, scores = replay_game(config, params, True, args.seed)
    keep = list(range(0, len(frames), args.every))
    keep += [len(frames) - 1] if keep[-1] != len(frames) - 1 else []
    images = [render_rgb(frames[t], config["GRID_SIZE"], cell_px=8) for t in keep]
    captions = [f"score {scores[t]} move {t}" for t in keep]
    save_gif(images, args.gif, captions, frame_ms=40)
    print(f"{args.gif}: {len(keep)} frames of {len(frames) - 1} moves, final score {scores[-1]}")


if __name__ == "__main__":
    main()
