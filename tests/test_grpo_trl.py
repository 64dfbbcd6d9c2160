"""Our per-token objectives against TRL's ``GRPOTrainer._compute_loss`` on the same tensors.

TRL's loss is a method of the trainer; it is called here on a stand-in trainer that holds only the settings
the method reads, with the model's forward replaced by the given log-probs. Loss value and gradient with
respect to the log-probs must agree for grpo, dr_grpo, dapo (clip-higher), cispo and sapo, with and
without the KL term, on ratio-1 tensors and on tensors whose ratios cross the clip band.
"""
from __future__ import annotations

import collections
import types

import pytest
import torch

from train.grpo import policy_loss

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer")

EPS_LOW, EPS_HIGH, MAX_LEN = 0.2, 0.28, 6


class _Accelerator:
    num_processes = 1
    sync_gradients = True

    @staticmethod
    def gather(x):
        return x

    gather_for_metrics = gather

    @staticmethod
    def reduce(x, reduction="sum"):
        return x


def _trl_loss(loss_type: str, logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
              beta: float, ref: torch.Tensor | None) -> torch.Tensor:
    args = types.SimpleNamespace(
        delta=None, use_bias_correction_kl=False, sapo_temperature_pos=1.0, sapo_temperature_neg=1.05,
        steps_per_generation=1, entropy_target=0.0)
    trainer = types.SimpleNamespace(
        loss_type=loss_type, beta=beta, epsilon_low=EPS_LOW,
        # TRL's cispo caps the ratio at epsilon_high itself; ours at 1 + eps_high.
        epsilon_high=1 + EPS_HIGH if loss_type == "cispo" else EPS_HIGH,
        importance_sampling_level="token", top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        use_vllm=False, vllm_importance_sampling_correction=False, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, use_adaptive_entropy=False, current_gradient_accumulation_steps=1,
        max_completion_length=MAX_LEN, accelerator=_Accelerator(), model=types.SimpleNamespace(training=True),
        args=args, _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
    )
    n = mask.shape[0]
    inputs = {"prompt_ids": torch.zeros(n, 1, dtype=torch.long), "prompt_mask": torch.ones(n, 1, dtype=torch.long),
              "completion_ids": torch.zeros(n, mask.shape[1], dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": mask.sum()}
    if ref is not None:
        inputs["ref_per_token_logps"] = ref
    return trl_grpo.GRPOTrainer._compute_loss(trainer, None, inputs)


def _tensors(spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    old = torch.log(torch.rand(4, MAX_LEN, generator=g, dtype=torch.float64) * 0.8 + 0.1)
    logp = (old + spread * torch.randn(4, MAX_LEN, generator=g, dtype=torch.float64)).clamp(max=-1e-3)
    ref = torch.log(torch.rand(4, MAX_LEN, generator=g, dtype=torch.float64) * 0.8 + 0.1)
    mask = torch.ones(4, MAX_LEN, dtype=torch.float64)
    mask[1, 4:] = 0  # sequences of different lengths
    mask[3, 2:] = 0
    adv = torch.tensor([1.3, -0.7, 0.4, -1.0], dtype=torch.float64)
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("variant", ["grpo", "dr_grpo", "dapo", "cispo", "sapo"])
@pytest.mark.parametrize("spread", [0.0, 0.6])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_and_gradient_equal_trls(variant, spread, beta):
    logp, old, ref, adv, mask = _tensors(spread, seed=3)
    if spread == 0.0:
        old = logp.clone()
    ours_in = logp.clone().requires_grad_()
    ours = policy_loss(ours_in, old, adv, mask, variant=variant, eps_low=EPS_LOW, eps_high=EPS_HIGH, beta=beta,
                       ref_logp=ref if beta else None, max_new_tokens=MAX_LEN).loss
    ours.backward()
    theirs_in = logp.clone().requires_grad_()
    trl_grpo_loss = _trl_loss(variant, theirs_in, old, adv[:, None], mask, beta, ref if beta else None)
    trl_grpo_loss.backward()
    # 1e-6: TRL builds sapo's temperatures as float32 scalars (1.05 is 1.0499999523 there).
    assert float(ours.detach()) == pytest.approx(float(trl_grpo_loss.detach()), rel=1e-6, abs=1e-7)
    assert torch.allclose(ours_in.grad, theirs_in.grad, rtol=1e-6, atol=1e-7)
    if spread:  # the band is crossed: the comparison covers clipping or gating, not only ratio 1
        r = torch.exp(logp - old)[mask.bool()]
        assert bool(((r > 1 + EPS_HIGH) | (r < 1 - EPS_LOW)).any())
