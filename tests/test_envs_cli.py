"""``codepolicy envs`` and ``codepolicy bench`` (a very short run: figures are not checked)."""
from __future__ import annotations

from codepolicy.cli import main
from envs.game2048.bench import Row, format_table


def test_envs_lists_registered_games(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "2048" in out and "0=W, 1=A, 2=S, 3=D" in out and "codepolicy/2048-v0" in out
    assert "size=4" in out and "target=2048" in out


def test_bench_prints_the_table(capsys):
    assert main(["bench", "--seconds", "0.05", "--num-envs", "8", "--no-cold"]) == 0
    out = capsys.readouterr().out
    for needle in ("kernel: random legal moves", "env.step() loop (codepolicy/2048-v0)", "vector env, 8 boards",
                   ">= 20 M", ">= 2 M"):
        assert needle in out


def test_bench_bad_arguments_are_one_line_errors(capsys):
    assert main(["bench", "--seconds", "0"]) == 2
    assert "--seconds" in capsys.readouterr().err


def test_format_table_aligns_rows():
    table = format_table([Row("a", 2.5e7, "moves/s", ">= 20 M"), Row("longer name", 0.5, "s")])
    lines = table.splitlines()
    assert "25.00 M" in lines[2] and "0.50" in lines[3]
    assert lines[2].index("moves/s") == lines[3].index("s ")
