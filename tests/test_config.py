"""TrainConfig: presets, TOML loading, flag overrides, one-line validation errors, TOML round trip."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train.config import PRESETS, TrainConfig, config_to_toml, load_config, make_config, save_config


def test_defaults_are_the_cpu_preset_and_gpu_differs():
    assert load_config() == TrainConfig() == make_config(preset="cpu")
    gpu = make_config(preset="gpu")
    assert gpu.group_size == 8 and gpu.max_new_tokens == 512 and gpu.kl_beta > 0
    assert all(getattr(gpu, k) == v for k, v in PRESETS["gpu"].items())


def test_toml_file_tables_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('preset = "gpu"\nsteps = 7\n[lora]\nrank = 4\ntarget_modules = ["q_proj", "v_proj"]\n')
    cfg = load_config(f, {"lr": "3e-4", "gradient_checkpointing": "true", "group_size": None})
    assert cfg.steps == 7 and cfg.lora_rank == 4 and cfg.lora_target_modules == ("q_proj", "v_proj")
    assert cfg.lr == 3e-4 and cfg.gradient_checkpointing is True and cfg.group_size == 8
    assert load_config(f, preset="cpu").group_size == TrainConfig().group_size


@pytest.mark.parametrize("content, overrides, message", [
    ("stepz = 3\n", {}, "unknown config key 'stepz'"),
    ("steps = 'ten'\n", {}, "'steps' must be an integer"),
    ("steps = true\n", {}, "'steps' must be an integer"),
    ("", {"lr": "fast"}, "'lr' must be a number"),
    ("group_size = 1\n", {}, "'group_size' must be >= 2"),
    ("top_p = 1.5\n", {}, "'top_p' must be <= 1"),
    ("loss_variant = 'ppo'\n", {}, "'loss_variant' must be one of"),
    ("grad_accum = 9\n", {}, "'grad_accum' (9) must be <="),
    ("steps = [\n", {}, "is not valid TOML"),
    ("preset = 'tpu'\n", {}, "unknown preset"),
    ("dtype = 'float16'\n", {}, "'dtype' is 'float16'"),  # no gradient scaler: bfloat16 or float32
    ("", {"dtype": "float16"}, "use 'bfloat16' on a GPU or 'float32'"),
])
def test_errors_are_one_line_and_name_the_field(tmp_path, content, overrides, message):
    f = tmp_path / "bad.toml"
    f.write_text(content)
    with pytest.raises(ValueError) as err:
        load_config(f, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config("nope.toml")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 64), st.floats(1e-6, 1.0), st.sampled_from(["grpo", "dr_grpo", "dapo", "gspo"]),
       st.booleans(), st.text(alphabet="abc/_-\"\\", min_size=1, max_size=12))
def test_toml_round_trip(tmp_path_factory, rank, lr, variant, gc, out):
    cfg = make_config({"lora_rank": rank, "lr": lr, "loss_variant": variant, "gradient_checkpointing": gc,
                       "output_dir": out})
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert config_to_toml(cfg).count("\n") == len(dataclasses.fields(cfg))


def test_replace_validates():
    cfg = TrainConfig()
    assert cfg.replace(steps=3).steps == 3
    with pytest.raises(ValueError, match="nothing to run"):
        cfg.replace(steps=0)
    assert cfg.replace(steps=0, warm_start_rounds=2).steps == 0  # the warm start alone
    with pytest.raises(ValueError, match="answer_prefill"):
        cfg.replace(prompt_template="compact", answer_prefill="return")  # calls the API compact does not show
    assert cfg.batch_size == cfg.prompts_per_step * cfg.group_size
    assert cfg.replace(group_size=3, prompts_per_step=2, grad_accum=4).micro_batch_size == 2  # 6 rows: 2,2,2


def test_empty_output_dir_gets_a_fresh_run_dir_per_run(tmp_path, monkeypatch):
    from train.config import TrainConfig, with_run_dir

    monkeypatch.chdir(tmp_path)
    first = with_run_dir(TrainConfig())
    assert first.output_dir.startswith("runs/2048-")
    (tmp_path / first.output_dir).mkdir(parents=True)
    second = with_run_dir(TrainConfig())
    assert second.output_dir != first.output_dir  # even within the same second
    assert with_run_dir(TrainConfig(output_dir="mine")).output_dir == "mine"


def test_rollout_compile_backend_is_a_plain_field():
    cfg = load_config(None, {"rollout_compile_backend": "aot_eager"})
    assert cfg.rollout_compile_backend == "aot_eager" and TrainConfig().rollout_compile_backend == ""
    assert make_config({"dtype": "bfloat16"}).dtype == "bfloat16"


def test_every_field_is_documented_and_help_shows_it():
    import dataclasses

    from codepolicy.cli import build_parser
    from train.config import TrainConfig, field_doc

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(len(field_doc(n)) > 10 for n in names), [n for n in names if len(field_doc(n)) <= 10]
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    text = train.format_help()
    assert field_doc("games_per_completion").split()[0] in text
    for name in ("loss_variant", "rollout_backend", "advantage_scale"):
        action = next(a for a in train._actions if a.dest == f"cfg_{name}")
        assert action.choices, name


def test_a_renamed_key_still_loads_under_its_new_name(tmp_path):
    from train.config import current_keys, load_config

    old = tmp_path / "old.toml"
    old.write_text("seeds_per_eval = 3\n", encoding="utf-8")  # a run dir's config.toml from before the rename
    assert load_config(old).games_per_completion == 3
    assert current_keys({"seeds_per_eval": 5, "steps": 2}) == {"games_per_completion": 5, "steps": 2}
