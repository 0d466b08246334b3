"""Every entry script answers --help with its fields (help strings must be valid argparse text)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["train/grpo.py", "train/dpo.py", "train/sft.py"])
def test_help_lists_fields(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--model_name_or_path" in proc.stdout and "--output_dir" in proc.stdout


@pytest.mark.parametrize(
    "module",
    [
        "rewards",
        "rewards.server",
        "evals",
        "rollout",
        "train.corpus",
        "train.pairs",
        "launch",
        "train.merge",
    ],
)
def test_module_clis_answer_help(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()
