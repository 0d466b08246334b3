"""DPO from test-bench outcomes (VeriPrefer-style) over TRL's DPOTrainer, optionally iterated.

Launch::

    # Embedded default: tiny policy (cached) + SFT warm start, sample -> score -> pair -> DPO on CPU,
    # held-out pass@1 before and after
    accelerate launch train/dpo.py                  # or: python train/dpo.py
    accelerate launch train/dpo.py --config configs/dpo/tiny_cpu.yaml --rounds 3     # iterative DPO
    # A real model: pairs built with vLLM first, then LoRA DPO on them
    python -m train.pairs --model Qwen/Qwen2.5-Coder-7B-Instruct --style chat --n 16 --backend vllm \\
        --max-new-tokens 2048 --temperature 1.0 --out runs/pairs-qwen7b.jsonl
    accelerate launch --config_file configs/accelerate/single_gpu.yaml train/dpo.py \\
        --config configs/dpo/qwen2.5-coder-7b_lora.yaml --pairs_file runs/pairs-qwen7b.jsonl
    # Full weights on 8 GPUs with DeepSpeed ZeRO-3
    accelerate launch --config_file configs/accelerate/zero3.yaml train/dpo.py \\
        --config configs/dpo/qwen2.5-coder-7b_lora.yaml --use_peft false --pairs_file ...

Data: ``pairs_file`` (from ``python -m train.pairs``: prompt / chosen / rejected plus the kept scores),
or, when it is unset, pairs built at the start of each round by sampling ``num_samples`` completions per
training task from the current policy, scoring them with the reward client (``reward_urls``, or
in-process scoring) and pairing them with the rules of :mod:`train.pairs` (functional pass over fail,
then better PPA among passes, then closer failures). ``INFRA_ERROR`` samples are never paired.

Iterative DPO (``rounds: K``): round k samples from the policy round k-1 produced, pairs, and runs DPO
with that policy as the reference (on-policy iterative DPO, as in Xiong et al. 2024 and Pang et al.
2024, without their NLL term). A LoRA round's adapter is merged into a full model that starts the next
round. Rounds live in ``output_dir/round-k``; with ``resume_from_checkpoint: latest`` finished rounds
are skipped, a round's pairs are reused, and its trainer resumes from its last checkpoint. Pair building
and pass@1 run on the main process (HF ``generate`` on CPU, vLLM where installed: ``sampling_backend``);
the other processes wait. For large models build pairs separately with ``python -m train.pairs
--backend vllm`` and pass ``pairs_file``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python train/dpo.py` / `accelerate launch train/dpo.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl import DPOConfig, DPOTrainer

from rewards.config import ConfigError
from rewards.tasks import union_tasks
from rewards.types import Task
from train.common import (
    evaluate,
    finish_run,
    held_out_splits,
    is_main,
    load_model_and_tokenizer,
    on_main,
    print_summary,
    resolve_tasks,
    resume_arg,
    setup_reporting,
    summarise,
)
from train.config import (
    EvalFields,
    JsonlMetrics,
    ModelFields,
    SavedModulesLearningRate,
    TaskFields,
    cpu_training_defaults,
    load_config,
    lora_config,
    option,
    save_resolved_config,
)
from train.pairs import DEFAULT_RULES, PREFER, check_rules
from train.sft import warm_start_policy

log = logging.getLogger(__name__)

ROUND_DONE = "round.json"


@dataclass
class DPOScriptConfig(ModelFields, TaskFields, EvalFields, DPOConfig):
    """TRL's DPOConfig plus model/LoRA/task fields, pair building, rounds and pass@1 measurement."""

    pairs_file: str | None = option(
        None,
        "pairs JSONL/parquet/HF dir from `python -m train.pairs`; None = sample and pair from the policy",
    )
    rounds: int = option(1, "iterative DPO rounds (sample -> pair -> DPO); later rounds always sample")
    num_samples: int = option(8, "completions sampled per training task when building pairs")
    sample_temperature: float = option(1.0, "sampling temperature for pair building")
    sample_top_p: float = option(1.0, "nucleus mass for pair building and pass@1")
    sample_max_new_tokens: int = option(320, "tokens generated per completion (pair building and pass@1)")
    sample_batch_size: int = option(64, "sequences per HF generate call")
    sampling_backend: str = option("auto", "auto | hf | vllm (auto = vLLM when installed with a GPU)")
    pair_rules: list[str] = option(list(DEFAULT_RULES), "pairing rules in priority order (train/pairs.py)")
    max_pairs_per_prompt: int = option(4, "pairs kept per prompt at most")
    ppa_margin: float = option(0.02, "smallest PPA-level gap between two passes that makes a pair")
    fail_margin: float = option(0.1, "smallest progress gap between two failures (0.1 = 10%% more vectors)")
    pair_prefer: str = option("widest", "widest | narrowest: which margins fill the per-prompt cap first")
    reward_urls: list[str] | None = option(None, "reward server URLs; None = score in-process (same results)")
    reward_config: str | None = option(
        None, "reward config YAML (configs/reward/); None = RewardConfig defaults"
    )
    reward_timeout_s: float = option(600.0, "HTTP timeout of one reward request")
    reward_retries: int = option(
        2, "retries of a failed reward request before its items count as INFRA_ERROR"
    )
    sft_warm_start_steps: int = option(
        400,
        "SFT steps of the tiny policy's warm start (model_name_or_path: tiny; the GRPO demo's, so both share it)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 1:
            raise ConfigError(f"rounds={self.rounds} must be >= 1 (1 = plain DPO)")
        if self.num_samples < 2:
            raise ConfigError(f"num_samples={self.num_samples} must be >= 2: a pair needs two completions")
        if self.pair_prefer not in PREFER:
            raise ConfigError(f"pair_prefer={self.pair_prefer!r} is unknown; valid: {', '.join(PREFER)}")
        try:
            check_rules(self.pair_rules)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


def script_defaults() -> dict[str, Any]:
    """The embedded CPU recipe (configs/dpo/tiny_cpu.yaml holds the same values), under YAML and flags."""
    return {
        "output_dir": "runs/dpo-tiny",
        "max_steps": 40,
        # a LoRA adapter at 5e-4 and the final RMSNorm (whose scale multiplies every logit) trained in
        # full at 3e-2; chosen on val (docs/learning.md): full weights at 1e-5 gave +0.0 on test
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_modules_to_save": ["model.norm"],
        "modules_to_save_learning_rate": 3e-2,
        "learning_rate": 5e-4,
        "loss_type": ["sigmoid", "sft"],
        "max_train_tasks": 240,
        "num_samples": 4,
        "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 16,
        "beta": 0.1,
        "max_length": 768,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 20,
        "save_total_limit": 2,
        "report_to": "wandb",
        "activation_checkpointing": False,
        "seed": 0,
        **cpu_training_defaults(),
    }


# ----------------------------------------------------------------------------------- components


def sample_and_score(
    cfg: DPOScriptConfig, policy: str, tasks: Sequence[Task], scorer, *, n: int, temperature: float, seed: int
):
    """Sample ``n`` completions per task from ``policy`` and score them: per-task ``Sample`` lists."""
    from train.pairs import sample_for_tasks, score_groups

    completions = sample_for_tasks(
        policy,
        tasks,
        n=n,
        style=cfg.prompt_style,
        temperature=temperature,
        top_p=cfg.sample_top_p,
        max_new_tokens=cfg.sample_max_new_tokens,
        batch_size=cfg.sample_batch_size,
        seed=seed,
        backend=cfg.sampling_backend,
    )
    return score_groups(tasks, completions, scorer)


def build_round_pairs(
    cfg: DPOScriptConfig, policy: str, tasks: Sequence[Task], scorer, out: Path, seed: int
) -> dict:
    """Sample, score and pair on ``tasks``; writes ``out`` (pairs) and ``scored.jsonl`` beside it."""
    from train.pairs import pair_file_from_groups

    groups = sample_and_score(
        cfg, policy, tasks, scorer, n=cfg.num_samples, temperature=cfg.sample_temperature, seed=seed
    )
    _, stats = pair_file_from_groups(
        tasks,
        groups,
        out,
        style=cfg.prompt_style,
        scored_out=out.with_name("scored.jsonl"),
        rules=cfg.pair_rules,
        max_pairs=cfg.max_pairs_per_prompt,
        ppa_margin=cfg.ppa_margin,
        fail_margin=cfg.fail_margin,
        prefer=cfg.pair_prefer,
    )
    return stats.to_dict()


def dpo_rows(path: str | Path):
    """The DPO columns of a pairs file (scores and rule are kept in the file, not fed to TRL)."""
    from train.pairs import load_pairs

    dataset = load_pairs(path)
    return dataset.select_columns(["prompt", "chosen", "rejected"])


class RTLDPOTrainer(SavedModulesLearningRate, DPOTrainer):
    """TRL's DPOTrainer with a learning rate of their own for modules trained next to an adapter."""


def run_dpo(cfg: DPOScriptConfig, policy: str, pairs_path: str | Path, run_dir: Path) -> Path:
    """One DPO run from ``policy`` on ``pairs_path`` into ``run_dir`` (model or adapter + tokenizer)."""
    round_cfg = dataclasses.replace(cfg, model_name_or_path=policy, output_dir=str(run_dir))
    model, tokenizer = load_model_and_tokenizer(round_cfg)
    dataset = dpo_rows(pairs_path)
    log.info("DPO on %d pairs from %s -> %s", len(dataset), pairs_path, run_dir)
    trainer = RTLDPOTrainer(
        model=model,
        args=round_cfg,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(round_cfg),
        callbacks=[JsonlMetrics(run_dir / "metrics.jsonl")],
        saved_modules=cfg.lora_modules_to_save,
        saved_modules_learning_rate=cfg.modules_to_save_learning_rate,
    )
    trainer.train(resume_from_checkpoint=resume_arg(cfg.resume_from_checkpoint, run_dir))
    trainer.save_model(str(run_dir))
    tokenizer.save_pretrained(str(run_dir))
    trainer.accelerator.wait_for_everyone()
    return run_dir


def next_policy(cfg: DPOScriptConfig, run_dir: Path) -> str:
    """The full model the next round starts from: ``run_dir`` itself, or its LoRA adapter merged."""
    if not cfg.use_peft:
        return str(run_dir)
    merged = run_dir / "merged"
    if not (merged / "config.json").is_file():
        from accelerate import PartialState

        from train.merge import merge_adapter

        state = PartialState()
        if state.is_main_process:
            merge_adapter(run_dir, merged, dtype=cfg.model_dtype)
        state.wait_for_everyone()
    return str(merged)


# ------------------------------------------------------------------------------------------ main


def run_round(
    cfg: DPOScriptConfig, index: int, policy: str, tasks: Sequence[Task], scorer
) -> tuple[str, dict]:
    """One round: pairs (given, reused or built) then DPO; returns the next policy and the round record."""
    run_dir = Path(cfg.output_dir) if cfg.rounds == 1 else Path(cfg.output_dir) / f"round-{index}"
    done = run_dir / ROUND_DONE
    if cfg.resume_from_checkpoint and done.is_file():
        log.info("round %d already finished in %s; skipping it", index, run_dir)
        return next_policy(cfg, run_dir), json.loads(done.read_text())
    record: dict[str, Any] = {"round": index, "start_policy": policy, "run_dir": str(run_dir)}
    if index == 1 and cfg.pairs_file:
        pairs_path = Path(cfg.pairs_file)
    else:
        pairs_path = run_dir / "pairs.jsonl"
        if cfg.resume_from_checkpoint and pairs_path.is_file():
            log.info("round %d: reusing %s", index, pairs_path)
        else:
            record["pairs"] = on_main(
                build_round_pairs, cfg, policy, tasks, scorer, pairs_path, cfg.seed + 1000 * index
            )
            if not record["pairs"]["pairs"]:
                raise ConfigError(
                    f"round {index}: no preference pairs from {policy} ({record['pairs']}): every task's samples "
                    "scored alike. Raise num_samples or sample_temperature, relax fail_margin, or start from a "
                    "stronger (e.g. SFT) policy."
                )
    record["pairs_file"] = str(pairs_path)
    run_dpo(cfg, policy, pairs_path, run_dir)
    policy = next_policy(cfg, run_dir)
    record["end_policy"] = policy
    if is_main():
        done.write_text(json.dumps(record, indent=1))
    return policy, record


def policy_sampler(cfg: DPOScriptConfig, policy: str):
    """``tasks -> completions per task`` from the checkpoint ``policy`` (the pass@1 measurement's sampler)."""
    from train.pairs import sample_for_tasks

    def sample(tasks: Sequence[Task]) -> list[list[str]]:
        return sample_for_tasks(
            policy,
            tasks,
            n=cfg.eval_samples,
            style=cfg.prompt_style,
            temperature=cfg.eval_temperature,
            top_p=cfg.sample_top_p,
            max_new_tokens=cfg.sample_max_new_tokens,
            batch_size=cfg.sample_batch_size,
            seed=cfg.seed + 10_000,
            backend=cfg.sampling_backend,
        )

    return sample


def held_out(cfg: DPOScriptConfig, policy: str, splits: dict[str, list[Task]], scorer) -> dict:
    """Held-out pass@1 of ``policy`` on every split (main process only)."""
    return evaluate(splits, policy_sampler(cfg, policy), scorer)


def train(cfg: DPOScriptConfig) -> dict:
    """Run (iterative) DPO as configured; returns the run summary (pairs, held-out pass@1 before/after)."""
    from train.pairs import make_scorer

    started = time.time()
    all_train = resolve_tasks(cfg.train_tasks, "train")
    train_tasks = all_train[: cfg.max_train_tasks or None]
    splits = (
        held_out_splits(cfg.eval_tasks, cfg.eval_ood_tasks, cfg.eval_max_tasks) if cfg.eval_pass_at_1 else {}
    )
    all_tasks = union_tasks(train_tasks, *splits.values())  # checked before the policy is built
    # the warm start learns from the whole training split (max_train_tasks limits the RL prompts only)
    cfg.model_name_or_path = warm_start_policy(cfg.model_name_or_path, all_train, cfg.sft_warm_start_steps)
    setup_reporting(cfg.report_to, cfg.output_dir)
    save_resolved_config(cfg, cfg.output_dir)
    scorer = make_scorer(
        cfg.reward_urls,
        all_tasks,
        reward_config=cfg.reward_config,
        timeout_s=cfg.reward_timeout_s,
        retries=cfg.reward_retries,
    )
    policy = cfg.model_name_or_path
    summary: dict[str, Any] = {"algo": "dpo", "model": policy, "output_dir": cfg.output_dir, "rounds": []}
    before = on_main(held_out, cfg, policy, splits, scorer) if splits else None
    train_start = time.time()
    for index in range(1, cfg.rounds + 1):
        policy, record = run_round(cfg, index, policy, train_tasks, scorer)
        summary["rounds"].append(record)
    summary["train_s"] = round(time.time() - train_start, 1)
    summary["final_policy"] = policy
    after = on_main(held_out, cfg, policy, splits, scorer) if splits else None
    if before and after:
        summary.update(summarise(before, after, seed=cfg.seed))
    return finish_run(summary, cfg.output_dir, algo="DPO", started=started)


def print_rounds(summary: dict) -> None:
    """Pairs per round and the policy each round produced."""
    for record in summary["rounds"]:
        pairs = record.get("pairs")
        counts = (
            f"{pairs['pairs']} pairs {pairs['pairs_by_rule']}" if pairs else f"pairs {record['pairs_file']}"
        )
        print(f"round {record['round']}: {counts} -> {record['end_policy']}")


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point: ``accelerate launch train/dpo.py [--config YAML] [--field value ...]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(
        DPOScriptConfig, list(sys.argv[1:] if argv is None else argv), defaults=script_defaults()
    )
    summary = train(cfg)
    if is_main():
        print_rounds(summary)
        print_summary(summary, algo="DPO")
    return summary


if __name__ == "__main__":
    main()
