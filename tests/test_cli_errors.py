"""Command-line mistakes end in one clear line and exit status 2, never in a traceback or a long wait."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewards.config import ConfigError
from rollout.model import CheckpointError, check_checkpoint, looks_like_hub_id

REPO = Path(__file__).resolve().parents[1]


# --- training flags --------------------------------------------------------------------------------


def test_unknown_training_flag_is_one_line_and_exit_2(capsys):
    from train.config import load_config
    from train.sft import SFTScriptConfig

    with pytest.raises(SystemExit) as stop:
        load_config(SFTScriptConfig, ["--max_stepz", "3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ") and "did you mean max_steps" in err[0]


def test_training_script_prints_no_traceback_for_an_unknown_flag():
    proc = subprocess.run(
        [sys.executable, "train/sft.py", "--max_stepz", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: unknown config keys in command line: 'max_stepz' (did you mean max_steps" in proc.stderr


def test_missing_local_model_path_is_a_config_error_at_once(tmp_path, monkeypatch):
    from train.config import load_config
    from train.sft import SFTScriptConfig, script_defaults

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "sft").mkdir(parents=True)
    argv = ["--model_name_or_path", "runs/nope"]
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"model_name_or_path: checkpoint runs/nope does not exist"):
        load_config(SFTScriptConfig, argv, defaults=script_defaults(), exit_on_error=False)
    assert time.monotonic() - start < 5  # no hub retries


def test_negative_reward_workers_is_rejected():
    from train.config import load_config
    from train.grpo import GRPOScriptConfig, script_defaults

    with pytest.raises(ConfigError, match="reward_workers=-1 is negative.*0 for one per core"):
        load_config(
            GRPOScriptConfig, ["--reward_workers", "-1"], defaults=script_defaults(), exit_on_error=False
        )


# --- model names -----------------------------------------------------------------------------------


def test_hub_ids_and_local_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_like_hub_id("Qwen/Qwen2.5-Coder-7B-Instruct")
    assert looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    for local in ("runs/nope", "./model", "/abs/model", "a/b/c", "nope", "x/model.gguf", "~/m", "../x/y"):
        assert not looks_like_hub_id(local), local


def test_missing_checkpoint_names_close_entries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "grpo").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"runs/grpp does not exist \(in runs/: grpo\)"):
        check_checkpoint("runs/grpp")
    check_checkpoint("runs/grpo")  # exists
    check_checkpoint("Qwen/Qwen2.5-Coder-7B-Instruct")  # left to the hub


def test_rollout_cli_says_the_local_model_is_missing(tmp_path, monkeypatch, capsys):
    from rollout.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"id": "t", "prompt": "p"}) + "\n")
    argv = ["sample", "--model", "runs/nope", "--tasks", str(tasks), "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 2
    assert "checkpoint runs/nope does not exist" in capsys.readouterr().err


# --- --jobs / --workers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("rewards.__main__", ["score", "--tasks", "t", "--completions", "c", "--out", "o", "--jobs", "-1"]),
        (
            "evals.__main__",
            ["run", "--suite", "all", "--data", ".", "--samples", "s", "--out", "o", "--jobs", "-1"],
        ),
        ("train.corpus.__main__", ["verify", "f.jsonl", "--jobs", "-1"]),
        ("rewards.server", ["--workers", "-1"]),
    ],
)
def test_negative_job_counts_are_rejected(module, argv, capsys):
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "-1 is negative" in err and "0 for one per core" in err
    assert "Traceback" not in err


def test_zero_jobs_means_one_per_core(tmp_path):
    from rewards.__main__ import main

    tasks = REPO / "tests" / "data" / "grpo_tasks.jsonl"
    reference = json.loads(tasks.read_text().splitlines()[0])
    completions = tmp_path / "c.jsonl"
    completions.write_text(
        json.dumps({"task_id": reference["id"], "completion": reference["reference"]}) + "\n"
    )
    out = tmp_path / "o.jsonl"
    argv = ["score", "--tasks", str(tasks), "--completions", str(completions), "--out", str(out)]
    assert main([*argv, "--jobs", "0", "--quiet"]) == 0
    assert json.loads(out.read_text())["passed"] is True


# --- empty inputs ----------------------------------------------------------------------------------


def test_empty_tasks_and_completions_files_warn(tmp_path, capsys, caplog):
    from rewards.__main__ import main

    tasks, completions = tmp_path / "tasks.jsonl", tmp_path / "completions.jsonl"
    tasks.write_text("")
    completions.write_text("\n")
    with caplog.at_level(logging.WARNING):
        rc = main(
            ["score", "--tasks", str(tasks), "--completions", str(completions), "--out", str(tmp_path / "o")]
        )
    assert rc == 0
    assert f"task file {tasks} holds no tasks" in caplog.text
    assert f"warning: completions file {completions} holds no completions" in capsys.readouterr().err


def test_empty_samples_file_warns(tmp_path, caplog):
    from evals.run import load_samples

    samples = tmp_path / "samples.jsonl"
    samples.write_text("")
    with caplog.at_level(logging.WARNING):
        assert load_samples(samples, []) == []
    assert "holds no records" in caplog.text
