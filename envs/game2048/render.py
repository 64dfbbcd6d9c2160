"""Drawing 2048 boards: an aligned text grid and an RGB image made with numpy alone.

The image uses the classic 2048 palette and draws tile values with a tiny built-in 5x7
bitmap font, so rendering needs no pygame, PIL or font files.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["render_ansi", "render_rgb", "image_shape", "TILE_PX", "GAP_PX", "FONT"]

TILE_PX = 64   # side of one tile in pixels
GAP_PX = 6     # gap between tiles and around the board

BOARD_COLOUR = (187, 173, 160)
EMPTY_COLOUR = (205, 193, 180)
# Classic colours by exponent (1 = tile 2 ... 11 = tile 2048); larger tiles share the last one.
TILE_COLOURS = {
    1: (238, 228, 218), 2: (237, 224, 200), 3: (242, 177, 121), 4: (245, 149, 99),
    5: (246, 124, 95), 6: (246, 94, 59), 7: (237, 207, 114), 8: (237, 204, 97),
    9: (237, 200, 80), 10: (237, 197, 63), 11: (237, 194, 46),
}
BIG_TILE_COLOUR = (60, 58, 50)
DARK_TEXT = (119, 110, 101)    # on 2 and 4
LIGHT_TEXT = (249, 246, 242)   # on everything else

# 5x7 glyphs, one string of 5 bits per row. '^' marks "2 to the power" for values too
# wide to fit a tile in digits (shown as ^k).
_GLYPHS = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "^": ("00100", "01010", "10001", "00000", "00000", "00000", "00000"),
}
FONT: dict[str, np.ndarray] = {
    ch: np.array([[c == "1" for c in row] for row in rows], dtype=bool) for ch, rows in _GLYPHS.items()
}
_GLYPH_H, _GLYPH_W = 7, 5


def render_ansi(exponents: np.ndarray, score: int | None = None) -> str:
    """An aligned text grid of tile values ('.' for empty), with a score line when given."""
    n = exponents.shape[-1]
    flat = [1 << int(e) if e else 0 for e in exponents.reshape(-1)]
    cells = [str(v) if v else "." for v in flat]
    width = max(len(c) for c in cells)
    rows = [" ".join(c.rjust(width) for c in cells[r * n:(r + 1) * n]) for r in range(n)]
    if score is not None:
        rows.append(f"score: {score}")
    return "\n".join(rows) + "\n"


def image_shape(size: int, tile_px: int = TILE_PX, gap_px: int = GAP_PX) -> tuple[int, int, int]:
    """Shape (height, width, 3) of the image :func:`render_rgb` draws for a ``size`` board."""
    side = size * tile_px + (size + 1) * gap_px
    return side, side, 3


def _text_mask(text: str) -> np.ndarray:
    """Boolean pixels of ``text`` at scale 1 (glyphs 5x7, one blank column between glyphs)."""
    width = len(text) * (_GLYPH_W + 1) - 1
    out = np.zeros((_GLYPH_H, width), dtype=bool)
    for k, ch in enumerate(text):
        out[:, k * (_GLYPH_W + 1):k * (_GLYPH_W + 1) + _GLYPH_W] = FONT[ch]
    return out


def _label(exponent: int, tile_px: int) -> tuple[np.ndarray, int]:
    """The text pixels for a tile and the integer scale that fits them in ~80% of the tile."""
    room = int(tile_px * 0.8)
    for text in (str(1 << exponent), f"^{exponent}"):
        mask = _text_mask(text)
        scale = min(room // mask.shape[1], int(tile_px * 0.45) // _GLYPH_H)
        if scale >= 1:
            return mask, scale
    return _text_mask(f"^{exponent}"), 1  # tiny tiles: draw at scale 1 and let it clip


@lru_cache(maxsize=256)
def _tile(exponent: int, tile_px: int) -> np.ndarray:
    """The image of one tile (read-only, cached per exponent and size)."""
    colour = EMPTY_COLOUR if exponent == 0 else TILE_COLOURS.get(exponent, BIG_TILE_COLOUR)
    img = np.empty((tile_px, tile_px, 3), dtype=np.uint8)
    img[:] = colour
    # Rounded corners: cut a small quarter disc from each corner.
    r = max(2, tile_px // 16)
    yy, xx = np.mgrid[0:r, 0:r]
    outside = (r - 1 - yy) ** 2 + (r - 1 - xx) ** 2 > (r - 1) ** 2 + 1
    for sy in (slice(0, r), slice(tile_px - r, tile_px)):
        for sx in (slice(0, r), slice(tile_px - r, tile_px)):
            corner = outside[:: 1 if sy.start == 0 else -1, :: 1 if sx.start == 0 else -1]
            img[sy, sx][corner] = BOARD_COLOUR
    if exponent:
        mask, scale = _label(exponent, tile_px)
        big = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)[:tile_px, :tile_px]
        h, w = big.shape
        top, left = (tile_px - h) // 2, (tile_px - w) // 2
        text = DARK_TEXT if exponent <= 2 else LIGHT_TEXT
        img[top:top + h, left:left + w][big] = text
    img.flags.writeable = False
    return img


def render_rgb(exponents: np.ndarray, tile_px: int = TILE_PX, gap_px: int = GAP_PX) -> np.ndarray:
    """An RGB uint8 image (H, W, 3) of a square board of exponents, classic colours."""
    n = exponents.shape[-1]
    flat = exponents.reshape(-1)
    img = np.empty(image_shape(n, tile_px, gap_px), dtype=np.uint8)
    img[:] = BOARD_COLOUR
    for k in range(n * n):
        r, c = divmod(k, n)
        y = gap_px + r * (tile_px + gap_px)
        x = gap_px + c * (tile_px + gap_px)
        img[y:y + tile_px, x:x + tile_px] = _tile(int(flat[k]), tile_px)
    return img
