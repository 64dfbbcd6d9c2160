"""Drawing 2048 boards: an aligned text grid and an RGB image made with numpy alone; whole games as GIF or HTML.

The image uses the classic 2048 palette and draws tile values with a tiny built-in 5x7
bitmap font, so rendering a board needs no pygame, PIL or font files. A game (its boards, one
per move plus the start) becomes an animated GIF (:func:`write_gif`, Pillow, imported only
there) or one self-contained HTML page (:func:`replay_html`: inline CSS and script, nothing
fetched) that plays it with play/pause and a step slider.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["replay_frame", "render_ansi", "render_rgb", "image_shape", "board_exponents", "write_gif", "replay_html",
           "decode_html_boards", "MOVE_NAMES", "TILE_PX", "GAP_PX", "FONT"]

TILE_PX = 64   # side of one tile in pixels
GAP_PX = 6     # gap between tiles and around the board

# What each action name means, for captions.
MOVE_NAMES = {"W": "up", "A": "left", "S": "down", "D": "right"}

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


def replay_frame(board, score: int) -> str:
    """The terminal frame of a list board and its score (``GameSpec.replay_frame``)."""
    return render_ansi(board_exponents(board), score=int(score))


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


# --- whole games ------------------------------------------------------------------------


def board_exponents(board) -> np.ndarray:
    """The (n, n) uint8 exponents of a square board of tile values (0 empty, else a power of two)."""
    tiles = np.asarray(board, dtype=np.int64)
    if tiles.ndim != 2 or tiles.shape[0] != tiles.shape[1]:
        raise ValueError(f"a board must be a square grid of tiles, got shape {tiles.shape}")
    out = np.zeros(tiles.shape, dtype=np.uint8)
    nonzero = tiles > 0
    out[nonzero] = np.log2(tiles[nonzero]).round().astype(np.uint8)
    return out


def _check_game(boards, moves, points) -> None:
    if len(boards) != len(moves) + 1 or len(points) != len(moves):
        raise ValueError(f"a game needs one board more than moves and one points figure per move: got "
                         f"{len(boards)} boards, {len(moves)} moves, {len(points)} points")


def _captions(moves, points, scores) -> list[str]:
    total = len(moves)
    out = [f"start   score {int(scores[0]) if scores else 0}"]
    for k, (move, gained) in enumerate(zip(moves, points), 1):
        out.append(f"move {k}/{total}  {move} {MOVE_NAMES.get(move, '')}  +{int(gained)}  score {int(scores[k])}")
    return out


def write_gif(path, boards, moves, points, *, delay: float = 0.15, hold: float = 2.0,
              tile_px: int = 48, gap_px: int = 5) -> int:
    """Write the game as an animated GIF: the start, then one frame per move, captioned; returns the frame count.

    ``boards`` holds the start and the board after each of ``moves`` (tile values); ``points`` what
    each move scored. Each frame shows ``delay`` seconds, the last one ``hold`` seconds. The caption
    (move number, move, points, score) makes every frame differ, so no frame is merged away.
    """
    from PIL import Image, ImageDraw, ImageFont

    _check_game(boards, moves, points)
    scores = [0.0]
    for gained in points:
        scores.append(scores[-1] + float(gained))
    captions = _captions(moves, points, scores)
    font = ImageFont.load_default()
    bar = 18  # caption strip under the board, in pixels
    frames = []
    for board, caption in zip(boards, captions):
        rgb = render_rgb(board_exponents(board), tile_px, gap_px)
        img = Image.new("RGB", (rgb.shape[1], rgb.shape[0] + bar), BOARD_COLOUR)
        img.paste(Image.fromarray(rgb), (0, 0))
        ImageDraw.Draw(img).text((gap_px, rgb.shape[0] + 3), caption, fill=LIGHT_TEXT, font=font)
        # One shared adaptive palette per frame is enough: the board has a dozen colours.
        frames.append(img.quantize(colors=64, method=Image.Quantize.MEDIANCUT))
    durations = [max(20, int(round(delay * 1000)))] * len(frames)
    durations[-1] = max(durations[-1], int(round(hold * 1000)))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False,
                   disposal=1)
    return len(frames)


# Exponents as one character each in the HTML's data (a 4x4 board is 16 characters).
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _encode_board(board) -> str:
    return "".join(_DIGITS[int(e)] for e in board_exponents(board).reshape(-1))


def decode_html_boards(page: str) -> list[list[list[int]]]:
    """The boards a page of :func:`replay_html` animates, decoded from its data (for tests and tools)."""
    import json
    import re

    found = re.search(r'<script id="game-data" type="application/json">(.*?)</script>', page, re.S)
    if not found:
        raise ValueError("not a codepolicy replay page: no game data")
    data = json.loads(found.group(1))
    n = int(data["size"])
    out = []
    for text in data["boards"]:
        flat = [1 << _DIGITS.index(c) if c != "0" else 0 for c in text]
        out.append([flat[r * n:(r + 1) * n] for r in range(n)])
    return out


def _script_json(value) -> str:
    """JSON safe to put inside a <script> element: no '<', '>' or '&' that could end or bend it."""
    import json

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _tile_css() -> str:
    rules = []
    for e in range(1, 18):
        colour = TILE_COLOURS.get(e, BIG_TILE_COLOUR)
        text = DARK_TEXT if e <= 2 else LIGHT_TEXT
        rules.append(f".t{e}{{background:rgb{colour};color:rgb{text}}}")
    return "".join(rules)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<style>
body{font-family:system-ui,sans-serif;background:#faf8ef;color:#776e65;margin:2em auto;max-width:34em;padding:0 1em}
h1{font-size:1.3em;margin:0 0 .3em}
.sub{margin:0 0 1em;font-size:.9em}
#board{display:grid;gap:8px;padding:8px;background:rgb%(board_colour)s;border-radius:6px;
 grid-template-columns:repeat(%(size)d,1fr);width:min(100%%,%(side)dpx);aspect-ratio:1;box-sizing:border-box}
#board div{display:flex;align-items:center;justify-content:center;border-radius:4px;font-weight:bold;
 background:rgb%(empty_colour)s;font-size:clamp(10px,%(font_vw)svw,%(font_px)dpx)}
%(tile_css)s
.bar{display:flex;gap:.5em;align-items:center;margin:1em 0 .5em}
.bar input{flex:1}
button{font:inherit;padding:.2em .8em;min-width:4.5em}
#info{font-variant-numeric:tabular-nums;min-height:1.4em}
pre{background:#f3efe6;padding:.8em;overflow:auto;font-size:.8em}
</style></head><body>
<h1>%(title)s</h1>
<p class="sub">%(subtitle)s</p>
<div id="board"></div>
<div class="bar"><button id="play" type="button">Play</button>
<button id="prev" type="button" aria-label="previous move">&lt;</button>
<input id="step" type="range" min="0" value="0" aria-label="move">
<button id="next" type="button" aria-label="next move">&gt;</button></div>
<div id="info"></div>
%(details)s
<script id="game-data" type="application/json">%(data)s</script>
<script>
(function(){
"use strict";
var data=JSON.parse(document.getElementById("game-data").textContent);
var n=data.size, boards=data.boards, moves=data.moves, points=data.points, names=data.names;
var scores=[0];
for(var k=0;k<points.length;k++){scores.push(scores[k]+points[k]);}
var board=document.getElementById("board"), slider=document.getElementById("step");
var info=document.getElementById("info"), play=document.getElementById("play");
var cells=[];
for(var c=0;c<n*n;c++){var d=document.createElement("div");board.appendChild(d);cells.push(d);}
slider.max=boards.length-1;
var at=0, timer=null;
function show(k){
  at=k; slider.value=k;
  var b=boards[k];
  for(var c=0;c<n*n;c++){
    var e=parseInt(b.charAt(c),36);
    cells[c].className=e?"t"+Math.min(e,17):"";
    cells[c].textContent=e?String(Math.pow(2,e)):"";
  }
  var m=moves.charAt(k-1);
  var text=k===0?"start":"move "+k+"/"+moves.length+": "+m+" ("+(names[m]||"")+") +"+points[k-1];
  if(k>0&&boards[k]===boards[k-1]){text+=" (wasted: nothing moved)";}
  info.textContent=text+", score "+scores[k]+(k===boards.length-1?" \\u2014 "+data.ending:"");
}
function stop(){if(timer!==null){clearInterval(timer);timer=null;}play.textContent="Play";}
function start(){
  if(at>=boards.length-1){show(0);}
  play.textContent="Pause";
  timer=setInterval(function(){if(at>=boards.length-1){stop();}else{show(at+1);}},data.delay_ms);
}
play.addEventListener("click",function(){if(timer===null){start();}else{stop();}});
slider.addEventListener("input",function(){stop();show(parseInt(slider.value,10));});
document.getElementById("prev").addEventListener("click",function(){stop();if(at>0){show(at-1);}});
document.getElementById("next").addEventListener("click",function(){stop();if(at<boards.length-1){show(at+1);}});
document.addEventListener("keydown",function(ev){
  if(ev.target===slider){return;}
  if(ev.key===" "){ev.preventDefault();play.click();}
  else if(ev.key==="ArrowLeft"){document.getElementById("prev").click();}
  else if(ev.key==="ArrowRight"){document.getElementById("next").click();}
});
show(0);
})();
</script>
</body></html>
"""


def replay_html(boards, moves, points, *, title: str = "2048 replay", subtitle: str = "", ending: str = "",
                source: str | None = None, delay: float = 0.15) -> str:
    """One self-contained HTML page (inline CSS and script, no external resource) that animates the game.

    ``boards`` holds the start and the board after each of ``moves``; ``points`` what each move scored.
    The page has play/pause, a step slider, previous/next buttons (also space and the arrow keys),
    and, given ``source``, the program under the board. All text is HTML-escaped; the game's data
    sits in a JSON block that :func:`decode_html_boards` reads back.
    """
    import html

    _check_game(boards, moves, points)
    encoded = [_encode_board(b) for b in boards]
    size = len(boards[0])
    for move in moves:
        if not (isinstance(move, str) and len(move) == 1):
            raise ValueError(f"a move must be one action character, got {move!r}")
    data = {"size": size, "boards": encoded, "moves": "".join(moves), "points": [int(p) for p in points],
            "names": MOVE_NAMES, "delay_ms": max(20, int(round(delay * 1000))), "ending": ending}
    details = ""
    if source is not None:
        details = f"<details><summary>the program</summary><pre>{html.escape(source)}</pre></details>"
    side = 4 * 110
    return _HTML % {
        "title": html.escape(title), "subtitle": html.escape(subtitle), "size": size, "side": side,
        "board_colour": BOARD_COLOUR, "empty_colour": EMPTY_COLOUR, "tile_css": _tile_css(),
        "font_vw": f"{16 / size:.1f}", "font_px": max(12, int(side / size / 3)),
        "details": details, "data": _script_json(data),
    }
