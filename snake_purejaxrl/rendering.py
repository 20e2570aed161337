"""Pictures of a Snake game, on the host: ASCII text, RGB images, animated GIFs.

Kept out of `snake_env` (the dynamics), as Jumanji keeps its viewer apart: nothing here runs under
`jit`. A game is given as one game's `SnakeState` or as its observation `(G, G, 4)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from snake_env import FOOD_CHANNEL, HEAD_CHANNEL, NUM_CHANNELS, ORDER_CHANNEL, SnakeState


def board_of(game: SnakeState | Any, grid_size: int) -> tuple[np.ndarray, int, int]:
    """Countdown grid (grid_size, grid_size) int, head and food indices, as numpy on the host,
    from one game's state or from its observation (the countdown is order * length there)."""
    if not isinstance(game, SnakeState):
        obs = np.asarray(game)
        if obs.shape != (grid_size, grid_size, NUM_CHANNELS):
            raise ValueError(
                f"an observation must have shape {(grid_size, grid_size, NUM_CHANNELS)}, "
                f"got {obs.shape}"
            )
        order = obs[..., ORDER_CHANNEL]
        body = np.rint(order * np.count_nonzero(order)).astype(np.int64)
        return body, int(obs[..., HEAD_CHANNEL].argmax()), int(obs[..., FOOD_CHANNEL].argmax())
    body = np.asarray(game.body)
    if body.shape != (grid_size**2,):
        raise ValueError(
            f"state must be a single game with body shape ({grid_size**2},), got {body.shape}; "
            "index a batch first, e.g. jax.tree.map(lambda x: x[0], state)"
        )
    return body.reshape(grid_size, grid_size).astype(np.int64), int(game.head), int(game.food)


def render_ascii(game: SnakeState | Any, grid_size: int) -> str:
    """The board as text: H head, o body, t tail, * food, . empty, inside a # border."""
    body, head, food = board_of(game, grid_size)
    symbols = np.full(body.shape, ".", dtype="<U1")
    symbols[body > 0] = "o"
    symbols[body == 1] = "t"
    symbols.flat[food] = "*"
    symbols.flat[head] = "H"
    border = "#" * (grid_size + 2)
    rows = ["#" + "".join(r) + "#" for r in symbols]
    return "\n".join([border, *rows, border])


def render_rgb(game: SnakeState | Any, grid_size: int, cell_px: int = 16) -> np.ndarray:
    """(grid_size * cell_px, grid_size * cell_px, 3) uint8 picture of one game. Each body cell
    is drawn inset, joined only to the segments before and after it, so the snake's path reads
    clearly; the body darkens from head to tail in a few steps (few colours: small GIFs)."""
    if isinstance(cell_px, bool) or not isinstance(cell_px, (int, np.integer)):
        raise ValueError(f"cell_px must be an integer in [3, 256], got {cell_px!r}")
    if not 3 <= cell_px <= 256:
        raise ValueError(f"cell_px must be an integer in [3, 256], got {cell_px}")
    body, head, food = board_of(game, grid_size)
    g, gap = grid_size, max(1, cell_px // 8)
    image = np.empty((g * cell_px, g * cell_px, 3), np.uint8)
    image[:] = (24, 24, 32)
    length = max(int(body.max()), 1)
    shade = 0.5 + 0.5 * np.ceil(6 * body / length) / 6  # 6 steps, head brightest

    def fill(r0, r1, c0, c1, colour):
        image[r0:r1, c0:c1] = colour

    for r, c in zip(*np.nonzero(body)):
        colour = np.array([40, 200, 70]) * shade[r, c]
        y, x = r * cell_px, c * cell_px
        inner = (y + gap, y + cell_px - gap, x + gap, x + cell_px - gap)
        fill(*inner, colour)
        for dr, dc in ((0, 1), (1, 0)):  # bridge to a neighbour one segment away
            rr, cc = r + dr, c + dc
            if rr < g and cc < g and body[rr, cc] > 0 and abs(body[rr, cc] - body[r, c]) == 1:
                if dc:
                    fill(inner[0], inner[1], x + cell_px - gap, x + cell_px + gap, colour)
                else:
                    fill(y + cell_px - gap, y + cell_px + gap, inner[2], inner[3], colour)
    for index, colour in ((food, (230, 50, 50)), (head, (250, 230, 60))):
        y, x = (index // g) * cell_px, (index % g) * cell_px
        fill(y + gap, y + cell_px - gap, x + gap, x + cell_px - gap, colour)
    return image


def save_gif(
    images: list[np.ndarray], path: str, captions: list[str] | None = None, frame_ms: int = 60
) -> None:
    """An animated GIF (Pillow), one frame per image, each with its caption in a strip on top."""
    frames = []
    for i, image in enumerate(images):
        frame = Image.fromarray(image)
        if captions is not None:
            canvas = Image.new("RGB", (frame.width, frame.height + 16), (0, 0, 0))
            canvas.paste(frame, (0, 16))
            ImageDraw.Draw(canvas).text((3, 2), captions[i], fill=(235, 235, 235))
            frame = canvas
        frames.append(frame)
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0, optimize=True
    )


def game_gif(frames: np.ndarray, scores: np.ndarray, grid_size: int, path: str) -> None:
    """A played game (observations, one per move, and the score after each) as a GIF."""
    cell_px = 12 if grid_size <= 16 else 6
    images = [render_rgb(frame, grid_size, cell_px) for frame in frames]
    save_gif(images, path, [f"score {s}  move {t}" for t, s in enumerate(scores)])
