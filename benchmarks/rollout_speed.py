"""Rollout speed as a user runs it: the real prompt, a LoRA adapter, plain ``generate`` and the hardware's limit beside.

Every configuration (batch x new tokens) is timed side by side in one process, after one warm-up rollout:

- ``generate``: transformers ``generate`` on a plain copy of the model (no adapter), dynamic cache, sampling;
- ``lean``: our rollout backend on the model with its LoRA adapter (rank 16 on every linear layer by
  default, B matrices non-zero so the merged weights differ from the frozen ones): on the CPU the fused
  decoder (``train.fused_decode``), on a GPU the CUDA-graph decode step;
- ``lean, hf forward``: the same loop with the transformers forward instead of the fused decoder (CPU;
  the path every CPU rollout took before it);
- ``limit``: what this machine allows, from its own measured peak (a 2048^3 float32 matmul's GFLOP/s and
  a 512 MB read's GB/s): per decode step max(FLOPs / peak, bytes read / bandwidth), the prompt's prefill
  at peak FLOPs.

EOS is ignored by every side, so each row generates exactly the new tokens asked for. Tokens/s count
the whole rollout (prefill included), as a training step sees it. ``logprob gap`` is the largest
difference between a lean rollout's recorded log-probs and the trainer's (``batched_logprobs``) on the
same tokens. ``--busy`` runs one CPU-bound process beside the timed side (a user's other job).

    python benchmarks/rollout_speed.py                                   # SmolLM2-135M, CPU: batch 8,16 x 128,192
    python benchmarks/rollout_speed.py --model tiny --batch 8 --new-tokens 16 --prompt short   # smoke run
    python benchmarks/rollout_speed.py --busy --threads 1 --batch 8 --new-tokens 128 --sides generate,lean
    python benchmarks/rollout_speed.py --device cuda --batch 8,64,256 --new-tokens 256 --sides generate,lean

Targets (CPU, batch 8, the compact prompt, LoRA r16): >= 75 tokens/s and >= 2.5x plain ``generate``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from train.rollout import LeanBackend, SamplingParams, _left_pad, encode_prompts  # noqa: E402

PROMPT = ("You are playing 2048 on a 4x4 board. Write a Python function `strategy(board)` that returns the "
          "next move: one of \"W\" (up), \"A\" (left), \"S\" (down), \"D\" (right).")
SIDES = ("generate", "lean", "lean-hf")


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


def prompt_text(kind: str, tok: Any) -> str:
    """The prompt: the training default (``compact``: the 2048 prompt through the chat template) or ``short``."""
    if kind == "short":
        return PROMPT
    from train.prompts import build_prompt

    return build_prompt("2048", tok, template=kind)


def plain_generate(model, tok, batch: int, new_tokens: int, seed: int, cache_implementation: str | None = None,
                   prompt: str = PROMPT) -> float:
    """Seconds for one ``model.generate`` call (sampling, EOS ignored): the dynamic cache by default, or e.g.
    ``cache_implementation="static"`` (on a GPU transformers then compiles the forward at the first call of a shape)."""
    from transformers import GenerationConfig

    rows = encode_prompts(tok, [prompt]) * batch
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


def lean_generate(backend: LeanBackend, batch: int, new_tokens: int, seed: int, prompt: str = PROMPT,
                  keep: list | None = None) -> float:
    """Seconds for one lean-loop rollout of ``batch`` rows (EOS ignored); the rollout is appended to ``keep``."""
    _sync(str(backend.device))
    t = time.perf_counter()
    r = backend.generate([prompt], batch, SamplingParams(new_tokens, 1.0, 1.0), seed)
    _sync(str(backend.device))
    assert r.completion_ids.shape == (batch, new_tokens)
    if keep is not None:
        keep.append(r)
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- the machine's limit

def machine_peak(device: str) -> dict[str, float]:
    """This machine's float32 matmul GFLOP/s (2048^3) and read bandwidth in GB/s (sum of 512 MB), measured now."""
    a = torch.randn(2048, 2048, device=device)
    big = torch.randn(128 * 1024 * 1024, device=device)

    def best(fn, reps: int) -> float:
        fn()
        times = []
        for _ in range(reps):
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)
        return min(times)

    gflops = 2 * 2048 ** 3 / best(lambda: a @ a, 5) / 1e9
    gbps = big.numel() * 4 / best(lambda: big.sum(), 5) / 1e9
    return {"gflops": gflops, "gbps": gbps}


def decode_limit(config: Any, batch: int, prompt_tokens: int, new_tokens: int, peak: dict[str, float]) -> dict:
    """The rollout's lower bound in seconds from the model's shape and the machine's peak (a Llama-family model).

    Per decode step: every weight is read once (4 bytes) and multiplied by each row (2 FLOPs per weight per
    row), and the attention reads the prompt's keys and values once and each row's own, with 4 FLOPs per key
    per query head and head dimension. The prefill multiplies the prompt once at peak FLOPs.
    """
    hid, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    H = config.num_attention_heads
    Hkv = getattr(config, "num_key_value_heads", None) or H
    D = getattr(config, "head_dim", None) or hid // H
    inter = config.intermediate_size
    linear = layers * (hid * (H + 2 * Hkv) * D + H * D * hid + 3 * hid * inter)
    weights = linear + vocab * hid
    step_s = []
    for t in range(new_tokens):
        ctx = prompt_tokens + t
        flops = 2 * batch * weights + 4 * batch * H * D * ctx * layers
        reads = 4 * (weights + layers * 2 * Hkv * D * (prompt_tokens + batch * t))
        step_s.append(max(flops / (peak["gflops"] * 1e9), reads / (peak["gbps"] * 1e9)))
    prefill_s = (2 * prompt_tokens * linear + 2 * layers * H * D * prompt_tokens ** 2) / (peak["gflops"] * 1e9)
    return {"seconds": prefill_s + sum(step_s), "prefill_s": prefill_s, "step_ms": 1000 * statistics.mean(step_s)}


# ----------------------------------------------------------------------------- the busy neighbour

def _spin(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        x += 1


class Busy:
    """A CPU-bound process beside the measurement while the context is open (off when ``on`` is False)."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self) -> "Busy":
        if self.on:
            ctx = multiprocessing.get_context("spawn")
            self.stop = ctx.Event()
            self.proc = ctx.Process(target=_spin, args=(self.stop,), daemon=True)
            self.proc.start()
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.on:
            self.stop.set()
            self.proc.join(5)


# ----------------------------------------------------------------------------- the table

def add_lora(model: Any, rank: int) -> Any:
    """The model with a LoRA adapter of ``rank`` on every linear layer, its B matrices non-zero (seeded)."""
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                              task_type="CAUSAL_LM"))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return policy.eval()


def logprob_gap(policy: Any, rollout: Any) -> float:
    """max |recorded log-prob - the trainer's| over the rollout's completion tokens."""
    from train.logprobs import batched_logprobs

    ref = batched_logprobs(policy, rollout.input_ids, rollout.attention_mask, rollout.completion_ids.shape[1], 16, 1.0)
    return float(((ref - rollout.logprobs) * rollout.completion_mask).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default), tiny (a local random 2-layer "
                                                          "Llama), a path or a Hub id")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--prompt", default="compact", help="compact (the training default), default, moves, or short")
    p.add_argument("--lora-rank", type=int, default=16, help="LoRA rank of the lean side (0: no adapter)")
    p.add_argument("--batch", default="8,16", help="comma-separated batch sizes")
    p.add_argument("--new-tokens", default="128,192", help="comma-separated numbers of new tokens")
    p.add_argument("--sides", default="generate,lean,lean-hf", help=f"which of {', '.join(SIDES)} to time")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per configuration (median reported)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="CUDA-graph compile of the lean decode step (auto: on with CUDA)")
    p.add_argument("--busy", action="store_true", help="run one CPU-bound process beside the timed rollouts")
    p.add_argument("--tiny-layers", type=int, default=2)
    p.add_argument("--tiny-hidden", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch and Numba CPU threads (0: leave as is)")
    p.add_argument("--out", default="", help="also write the rows as JSON here")
    p.add_argument("--markdown", default="", help="also write the table as Markdown here")
    args = p.parse_args(argv)
    sides = [s for s in args.sides.split(",") if s]
    if unknown := set(sides) - set(SIDES):
        p.error(f"--sides: unknown {sorted(unknown)}; choose from {', '.join(SIDES)}")
    from train.threads import use_threads

    threads = use_threads(args.threads)
    model, tok = load(args)
    model.eval()
    prompt = prompt_text(args.prompt, tok)
    prompt_tokens = len(encode_prompts(tok, [prompt])[0])
    # generate runs on a second, untouched copy: peft wraps the layers of the model it adapts in place.
    plain = load(args)[0].eval() if args.lora_rank and "generate" in sides else model
    policy = add_lora(model, args.lora_rank) if args.lora_rank else model
    on_gpu = args.device.startswith("cuda")
    compile_ = on_gpu if args.compile == "auto" else args.compile == "on"
    peak = machine_peak(args.device)
    head = (f"model={args.model} device={args.device} dtype={next(model.parameters()).dtype} threads={threads} "
            f"prompt={args.prompt} ({prompt_tokens} tokens) lora_rank={args.lora_rank} busy_neighbour={args.busy} "
            f"torch={torch.__version__}; measured peak {peak['gflops']:.0f} GFLOP/s, {peak['gbps']:.1f} GB/s")
    print(head)
    cols = ["batch", "new tokens"] + [f"{s} tok/s" for s in sides] + ["limit tok/s"]
    if "lean" in sides:
        cols += ["lean / generate", "lean / limit", "logprob gap"]
    print(" | ".join(cols))
    rows: list[dict[str, Any]] = []
    for batch in [int(b) for b in args.batch.split(",")]:
        for T in [int(t) for t in args.new_tokens.split(",")]:
            tokens = batch * T
            row: dict[str, Any] = {"batch": batch, "new_tokens": T}
            limit = decode_limit(model.config, batch, prompt_tokens, T, peak)
            row["limit_tok_s"] = tokens / limit["seconds"]
            row["limit_step_ms"] = limit["step_ms"]
            with torch.no_grad():
                for side in sides:
                    if side == "generate":
                        plain_generate(plain, tok, batch, min(T, 8), seed=0, prompt=prompt)  # warm-up
                        with Busy(args.busy):
                            secs = [plain_generate(plain, tok, batch, T, seed=s, prompt=prompt)
                                    for s in range(args.repeats)]
                    else:
                        fused = None if side == "lean" else False
                        lean = LeanBackend(policy, tok, compile=compile_, fused=fused)
                        lean.eos = [-1]  # never matches: every row runs the full length
                        keep: list = []
                        lean_generate(lean, batch, T, seed=0, prompt=prompt)  # warm-up (and compile on a GPU)
                        with Busy(args.busy):
                            secs = [lean_generate(lean, batch, T, seed=s + 1, prompt=prompt, keep=keep)
                                    for s in range(args.repeats)]
                        if side == "lean":
                            row["fused"] = lean.fused
                            row["logprob_gap"] = logprob_gap(policy, keep[-1])
                        lean.close()
                    row[f"{side}_tok_s"] = tokens / statistics.median(secs)
            if "lean" in sides:
                if "generate" in sides:
                    row["lean_vs_generate"] = row["lean_tok_s"] / row["generate_tok_s"]
                row["lean_vs_limit"] = row["lean_tok_s"] / row["limit_tok_s"]
            rows.append(row)
            cells = [str(batch), str(T)] + [f"{row[f'{s}_tok_s']:.1f}" for s in sides] + [f"{row['limit_tok_s']:.0f}"]
            if "lean" in sides:
                cells += [f"{row.get('lean_vs_generate', float('nan')):.2f}x", f"{row['lean_vs_limit']:.0%}",
                          f"{row['logprob_gap']:.1e}"]
            print(" | ".join(cells), flush=True)
    result = {"settings": head, "threads": threads, "peak": peak, "prompt_tokens": prompt_tokens, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        lines = [f"<!-- {head} -->", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in rows:
            cells = [str(row["batch"]), str(row["new_tokens"])] + [f"{row[f'{s}_tok_s']:.1f}" for s in sides]
            cells += [f"{row['limit_tok_s']:.0f}"]
            if "lean" in sides:
                cells += [f"{row.get('lean_vs_generate', float('nan')):.2f}x", f"{row['lean_vs_limit']:.0%}",
                          f"{row['logprob_gap']:.1e}"]
            lines.append("| " + " | ".join(cells) + " |")
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
