"""TRL adapters: signature, chat-style completions, __name__, one evaluation per batch; TRL not needed."""
from __future__ import annotations

import importlib.util
import inspect
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rewards
from rewards.records import Breakdown
from rewards.trl import completion_text, prompt_seeds

SPEC = rewards.default_spec()


class FakeRewardFn:
    """Stands in for evaluate_group: values encode the completion and the seeds, calls are counted."""

    def __init__(self):
        self.calls = []

    def __call__(self, completions, *, seeds):
        self.calls.append((list(completions), list(seeds)))
        return [Breakdown(values={n: float(len(c)) + i for i, n in enumerate(SPEC.names)},
                          weights=SPEC.weights, total=0.0, info={"first_seed": seeds[0]}) for c in completions]


def test_one_function_per_rule_with_trl_signature_and_name():
    funcs = rewards.trl_reward_funcs(SPEC, game="2048", reward_fn=FakeRewardFn())
    assert [f.__name__ for f in funcs] == list(SPEC.names)
    for f in funcs:
        params = inspect.signature(f).parameters
        assert list(params)[:2] == ["prompts", "completions"]
        assert any(p.kind is p.VAR_KEYWORD for p in params.values())
        assert f.__doc__
    assert rewards.trl_reward_weights(SPEC) == [SPEC.weights[n] for n in SPEC.names]


def test_plain_and_chat_completions_give_the_same_values():
    fake = FakeRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=fake)
    texts = ["abc", "de"]
    plain = [f(prompts=["p", "p"], completions=texts) for f in funcs]
    chat = [f(prompts=[[{"role": "user", "content": "p"}]] * 2,
              completions=[[{"role": "assistant", "content": t}] for t in texts],
              completion_ids=[[1], [2]], trainer_state=None) for f in funcs]
    assert plain[0] == [3.0, 2.0] and plain[1] == [4.0, 3.0]
    assert chat == plain
    assert all(isinstance(v, float) for row in chat for v in row)


def test_the_prompts_answer_prefill_is_prepended_to_each_completion():
    fake = FakeRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=fake)
    prefill = "```python\ndef strategy(board):\n"
    prompt = [{"role": "user", "content": "p"}, {"role": "assistant", "content": prefill}]
    funcs[0](prompts=[prompt, [{"role": "user", "content": "p"}]], completions=["    return 'W'\n```"] * 2)
    # A GRPO group shares seeds: one call, in row order.
    assert [c for call in fake.calls for c in call[0]] == [prefill + "    return 'W'\n```", "    return 'W'\n```"]
    given = FakeRewardFn()
    rewards.trl_reward_funcs(SPEC, reward_fn=given, prefill="X")[0](prompts=["p"], completions=["y"])
    assert given.calls[0][0] == ["Xy"]


def test_rules_share_one_evaluation_per_batch():
    fake = FakeRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=fake)
    for f in funcs:
        f(prompts=["p"] * 4, completions=["a", "b", "c", "d"])
    assert len(fake.calls) == 1
    funcs[0](prompts=["p"] * 4, completions=["a", "b", "c", "e"])
    assert len(fake.calls) == 2


class State:
    """Stands in for the transformers TrainerState TRL passes as ``trainer_state``."""

    def __init__(self, global_step):
        self.global_step = global_step


def test_groups_share_seeds_and_seed_column_wins():
    fake = FakeRewardFn()
    f = rewards.trl_reward_funcs(SPEC, reward_fn=fake, games=3)[0]
    f(prompts=["one", "one", "two", "two"], completions=["a", "b", "c", "d"], trainer_state=State(5))
    assert len(fake.calls) == 2  # one call per group: common random numbers within a group
    (c1, s1), (c2, s2) = fake.calls
    assert c1 == ["a", "b"] and c2 == ["c", "d"] and len(s1) == 3 and s1 != s2
    assert s1 == list(prompt_seeds("one", 3, step=5))  # stable across processes: prompt text and step
    fake.calls.clear()
    f(prompts=["one", "one"], completions=["a", "b"], seed=[[100, 7, 9]] * 2, trainer_state=State(5))
    assert fake.calls == [(["a", "b"], [100, 7, 9])]  # a list fixes the row's games
    with pytest.raises(ValueError, match="2 prompts for 3 completions"):
        f(prompts=["x", "y"], completions=["a", "b", "c"])


def test_one_prompt_plays_new_games_at_every_step():
    """One fixed prompt, no seed column: the trainer's step changes the games, as in the native loop."""
    fake = FakeRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=fake, games=8)
    seen = []
    for step in (0, 1, 2):
        for f in funcs:  # TRL calls every rule's function on the batch: one evaluation, one seed set
            f(prompts=["p"] * 4, completions=["a", "b", "c", "d"], trainer_state=State(step))
        seen.append(fake.calls[-1][1])
    assert len(fake.calls) == 3 and len({tuple(s) for s in seen}) == 3
    assert all(len(s) == 8 and all(0 <= x < 2**31 - 1 for x in s) for s in seen)
    # An int seed column is the row's key: other games than the prompt's, still new at each step.
    f = funcs[0]
    f(prompts=["p"] * 2, completions=["a", "b"], seed=[7, 7], trainer_state=State(1))
    f(prompts=["p"] * 2, completions=["a", "b"], seed=[7, 7], trainer_state=State(2))
    assert fake.calls[-1][1] != fake.calls[-2][1] and fake.calls[-2][1] != seen[1]


def test_without_a_trainer_step_each_new_batch_is_a_new_step():
    """An older TRL passes no trainer_state: the adapter counts batches, and every rule's call of one batch is one."""
    fake = FakeRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=fake, games=2)
    for f in funcs:
        f(prompts=["p", "p"], completions=["a", "b"])
    for f in funcs:
        f(prompts=["p", "p"], completions=["a", "c"])
    assert [s for _, s in fake.calls] == [list(prompt_seeds("p", 2, step=0)), list(prompt_seeds("p", 2, step=1))]


@settings(max_examples=50, deadline=None)
@given(prompt=st.text(max_size=30), seed=st.none() | st.integers(0, 2**40), step=st.integers(0, 10**6),
       games=st.integers(1, 16))
def test_prompt_seeds_are_a_function_of_row_and_step(prompt, seed, step, games):
    a = prompt_seeds(prompt, games, seed, step)
    assert a == prompt_seeds(prompt, games, seed, step) and len(a) == games
    assert all(0 <= x < 2**31 - 1 for x in a)
    assert a != prompt_seeds(prompt, games, seed, step + 1)  # 8-byte draws: a clash is about 2**-31


def test_completion_text_forms():
    assert completion_text("x") == "x"
    assert completion_text({"role": "assistant", "content": "y"}) == "y"
    assert completion_text([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "p1"},
                                                              {"type": "text", "text": "p2"}]}]) == "p1p2"
    with pytest.raises(TypeError, match="string or a list of chat messages"):
        completion_text(3)


def test_default_reward_fn_scores_through_evaluate_group(monkeypatch):
    seen = {}

    def fake_group(completions, *, game, seeds, spec, pool, cache):
        seen.update(game=game, spec=spec, seeds=seeds, cache=cache)
        return [Breakdown(values={n: 0.5 for n in spec.names}, weights=spec.weights, total=0.0) for _ in completions]

    # rewards.evaluate is also the function's name, so reach the module through sys.modules.
    monkeypatch.setattr(sys.modules["rewards.evaluate"], "evaluate_group", fake_group)
    f = rewards.trl_reward_funcs(SPEC, game="2048")[2]
    assert f(prompts=["p"], completions=["c"]) == [0.5]
    assert seen["game"] == "2048" and seen["spec"] is SPEC and len(seen["seeds"]) == SPEC.games
    assert isinstance(seen["cache"], rewards.RecordCache)  # repeated programs are not played again


def test_reward_fn_is_called_with_keyword_seeds():
    """The RewardFn contract: seeds is a keyword, so a (completions, seeds) positional callable is refused."""
    def positional(completions, seeds, /):
        raise AssertionError("called positionally")

    f = rewards.trl_reward_funcs(SPEC, reward_fn=positional)[0]
    with pytest.raises(TypeError):
        f(prompts=["p"], completions=["c"])


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="TRL is not installed (optional)")
def test_trl_accepts_the_functions_in_its_config():  # pragma: no cover - only with TRL installed
    from trl import GRPOConfig

    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=FakeRewardFn())
    import torch

    config = GRPOConfig(output_dir="/tmp/codepolicy-trl-test", reward_weights=rewards.trl_reward_weights(SPEC),
                        report_to=[], use_cpu=not torch.cuda.is_available())
    assert len(config.reward_weights) == len(funcs)


def test_end_to_end_through_the_sandbox():
    sandbox = pytest.importorskip("sandbox")
    if not hasattr(sandbox, "WorkerPool"):
        pytest.skip("sandbox.WorkerPool not available yet")
    spec = SPEC.with_rule("format", 1.0)
    with sandbox.WorkerPool(1) as pool:
        funcs = rewards.trl_reward_funcs(spec, game="2048", games=1, pool=pool)
        completions = [[{"role": "assistant", "content": "```python\ndef strategy(board):\n    return 'A'\n```"}],
                       [{"role": "assistant", "content": "no code, sorry"}]]
        values = {f.__name__: f(prompts=[[{"role": "user", "content": "play"}]] * 2, completions=completions)
                  for f in funcs}
    assert values["format"][0] > values["format"][1]
    assert values["compliance"] == [pytest.approx(0.1), 0.0]
