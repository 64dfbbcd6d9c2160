"""Where a completion stops: at its first EOS, at the code fence that closes the answer, or at the length limit.

A completion is an answer of one code block. Once the block is closed nothing after it can earn
anything (the extractor reads the first block) and every token after it costs sampling, scoring
and update time, so a row may stop at the closing fence. The prompt may open the answer itself (an
*answer prefill* such as ``"```python\\n"``): the fences are counted over prefill + completion, and
the row stops at the fence that closes a block (the first fence after an odd count, the second
when the prefill opened none).

A fence is a run of three or more backticks; it counts at the token whose text reaches the third
backtick. Runs cross token boundaries, so each row carries the length of the backtick run its
text ends with. Each vocabulary entry is summarised once (:func:`fence_table`) by the text it adds
in context (the anchor-token decode, so SentencePiece's leading spaces are kept): all backticks
(and how many), or its leading run, its trailing run and the complete runs inside. One decoding
step is then a few gathers per row, on the sampler's device, with no host sync.

:func:`text_fence_end` is the same rule on plain text; tests hold the two to the same answer.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["FENCE", "FenceTable", "FenceStop", "fence_table", "fence_state", "text_fence_end", "END_REASONS"]

FENCE = 3
"""Backticks that make a fence."""

END_REASONS = ("eos", "fence", "length")
"""How a completion ended: its EOS token, the fence that closed the answer's code block, or max_new_tokens."""


@dataclass(frozen=True)
class FenceTable:
    """Per vocabulary entry (index = token id; one extra last entry for ids past the tokenizer):

    ``all_len``: the number of backticks when the token's text is only backticks (0 for empty text),
    else -1; ``lead`` / ``trail``: the backtick runs its text starts / ends with; ``inner``: complete
    fences strictly inside it.
    """

    all_len: torch.Tensor
    lead: torch.Tensor
    trail: torch.Tensor
    inner: torch.Tensor

    def to(self, device: torch.device | str) -> "FenceTable":
        """The same table on ``device``."""
        return FenceTable(*(t.to(device) for t in (self.all_len, self.lead, self.trail, self.inner)))


def _runs(piece: str) -> tuple[int, int, int, int]:
    """(all_len, lead, trail, inner) of one token's text."""
    if all(c == "`" for c in piece):
        return len(piece), 0, 0, 0
    lead = len(piece) - len(piece.lstrip("`"))
    trail = len(piece) - len(piece.rstrip("`"))
    return -1, lead, trail, len(_scan(piece[lead:len(piece) - trail])[0])


_TABLES: "weakref.WeakKeyDictionary[Any, FenceTable]" = weakref.WeakKeyDictionary()


def fence_table(tokenizer: Any) -> FenceTable:
    """The tokenizer's :class:`FenceTable`, built once per tokenizer (about 0.1 s for a 49k vocabulary)."""
    try:
        return _TABLES[tokenizer]
    except (KeyError, TypeError):
        pass
    size = len(tokenizer)
    ids = list(range(size))
    singles = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=True)
    all_len = torch.full((size + 1,), -1, dtype=torch.long)
    lead = torch.zeros(size + 1, dtype=torch.long)
    trail = torch.zeros(size + 1, dtype=torch.long)
    inner = torch.zeros(size + 1, dtype=torch.long)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    # Tokens whose text is empty on their own (special tokens, skipped in the decoded completion) add nothing.
    for i, s in enumerate(singles):
        if s == "" and i in special:
            all_len[i] = 0
    candidates = [i for i, s in enumerate(singles) if "`" in s]
    anchor_ids = tokenizer("a", add_special_tokens=False)["input_ids"][:1]
    anchor = tokenizer.decode(anchor_ids) if anchor_ids else ""
    in_context = tokenizer.batch_decode([anchor_ids + [i] for i in candidates]) if candidates else []
    for i, text in zip(candidates, in_context):
        # The anchor keeps a leading space a lone decode would drop (SentencePiece): a space breaks a run.
        piece = text[len(anchor):] if anchor and text.startswith(anchor) else singles[i]
        all_len[i], lead[i], trail[i], inner[i] = _runs(piece)
    table = FenceTable(all_len, lead, trail, inner)
    try:
        _TABLES[tokenizer] = table
    except TypeError:  # a tokenizer that takes no weak reference is summarised again next time
        pass
    return table


def _scan(text: str, run: int = 0) -> tuple[list[int], int]:
    """(index just past each backtick that completes a fence, the backtick run the text ends with), the text
    read on from a run of ``run`` backticks."""
    ends: list[int] = []
    for k, c in enumerate(text):
        run = run + 1 if c == "`" else 0
        if run == FENCE:
            ends.append(k + 1)
    return ends, run


def fence_state(text: str) -> tuple[int, int]:
    """(backtick run the text ends with, fences in it): where counting stands after ``text``."""
    ends, run = _scan(text)
    return run, len(ends)


def _target(fences: int) -> int:
    # An odd count means the prefill left a block open: its closing fence ends the answer. Otherwise the
    # completion must open one block and close it.
    return fences + (1 if fences % 2 else 2)


def text_fence_end(prefill: str, completion: str) -> int | None:
    """The index in ``completion`` just past the backtick that closes the answer's block; None if it never closes."""
    run, fences = fence_state(prefill)
    ends, _ = _scan(completion, run)
    need = _target(fences) - fences
    return ends[need - 1] if len(ends) >= need else None


class FenceStop:
    """The fence rule for one rollout: the tokenizer's table and the state the prefill leaves.

    ``start(rows)`` -> state; ``advance(state, tokens)`` -> (state, closed) per row, on the tokens' device;
    ``first_close(tokens)`` -> per row, the index of the token that closes the block (the row's width if none).
    """

    def __init__(self, tokenizer: Any, prefill: str = "", device: torch.device | str = "cpu"):
        self.table = fence_table(tokenizer).to(device)
        self.size = int(self.table.all_len.shape[0]) - 1
        self.run0, self.fences0 = fence_state(prefill)
        self.target = _target(self.fences0)

    def start(self, rows: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The state of ``rows`` rows before their first token: (run, fences)."""
        return (torch.full((rows,), self.run0, dtype=torch.long, device=device),
                torch.full((rows,), self.fences0, dtype=torch.long, device=device))

    def advance(self, state: tuple[torch.Tensor, torch.Tensor], tokens: torch.Tensor
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Count one more token per row; ((run, fences), closed: the block closed at this token)."""
        run, fences = state
        t = torch.where((tokens >= 0) & (tokens < self.size), tokens, torch.full_like(tokens, self.size))
        all_len = self.table.all_len[t]
        whole = all_len >= 0
        grown = run + all_len.clamp(min=0)
        opened = (run < FENCE) & (run + self.table.lead[t] >= FENCE)
        added = torch.where(whole, ((run < FENCE) & (grown >= FENCE)).long(),
                            opened.long() + self.table.inner[t] + (self.table.trail[t] >= FENCE).long())
        before = fences
        fences = fences + added
        run = torch.where(whole, grown, self.table.trail[t])
        return (run, fences), (before < self.target) & (fences >= self.target)

    def first_close(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per row of ``tokens`` [N, T], the index of the token that closes the block (T where none does)."""
        N, T = tokens.shape
        state = self.start(N, tokens.device)
        first = torch.full((N,), T, dtype=torch.long, device=tokens.device)
        for k in range(T):
            state, closed = self.advance(state, tokens[:, k])
            first = torch.where(closed & (first == T), torch.full_like(first, k), first)
        return first
