"""Prompt study: what each prompt condition makes the untrained model write, and what it earns.

A condition is a template of ``train.prompts``, an answer prefill (the text that opens the model's answer,
``train.prompts.PREFILLS``) and whether rows stop at the closing code fence, written
``template+prefill`` (stop on) or ``template+prefill/nostop``; a bare template name is ``template+none/nostop``.
Templates that list the game's API are scored with it switched on, the others with it off.
For each condition the untrained model (SmolLM2-135M-Instruct by default) samples
``--samples`` completions of its chat prompt at the cpu preset's temperature, top-p and length
(``train.config``), in batches of 16 through the lean rollout backend; groups of 8 consecutive samples
are scored the way training scores them (``rewards.evaluate_group``, the game's default reward spec) on
held-out game seeds ``2**31 + k`` (training draws its game seeds below ``2**31 - 1``, so it never
plays these). Per condition it reports:

- samples; shares extractable (``format_ok``), compliant, ``played`` (the reward's own fact: every game
  made a move or ended honestly), honest end (every game finished, won or hit max_moves: no game
  ``stuck`` and no runtime error), any game stuck, truncated at max_new_tokens; how the completions
  ended (EOS, the closing fence, the length limit);
- zero-variance groups (all 8 totals equal: no GRPO learning signal), reward mean, std and the mean
  of the per-group std;
- prompt tokens, sampling and scoring seconds;
- copies of the template's example: ``exact`` (same ``rewards.source_hash``: same AST), ``renamed``
  (same AST once every user-chosen identifier is renamed in order of first use), ``near`` (difflib
  ratio >= 0.9 between the ``ast.unparse`` texts, comments and layout gone); each class includes the
  one before. The best sample's total and whether it is a copy; the examples' own totals beside the
  corner and greedy baselines (``envs.baselines``) on ``--reference-games`` held-out games (default 32:
  the gaps between these programs are smaller than four games' noise), so "copying is not the best a
  sample can do" can be read off.

Results go to ``--out`` (JSON, written again after each condition, so a stopped run keeps what it
finished), every completion to ``<out>.samples.jsonl``, and a markdown table to stdout and
``<out>.md``.

    OMP_NUM_THREADS=1 python benchmarks/prompt_study.py --threads 1
    python benchmarks/prompt_study.py --quick                        # 8 samples of 2 templates: a smoke run
    python benchmarks/prompt_study.py --model tiny --quick --out /tmp/x.json   # random tiny model (tests)
"""
from __future__ import annotations

import argparse
import ast
import builtins
import datetime
import difflib
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Prefill and stop, without and with the game API: the rows of the table that chooses each template's prefill.
DEFAULT_CONDITIONS = ("compact+none/nostop", "compact+none", "compact+fence", "compact+signature", "compact+indent",
                      "api+none", "api+signature", "api+indent", "api+moves", "api+return")
QUICK_CONDITIONS = ("compact+none/nostop", "api+return")
GROUP = 8             # the GRPO group the zero-variance count is about (the gpu preset's group_size)
BATCH = 16            # completions sampled per generate call
HELD_OUT_BASE = 2**31  # game seeds 2**31 + k: above every seed training draws (rng.integers(0, 2**31 - 1))
NEAR_RATIO = 0.9
NOTE = "shared machine, other jobs running"


# --- copies of the example -----------------------------------------------------------------------

class _Renamer(ast.NodeTransformer):
    """Renames every identifier the program chose (functions, arguments, variables) to v0, v1, ... in
    order of first use; builtins, ``strategy`` and ``board`` keep their names, attributes and strings too."""

    KEEP = frozenset(dir(builtins)) | {"strategy", "board"}

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        if name in self.KEEP:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._new(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        self.generic_visit(node)
        return node


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]


def normalised_text(source: str) -> str:
    """``ast.unparse`` of the program (comments, layout and docstrings gone); the stripped text if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "\n".join(line.rstrip() for line in source.strip().splitlines())
    _strip_docstrings(tree)
    return ast.unparse(tree)


def renamed_hash(source: str) -> str | None:
    """SHA-256 of the AST with user-chosen identifiers renamed in order of first use; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    _strip_docstrings(tree)
    tree = _Renamer().visit(tree)
    return hashlib.sha256(ast.dump(tree).encode("utf-8", "surrogatepass")).hexdigest()


def copy_class(source: str | None, example: str) -> str | None:
    """``exact``, ``renamed`` or ``near`` copy of ``example`` (the first that holds), or None."""
    from rewards import source_hash

    if source is None:
        return None
    if source_hash(source) == source_hash(example):
        return "exact"
    theirs = renamed_hash(source)
    if theirs is not None and theirs == renamed_hash(example):
        return "renamed"
    if difflib.SequenceMatcher(None, normalised_text(source), normalised_text(example)).ratio() >= NEAR_RATIO:
        return "near"
    return None


# --- one template --------------------------------------------------------------------------------

def _fence(source: str) -> str:
    return f"```python\n{source.strip()}\n```"


def parse_condition(text: str) -> tuple[str, str, bool]:
    """``template[+prefill][/nostop]`` -> (template, prefill name, stop at fence); a bare template: no prefill, no stop."""
    from train.prompts import PREFILLS, TEMPLATES, answer_prefill

    head, _, tail = text.strip().partition("/")
    template, plus, prefill = head.partition("+")
    if template not in TEMPLATES:
        raise ValueError(f"condition {text!r}: unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    if tail not in ("", "nostop"):
        raise ValueError(f"condition {text!r}: only '/nostop' may follow the prefill")
    prefill = prefill if plus else "none"
    if prefill not in PREFILLS:
        raise ValueError(f"condition {text!r}: unknown prefill {prefill!r}; choose from {', '.join(PREFILLS)}")
    try:
        answer_prefill(template, prefill)  # an API prefill with a template that does not show the API fails here
    except ValueError as exc:
        raise ValueError(f"condition {text!r}: {exc}") from None
    return template, prefill, bool(plus) and tail != "nostop"


def condition_name(template: str, prefill: str, stop: bool) -> str:
    """The condition's name, as :func:`parse_condition` reads it."""
    return f"{template}+{prefill}" + ("" if stop else "/nostop")


def _sample_facts(breakdown: Any, text: str, truncated: bool, examples: Sequence[str]) -> dict[str, Any]:
    import sandbox
    from sandbox.records import FormatError

    info = breakdown.info
    try:
        sandbox.extract(text)
        reason = None
    except FormatError as exc:
        reason = exc.reason
    source = breakdown.source
    violations: list[str] = []
    if source is not None and not info.get("compliant"):
        violations = sorted({v.rule for v in sandbox.check(source).violations})
    copies = [c for c in (copy_class(source, e) for e in examples) if c]
    outcomes = {k[len("outcome_"):]: int(v) for k, v in info.items() if k.startswith("outcome_")}
    return {
        "total": breakdown.total,
        "values": dict(breakdown.values),
        "format_ok": bool(info.get("format_ok")),
        "compliant": bool(info.get("compliant")),
        "played": bool(info.get("played")),
        "honest_end": bool(info.get("compliant")) and info.get("games", 0) > 0 and info.get("honest_rate") == 1.0,
        "stuck": info.get("stuck_rate", 0.0) > 0,
        "truncated": bool(truncated),
        "format_error": reason,
        "violations": violations,
        "outcomes": outcomes,
        "mean_max_tile": info.get("mean_max_tile", 0.0),
        "mean_score": info.get("mean_score", 0.0),
        "copy": copies[0] if copies else None,
        "text": text,
    }


def _share(rows: Sequence[dict[str, Any]], key: str) -> float:
    return sum(1 for r in rows if r[key]) / len(rows) if rows else 0.0


def summarise(condition: str, rows: list[dict[str, Any]], prompt_tokens: int, sample_s: float, score_s: float,
              group: int = GROUP) -> dict[str, Any]:
    """The per-condition figures from per-sample facts (``rows`` in sampling order, groups consecutive)."""
    totals = [r["total"] for r in rows]
    groups = [totals[i:i + group] for i in range(0, len(totals) - group + 1, group)]
    zero_var = sum(1 for g in groups if max(g) - min(g) <= 1e-9)
    best = max(range(len(rows)), key=lambda i: totals[i]) if rows else None
    copies = Counter(r["copy"] for r in rows if r["copy"])
    played = [r for r in rows if r["honest_end"]]
    return {
        "condition": condition,
        "samples": len(rows),
        "extractable": _share(rows, "format_ok"),
        "compliant": _share(rows, "compliant"),
        "played": _share(rows, "played"),
        "honest_end": _share(rows, "honest_end"),
        "stuck": _share(rows, "stuck"),
        "truncated": _share(rows, "truncated"),
        "ends": {reason: sum(1 for r in rows if r.get("end") == reason) / len(rows) if rows else 0.0
                 for reason in ("eos", "fence", "length")},
        "groups": len(groups),
        "zero_variance_groups": zero_var,
        "reward_mean": statistics.fmean(totals) if totals else 0.0,
        "reward_std": statistics.pstdev(totals) if len(totals) > 1 else 0.0,
        "group_std_mean": statistics.fmean(statistics.pstdev(g) for g in groups) if groups else 0.0,
        "prompt_tokens": prompt_tokens,
        "sampling_seconds": sample_s,
        "scoring_seconds": score_s,
        "copies": {"exact": copies["exact"], "renamed": copies["renamed"], "near": copies["near"],
                   "any": sum(copies.values())},
        "best_total": totals[best] if best is not None else None,
        "best_is_copy": rows[best]["copy"] if best is not None else None,
        "best_text": rows[best]["text"] if best is not None else None,
        "honest_mean_max_tile": statistics.fmean(r["mean_max_tile"] for r in played) if played else 0.0,
        "format_errors": dict(Counter(r["format_error"] for r in rows if r["format_error"]).most_common()),
        "violations": dict(Counter(v for r in rows for v in r["violations"]).most_common()),
        "outcomes": dict(sum((Counter(r["outcomes"]) for r in rows), Counter()).most_common()),
    }


def run_condition(condition: str, *, game: str, model: Any, tok: Any, backend: Any, sampling: Any, samples: int,
                  seed: int, seeds: list[int], pool: Any, batch: int = BATCH,
                  log: Any = print) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Sample, score and summarise one condition; -> (summary, per-sample facts).

    The answer scored is the prefill followed by the completion, as in training; ``sampling`` gives the
    length, temperature and top-p, the condition the prefill and the stop.
    """
    import dataclasses

    import rewards
    from train.prompts import answer_prefill, build_prompt, template_examples
    from train.task import with_template_api
    from train.rollout import encode_prompts

    template, prefill_name, stop = parse_condition(condition)
    prefill = answer_prefill(template, prefill_name)
    sampling = dataclasses.replace(sampling, prefill=prefill, stop_at_fence=stop)
    spec = with_template_api(rewards.load_spec(None, game=game), template)
    prompt = build_prompt(game, tok, template=template, prefill=prefill)
    prompt_tokens = len(encode_prompts(tok, [prompt])[0])
    examples = template_examples(game, template)
    texts: list[str] = []
    truncated: list[bool] = []
    ends: list[str] = []
    sample_s = 0.0
    for b in range(math.ceil(samples / batch)):
        n = min(batch, samples - b * batch)
        # Batch b draws with seed + b whatever the condition: same seeds, so conditions differ only by prompt.
        start = time.perf_counter()
        out = backend.generate([prompt], n, sampling, seed + b)
        sample_s += time.perf_counter() - start
        texts += [prefill + t for t in out.texts]
        truncated += [bool(t) for t in out.truncated]
        ends += out.ends
        log(f"  {condition}: sampled {len(texts)}/{samples} ({sample_s:.0f} s)")
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    cache: dict = {}  # per condition: a program the model repeats runs once, as in training
    for g in range(0, len(texts), GROUP):
        group = texts[g:g + GROUP]
        breakdowns = rewards.evaluate_group(group, game=game, seeds=seeds, spec=spec, pool=pool, cache=cache)
        rows += [_sample_facts(bd, t, tr, examples) | {"end": e}
                 for bd, t, tr, e in zip(breakdowns, group, truncated[g:g + GROUP], ends[g:g + GROUP])]
    score_s = time.perf_counter() - start
    summary = summarise(condition, rows, prompt_tokens, sample_s, score_s)
    summary.update(examples=examples, prefill=prefill, stop_at_fence=stop, game_api=spec.game_api)
    return summary, rows


def references(game: str, seeds: list[int], spec: Any, pool: Any, templates: Sequence[str]) -> dict[str, Any]:
    """Totals of the templates' examples and of honest baselines on the same held-out seeds (API switched on)."""
    import dataclasses

    import envs
    import rewards
    from envs.game2048.baselines import SOURCES
    from train.prompts import template_examples

    spec = dataclasses.replace(spec, game_api=True)  # the API example needs it; the others never call it
    programs: dict[str, str] = {}
    game_spec = envs.get(game)
    for t in templates:
        for e in template_examples(game, t):
            name = ("moves example" if e == game_spec.moves_example
                    else "api example" if e == game_spec.api_example else "game example")
            programs[name] = e
    if game == "2048" and game_spec.moves_example:
        # The moves example with a corner order (A, W, D, S instead of A, D, W, S): one edit away from a copy.
        helper = game_spec.moves_example.split("def strategy")[0]
        programs["moves example, corner order AWDS"] = helper + (
            'def strategy(board):\n    if any(map(moves, board)):\n        return "A"\n'
            '    if any(map(moves, zip(*board))):\n        return "W"\n'
            '    if any(map(lambda row: moves(row[::-1]), board)):\n        return "D"\n    return "S"\n')
    for name in ("fixed", "corner", "greedy"):
        programs[f"baseline {name}"] = SOURCES[name]
    out = {}
    breakdowns = rewards.evaluate_group([_fence(p) for p in programs.values()], game=game, seeds=seeds, spec=spec,
                                        pool=pool)
    for (name, _), bd in zip(programs.items(), breakdowns):
        out[name] = {"total": bd.total, "honest_rate": bd.info.get("honest_rate"),
                     "stuck_rate": bd.info.get("stuck_rate"), "mean_max_tile": bd.info.get("mean_max_tile"),
                     "mean_score": bd.info.get("mean_score"), "values": dict(bd.values)}
    return out


# --- the table -----------------------------------------------------------------------------------

COLUMNS = (
    ("condition", "condition", "{}"),
    ("samples", "n", "{}"),
    ("extractable", "extract", "{:.0%}"),
    ("compliant", "compliant", "{:.0%}"),
    ("played", "played", "{:.0%}"),
    ("honest_end", "honest end", "{:.0%}"),
    ("stuck", "stuck", "{:.0%}"),
    ("truncated", "truncated", "{:.0%}"),
    ("ends", "ends e/f/l", None),
    ("zero_variance_groups", "0-var groups", "{}"),
    ("reward_mean", "reward mean", "{:.3f}"),
    ("reward_std", "std", "{:.3f}"),
    ("group_std_mean", "group std", "{:.3f}"),
    ("best_total", "best", "{:.3f}"),
    ("copies", "copies e/r/n", None),
    ("prompt_tokens", "prompt tok", "{}"),
    ("sampling_seconds", "sample s", "{:.0f}"),
    ("scoring_seconds", "score s", "{:.0f}"),
)


def _cell(summary: dict[str, Any], key: str, fmt: str | None) -> str:
    if key == "copies":
        c = summary["copies"]
        best = " (best is one)" if summary["best_is_copy"] else ""
        return f"{c['exact']}/{c['renamed']}/{c['near']}{best}" if summary["examples"] else "-"
    if key == "ends":
        return "/".join(f"{summary['ends'][r]:.0%}" for r in ("eos", "fence", "length"))
    if key == "zero_variance_groups":
        return f"{summary[key]}/{summary['groups']}"
    value = summary[key]
    return "-" if value is None else fmt.format(value)


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The per-condition figures as a markdown table."""
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(s, k, f) for k, _, f in COLUMNS) + " |" for s in summaries]
    return "\n".join([head, rule, *rows])


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=128, help="completions per condition (multiple of 8; default 128)")
    p.add_argument("--conditions", "--templates", dest="conditions", default=",".join(DEFAULT_CONDITIONS),
                   help="comma-separated conditions, template[+prefill][/nostop] (a bare template: no prefill, no stop)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--out", default="benchmarks/results/prompt_study.json", help="results JSON")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 8 samples of two conditions, 2 games, results to /tmp unless --out is given")
    p.add_argument("--model", default="smollm2-135m", help="model name (tiny: the random test model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--games", type=int, default=4, help="held-out games per completion (the gpu preset's seeds_per_eval)")
    p.add_argument("--reference-games", type=int, default=32,
                   help="games the reference programs play (2**31 + k): more than --games, their gaps are small")
    p.add_argument("--max-new-tokens", type=int, default=0,
                   help="completion length (default 0: the cpu preset's max_new_tokens, what training samples)")
    p.add_argument("--seed", type=int, default=0, help="base sampling seed: batch b samples with seed + b")
    p.add_argument("--workers", type=int, default=1, help="sandbox worker processes (default 1: the machine is shared)")
    p.add_argument("--note", default=NOTE, help="what else the machine was doing, recorded in the JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.samples = 8 if args.samples == 128 else args.samples
        if args.conditions == ",".join(DEFAULT_CONDITIONS):
            args.conditions = ",".join(QUICK_CONDITIONS)
        args.games = 2 if args.games == 4 else args.games
        args.reference_games = 2 if args.reference_games == 32 else args.reference_games
        if args.out == p.get_default("out"):
            args.out = "/tmp/prompt_study_quick.json"
    if args.samples < GROUP or args.samples % GROUP:
        p.error(f"--samples must be a positive multiple of {GROUP}, got {args.samples}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)

    import rewards
    from sandbox.runner import WorkerPool
    from train.config import make_config
    from train.rollout import SamplingParams, make_backend

    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    try:
        parsed = [parse_condition(c) for c in conditions]
    except ValueError as exc:
        raise SystemExit(f"prompt_study: {exc}") from None
    conditions = [condition_name(*c) for c in parsed]
    templates = list(dict.fromkeys(t for t, _, _ in parsed))
    cfg = make_config(preset="cpu")
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens or cfg.max_new_tokens, temperature=cfg.temperature,
                              top_p=cfg.top_p)
    game = cfg.game
    seeds = [HELD_OUT_BASE + k for k in range(args.games)]
    spec = rewards.load_spec(None, game=game)

    def say(*parts: Any) -> None:
        print(*parts, file=sys.stderr, flush=True)

    start = time.perf_counter()
    if args.model == "tiny":
        from train.model import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer()
        model = model.to(args.device)
    else:
        from train.model import load_model

        model, tok = load_model(args.model, "auto", args.device)
    say(f"model {args.model} loaded in {time.perf_counter() - start:.1f} s; {torch.get_num_threads()} torch threads")
    backend = make_backend("lean", model, tok, compile=False, record_logprobs=False)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples_path = out.with_suffix(".samples.jsonl")
    result: dict[str, Any] = {
        "config": {
            "model": args.model, "device": args.device, "dtype": str(next(model.parameters()).dtype),
            "preset": f"cpu, max_new_tokens {args.max_new_tokens}" if args.max_new_tokens else "cpu",
            "temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens, "samples": args.samples, "group": GROUP, "batch": BATCH,
            "sampling_seeds": f"batch b of every condition: {args.seed} + b",
            "game": game, "game_seeds": seeds,
            "game_seeds_note": "2**31 + k: training draws game seeds in [0, 2**31 - 1) and never plays these",
            "reward_spec": f"the default spec of game {game!r}",
            "rollout_backend": "lean, eager (compile=False)", "torch_threads": torch.get_num_threads(),
            "sandbox_workers": args.workers, "conditions": conditions,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(), "machine": args.note,
            "copies": "exact: same rewards.source_hash (AST); renamed: same AST once user identifiers are renamed "
                      "in order of first use; near: difflib ratio >= 0.9 between ast.unparse texts; each includes "
                      "the one before",
            "played": "the reward's info['played']: every game made a move or ended honestly (a stuck game with "
                      "moves counts); honest_end: every game finished, won or hit max_moves",
        },
        "conditions": {},
    }
    summaries: list[dict[str, Any]] = []
    with WorkerPool(workers=args.workers) as pool, open(samples_path, "w") as samples_file:
        reference_seeds = [HELD_OUT_BASE + k for k in range(max(args.reference_games, 1))]
        result["config"]["reference_seeds"] = f"2**31 + k for k < {len(reference_seeds)}"
        result["references"] = references(game, reference_seeds, spec, pool, templates)
        for condition in conditions:
            say(f"condition {condition}")
            summary, rows = run_condition(condition, game=game, model=model, tok=tok, backend=backend,
                                          sampling=sampling, samples=args.samples, seed=args.seed, seeds=seeds,
                                          pool=pool, log=say)
            summaries.append(summary)
            result["conditions"][condition] = summary
            for i, row in enumerate(rows):
                samples_file.write(json.dumps({"condition": condition, "index": i, **row}) + "\n")
            samples_file.flush()
            result["config"]["wall_seconds"] = time.perf_counter() - start
            result["config"]["load_average_at_end"] = os.getloadavg()
            out.write_text(json.dumps(result, indent=2) + "\n")
            say(markdown_table([summary]).splitlines()[-1])
    table = markdown_table(summaries)
    refs = "\n".join(f"| {name} | {r['total']:.3f} | {r['honest_rate']:.0%} | {r['mean_max_tile']:.0f} |"
                     for name, r in result["references"].items())
    text = (f"{table}\n\nReference programs on {args.reference_games} held-out games:\n\n| program | total | honest end | mean max tile |\n"
            f"|---|---|---|---|\n{refs}\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    say(f"wrote {out}, {samples_path} and {out.with_suffix('.md')} in {time.perf_counter() - start:.0f} s")
    backend.close()
    return result


if __name__ == "__main__":
    main()
