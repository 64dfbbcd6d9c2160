"""TRL adapters: signature, chat-style completions, __name__, one evaluation per batch; TRL not needed."""
from __future__ import annotations

import importlib.util
import inspect
import sys

import pytest

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


def test_rules_share_one_evaluation_per_batch():
    fake = FakeRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, reward_fn=fake)
    for f in funcs:
        f(prompts=["p"] * 4, completions=["a", "b", "c", "d"])
    assert len(fake.calls) == 1
    funcs[0](prompts=["p"] * 4, completions=["a", "b", "c", "e"])
    assert len(fake.calls) == 2


def test_groups_share_seeds_and_seed_column_wins():
    fake = FakeRewardFn()
    f = rewards.trl_reward_funcs(SPEC, reward_fn=fake, games=3)[0]
    f(prompts=["one", "one", "two", "two"], completions=["a", "b", "c", "d"])
    assert len(fake.calls) == 2  # one call per group: common random numbers within a group
    (c1, s1), (c2, s2) = fake.calls
    assert c1 == ["a", "b"] and c2 == ["c", "d"] and len(s1) == 3 and s1 != s2
    assert s1 == list(prompt_seeds("one", 3))  # stable across processes: from the prompt text
    fake.calls.clear()
    f(prompts=["one", "one"], completions=["a", "b"], seed=[100, 100])
    assert fake.calls == [(["a", "b"], [100, 101, 102])]
    with pytest.raises(ValueError, match="2 prompts for 3 completions"):
        f(prompts=["x", "y"], completions=["a", "b", "c"])


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
