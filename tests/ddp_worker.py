"""One training process for tests/test_distributed.py: ``codepolicy train`` with a text-only reward.

Run as ``python tests/ddp_worker.py ARGS`` (one process) or under ``torchrun`` (one per rank); ARGS are
``codepolicy train``'s. The reward is the share of letters in the completion, so the tiny random
model's completions differ in reward (a real gradient) without the sandbox. With
``CODEPOLICY_TEST_SIGINT_CALL=k``, rank ``CODEPOLICY_TEST_SIGINT_RANK`` (default 1) sends itself SIGINT on
its k-th reward call, as a Ctrl-C that reached one rank only.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.records import Breakdown  # noqa: E402

_calls = 0


def share_of_letters(completions, *, seeds):
    """Reward = share of letters among the completion's characters."""
    global _calls
    _calls += 1
    at = int(os.environ.get("CODEPOLICY_TEST_SIGINT_CALL", "0"))
    if at and _calls == at and os.environ.get("RANK", "0") == os.environ.get("CODEPOLICY_TEST_SIGINT_RANK", "1"):
        os.kill(os.getpid(), signal.SIGINT)
    out = []
    for c in completions:
        share = sum(ch.isalpha() for ch in c) / max(1, len(c))
        out.append(Breakdown(values={"letters": share}, weights={"letters": 1.0}, total=share,
                             info={"format_ok": 0.0, "compliant": 0.0, "played": 0.0, "max_tile": 0.0,
                                   "mean_score": 0.0},
                             source=c if c.strip() else None))
    return out


def main() -> int:
    import train.loop
    from codepolicy.cli import main as cli

    train.loop.default_reward_fn = lambda config, ranks=None: share_of_letters
    return cli(["train", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
