"""train.prompts: the game text, every policy rule verbatim, one example, chat templating."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from train.prompts import SYSTEM_PROMPT, TEMPLATES, build_messages, build_prompt, prompt_text


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
