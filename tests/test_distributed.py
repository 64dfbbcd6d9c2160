"""Data-parallel training under torchrun (2 gloo ranks on the CPU) makes the one-process run's updates.

``tests/ddp_worker.py`` is ``codepolicy train --model tiny-random`` with a text-only reward (share of
letters in the text), so completions differ in reward and the gradient is real. Claims:

- 2 ranks with 2 groups each log the same losses and end with the same adapter weights (1e-5) as one
  process with all 4 groups and the same seed;
- a Ctrl-C that reaches one rank stops both at the same safe point with one checkpoint, and
  ``--resume`` on 2 ranks then ends where the uninterrupted one-process run ends;
- only rank 0 writes (one metrics line per step, one config, checkpoints);
- a batch that does not split over the ranks is refused at the start.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.checkpoint import list_checkpoints, load_checkpoint
from train.distributed import SINGLE, Ranks

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "ddp_worker.py"
STEPS = 3
ARGS = ["--model", "tiny-random", "--steps", str(STEPS), "--group-size", "4", "--no-progress",
        "--set", "prompts_per_step=4", "--set", "max_new_tokens=12", "--set", "num_iterations=2",
        "--set", "kl_beta=0.05", "--set", "grad_accum=2", "--set", "lr=0.01", "--set", "save_interval=1",
        "--set", "eval_interval=0", "--set", "rollout_backend=lean", "--set", "seed=7"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def _run(run_dir: Path, ranks: int, *extra: str, env: dict[str, str] | None = None,
         steps: int = STEPS) -> subprocess.CompletedProcess:
    args = [*ARGS, *extra]
    args[args.index("--steps") + 1] = str(steps)
    if "--resume" not in extra:
        args += ["--set", f"output_dir={run_dir}"]
    if ranks == 1:
        cmd = [sys.executable, str(WORKER), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               str(WORKER), *args]
    return subprocess.run(cmd, env=env or _env(), capture_output=True, text=True, timeout=300, cwd=ROOT)


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def _adapter(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    found = {int(p.name.split("-")[1]): p for p in list_checkpoints(run_dir)}
    return load_checkpoint(found[step])["adapter"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "single"
    done = _run(run_dir, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_two_ranks_make_the_one_process_update(single, tmp_path):
    run_dir = tmp_path / "two"
    done = _run(run_dir, 2, steps=2)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = _losses(single)[:2], _losses(run_dir)
    assert len(two) == 2  # rank 0 alone logs: one line a step
    assert two == pytest.approx(one, abs=1e-5)
    assert any(abs(x) > 1e-6 for x in one)  # a real loss, not a vacuous match
    start = _adapter(single, 1)
    assert _max_diff(_adapter(run_dir, 2), _adapter(single, 2)) <= 1e-5
    assert _max_diff(_adapter(single, 2), start) > 1e-4  # the weights did move
    assert done.stdout.count("run dir:") == 1  # rank 0 speaks for the run


def test_interrupt_on_one_rank_stops_both_and_resume_finishes(single, tmp_path):
    run_dir = tmp_path / "resumed"
    # Each rank scores 2 groups a step: its 4th reward call is in step 1, after the rollout.
    stopped = _run(run_dir, 2, env=_env(CODEPOLICY_TEST_SIGINT_CALL="4"))
    assert stopped.returncode != 0, stopped.stdout
    steps = sorted(int(p.name.split("-")[1]) for p in list_checkpoints(run_dir))
    assert steps == [1]  # both ranks abandoned step 1 before any weight changed; rank 0 saved once
    resumed = _run(run_dir, 2, "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _losses(run_dir) == pytest.approx(_losses(single), abs=1e-5)
    assert _max_diff(_adapter(run_dir, STEPS), _adapter(single, STEPS)) <= 1e-5


def test_uneven_split_is_refused(tmp_path):
    done = _run(tmp_path / "odd", 2, "--set", "prompts_per_step=3", steps=1)
    assert done.returncode != 0
    assert "must be a multiple of the number of ranks" in done.stderr


def test_single_rank_collectives_are_the_identity():
    assert SINGLE.groups(5) == range(5)
    assert SINGLE.gather("x") == ["x"] and SINGLE.broadcast(3) == 3
    assert SINGLE.sum([1.5, 2]) == [1.5, 2.0] and SINGLE.any(True) and not SINGLE.any(False)
    assert Ranks(rank=1, world=2).groups(4) == range(2, 4)
    with pytest.raises(ValueError, match="multiple of the number of ranks"):
        Ranks(rank=0, world=2).groups(3)


def test_ctrl_c_in_the_terminal_stops_every_rank_at_one_checkpoint(tmp_path):
    # A terminal's Ctrl-C signals the foreground process group; torchrun forwards it to its ranks (which run
    # in sessions of their own). Every rank must stop at the same safe point, with one checkpoint.
    import signal
    import time

    run_dir = tmp_path / "ctrl-c"
    args = [*ARGS, "--set", f"output_dir={run_dir}", "--set", "save_interval=0"]
    args[args.index("--steps") + 1] = "200"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), *args]
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    logged = metrics.read_text().count("\n")
    saved = [int(p.name.split("-")[1]) for p in list_checkpoints(run_dir)]
    assert saved in ([logged], [logged - 1]) and 2 <= logged < 200, (saved, logged, err[-2000:])
    # Both ranks stopped on the request (none aborted with KeyboardInterrupt); the traceback torchrun
    # itself prints for its SignalException is torchrun's.
    assert err.count("stopping after the current phase") == 2 and "KeyboardInterrupt" not in err, err[-3000:]
