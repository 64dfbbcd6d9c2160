"""Drawing Snake boards: a text grid and an RGB image made with numpy alone.

A board is the strategy's view (or the env's observation): 0 empty, -1 the food, the snake numbered
from 1 at the tail to its length at the head.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["render_text", "render_ansi", "render_rgb", "image_shape", "CELL_PX", "GAP_PX"]

CELL_PX = 24   # side of one cell in pixels
GAP_PX = 2     # gap between cells and around the board

BOARD_COLOUR = (40, 44, 52)
EMPTY_COLOUR = (60, 66, 78)
FOOD_COLOUR = (220, 60, 60)
HEAD_COLOUR = (250, 210, 60)
TAIL_COLOUR = (40, 120, 60)   # the body fades from the head's neighbour to the tail
NECK_COLOUR = (90, 200, 110)


def _rows(board: Any) -> list[list[int]]:
    return [[int(v) for v in row] for row in np.asarray(board).tolist()] if isinstance(board, np.ndarray) \
        else [[int(v) for v in row] for row in board]


def render_text(board: Any) -> str:
    """A text grid: ``.`` empty, ``*`` food, ``@`` the head, ``o`` the body, ``t`` the tail."""
    rows = _rows(board)
    length = max(max(row) for row in rows)

    def cell(v: int) -> str:
        if v == -1:
            return "*"
        if v == 0:
            return "."
        if v == length:
            return "@"
        return "t" if v == 1 else "o"

    return "\n".join(" ".join(cell(v) for v in row) for row in rows)


def render_ansi(board: Any, score: int | None = None) -> str:
    """:func:`render_text` with a score line when given, ending in a newline (the env's "ansi" frame)."""
    text = render_text(board)
    if score is not None:
        text += f"\nscore: {score}"
    return text + "\n"


def image_shape(size: int, cell_px: int = CELL_PX, gap_px: int = GAP_PX) -> tuple[int, int, int]:
    """Shape (height, width, 3) of the image :func:`render_rgb` draws for a ``size`` board."""
    side = size * cell_px + (size + 1) * gap_px
    return side, side, 3


def render_rgb(board: Any, cell_px: int = CELL_PX, gap_px: int = GAP_PX) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) of a board: the food red, the head yellow, the body green fading to the tail."""
    cells = np.asarray(board, dtype=np.int64)
    n = cells.shape[-1]
    length = int(cells.max())
    img = np.empty(image_shape(n, cell_px, gap_px), dtype=np.uint8)
    img[:] = BOARD_COLOUR
    neck, tail = np.array(NECK_COLOUR, dtype=np.float64), np.array(TAIL_COLOUR, dtype=np.float64)
    for r in range(n):
        for c in range(n):
            v = int(cells[r, c])
            if v == -1:
                colour: Any = FOOD_COLOUR
            elif v == 0:
                colour = EMPTY_COLOUR
            elif v == length:
                colour = HEAD_COLOUR
            else:
                w = (v - 1) / max(1, length - 2)
                colour = tuple(int(x) for x in np.round(tail + (neck - tail) * w))
            y = gap_px + r * (cell_px + gap_px)
            x = gap_px + c * (cell_px + gap_px)
            img[y:y + cell_px, x:x + cell_px] = colour
    return img
