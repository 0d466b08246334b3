"""Every YAML under configs/ parses with the loader that will read it, and recipes name their launch command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from rewards.config import ConfigError, load_reward_config
from train.config import load_config, save_resolved_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
ALL_YAML = sorted(CONFIGS.rglob("*.yaml")) + sorted(CONFIGS.rglob("*.yml"))

# GPU recipes set bf16, which TrainingArguments refuses on a machine without CUDA; everything else
# (field names, types, TRL's cross-field checks) is still validated with these two overrides.
CPU_OVERRIDES = [] if torch.cuda.is_available() else ["--bf16", "false", "--use_cpu", "true"]


def _trainer_config_class(directory: str) -> type:
    if directory == "grpo":
        from train.grpo import GRPOScriptConfig

        return GRPOScriptConfig
    if directory == "sft":
        from train.sft import SFTScriptConfig

        return SFTScriptConfig
    from trl import DPOConfig

    from train import dpo

    classes = [
        v
        for v in vars(dpo).values()
        if isinstance(v, type) and issubclass(v, DPOConfig) and v is not DPOConfig
    ]
    assert classes, "train/dpo.py defines no subclass of trl.DPOConfig to validate configs/dpo/ with"
    return classes[0]


def _check_recipe(path: Path, directory: str) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and ("launch" in first or "python" in first), (
        f"{path}: the first line must be a comment with the launch command, got {first!r}"
    )
    load_config(_trainer_config_class(directory), ["--config", str(path), *CPU_OVERRIDES])


def _check_accelerate(path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    ds = config.deepspeed_config or {}
    if ds.get("deepspeed_config_file"):
        ds_file = REPO / ds["deepspeed_config_file"]
        body = json.loads(ds_file.read_text())
        stage = body["zero_optimization"]["stage"]
        assert f"zero{stage}" in path.stem, f"{path} points at a stage-{stage} DeepSpeed file {ds_file}"
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            assert body.get(key) == "auto", (
                f"{ds_file}: {key} must be 'auto' so the Trainer fills it from the recipe"
            )
        assert "gradient_accumulation_steps" not in ds, (
            f"{path}: set gradient_accumulation_steps in the recipe only"
        )
        # accelerate launch refuses these next to a deepspeed_config_file ("... will be ignored").
        assert config.mixed_precision is None, f"{path}: drop mixed_precision; the JSON's bf16 is 'auto'"
        assert set(ds) <= {"deepspeed_config_file", "zero3_init_flag"}, f"{path}: {sorted(ds)}"


def _check_launch(path: Path, directory: str) -> None:
    from launch.plan import ClusterConfig, load_yaml_dataclass
    from launch.sweep import expand_sweep

    data = yaml.safe_load(path.read_text()) or {}
    if directory == "cluster":
        load_yaml_dataclass(ClusterConfig, path)
    else:
        jobs = expand_sweep(data)
        assert jobs, f"{path} expands to no jobs"
        if data.get("base"):
            assert (REPO / data["base"]).is_file(), f"{path}: base recipe {data['base']} does not exist"


def test_configs_exist():
    dirs = {p.parent.name for p in ALL_YAML}
    assert {"grpo", "sft", "accelerate", "reward"} <= dirs


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_yaml_parses(path: Path):
    directory = path.relative_to(CONFIGS).parts[0]
    if directory in ("grpo", "sft", "dpo"):
        _check_recipe(path, directory)
    elif directory == "reward":
        load_reward_config(path)
    elif directory == "accelerate":
        _check_accelerate(path)
    elif directory in ("cluster", "sweeps"):
        _check_launch(path, directory)
    else:
        pytest.fail(f"{path}: no loader is known for configs/{directory}/; add one to tests/test_configs.py")


def test_deepspeed_json_files_are_referenced_and_valid():
    for ds_file in sorted((CONFIGS / "accelerate").glob("*.json")):
        body = json.loads(ds_file.read_text())
        assert body["zero_optimization"]["stage"] in (2, 3)
        assert any(ds_file.name in p.read_text() for p in (CONFIGS / "accelerate").glob("*.yaml")), ds_file


def test_unknown_yaml_key_is_an_error(tmp_path):
    from train.grpo import GRPOScriptConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1.0e-5\n")
    with pytest.raises(ConfigError, match="learning_rat.*learning_rate"):
        load_config(GRPOScriptConfig, ["--config", str(bad)], exit_on_error=False)


def test_unknown_flag_is_an_error():
    from train.sft import SFTScriptConfig

    with pytest.raises(ConfigError, match="max_stepz"):
        load_config(SFTScriptConfig, ["--max_stepz", "3"], exit_on_error=False)


def test_flags_override_yaml_override_defaults(tmp_path):
    from train.grpo import GRPOScriptConfig, script_defaults

    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 3.0e-5\nnum_generations: 4\nper_device_train_batch_size: 8\n")
    cfg = load_config(
        GRPOScriptConfig,
        ["--config", str(recipe), "--num_generations", "2", "--dynamic_sampling", "false"],
        defaults=script_defaults(),
    )
    assert cfg.learning_rate == 3.0e-5
    assert cfg.num_generations == 2
    assert cfg.dynamic_sampling is False
    assert cfg.max_completion_length == script_defaults()["max_completion_length"]


def test_resolved_config_is_saved_and_reruns(tmp_path):
    from train.grpo import GRPOScriptConfig, script_defaults

    cfg = load_config(
        GRPOScriptConfig,
        ["--learning_rate", "7e-6", "--output_dir", str(tmp_path)],
        defaults=script_defaults(),
    )
    resolved = save_resolved_config(cfg, tmp_path)
    record = yaml.safe_load(resolved.read_text())
    assert record["learning_rate"] == 7e-6 and record["dynamic_sampling"] is True
    assert set(record) == {f.name for f in dataclasses.fields(GRPOScriptConfig) if f.init}
    again = load_config(GRPOScriptConfig, ["--config", str(tmp_path / "config.yaml")])
    assert again.learning_rate == 7e-6 and again.output_dir == str(tmp_path)


def test_cross_field_check_names_the_values():
    from train.grpo import GRPOScriptConfig, script_defaults

    with pytest.raises(ConfigError, match="overlong_buffer_len=500 must be < max_completion_length=320"):
        load_config(
            GRPOScriptConfig,
            ["--overlong_buffer_len", "500"],
            defaults=script_defaults(),
            exit_on_error=False,
        )


def test_a_learning_rate_for_saved_modules_needs_modules():
    from train.sft import SFTScriptConfig, script_defaults

    with pytest.raises(ConfigError, match="lora_modules_to_save is empty"):  # at load, before training
        load_config(
            SFTScriptConfig,
            ["--modules_to_save_learning_rate", "0.01"],
            defaults=script_defaults(),
            exit_on_error=False,
        )
