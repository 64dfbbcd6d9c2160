"""Stopping at the closing fence: the token rule equals the text rule, and every backend stops there."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train import stopping
from train.model import tiny_model_and_tokenizer
from train.rollout import HFBackend, LeanBackend, SamplingParams, _finish, vllm_sampling_kwargs
from train.stopping import FenceStop, fence_state, fence_table, text_fence_end

PREFILLS = ["", "```python\n", "```python\ndef strategy(board):\n", "Here:\n```\nx = 1\n```\n", "``"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_tokenizer(0)


def _pieces(tok):
    """Token ids whose text holds backticks, plus a few plain ones, the EOS and a special token."""
    table = fence_table(tok)
    ticks = [i for i in range(len(tok)) if table.all_len[i] > 0 or table.lead[i] or table.trail[i] or table.inner[i]]
    plain = tok("python\ndef x y\n", add_special_tokens=False)["input_ids"]
    return ticks, plain


@settings(max_examples=150, deadline=None)
@given(data=st.data(), prefill=st.sampled_from(PREFILLS))
def test_the_token_rule_stops_where_the_text_rule_does(tiny, data, prefill):
    _, tok = tiny
    ticks, plain = _pieces(tok)
    ids = data.draw(st.lists(st.sampled_from(ticks + plain + [1]), min_size=1, max_size=24))
    first = int(FenceStop(tok, prefill).first_close(torch.tensor([ids]))[0])
    text = lambda k: tok.decode(ids[:k], skip_special_tokens=True)  # noqa: E731
    if first == len(ids):
        assert text_fence_end(prefill, text(len(ids))) is None
    else:
        # The block is closed by the text up to this token and not before it.
        assert text_fence_end(prefill, text(first + 1)) is not None
        assert text_fence_end(prefill, text(first)) is None


def test_the_text_rule():
    assert text_fence_end("", "```python\nx\n```\nmore") == len("```python\nx\n```")
    assert text_fence_end("```python\n", "x = 1\n```\n```") == len("x = 1\n```")
    assert text_fence_end("```python\n", "x = 1\n````") == len("x = 1\n```")  # a longer run is one fence
    assert text_fence_end("", "`` ` `x`") is None
    assert fence_state("a``") == (2, 0) and fence_state("```py```") == (3, 2)
    assert text_fence_end("``", "`x\n```") == len("`x\n```")  # the prefill's run goes on into the completion


def _frequent_token(rollout, pad: int) -> int:
    ids = rollout.completion_ids[rollout.completion_mask.bool()]
    counts = torch.bincount(ids[ids != pad])
    return int(counts.argmax())


@pytest.mark.parametrize("backend", ["lean-fused", "lean-static", "hf"])
def test_every_backend_stops_rows_at_the_closing_fence(tiny, monkeypatch, backend):
    model, tok = tiny
    make = {"lean-fused": lambda: LeanBackend(model, tok, fused=True),
            "lean-static": lambda: LeanBackend(model, tok, fused=False),
            "hf": lambda: HFBackend(model, tok)}[backend]
    prompt, prefill = "write code\n```python\n", "```python\n"
    free = SamplingParams(max_new_tokens=24)
    before = make().generate([prompt], 6, free, seed=3)
    # Make a token the model samples often count as a fence: its rows must now end at its first occurrence.
    fence_tok = _frequent_token(before, tok.pad_token_id)
    table = fence_table(tok)
    fake = dataclasses.replace(table, all_len=table.all_len.clone())
    fake.all_len[fence_tok] = 3
    monkeypatch.setitem(stopping._TABLES, tok, fake)
    stopped = make().generate([prompt], 6, dataclasses.replace(free, stop_at_fence=True, prefill=prefill), seed=3)
    assert len(stopped.ends) == 6
    for i in range(6):
        row = stopped.completion_ids[i, :int(stopped.lengths[i])].tolist()
        hits = [k for k, t in enumerate(row) if t == fence_tok]
        if stopped.ends[i] == "fence":
            assert hits == [len(row) - 1]  # nothing sampled after the fence, and it is the first one
            assert not stopped.truncated[i]
            assert (stopped.logprobs[i, len(row):] == 0).all()
        else:
            assert not hits
            assert stopped.ends[i] == ("length" if stopped.truncated[i] else "eos")
        if backend != "hf":  # our loop draws every row at every step: a stop only cuts, it never re-draws
            free_row = before.completion_ids[i].tolist()
            assert free_row[:len(row)] == row
    assert "fence" in stopped.ends


def test_vllm_stops_on_a_string_only_when_the_prefill_opened_the_block():
    open_block = SamplingParams(stop_at_fence=True, prefill="```python\ndef strategy(board):\n")
    assert vllm_sampling_kwargs(2, open_block, 0, False)["stop"] == ["```"]
    assert "stop" not in vllm_sampling_kwargs(2, SamplingParams(stop_at_fence=True), 0, False)
    assert "stop" not in vllm_sampling_kwargs(2, dataclasses.replace(open_block, stop_at_fence=False), 0, False)


def test_finish_reports_each_rows_end(tiny):
    _, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    tick3 = tok("```", add_special_tokens=False)["input_ids"]
    x = tok("x", add_special_tokens=False)["input_ids"][0]
    assert len(tick3) == 1
    rows = torch.tensor([[x, tick3[0], x, eos], [x, eos, x, x], [x, x, x, x], [tick3[0], x, x, x]])
    done = _finish(rows, None, [eos], pad, tok, FenceStop(tok, "```python\n"))
    assert done.ends == ["fence", "eos", "length", "fence"]
    assert done.lengths.tolist() == [2, 2, 4, 1]
    assert done.truncated.tolist() == [False, False, True, False]
    # Without a prefill the first fence opens the block: nothing closes in these rows.
    assert _finish(rows, None, [eos], pad, tok, FenceStop(tok, "")).ends == ["eos", "eos", "length", "length"]
