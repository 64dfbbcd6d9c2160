"""Rollout speed: plain transformers ``generate`` vs our lean static-cache decoding loop, side by side.

Same model, prompts, batch sizes and sampling (temperature 1, top-p 1, no top-k); EOS is ignored by both
so every row generates exactly ``--new-tokens`` tokens and the token counts match. Each configuration is
run once to warm up (on a GPU: the CUDA-graph compile of the decode step) and then timed.

    python benchmarks/rollout_speed.py                                  # tiny model, CPU
    python benchmarks/rollout_speed.py --model smollm2-135m --device cuda --batch 8,64,256 --new-tokens 256

Target (issue 5): >= 10x plain generate's tokens/s at batch 256 on one GPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from train.rollout import LeanBackend, SamplingParams, encode_prompts, _left_pad  # noqa: E402

PROMPT = ("You are playing 2048 on a 4x4 board. Write a Python function `strategy(board)` that returns the "
          "next move: one of \"W\" (up), \"A\" (left), \"S\" (down), \"D\" (right).")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load(args: argparse.Namespace):
    """(model, tokenizer) on the requested device: the tiny local model or a named one."""
    if args.model == "tiny":
        from train.model import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer(0, layers=args.tiny_layers, hidden=args.tiny_hidden)
        dtype = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
        return model.to(device=args.device, dtype=dtype), tok
    from train.model import load_model

    return load_model(args.model, args.dtype, args.device)


def plain_generate(model, tok, batch: int, new_tokens: int, seed: int, cache_implementation: str | None = None) -> float:
    """Seconds for one ``model.generate`` call (sampling, EOS ignored): the dynamic cache by default, or e.g.
    ``cache_implementation="static"`` (on a GPU transformers then compiles the forward at the first call of a shape)."""
    from transformers import GenerationConfig

    rows = encode_prompts(tok, [PROMPT]) * batch
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids, mask = _left_pad(rows, len(rows[0]), pad)
    ids, mask = ids.to(model.device), mask.to(model.device)
    cfg = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, pad_token_id=pad, eos_token_id=tok.eos_token_id)
    if cache_implementation is not None:
        cfg.cache_implementation = cache_implementation
    torch.manual_seed(seed)
    _sync(str(model.device))
    t = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    _sync(str(model.device))
    assert out.shape[1] - ids.shape[1] == new_tokens
    return time.perf_counter() - t


def lean_generate(backend: LeanBackend, batch: int, new_tokens: int, seed: int) -> float:
    """Seconds for one lean-loop rollout of ``batch`` rows (EOS ignored)."""
    _sync(str(backend.device))
    t = time.perf_counter()
    r = backend.generate([PROMPT], batch, SamplingParams(new_tokens, 1.0, 1.0), seed)
    _sync(str(backend.device))
    assert r.completion_ids.shape == (batch, new_tokens)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="tiny (local random 2-layer Llama), smollm2-135m, a path or Hub id")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--batch", default="8,64", help="comma-separated batch sizes")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per configuration (median reported)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="CUDA-graph compile of the lean decode step (auto: on with CUDA)")
    p.add_argument("--tiny-layers", type=int, default=2)
    p.add_argument("--tiny-hidden", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load(args)
    model.eval()
    compile_ = args.device.startswith("cuda") if args.compile == "auto" else args.compile == "on"
    lean = LeanBackend(model, tok, compile=compile_)
    lean.eos = [-1]  # never matches: every row runs the full length, like min_new_tokens in generate

    print(f"model={args.model} device={args.device} dtype={next(model.parameters()).dtype} "
          f"new_tokens={args.new_tokens} compile={compile_} torch={torch.__version__}")
    header = f"{'batch':>6} {'generate tok/s':>15} {'lean tok/s':>12} {'ratio':>7} {'lean warm-up s':>15}"
    print(header)
    print("-" * len(header))
    with torch.no_grad():
        for batch in [int(b) for b in args.batch.split(",")]:
            tokens = batch * args.new_tokens
            plain_generate(model, tok, batch, min(args.new_tokens, 8), seed=0)  # warm-up (allocator, kernels)
            plain = statistics.median(plain_generate(model, tok, batch, args.new_tokens, seed=s)
                                      for s in range(args.repeats))
            warm = lean_generate(lean, batch, args.new_tokens, seed=0)
            fast = statistics.median(lean_generate(lean, batch, args.new_tokens, seed=s + 1)
                                     for s in range(args.repeats))
            print(f"{batch:>6} {tokens / plain:>15.0f} {tokens / fast:>12.0f} {plain / fast:>6.2f}x {warm:>15.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
