"""Side effects cannot happen: cheats that write files, spawn processes or read the environment
leave no trace, with every layer on and with the outer layers switched off one by one.

Layers: the static check (``policy=None``), RestrictedPython plus minimal builtins
(``policy=UNCHECKED``), and the audit hook, clean environment and private directory alone
(``restricted=False``: plain ``compile`` and full builtins, only ever used by tests).
"""
from __future__ import annotations

import os

import pytest

from sandbox.records import Limits
from sandbox.runner import UNCHECKED, WorkerPool

LIMITS = Limits(move_seconds=1.0, game_seconds=3.0, max_moves=5)
SECRET = "CODEPOLICY_TEST_SECRET"
# (policy, restricted) per layer; the first needs sandbox.check to exist.
LAYERS = {"all": (None, True), "restricted": (UNCHECKED, True), "audit-only": (UNCHECKED, False)}


@pytest.fixture(scope="module")
def pool():
    # The secret is in our environment before the workers start: they must not inherit it.
    os.environ[SECRET] = "hunter2"
    try:
        with WorkerPool(workers=1) as p:
            yield p
    finally:
        os.environ.pop(SECRET, None)


def play(pool, source: str, layer: str):
    policy, restricted = LAYERS[layer]
    if policy is None:
        pytest.importorskip("sandbox.check")
    return pool.run_many([source], seeds=[0, 1], limits=LIMITS, policy=policy, restricted=restricted)[0]


def cheats(target: str) -> dict[str, str]:
    """Programs that try to leave ``target`` behind, each in its own way."""
    t = repr(target)
    return {
        "open": f"def strategy(board):\n    open({t}, 'w').write('x')\n    return 'W'\n",
        "open-swallowed": (f"def strategy(board):\n    try:\n        open({t}, 'w').write('x')\n"
                           "    except BaseException:\n        pass\n    return 'W'\n"),
        "import-at-module": f"import os\nos.mkdir({t})\ndef strategy(board):\n    return 'W'\n",
        "pathlib": (f"def strategy(board):\n    import pathlib\n    pathlib.Path({t}).touch()\n"
                    "    return 'W'\n"),
        "os.open": (f"import os\ndef strategy(board):\n    os.close(os.open({t}, os.O_CREAT | os.O_WRONLY))\n"
                    "    return 'W'\n"),
        "subprocess": (f"import subprocess\ndef strategy(board):\n    subprocess.run(['touch', {t}])\n"
                       "    return 'W'\n"),
        "os.system": f"import os\ndef strategy(board):\n    os.system('touch ' + {t})\n    return 'W'\n",
        "posix_spawn": (f"import os\ndef strategy(board):\n    os.posix_spawn('/usr/bin/touch', ['touch', {t}], {{}})\n"
                        "    return 'W'\n"),
        "fork": (f"import os\ndef strategy(board):\n    if os.fork() == 0:\n        open({t}, 'w')\n"
                 "        os._exit(0)\n    return 'W'\n"),
        "exec-string": f"def strategy(board):\n    exec('open(' + repr({t}) + ', \"w\")')\n    return 'W'\n",
        "builtins-dict": (f"def strategy(board):\n    b = __builtins__\n"
                          f"    (b['open'] if isinstance(b, dict) else getattr(b, 'open'))({t}, 'w')\n    return 'W'\n"),
    }


@pytest.mark.parametrize("layer", list(LAYERS))
def test_no_file_and_no_process_leaves_a_trace(pool, tmp_path, layer):
    target = str(tmp_path / "pwned")
    for name, source in cheats(target).items():
        records = play(pool, source, layer)
        assert not os.path.exists(target), (layer, name)
        assert all(r.outcome in ("violation", "error") for r in records), (layer, name, records)
        # Whatever stopped it, the runtime layers name a violation, not a generic error.
        if layer != "all":
            assert records[0].outcome == "violation" or "NameError" in records[0].error, (layer, name, records[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("layer", list(LAYERS))
def test_environment_secrets_are_not_readable(pool, layer):
    # Returns "Q" (an invalid move) when the secret is absent, "W" when it leaked.
    source = (f"import os\ndef strategy(board):\n    return 'W' if os.environ.get({SECRET!r}) else 'Q'\n")
    records = play(pool, source, layer)
    assert all(r.outcome in ("violation", "error", "invalid_output") for r in records), records
    assert all(r.move_histogram.get("W", 0) == 0 for r in records)
    if layer == "audit-only":
        # The program ran with full builtins: it saw an environment without the secret.
        assert all(r.outcome == "invalid_output" and "'Q'" in r.error for r in records), records


def test_worker_environment_is_minimal(pool):
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED", "PYTHONPATH", "PYTHONNOUSERSITE",
               "NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS", "LC_CTYPE",
               "PYGAME_HIDE_SUPPORT_PROMPT"}  # set by the worker's own imports (gymnasium)
    source = (f"import os\ndef strategy(board):\n    extra = set(os.environ) - {allowed!r}\n"
              "    ok = not extra and os.environ['PYTHONHASHSEED'] not in ('', '0', 'random') and os.getcwd() == os.environ['HOME']\n"
              "    if not ok:\n        raise ValueError(','.join(sorted(extra)))\n    return 'W'\n")
    records = play(pool, source, "audit-only")
    assert all(r.move_histogram.get("W", 0) > 0 and not r.error.startswith("ValueError") for r in records), records


def test_private_directory_is_removed(tmp_path):
    # Each job's working directory is fresh, its own, and gone once the pool closes.
    source = ("import os\ndef strategy(board):\n"
              "    return 'W' if os.listdir('.') == [] and 'codepolicy-sandbox-' in os.getcwd() else 'Q'\n")
    with WorkerPool(workers=1) as p:
        records = p.run_many([source], seeds=[0], limits=LIMITS, policy=UNCHECKED, restricted=False)[0]
        # os.listdir raises an audit event ('os.listdir') while armed: that is a violation too.
        assert records[0].outcome == "violation" and "os.listdir" in records[0].error
        bases = [z.base for z in p._zygotes if z is not None]
        assert bases and all(os.path.isdir(b) for b in bases)
    assert not any(os.path.exists(b) for b in bases)


def test_frame_inspection_is_a_violation(pool):
    for source in ("import sys\ndef strategy(board):\n    sys._getframe(1).f_globals\n    return 'W'\n",
                   "def strategy(board):\n    try:\n        1 / 0\n    except Exception as e:\n"
                   "        e.__traceback__.tb_frame.f_back\n    return 'W'\n",
                   "def strategy(board):\n    g = (x for x in board)\n    return g.gi_frame\n"):
        for layer in ("restricted", "audit-only"):
            records = play(pool, source, layer)
            assert all(r.outcome == "violation" for r in records), (layer, source, records)
