"""Numba kernels of the CPU decode step: the two operations that bound sampling on a few cores.

At decode time a batch of 8 to 16 rows multiplies every weight matrix once per token. BLAS libraries tune
their kernels for large products; for so few rows MKL's ``x @ W.T`` reached about 15-25 GFLOP/s on the
2-core machine (its best layout, ``(W @ x.T).T``, about 25-30), while the product written as one dot
product per (row block, weight row), below, reads each weight row once for eight rows and ran at 40-50
GFLOP/s (``benchmarks/rollout_speed.py`` measures both). The attention of one new token per row over a
prompt its group shares is the other cost: torch's batched matmuls over a few hundred small slices spend
more time dispatching than computing, so one kernel does the scores, the softmax and the weighted sum
of every (prompt group, KV head, block of rows) in one parallel loop.

Two small kernels do the rest of a layer's row-wise work (RMSNorm, the rotary embedding) in one call
each, where the same arithmetic in torch takes several ops of a few microseconds of dispatch apiece.
Every kernel takes float32 NumPy views of torch tensors (``tensor.numpy()`` shares memory); the two big
ones run on Numba's thread pool (``numba.set_num_threads``); all are cached on disk after their first compile.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["ROW_BLOCK", "matmul_rows", "shared_prefix_attention", "rms_norm_rows", "rotate_heads"]

ROW_BLOCK = 8
"""Rows one pass of :func:`matmul_rows` computes per weight row; the caller pads the rows to a multiple."""


@njit(parallel=True, fastmath=True, boundscheck=False, cache=True)
def matmul_rows(x: np.ndarray, w: np.ndarray, out: np.ndarray, accumulate: bool) -> None:  # pragma: no cover
    """``out[b, n] (+)= sum_k x[b, k] * w[n, k]`` (``x @ w.T``, added to ``out`` when ``accumulate``), rows a multiple of 8.

    One task is (one weight row, a block of 8 rows): the weight row streams from memory once, the rows
    of ``x`` stay in L1, and the eight sums are independent accumulators that the compiler vectorises
    along ``k`` (``fastmath`` allows the reassociation).
    """
    N, K = w.shape
    blocks = x.shape[0] // 8
    for i in prange(blocks * N):
        # The blocks of one weight row are consecutive tasks: the row comes from memory once, then from cache.
        n = i // blocks
        b = i % blocks * 8
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
        for k in range(K):
            wk = w[n, k]
            a0 += wk * x[b, k]
            a1 += wk * x[b + 1, k]
            a2 += wk * x[b + 2, k]
            a3 += wk * x[b + 3, k]
            a4 += wk * x[b + 4, k]
            a5 += wk * x[b + 5, k]
            a6 += wk * x[b + 6, k]
            a7 += wk * x[b + 7, k]
        if accumulate:  # a residual connection: h += x @ w.T without a temporary
            a0 += out[b, n]
            a1 += out[b + 1, n]
            a2 += out[b + 2, n]
            a3 += out[b + 3, n]
            a4 += out[b + 4, n]
            a5 += out[b + 5, n]
            a6 += out[b + 6, n]
            a7 += out[b + 7, n]
        out[b, n] = a0
        out[b + 1, n] = a1
        out[b + 2, n] = a2
        out[b + 3, n] = a3
        out[b + 4, n] = a4
        out[b + 5, n] = a5
        out[b + 6, n] = a6
        out[b + 7, n] = a7


@njit(parallel=True, fastmath=True, boundscheck=False, cache=True)
def shared_prefix_attention(q: np.ndarray, prefix_k: np.ndarray, prefix_v: np.ndarray, prefix_len: np.ndarray,
                            own_k: np.ndarray, own_v: np.ndarray, own_len: int, tasks: np.ndarray, scale: float,
                            out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Softmax attention of one query token per row over its group's prompt and its own generated tokens.

    Shapes: ``q`` and ``out`` [B, H, D]; ``prefix_k``/``prefix_v`` [Gp, Hkv, P, D], prompt ``g`` valid for its
    first ``prefix_len[g]`` positions; ``own_k``/``own_v`` [B, Hkv, T, D], valid for the first ``own_len``.
    ``tasks`` [n, 4] holds (prompt index, KV head, first row, end row): rows that share one prompt, whose
    ``H / Hkv`` query heads per KV head attend to the same keys. A task reads each prompt key once for all
    its queries (grouped-query attention without copying K/V per head). Exact softmax: the maximum is
    subtracted before the exponential.
    """
    D = q.shape[2]
    Hkv = prefix_k.shape[1]
    g = q.shape[1] // Hkv
    for i in prange(tasks.shape[0]):
        pi = tasks[i, 0]
        h = tasks[i, 1]
        r0 = tasks[i, 2]
        r1 = tasks[i, 3]
        p = prefix_len[pi]
        n = p + own_len
        R = (r1 - r0) * g
        qq = np.empty((R, D), np.float32)
        for r in range(R):
            for d in range(D):
                qq[r, d] = q[r0 + r // g, h * g + r % g, d] * scale
        sc = np.empty((R, n), np.float32)
        for j in range(p):
            for r in range(R):
                a = np.float32(0.0)
                for d in range(D):
                    a += qq[r, d] * prefix_k[pi, h, j, d]
                sc[r, j] = a
        for r in range(R):
            b = r0 + r // g
            for j in range(own_len):
                a = np.float32(0.0)
                for d in range(D):
                    a += qq[r, d] * own_k[b, h, j, d]
                sc[r, p + j] = a
        total = np.empty(R, np.float32)
        for r in range(R):
            m = sc[r, 0]
            for j in range(1, n):
                m = max(m, sc[r, j])
            s = np.float32(0.0)
            for j in range(n):
                e = np.exp(sc[r, j] - m)
                sc[r, j] = e
                s += e
            total[r] = s
        acc = np.zeros((R, D), np.float32)
        for j in range(p):
            for r in range(R):
                wj = sc[r, j]
                for d in range(D):
                    acc[r, d] += wj * prefix_v[pi, h, j, d]
        for r in range(R):
            b = r0 + r // g
            for j in range(own_len):
                wj = sc[r, p + j]
                for d in range(D):
                    acc[r, d] += wj * own_v[b, h, j, d]
        for r in range(R):
            b = r0 + r // g
            hh = h * g + r % g
            inv = np.float32(1.0) / total[r]
            for d in range(D):
                out[b, hh, d] = acc[r, d] * inv


@njit(parallel=False, fastmath=False, boundscheck=False, cache=True)
def rms_norm_rows(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray) -> None:  # pragma: no cover
    """``out[b] = weight * x[b] / sqrt(mean(x[b] ** 2) + eps)``: Llama's RMSNorm, one small op instead of seven."""
    B, K = x.shape
    for b in range(B):
        s = np.float32(0.0)
        for k in range(K):
            s += x[b, k] * x[b, k]
        inv = np.float32(1.0) / np.sqrt(s / np.float32(K) + np.float32(eps))
        for k in range(K):
            out[b, k] = weight[k] * (x[b, k] * inv)


@njit(parallel=False, fastmath=True, boundscheck=False, cache=True)
def rotate_heads(x: np.ndarray, heads: int, head_dim: int, cos: np.ndarray, sin: np.ndarray) -> None:  # pragma: no cover
    """Rotary embedding, in place, of the first ``heads`` heads of each row of ``x`` [B, >= heads * head_dim].

    transformers' layout: element ``i`` of the first half turns with element ``i`` of the second half,
    ``x * cos + rotate_half(x) * sin`` with one angle pair per row (``cos``, ``sin`` [B, head_dim]).
    """
    half = head_dim // 2
    for b in range(x.shape[0]):
        for h in range(heads):
            o = h * head_dim
            for i in range(half):
                x1 = x[b, o + i]
                x2 = x[b, o + half + i]
                x[b, o + i] = x1 * cos[b, i] - x2 * sin[b, i]
                x[b, o + half + i] = x2 * cos[b, half + i] + x1 * sin[b, half + i]
