"""The ``threads`` setting: one number for torch's pool and the Numba kernels', from the config, CLI and eval."""
from __future__ import annotations

import numba
import pytest
import torch

from train.config import load_config, make_config
from train.threads import use_threads


def test_use_threads_sets_torch_and_numba_and_zero_keeps_torchs_count():
    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        assert use_threads(1) == 1
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
        torch.set_num_threads(before[0])
        assert use_threads(0) == before[0]
        assert numba.get_num_threads() == min(before[0], numba.config.NUMBA_NUM_THREADS)
        # Numba's pool cannot grow past its start size: a larger request is capped there, torch takes it all.
        use_threads(numba.config.NUMBA_NUM_THREADS + 3)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def test_threads_is_a_config_field_and_a_flag_with_a_range(tmp_path):
    assert make_config().threads == 0
    assert load_config(None, overrides={"threads": "1"}).threads == 1
    with pytest.raises(ValueError, match="threads"):
        make_config({"threads": -1})
    from codepolicy.cli import build_parser

    args = build_parser().parse_args(["train", "--threads", "1"])
    assert args.cfg_threads == "1" or args.cfg_threads == 1
