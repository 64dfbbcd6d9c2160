"""2048 engine speed: kernel, env.step loop, vector env, gymnasium-2048 peer, cold start.

Run: ``python benchmarks/env_speed.py [--seconds S] [--num-envs K] [--no-cold]`` (the same as
``codepolicy bench``). Prints one table of figures measured in this run, targets beside them.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from envs.game2048.bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
