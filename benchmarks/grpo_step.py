"""GRPO step benchmark: a random-init model of a real architecture's shape, a few steps of our loop.

No hub access: the model is built from a config of the named architecture's shape (random weights; the
tiny local BPE tokenizer supplies prompt ids, generated ids beyond its vocabulary decode to nothing).
The reward is a cheap toy (share of low token ids) so the table measures the trainer, not the sandbox.
Prints per step and the median: rollout tokens/s, training tokens/s, seconds per step, peak memory of
the rollout and of the update phase. ``--vs-trl`` runs TRL's GRPOTrainer on the same model shape, data and
settings when TRL is installed, and prints the ratios.

Peak memory: on a GPU, ``torch.cuda.max_memory_allocated`` reset at each phase; on the CPU, the process's peak
resident set (``VmHWM``), reset at each phase by writing 5 to ``/proc/self/clear_refs`` (where the kernel
refuses, the process-lifetime ``ru_maxrss`` is reported instead, and the table says so). With ``--vs-trl``
each side runs in its own child process, so one side's model, caches and allocator never count in the other's
peak.

    python benchmarks/grpo_step.py --arch tiny --steps 2                       # CPU smoke run
    python benchmarks/grpo_step.py --arch smollm2-135m --device cuda           # G=8, 512 new tokens
    python benchmarks/grpo_step.py --arch smollm2-135m --device cuda --prompts 4 --group-size 16 \\
        --new-tokens 256 --kl-beta 0.04 --vs-trl                                # the TRL anchor
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

ARCHS = {
    # HuggingFaceTB/SmolLM2-135M-Instruct's shape.
    "smollm2-135m": ("llama", dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                                   rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)),
    # Qwen/Qwen3-0.6B's shape.
    "qwen3-0.6b": ("qwen3", dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                 max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                 tie_word_embeddings=True)),
    # For a quick CPU run of the whole script.
    "tiny": ("llama", dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                           tie_word_embeddings=True)),
}


# --- peak resident memory on the CPU ------------------------------------------------------------

def rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_peak_gb() -> float:
    """Peak resident set of this process in GiB since the last :func:`rss_reset` (else since it started)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def memory_kind(device: str) -> str:
    """What the peak-memory columns measure on ``device``."""
    if device.startswith("cuda"):
        return "CUDA allocated"
    return "RSS" if rss_reset() else "RSS, process lifetime"


def build_model(arch: str, tokenizer, device: str, dtype: torch.dtype, seed: int = 0):
    """A random-init causal LM of ``arch``'s shape (no hub), on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    family, shape = ARCHS[arch]
    cls_cfg, cls_model = (LlamaConfig, LlamaForCausalLM) if family == "llama" else (Qwen3Config, Qwen3ForCausalLM)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config = cls_cfg(**shape, **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls_model(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.to(device=device, dtype=dtype).eval()


def prompt_text(tokenizer, n_tokens: int) -> str:
    """A chat-formatted prompt of about ``n_tokens`` tokens."""
    body = ("You are playing 2048 on a 4x4 board. Write a Python function `strategy(board)` that returns the "
            "next move: one of \"W\" (up), \"A\" (left), \"S\" (down), \"D\" (right). ")
    text = body
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < n_tokens:
        text += body
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    content = tokenizer.decode(ids)
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)


def toy_reward(tokenizer):
    """reward_fn: share of the completion's (re-encoded) tokens with id < 128."""
    from rewards.records import Breakdown

    def fn(completions, seeds):
        out = []
        for text in completions:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            r = sum(i < 128 for i in ids) / max(len(ids), 1)
            out.append(Breakdown(values={"toy": r}, weights={"toy": 1.0}, total=r))
        return out
    return fn


def run_ours(args, tokenizer, dtype) -> list[dict]:
    """Our loop's grpo_step, ``args.steps`` times (plus one warm-up step); per-step metrics."""
    from train.config import make_config
    from train.loop import grpo_step
    from train.policy import add_lora, make_optimizer
    from train.rollout import make_backend

    cfg = make_config(dict(
        group_size=args.group_size, prompts_per_step=args.prompts, max_new_tokens=args.new_tokens,
        lr=1e-5, steps=args.steps + 1, grad_accum=args.grad_accum, kl_beta=args.kl_beta,
        lora_rank=args.lora_rank, lora_alpha=2 * args.lora_rank, gradient_checkpointing=args.gradient_checkpointing,
        rollout_backend=args.backend, loss_variant=args.loss, output_dir="/tmp/codepolicy-bench"))
    model = build_model(args.arch, tokenizer, args.device, dtype)
    policy = add_lora(model, cfg)
    opt, sched = make_optimizer(policy, cfg)
    backend = make_backend(cfg.rollout_backend, policy, tokenizer, compile=args.compile, record_logprobs=False)
    prompts = [prompt_text(tokenizer, args.prompt_tokens)]
    reward = toy_reward(tokenizer)
    on_cpu = not args.device.startswith("cuda")
    if on_cpu:
        # The loop measures CUDA memory only: on the CPU the rollout's peak RSS is taken around generate, and
        # the rest of the step (rewards, reference pass, updates) from the end of the rollout to the step's end.
        generate, phase = backend.generate, {}

        def generate_measured(*a, **kw):
            rss_reset()
            try:
                return generate(*a, **kw)
            finally:
                phase["rollout"] = rss_peak_gb()
                rss_reset()

        backend.generate = generate_measured
    rows = []
    for step in range(args.steps + 1):
        t = time.perf_counter()
        m, _, _ = grpo_step(policy, backend, opt, sched, cfg, prompts, reward, step)
        m["wall"] = time.perf_counter() - t
        if on_cpu:
            m["peak_mem_rollout_gb"], m["peak_mem_train_gb"] = phase["rollout"], rss_peak_gb()
            m["peak_memory_gb"] = max(m["peak_mem_rollout_gb"], m["peak_mem_train_gb"])
        rows.append(m)
        tag = "warm-up" if step == 0 else f"step {step}"
        print(f"  ours {tag:>8}: {m['wall']:7.2f} s  rollout {m['rollout_tokens_per_s']:9.0f} tok/s  "
              f"train {m['train_tokens_per_s']:9.0f} tok/s  peak rollout {m['peak_mem_rollout_gb']:.2f} GiB  "
              f"train {m['peak_mem_train_gb']:.2f} GiB  backend={backend.name}", flush=True)
    del policy, model, opt, backend
    return rows[1:]


def run_trl(args, tokenizer, dtype) -> list[dict] | None:
    """TRL's GRPOTrainer on the same model shape, prompts and settings; per-step wall time and peak memory."""
    if importlib.util.find_spec("trl") is None:
        print("  trl: skipped (trl is not installed; pip install trl to compare)")
        return None
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model = build_model(args.arch, tokenizer, args.device, dtype)
    prompt = prompt_text(tokenizer, args.prompt_tokens)
    n_rows = args.prompts * (args.steps + 1)
    data = Dataset.from_dict({"prompt": [prompt] * n_rows})
    reward = toy_reward(tokenizer)
    batch = args.prompts * args.group_size

    def reward_func(completions, **kwargs):
        return [b.total for b in reward(list(completions), [0])]

    times: list[dict] = []
    on_gpu = args.device.startswith("cuda")

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if on_gpu:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            else:
                rss_reset()
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if on_gpu:
                torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else rss_peak_gb()
            times.append({"wall": time.perf_counter() - self.t, "peak_memory_gb": peak})
            print(f"  trl  step {state.global_step}: {times[-1]['wall']:7.2f} s  peak {peak:.2f} GiB", flush=True)

    config = GRPOConfig(
        output_dir="/tmp/codepolicy-bench-trl", per_device_train_batch_size=batch // args.grad_accum,
        gradient_accumulation_steps=args.grad_accum, num_generations=args.group_size,
        max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0, top_k=0, beta=args.kl_beta,
        learning_rate=1e-5, max_steps=args.steps + 1, logging_steps=1, save_strategy="no", report_to=[],
        bf16=dtype == torch.bfloat16, use_cpu=not on_gpu, gradient_checkpointing=args.gradient_checkpointing,
        loss_type=args.loss if args.loss != "gspo" else "grpo", use_vllm=False)
    lora = LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=model, reward_funcs=reward_func, args=config, train_dataset=data,
                          processing_class=tokenizer, peft_config=lora, callbacks=[Timer()])
    trainer.train()
    return times[1:]


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by benchmarks/gpu_suite.py)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(ARCHS), default="smollm2-135m")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--prompts", type=int, default=4, help="prompts (groups) per step")
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--prompt-tokens", type=int, default=256)
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--kl-beta", type=float, default=0.04)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--loss", default="grpo", choices=["grpo", "dr_grpo", "dapo", "gspo"])
    p.add_argument("--backend", default="auto", choices=["auto", "hf", "lean", "vllm"])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA-graph compile of the lean decode step (GPU only)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--vs-trl", action="store_true", help="also run TRL's GRPOTrainer (when installed)")
    p.add_argument("--side", choices=["both", "ours", "trl"], default="both",
                   help="with --vs-trl, both sides run in child processes of their own; ours/trl: run that side here")
    p.add_argument("--result-json", default="", help="write this side's per-step rows here (used by --side)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    return p


def resolve_dtype(args: argparse.Namespace) -> torch.dtype:
    if args.dtype == "auto":
        return torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    return getattr(torch, args.dtype)


def run_side(args: argparse.Namespace, side: str) -> list[dict] | None:
    """One side's timed rows in this process (None: TRL not installed)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    from train.model import tiny_model_and_tokenizer

    _, tokenizer = tiny_model_and_tokenizer(0)
    dtype = resolve_dtype(args)
    return run_ours(args, tokenizer, dtype) if side == "ours" else run_trl(args, tokenizer, dtype)


def run_side_in_child(argv: list[str], side: str) -> list[dict] | None:
    """One side's rows from a child process of this script (its output goes straight to ours)."""
    with tempfile.TemporaryDirectory(prefix="codepolicy-grpo-bench-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--result-json", str(out)]
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            raise RuntimeError(f"the {side} side exited with status {rc}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    dtype = resolve_dtype(args)
    if args.side != "both":
        rows = run_side(args, args.side)
        if args.result_json:
            Path(args.result_json).write_text(json.dumps(rows))
        return 0

    print(f"arch={args.arch} device={args.device} dtype={dtype} G={args.group_size} prompts={args.prompts} "
          f"new_tokens={args.new_tokens} prompt_tokens~{args.prompt_tokens} beta={args.kl_beta} "
          f"lora_r={args.lora_rank} grad_accum={args.grad_accum} torch={torch.__version__} "
          f"peak memory: {memory_kind(args.device)}", flush=True)
    if args.vs_trl:
        ours = run_side_in_child(argv, "ours")
        theirs = run_side_in_child(argv, "trl")
    else:
        ours, theirs = run_side(args, "ours"), None

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print()
    header = f"{'':>8} {'s/step':>8} {'rollout tok/s':>14} {'train tok/s':>12} {'peak rollout GiB':>17} {'peak train GiB':>15}"
    print(header)
    print("-" * len(header))
    print(f"{'ours':>8} {med(ours, 'wall'):>8.2f} {med(ours, 'rollout_tokens_per_s'):>14.0f} "
          f"{med(ours, 'train_tokens_per_s'):>12.0f} {med(ours, 'peak_mem_rollout_gb'):>17.2f} "
          f"{med(ours, 'peak_mem_train_gb'):>15.2f}")
    if theirs:
        trl_wall, trl_peak = med(theirs, "wall"), med(theirs, "peak_memory_gb")
        print(f"{'trl':>8} {trl_wall:>8.2f} {'':>14} {'':>12} {trl_peak:>17.2f} {'':>15}")
        ours_peak = max(med(ours, "peak_mem_rollout_gb"), med(ours, "peak_mem_train_gb"))
        print(f"speed-up vs TRL: {trl_wall / med(ours, 'wall'):.2f}x per step; peak memory ours/TRL: "
              f"{ours_peak / trl_peak if trl_peak else float('nan'):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
