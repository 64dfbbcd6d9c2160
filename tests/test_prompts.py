"""train.prompts: the game text, every policy rule verbatim, one example, chat templating."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from bench_module import load
from train import prompts
from train.prompts import (COMPACT_OMITTED, PREFILLS, SYSTEM_PROMPT, TEMPLATES,
                           answer_prefill, build_messages, build_prompt, compact_rules, prompt_text, template_examples,
                           uses_api)


class FakePolicy:
    def __init__(self, rules):
        self.rules = rules

    def describe(self) -> str:
        return "\n".join(f"- {r}" for r in self.rules)


RULES = FakePolicy(["Do not import anything.", "No `while` loops.", "Be deterministic."])


def test_default_prompt_has_game_rules_example_and_answer_format():
    text = prompt_text("2048", RULES)
    spec = envs.get("2048")
    assert "4x4 board" in text and "2048 tile" in text  # options filled in
    assert RULES.describe() in text
    assert spec.example.strip() in text and "```python" in text
    assert all(f'"{a}"' in text for a in spec.actions)
    # Order of the data flow a reader expects: game, rules, example, answer.
    assert text.index("4x4") < text.index(RULES.rules[0]) < text.index(spec.example.strip()) < text.index("Answer")


@settings(max_examples=20, deadline=None)
@given(rules=st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                              max_size=40).map(str.strip).filter(bool), min_size=1, max_size=6))
def test_every_rule_is_in_the_prompt_verbatim(rules):
    text = prompt_text("2048", FakePolicy(rules))
    assert all(f"- {r}" in text for r in rules)


def test_options_change_the_board_size():
    assert "6x6 board" in prompt_text("2048", RULES, options={"size": 6})
    with pytest.raises(ValueError, match="no option 'colour'"):
        prompt_text("2048", RULES, options={"colour": 1})


def test_templates():
    assert set(TEMPLATES) >= {"default", "rules_only", "minimal"}
    assert envs.get("2048").example.strip() not in prompt_text("2048", RULES, template="rules_only")
    assert RULES.rules[0] not in prompt_text("2048", RULES, template="minimal")
    example_only = prompt_text("2048", RULES, template="example_only")
    assert envs.get("2048").example.strip() in example_only and RULES.rules[0] not in example_only
    with pytest.raises(ValueError, match="unknown prompt template 'fancy'"):
        prompt_text("2048", RULES, template="fancy")


def test_unknown_game_names_the_game():
    with pytest.raises(KeyError, match="unknown game 'chess'"):
        prompt_text("chess", RULES)


def test_messages_without_a_tokenizer():
    messages = build_prompt("2048", None, RULES)
    assert [m["role"] for m in messages] == ["system", "user"] and messages[0]["content"] == SYSTEM_PROMPT
    assert messages == build_messages("2048", RULES)


def test_chat_template_is_applied():
    from train.model import tiny_model_and_tokenizer

    _, tok = tiny_model_and_tokenizer()
    text = build_prompt("2048", tok, RULES)
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT)
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n") and RULES.describe() in text


def test_plain_text_without_a_chat_template():
    from train.model import tiny_model_and_tokenizer

    _, tok = tiny_model_and_tokenizer()
    tok.chat_template = None
    text = build_prompt("2048", tok, RULES)
    assert "<|im_start|>" not in text and text.startswith(SYSTEM_PROMPT) and RULES.describe() in text


def test_default_policy_rules_come_from_the_sandbox():
    import sandbox.policy as policy

    text = prompt_text("2048")
    rules = policy.DEFAULT_POLICY.describe().strip()
    assert rules and rules in text


def test_the_example_in_the_prompt_passes_the_check():
    import sandbox

    assert sandbox.check(envs.get("2048").example).ok


# --- the compact rules, the board-changing example, every template -------------------------------


def _rules_of(source, policy=None):
    import sandbox

    return {v.rule for v in sandbox.check(source, policy).violations}


def _body(line):
    return f"def strategy(board):\n    {line}\n    return 'A'\n"


# One program per compact phrase, breaking exactly what the phrase names: the checker must reject
# it under that rule, so the compact text claims nothing the checker does not enforce.
COMPACT_CLAIMS = {
    "no-import": ["import math\n" + _body("pass")],
    "no-file-access": [_body("open('x')"), _body("os.getcwd()"), _body("sys.exit()")],
    "no-randomness": [_body("random.random()"), _body("time.time()"), _body("hash(board)")],
    "no-interaction": [_body("input()"), _body("exit()")],
    "no-loop": [_body("for row in board: pass"), _body("while board: pass")],
    "no-comprehension": [_body("x = [v for v in board]"), _body("x = sum(v for v in board[0])")],
    "no-recursion": ["def f(x):\n    return f(x)\n" + _body("f(1)")],
    "no-iter": [_body("iter(board)"), _body("next(board)")],
    "builtin-not-allowed": [_body("bytes(1)")],
    "unknown-attribute": [_body("board.size")],
    "no-underscore": [_body("__x = 1"), _body("_x_ = 1"), _body("board.__len__()"), _body("board._x")],
    "no-dynamic-code": [_body("eval('1')"), _body("exec('1')"), _body("getattr(board, 'x')"),
                        _body("t = type"), _body("type(board, board, board)"), _body("globals()")],
    "no-base-exception": ["def strategy(board):\n    try:\n        return 'A'\n    except BaseException:\n        return 'W'\n",
                          "def strategy(board):\n    try:\n        return 'A'\n    except SystemExit:\n        return 'W'\n"],
    "no-global": ["def strategy(board):\n    global x\n    return 'A'\n"],
    "no-mutable-default": ["def strategy(board, seen=[]):\n    seen.append(1)\n    return 'A'\n",
                           "def strategy(board, s={}):\n    s[1] = 2\n    return 'A'\n"],
    "no-attribute-assign": [_body("strategy.calls = 1")],
    "module-level-code": ["X = [1]\n" + _body("pass"), "print(1)\n" + _body("pass")],
    "no-class": ["class A:\n    pass\n" + _body("pass")],
    "no-decorator": ["def d(f):\n    return f\n@d\n" + _body("pass")],
    "no-async": ["async def f():\n    pass\n" + _body("pass")],
    "no-generator": [_body("yield 1")],
    "syntax-not-allowed": [_body("with board: pass")],
    "annotation-not-type": ["def strategy(board: len(1)):\n    return 'A'\n"],
    "too-long": [_body("pass") + "# " + "x" * 20_001 + "\n"],
    "no-big-number": [_body("x = 2 ** 10000")],
    "no-big-sequence": [_body("x = [0] * 1000000")],
}


def test_compact_rules_are_short_and_name_every_category():
    import sandbox

    policy = sandbox.DEFAULT_POLICY
    text = compact_rules(policy)
    assert len(text) < len(policy.describe()) / 2
    claimed = {rule_id for _lead, phrases, _tail in prompts._COMPACT_LINES for rule_id, _phrase in phrases}
    active = {r.id: r.category for r in policy.active_rules()}
    # Every active rule is named or left out on purpose (with its reason), never silently dropped.
    assert set(active) == claimed | set(COMPACT_OMITTED) and not claimed & set(COMPACT_OMITTED)
    assert {active[r] for r in claimed} == {r.category for r in policy.active_rules()}  # every category told
    assert set(COMPACT_CLAIMS) == claimed


@pytest.mark.parametrize("rule_id", sorted(COMPACT_CLAIMS))
def test_every_compact_claim_is_enforced_by_the_checker(rule_id):
    for source in COMPACT_CLAIMS[rule_id]:
        assert rule_id in _rules_of(source), (rule_id, source)


def test_what_the_compact_text_recommends_passes_the_check():
    import re

    import sandbox

    text = compact_rules()
    builtins = re.search(r"Only these builtins: (.*?), and exceptions", text).group(1).split(", ")
    assert set(builtins) == {n for n in sandbox.DEFAULT_POLICY.allowed_builtins if n[:1].islower()}
    # Called by name (pow may not be used as a value: pow-by-name, left out of the compact text);
    # `type` with one argument, as the text says.
    calls = [f"{name}(board)" if name == "type" else f"{name}(board, 2)" for name in builtins]
    assert sandbox.check(_body("x = (" + ", ".join(calls) + ", Exception)")).ok
    assert sandbox.check(_body("x = sorted(map(lambda r: max(r), filter(None, zip(*board))))")).ok
    methods = re.findall(r"`(\w+)`", text[text.index("Only methods"):text.index("no other attributes")])
    assert methods and sandbox.check(_body("; ".join(f"x = board.{m}" for m in methods))).ok
    # "methods of lists, dicts, sets, strings and numbers": every allowed attribute is one.
    assert all(any(hasattr(t, m) for t in (list, dict, set, str, int, float))
               for m in sandbox.DEFAULT_POLICY.allowed_methods)
    assert sandbox.check("SIZE = 4\nNAMES = ('W', 'A')\n\ndef helper(row):\n    return row\n\n" + _body("pass")).ok
    assert sandbox.check(_body("x = 2 ** 10") + "\n# " + "x" * 100 + "\n").ok


def test_compact_rules_follow_the_policy_switches():
    import dataclasses

    import sandbox

    relaxed = dataclasses.replace(sandbox.DEFAULT_POLICY, allow_loops=True, allow_module_helpers=False)
    text = compact_rules(relaxed)
    assert "`for`" not in text and "comprehensions" in text
    assert "helper functions" not in text and "helper functions" in compact_rules()
    assert compact_rules(RULES) == RULES.describe()  # no rule registry: the rules in full
    assert RULES.rules[0] in prompt_text("2048", RULES, template="compact")


def test_new_templates_have_their_parts():
    import sandbox

    game_example = envs.get("2048").example.strip()
    moves_example = envs.get("2048").moves_example.strip()
    full = sandbox.DEFAULT_POLICY.describe().strip()
    compact = prompt_text("2048", template="compact")
    assert compact_rules() in compact and game_example in compact and full not in compact
    moves = prompt_text("2048", template="moves")
    assert compact_rules() in moves and moves_example in moves and game_example not in moves
    only = prompt_text("2048", template="moves_only")
    assert moves_example in only and "rule" not in only.split("```python")[0].split("\n\n", 1)[1].lower()
    assert full in prompt_text("2048", template="moves_full_rules")
    assert len(prompt_text("2048", template="moves")) < len(prompt_text("2048", template="default")) * 0.7


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_every_template_builds(template):
    from train.model import tiny_model_and_tokenizer

    _, tok = tiny_model_and_tokenizer()
    text = build_prompt("2048", tok, template=template)
    assert text.endswith("<|im_start|>assistant\n") and "strategy(board)" in text
    assert all(example.strip() in text for example in template_examples("2048", template))


def test_a_game_without_a_moves_example_is_told_so(monkeypatch):
    import dataclasses

    monkeypatch.setitem(envs.registry._REGISTRY, "2048", dataclasses.replace(envs.get("2048"), moves_example=""))
    with pytest.raises(ValueError, match="template 'moves' needs a board-changing example"):
        prompt_text("2048", template="moves")
    assert prompt_text("2048", template="compact")  # the other templates do not need one


def _play(source, seeds=(0, 1, 2, 3)):
    import rewards

    return rewards.evaluate_group([f"```python\n{source}```"], game="2048", seeds=list(seeds))[0]


def test_every_example_passes_the_check_and_plays():
    import sandbox

    examples = {e for t in TEMPLATES for e in template_examples("2048", t)}
    game_example = envs.get("2048").example.strip()
    assert game_example in {e.strip() for e in examples} and envs.get("2048").moves_example in examples
    for example in examples:
        assert sandbox.check(example).ok, example
        b = _play(example)
        assert b.info["compliant"] == 1.0 and b.info["played"] == 1.0
        if example.strip() == game_example:
            # The game's own example is the weak one the default templates show: it never checks whether a
            # move changes the board, and on these seeds it ends stuck (the prompt study measures it).
            assert b.info["stuck_rate"] > 0.0
        else:  # the moves example plays only moves that change the board: every game ends honestly
            assert b.info["honest_rate"] == 1.0 and b.info["stuck_rate"] == 0.0


def test_the_moves_example_is_weak_on_purpose():
    # Copying the example must not be the best a sample can do: the same helper with a corner
    # order (A, W, D, S instead of A, D, W, S) earns more, and so does the corner baseline.
    from envs.game2048.baselines import SOURCES

    example = envs.get("2048").moves_example
    corner_order = example.split("def strategy")[0] + """def strategy(board):
    if any(map(moves, board)):
        return "A"
    if any(map(moves, zip(*board))):
        return "W"
    if any(map(lambda row: moves(row[::-1]), board)):
        return "D"
    return "S"
"""
    copy, better, corner = (_play(s).total for s in (example, corner_order, SOURCES["corner"]))
    assert better > copy and corner > copy


# --- benchmarks/prompt_study.py: copy detection and a smoke run on the tiny model ----------------

def test_prompt_study_tells_copies_of_the_example():
    study = load("prompt_study")
    example = envs.get("2048").moves_example
    relaid = "# mine\n" + example.replace("    # Does sliding this row left change it?\n", "")
    renamed = example.replace("moves", "can_go").replace("row", "line")
    edited = example.replace('return "S"', 'return "W"')
    assert study.copy_class(relaid, example) == "exact"
    assert study.copy_class(renamed, example) == "renamed"
    assert study.copy_class(edited, example) == "near"
    assert study.copy_class("def strategy(board):\n    return 'A'\n", example) is None
    assert study.copy_class(None, example) is None


def test_prompt_study_smoke_with_the_tiny_model(tmp_path):
    import json

    import torch

    study = load("prompt_study")
    threads = torch.get_num_threads()
    try:
        result = study.main(["--model", "tiny", "--quick", "--out", str(tmp_path / "study.json")])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "study.json").read_text())
    assert set(saved["conditions"]) == {"compact+none/nostop", "api+return"} and saved["config"]["samples"] == 8
    assert saved["config"]["game_seeds"] == [2**31, 2**31 + 1] and saved["config"]["max_new_tokens"] == 128
    row = saved["conditions"]["api+return"]
    assert row["samples"] == 8 and row["groups"] == 1 and 0 <= row["zero_variance_groups"] <= 1
    assert row["examples"] == [envs.get("2048").api_example] and row["prompt_tokens"] > 0
    assert row["prefill"] == PREFILLS["return"] and row["stop_at_fence"] and row["game_api"]
    assert abs(sum(row["ends"].values()) - 1) < 1e-9
    bare = saved["conditions"]["compact+none/nostop"]
    assert bare["prefill"] == "" and not bare["stop_at_fence"] and not bare["game_api"]
    assert saved["references"]["api example"]["honest_rate"] == 1.0
    samples = [json.loads(line) for line in (tmp_path / "study.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16
    # The answer scored is the prefill followed by the completion.
    assert all(r["text"].startswith(PREFILLS["return"]) for r in samples if r["condition"] == "api+return")
    assert "| api+return |" in (tmp_path / "study.md").read_text()
    assert result["conditions"].keys() == saved["conditions"].keys()


def test_prompt_study_reads_conditions():
    study = load("prompt_study")
    assert study.parse_condition("compact") == ("compact", "none", False)
    assert study.parse_condition("compact+signature") == ("compact", "signature", True)
    assert study.parse_condition("api+return/nostop") == ("api", "return", False)
    for bad in ("nope", "compact+what", "compact+moves", "compact+fence/later"):
        with pytest.raises(ValueError, match="condition"):
            study.parse_condition(bad)


# --- answer prefill and the API templates --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PREFILLS))
def test_the_prefill_ends_the_prompt_the_model_reads(name):
    from train.model import tiny_model_and_tokenizer

    _, tok = tiny_model_and_tokenizer()
    text = PREFILLS[name]
    prompt = build_prompt("2048", tok, template="api", prefill=text)
    assert prompt.endswith(text)
    assert prompt[:len(prompt) - len(text)] == build_prompt("2048", tok, template="api")
    messages = build_prompt("2048", None, template="api", prefill=text)
    # Without a tokenizer: a final assistant message to continue (TRL's continue_final_message).
    assert (messages[-1] == {"role": "assistant", "content": text}) if text else messages[-1]["role"] == "user"


def test_answer_prefill_resolves_names_and_refuses_the_api_without_its_template():
    assert answer_prefill("compact", "signature") == "```python\ndef strategy(board):\n"
    assert answer_prefill("compact", "none") == ""
    assert answer_prefill("api", "return").endswith("    return ")
    for template in TEMPLATES:
        assert answer_prefill(template, "auto") in PREFILLS.values()
    with pytest.raises(ValueError, match="calls the game's API"):
        answer_prefill("compact", "moves")
    with pytest.raises(ValueError, match="unknown answer prefill"):
        answer_prefill("compact", "everything")


def test_api_templates_list_the_games_declared_functions():
    spec = envs.get("2048")
    assert spec.api, "2048 declares an API"
    text = prompt_text("2048", template="api")
    for f in spec.api:
        assert f"`{f.signature}`: {f.doc}" in text
    assert envs.get("2048").api_example.strip() in text
    assert uses_api("api") and uses_api("api_only") and not uses_api("compact")
    assert "legal_moves" not in prompt_text("2048", template="compact")
    assert template_examples("2048", "api") == [envs.get("2048").api_example]
