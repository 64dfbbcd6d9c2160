"""A real TRL client: TRL's GRPOTrainer drives rewards.trl_reward_funcs for one step on a tiny local model.

No hub: the model and tokenizer are built in memory (train.model.tiny_model_and_tokenizer). The rewards are the
real ones (rewards.group_reward_fn over evaluate_group, programs run in the sandbox); a counting wrapper checks that TRL's batch was
scored once per group with the dataset's seeds, whatever the number of rule functions TRL calls.
"""
from __future__ import annotations

import math

import pytest

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")

import rewards  # noqa: E402
from train.model import tiny_model_and_tokenizer  # noqa: E402

SPEC = rewards.default_spec()
PROMPT = "Write a Python function `strategy(board)` for 2048 that returns one of \"W\", \"A\", \"S\", \"D\"."


class CountingRewardFn:
    """The default scorer (rewards.group_reward_fn: evaluate_group through the sandbox), with every call recorded."""

    def __init__(self):
        self.calls = []
        self.inner = rewards.group_reward_fn("2048", SPEC)

    def __call__(self, completions, *, seeds):
        self.calls.append((len(completions), list(seeds)))
        return self.inner(completions, seeds=seeds)


def test_grpo_trainer_runs_a_step_with_our_reward_functions(tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model, tokenizer = tiny_model_and_tokenizer(0)
    scorer = CountingRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, game="2048", games=1, reward_fn=scorer)
    # Two prompts (groups) of 4 samples; the seed column (a list: the row's games, fixed) reaches the
    # reward functions as a keyword.
    data = Dataset.from_dict({"prompt": [PROMPT + " (a)", PROMPT + " (b)"], "seed": [[11], [22]]})
    config = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, gradient_accumulation_steps=1,
        num_generations=4, max_completion_length=8, temperature=1.0, max_steps=1, learning_rate=1e-4,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, beta=0.04,
        reward_weights=rewards.trl_reward_weights(SPEC), seed=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=config, train_dataset=data,
                          processing_class=tokenizer,
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainer.train()

    logs = {k: v for row in trainer.state.log_history for k, v in row.items()}
    for name in SPEC.names:  # TRL logs each function under its __name__: one per rule
        assert f"rewards/{name}/mean" in logs, sorted(logs)
        assert math.isfinite(logs[f"rewards/{name}/mean"])
    assert math.isfinite(logs["reward"])
    # One evaluation per group of the batch, not one per rule function; each group plays its row's seed.
    assert sorted(s for _, s in scorer.calls) == [[11], [22]]
    assert all(n == 4 for n, _ in scorer.calls)


def test_one_prompt_plays_new_games_at_each_trl_step(tmp_path):
    """One fixed prompt and no seed column: TRL's trainer_state.global_step gives each step new games."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model, tokenizer = tiny_model_and_tokenizer(0)
    scorer = CountingRewardFn()
    funcs = rewards.trl_reward_funcs(SPEC, game="2048", games=2, reward_fn=scorer)
    data = Dataset.from_dict({"prompt": [PROMPT] * 8})
    config = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=1,
        num_generations=4, max_completion_length=8, temperature=1.0, max_steps=2, learning_rate=1e-4,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, beta=0.0,
        reward_weights=rewards.trl_reward_weights(SPEC), seed=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=config, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2
    steps = [tuple(s) for _, s in scorer.calls]
    print("TRL game seeds per step:", steps)  # recorded for the record; -s shows them
    assert len(steps) == 2 and steps[0] != steps[1]  # one group a step, each on its own games
    assert steps == [rewards.trl.prompt_seeds(PROMPT, 2, step=k) for k in (0, 1)]
