"""train.checkpoint: atomic saves, keep-last-K, corrupt/missing run dirs, RNG round trips."""
from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train import checkpoint as ck


def _state(step: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + step)
    return {
        "step": step,
        "adapter": {"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(4, 8, generator=g)},
        "optimizer": {"state": {0: {"exp_avg": torch.randn(3, generator=g)}}, "param_groups": [{"lr": 1e-4}]},
        "scheduler": {"last_epoch": step},
        "data_position": step * 4,
        "config": {"model": "tiny", "lr": 1e-4, "target_modules": ["q_proj", "v_proj"]},
    }


def test_round_trip(tmp_path):
    state = _state(7)
    folder = ck.save_checkpoint(tmp_path, state)
    assert folder.name == "step-00000007"
    loaded = ck.load_latest(tmp_path)
    assert loaded["step"] == 7 and loaded["data_position"] == 28 and loaded["config"] == state["config"]
    for k, v in state["adapter"].items():
        assert torch.equal(loaded["adapter"][k], v)
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])


def test_empty_run_dir_has_no_checkpoint(tmp_path):
    assert ck.load_latest(tmp_path) is None


def test_missing_run_dir_is_one_clear_error(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist") as info:
        ck.load_latest(tmp_path / "nope")
    assert "\n" not in str(info.value) and "nope" in str(info.value)


@settings(max_examples=15, deadline=None)
@given(steps=st.lists(st.integers(0, 60), min_size=1, max_size=7, unique=True), keep=st.integers(1, 4))
def test_keeps_the_newest_k(tmp_path_factory, steps, keep):
    run = tmp_path_factory.mktemp("run")
    for s in sorted(steps):
        ck.save_checkpoint(run, {"step": s}, keep=keep)
    kept = [int(p.name.split("-")[1]) for p in ck.list_checkpoints(run)]
    assert kept == sorted(steps)[-keep:]
    assert ck.load_latest(run)["step"] == max(steps)


def test_a_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path, _state(1))
    real_save = torch.save

    def crash(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise KeyboardInterrupt  # after the bytes are on disk, before the rename

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path, _state(2))
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000001"]
    assert not list((tmp_path / ck.CHECKPOINT_DIR).glob(".tmp-*"))
    assert ck.load_latest(tmp_path)["step"] == 1


def test_stale_temp_folders_are_never_loaded_and_are_cleaned(tmp_path):
    ck.save_checkpoint(tmp_path, _state(1))
    stale = tmp_path / ck.CHECKPOINT_DIR / ".tmp-step-00000009-xyz"
    stale.mkdir()
    (stale / "state.pt").write_bytes(b"half")
    assert ck.load_latest(tmp_path)["step"] == 1
    ck.save_checkpoint(tmp_path, _state(2))
    assert not stale.exists()


def test_corrupt_newest_falls_back_with_a_warning(tmp_path):
    ck.save_checkpoint(tmp_path, _state(1))
    newest = ck.save_checkpoint(tmp_path, _state(2))
    data = bytearray((newest / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / "state.pt").write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert ck.load_latest(tmp_path)["step"] == 1


def test_all_corrupt_is_one_clear_error(tmp_path):
    folder = ck.save_checkpoint(tmp_path, _state(3))
    (folder / "state.pt").write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ck.CheckpointError, match="no readable checkpoint") as info:
            ck.load_latest(tmp_path)
    assert "\n" not in str(info.value)


def test_truncated_file_without_checksum_is_reported(tmp_path):
    folder = ck.save_checkpoint(tmp_path, _state(3))
    meta = json.loads((folder / "meta.json").read_text())
    del meta["sha256"]
    (folder / "meta.json").write_text(json.dumps(meta))
    data = (folder / "state.pt").read_bytes()
    (folder / "state.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.load_checkpoint(folder)


def test_same_step_twice_replaces(tmp_path):
    ck.save_checkpoint(tmp_path, {"step": 5, "x": 1})
    ck.save_checkpoint(tmp_path, {"step": 5, "x": 2})
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000005"]
    assert ck.load_latest(tmp_path)["x"] == 2


def test_adapter_folder_loads_with_peft(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

    from train.model import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer(seed=1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    state = {"step": 1, "adapter": get_peft_model_state_dict(peft_model),
             "adapter_config": peft_model.peft_config["default"].to_dict()}
    folder = ck.save_checkpoint(tmp_path, state)
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        want = peft_model(x).logits
        base, _ = tiny_model_and_tokenizer(seed=1)
        got = PeftModel.from_pretrained(base, folder / "adapter")(x).logits
    assert torch.allclose(want, got, atol=1e-6)


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ck.save_checkpoint(tmp_path, {"step": 0, "rng": ck.rng_state()})
    want = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(ck.load_latest(tmp_path)["rng"])
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert want[0] == got[0] and want[1] == got[1] and torch.equal(want[2], got[2])


def test_bad_state_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="step"):
        ck.save_checkpoint(tmp_path, {"no": "step"})
