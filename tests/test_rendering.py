"""Pictures of a game (`snake_purejaxrl.rendering`): ASCII, RGB and the checks on what they get."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snake_env import SnakeEnv
from snake_purejaxrl.rendering import render_ascii, render_rgb


def test_render_ascii_and_rgb_show_the_board():
    env = SnakeEnv(5)
    state = env.make_state([(1, 1), (1, 2), (2, 2)], food=(4, 0))
    text = render_ascii(state, 5)
    assert text.splitlines() == [
        "#######",
        "#.....#",
        "#.Ho..#",
        "#..t..#",
        "#.....#",
        "#*....#",
        "#######",
    ]
    image = render_rgb(state, 5, cell_px=4)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    centre = lambda r, c: tuple(image[4 * r + 2, 4 * c + 2])  # noqa: E731
    assert centre(4, 0) == (230, 50, 50) and centre(1, 1) == (250, 230, 60)  # food, head
    background = tuple(image[0, 0])
    assert centre(1, 2) != background and centre(2, 2) != background  # the body
    # A curled snake: the tail touches the head's cell but is not the next segment, so only
    # consecutive segments are joined.
    curled = env.make_state([(1, 1), (1, 2), (2, 2), (2, 1)], food=(4, 0))
    image = render_rgb(curled, 5, cell_px=4)
    assert tuple(image[6, 8]) != background  # head (1, 1) joined to the neck (1, 2)
    assert tuple(image[8, 5]) == background  # head (1, 1) and tail (2, 1): a gap
    assert tuple(image[8, 10]) != background  # neck (1, 2) joined to (2, 2)
    batch = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    with pytest.raises(ValueError, match="single game"):
        render_ascii(batch, 5)
