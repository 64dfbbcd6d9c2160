"""Replays: a game recorded through the sandbox, redrawn by the engine, shown in the terminal, as a GIF and as HTML."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sandbox
from codepolicy.cli import main
from envs.game2048.render import board_exponents, decode_html_boards, replay_html, write_gif
from envs.play import play_trusted
from sandbox.replay import ReplayError, record_games, replay_moves

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "strategy.py"
SEEDS = (0, 7)


@pytest.fixture(scope="module")
def replays():
    return record_games(EXAMPLE.read_text(), SEEDS)


def _lists(board):
    return [list(row) for row in board]


def test_the_replay_ends_as_the_sandbox_record_says(replays):
    records = sandbox.run(EXAMPLE.read_text(), seeds=SEEDS)  # the plain sandbox, another pool
    for replay, record in zip(replays, records):
        assert replay.record.outcome == record.outcome == "finished"
        assert (replay.record.score, replay.record.moves, replay.record.final_view) == (
            record.score, record.moves, record.final_view)
        assert replay.steps[-1].board == record.final_view
        assert sum(s.points for s in replay.steps) == record.score == replay.steps[-1].score
        assert len(replay.boards) == record.moves + record.illegal_moves + 1


def test_each_frame_is_the_engine_stepping_the_recorded_moves(replays):
    # The one game loop, trusted, fed the recorded moves: it hands the strategy each board before a move.
    for replay in replays:
        seen, moves = [], iter(replay.moves)

        def strategy(view):
            seen.append(_lists(view))
            return next(moves)

        (game,) = play_trusted(strategy, seeds=[replay.seed])
        boards = [_lists(b) for b in replay.boards]
        assert seen == boards[:-1]  # every frame but the last is a board the strategy was asked about
        assert _lists(game["final_view"]) == boards[-1]
        assert (game["score"], game["moves"], game["outcome"]) == (
            replay.record.score, replay.record.moves, replay.record.outcome)


def test_wasted_moves_and_a_stuck_game():
    (replay,) = record_games("def strategy(board):\n    return 'W'\n", [3])
    assert replay.record.outcome == "stuck" and replay.record.illegal_moves == 5
    assert [s.changed for s in replay.steps] == [True] + [False] * 5
    assert all(s.board == replay.steps[0].board and s.points == 0 for s in replay.steps[1:])


def test_a_rejected_program_never_runs_and_has_no_moves():
    (replay,) = record_games("import os\n\ndef strategy(board):\n    return 'W'\n", [0])
    assert replay.record.outcome == "violation" and replay.steps == () and len(replay.boards) == 1


def test_the_engine_disagreeing_with_the_sandbox_is_an_error():
    start, steps, _ = replay_moves("2048", 0, ["A", "W"])
    wrong = [_lists(start), [[0] * 4] * 4]
    with pytest.raises(ReplayError, match="before move 2"):
        replay_moves("2048", 0, ["A", "W"], asked=wrong)
    with pytest.raises(ReplayError, match="move 2 is 'up'"):
        replay_moves("2048", 0, ["A", "up"])


def test_the_gif_has_one_frame_per_move_and_the_start(replays, tmp_path):
    from PIL import Image

    replay = replays[0]
    path = tmp_path / "game.gif"
    frames = write_gif(path, replay.boards, replay.moves, [s.points for s in replay.steps], delay=0.05)
    with Image.open(path) as gif:
        assert gif.n_frames == frames == len(replay.steps) + 1
        gif.seek(gif.n_frames - 1)
        assert gif.info["duration"] >= 1000  # the last board stays a while


def test_the_html_page_is_self_contained_and_holds_every_frame(replays):
    replay = replays[1]
    hostile = "def strategy(board):\n    # </script><script>alert(1)</script> https://example.com\n    return 'A'\n"
    page = replay_html(replay.boards, replay.moves, [s.points for s in replay.steps],
                       ending="</script><b>end</b>", source=hostile)
    assert decode_html_boards(page) == [_lists(b) for b in replay.boards]
    assert page.count("<script") == 2 and "alert(1)</script>" not in page  # the program's text stays text
    without_source = replay_html(replay.boards, replay.moves, [s.points for s in replay.steps])
    assert not re.search(r"https?:|//[a-z]", without_source, re.I)  # nothing fetched from anywhere
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=", page, re.I)
    assert 'type="range"' in page and 'id="play"' in page


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the page's script")
def test_the_page_script_plays_the_game(replays, tmp_path):
    replay = replays[0]
    page = replay_html(replay.boards, replay.moves, [s.points for s in replay.steps], ending="done")
    (tmp_path / "page.html").write_text(page)
    # The page's script against a minimal DOM: the first frame, one step, play to the end, the slider.
    harness = r"""
const fs=require('fs'); const page=fs.readFileSync(process.argv[2],'utf8');
const data=page.match(/<script id="game-data" type="application\/json">([\s\S]*?)<\/script>/)[1];
const code=page.match(/<script>\n([\s\S]*?)<\/script>/)[1];
function el(id){return {children:[],className:'',textContent:id==='game-data'?data:'',value:'0',max:'0',ls:{},
  appendChild(c){this.children.push(c);},addEventListener(t,f){this.ls[t]=f;},
  click(){this.ls.click&&this.ls.click();}};}
const els={}; for(const id of ['game-data','board','step','info','play','prev','next']) els[id]=el(id);
global.document={getElementById:id=>els[id],createElement:()=>el('div'),addEventListener:()=>{}};
let ticks=[]; global.setInterval=f=>{ticks.push(f);return 1;}; global.clearInterval=()=>{ticks=[];};
eval(code);
const cells=()=>els.board.children.map(c=>Number(c.textContent||0));
const out={first:cells(), firstInfo:els.info.textContent};
els.next.click(); out.second=cells();
els.play.click(); out.playing=els.play.textContent;
for(let i=0;i<100000&&ticks.length;i++) ticks[0]();
out.last=cells(); out.lastInfo=els.info.textContent; out.label=els.play.textContent; out.max=els.step.max;
els.step.value='3'; els.step.ls.input(); out.third=cells();
console.log(JSON.stringify(out));
"""
    (tmp_path / "harness.js").write_text(harness)
    run = subprocess.run(["node", str(tmp_path / "harness.js"), str(tmp_path / "page.html")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    flat = [[v for row in b for v in row] for b in replay.boards]
    assert out["first"] == flat[0] and out["second"] == flat[1] and out["third"] == flat[3]
    assert out["last"] == flat[-1] and out["playing"] == "Pause" and out["label"] == "Play"
    assert out["firstInfo"] == "start, score 0" and int(out["max"]) == len(flat) - 1
    assert out["lastInfo"].startswith(f"move {len(replay.steps)}/{len(replay.steps)}: {replay.moves[-1]} (")
    assert out["lastInfo"].endswith(f"score {replay.record.score:.0f} \u2014 done")


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 8).flatmap(lambda n: st.lists(
    st.lists(st.lists(st.integers(0, 17), min_size=n, max_size=n), min_size=n, max_size=n), min_size=1, max_size=4)))
def test_html_boards_round_trip(exponent_boards):
    boards = [[[1 << e if e else 0 for e in row] for row in b] for b in exponent_boards]
    moves = ["A"] * (len(boards) - 1)
    page = replay_html(boards, moves, [0] * len(moves))
    assert decode_html_boards(page) == boards
    assert all(board_exponents(b).tolist() == e for b, e in zip(boards, exponent_boards))


# --- the command -------------------------------------------------------------------------------------


def test_replay_prints_every_move_with_its_points_and_board(replays, capsys):
    replay = replays[0]
    assert main(["replay", str(EXAMPLE), "--seed", str(replay.seed)]) == 0
    out = capsys.readouterr().out
    n = len(replay.steps)
    for k in (1, n // 2, n):
        step = replay.steps[k - 1]
        assert f"move {k}/{n}: {step.move} (" in out and f"+{step.points:.0f}" in out
    assert f"score: {replay.record.score:.0f}\n" in out
    assert out.rstrip().endswith(f"seed {replay.seed}: finished, score {replay.record.score:.0f}, max tile "
                                 f"{replay.record.metrics['max_tile']:g}, {replay.record.moves} moves (0 wasted)")


def test_replay_reads_a_run_folder_and_a_completion(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "best" / "best-1.py").write_text("# codepolicy best strategy #1\n\ndef strategy(board):\n    return 'W'\n")
    assert main(["replay", str(run), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "best program of run" in out and "seed 3: stuck" in out
    completion = tmp_path / "completion.txt"
    completion.write_text((EXAMPLE.parent / "completion.txt").read_text())
    assert main(["replay", str(completion), "--max-moves", "5"]) == 0
    out = capsys.readouterr().out
    assert "completion (strategy extracted)" in out and "move 5/5" in out and "max_moves" in out


def test_replay_writes_html_and_gif(tmp_path, capsys):
    page, gif = tmp_path / "game.html", tmp_path / "game.gif"
    assert main(["replay", str(EXAMPLE), "--max-moves", "30", "--html", str(page), "--delay", "0.05"]) == 0
    assert main(["replay", str(EXAMPLE), "--max-moves", "30", "--gif", str(gif)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {page}: 31 frames" in out and f"wrote {gif}: 31 frames" in out
    assert len(decode_html_boards(page.read_text())) == 31 and '"delay_ms":50' in page.read_text()


@pytest.mark.parametrize("argv, message", [
    (["missing.py"], "program, completion or run folder 'missing.py' does not exist"),
    (["."], "not a run folder"),
    ([str(EXAMPLE), "--size", "9"], "board size"),
    ([str(EXAMPLE), "--delay", "-1"], "--delay"),
    ([str(EXAMPLE), "--html", "no/such/dir/x.html"], "its folder does not exist"),
])
def test_replay_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["replay", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_text_without_a_strategy_is_one_line(tmp_path, capsys):
    path = tmp_path / "prose.txt"
    path.write_text("I would keep the big tile in a corner.\n")
    assert main(["replay", str(path)]) == 2
    assert "neither a program nor a completion holding one [no_code]" in capsys.readouterr().err


def test_gif_and_html_together_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(EXAMPLE), "--gif", "a.gif", "--html", "a.html"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_the_docs_commands_parse():
    import shlex

    from codepolicy.cli import build_parser

    doc = (Path(__file__).resolve().parent.parent / "docs" / "using-a-trained-model.md").read_text()
    commands = [line.split("  #")[0] for line in doc.splitlines() if line.startswith("codepolicy ")]
    assert len(commands) >= 8
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert args.command in ("export", "replay") and callable(args.handler), command
