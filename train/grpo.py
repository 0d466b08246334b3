"""GRPO (with DAPO options) over TRL's GRPOTrainer, rewarded by the rtlforge reward server.

Launch::

    # Embedded default: build the tiny policy (cached), SFT warm start, GRPO on CPU, pass@1 before/after
    accelerate launch train/grpo.py                # or: python train/grpo.py
    # A recipe, with any config field overridden on the command line
    accelerate launch train/grpo.py --config configs/grpo/tiny_cpu.yaml --max_steps 20
    # Two CPU processes (gloo) sharing one auto-started reward server; same global batch as one process
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml train/grpo.py --per_device_train_batch_size 16
    # Merge a LoRA run into a standalone model (for vLLM / evals)
    python -m train.merge --adapter runs/grpo-qwen2.5-coder-7b-lora --out runs/grpo-qwen2.5-coder-7b-merged
    # Qwen2.5-Coder-7B-Instruct, LoRA, one node (vLLM colocated in the training processes)
    accelerate launch --config_file configs/accelerate/single_gpu.yaml train/grpo.py \\
        --config configs/grpo/qwen2.5-coder-7b_lora.yaml
    # Full weights, ZeRO-3 on GPUs 0-3, generation on a vLLM server on GPUs 4-7
    CUDA_VISIBLE_DEVICES=4,5,6,7 trl vllm-serve --model Qwen/Qwen2.5-Coder-7B-Instruct \\
        --tensor_parallel_size 1 --data_parallel_size 4 --port 8000 &
    python -m rewards.server --host 0.0.0.0 --port 8100 --workers 32 &
    CUDA_VISIBLE_DEVICES=0,1,2,3 accelerate launch --config_file configs/accelerate/zero3.yaml \\
        --num_processes 4 train/grpo.py --config configs/grpo/qwen2.5-coder-7b_zero3-vllm.yaml \\
        --reward_urls http://127.0.0.1:8100

Rewards: every completion is scored by the reward server (format → syntax → function → PPA). With no
``reward_urls`` the main process starts one on loopback and every process shares it. Logged every step
(console, wandb, ``<output_dir>/metrics.jsonl``): ``verilog/level/{format,syntax,function,ppa}``,
``verilog/status/<STATUS>`` fractions, ``verilog/pass_rate``, ``rewards/verilog/mean``,
``rewards/infra_error_frac`` and ``dynamic_sampling/dropped_groups``; with ``log_completions: true``
each step's completions, rewards and statuses go to ``<output_dir>/completions/`` and a wandb table.
An ``INFRA_ERROR`` (tool or server failure) has no reward: the completion is masked out of the group
baseline and the loss, counted, and a generation batch with more than ``fail_on_infra_rate`` of them
stops the run with :class:`rewards.client.RewardInfraError`.

DAPO (Yu et al., 2025) options, all TRL fields except ``dynamic_sampling`` and ``overlong_*``:

- no KL term: ``beta: 0.0`` (TRL's default; no reference model is loaded);
- clip-higher: ``epsilon: 0.2``, ``epsilon_high: 0.28``;
- token-level policy loss: ``loss_type: dapo`` (TRL's default);
- overlong filtering ``mask_truncated_completions: true``, and soft overlong punishment:
  ``overlong_buffer_len: L`` subtracts up to ``overlong_penalty`` linearly over the last ``L`` tokens
  before ``max_completion_length`` (added to the reward of scored completions only);
- dynamic sampling ``dynamic_sampling: true``: groups whose rewards are all equal (all pass or all fail
  the same way) carry no advantage; they are dropped from the loss and from its token normaliser, and
  the count is logged as ``dynamic_sampling/dropped_groups``. Departure from the paper: DAPO keeps
  sampling new prompts until the batch is full of informative groups; here the batch simply shrinks
  (no extra generation), so the effective batch size varies from step to step.

Advantages: the embedded default sets TRL's ``scale_rewards: none`` (r − group mean, not divided by the
group's std; Dr. GRPO, Liu et al. 2025), so a group that differs only by the 0.1 format credit is not
pushed as hard as pass versus fail. ``negative_advantage_weight`` (default 1) scales below-mean
advantages; 0 reinforces only the better completions. What was measured with each on ``val`` is in
docs/learning.md.

vLLM rollout (GPU only, ``pip install -e '.[vllm]'``): ``use_vllm: true`` with ``vllm_mode: colocate``
(vLLM inside each training process; set ``vllm_gpu_memory_utilization``) or ``vllm_mode: server``
(``trl vllm-serve --model <model> --port 8000`` on separate GPUs; set ``vllm_server_host``/``port``).
Without vLLM the trainer samples with HF ``generate`` (the CPU path).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python train/grpo.py` / `accelerate launch train/grpo.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from trl import GRPOConfig, GRPOTrainer

from rewards.client import RewardInfraError, TRLReward
from rewards.config import ConfigError, load_reward_config
from rewards.tasks import union_tasks
from rewards.types import Task
from rollout.prompts import build_messages, render_prompt
from train.common import (
    evaluate,
    finish_run,
    held_out_splits,
    is_main,
    load_model_and_tokenizer,
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
from train.sft import warm_start_policy

log = logging.getLogger(__name__)


@dataclass
class GRPOScriptConfig(ModelFields, TaskFields, EvalFields, GRPOConfig):
    """TRL's GRPOConfig plus model/LoRA/task fields and the project's reward and DAPO fields."""

    reward_urls: list[str] | None = option(
        None, "reward server URLs; None = start one in-process on loopback"
    )
    reward_config: str | None = option(
        None, "reward config YAML (configs/reward/); None = RewardConfig defaults"
    )
    reward_workers: int = option(0, "scoring workers of the auto-started reward server (0 = one per core)")
    reward_timeout_s: float = option(600.0, "HTTP timeout of one reward request")
    reward_retries: int = option(
        2, "retries of a failed reward request before its items count as INFRA_ERROR"
    )
    fail_on_infra_rate: float = option(
        0.1, "stop when more than this fraction of a generation batch is INFRA_ERROR (1.0 = never stop)"
    )
    dynamic_sampling: bool = option(True, "drop groups whose rewards are all equal from the loss (DAPO)")
    negative_advantage_weight: float = option(
        1.0,
        "scale of below-group-mean advantages (1 = plain GRPO, 0 = reinforce only the better completions; "
        "see Zhu et al. 2025 on positive vs negative sample reinforcement)",
    )
    shuffle_rewards: bool = option(
        False,
        "control run: permute each batch's rewards across its completions (same distribution, no link to "
        "what was written). A run that gains as much with it on is not learning from the reward",
    )
    rollout_temperature: float | None = option(
        None,
        "sampling temperature of the rollouts when it should differ from `temperature` (which the loss's "
        "log-probabilities use); None = sample at `temperature`. Below 1 the rollouts are off-policy: "
        "sharper samples of the same policy, reinforced by their group advantages (see docs/learning.md)",
    )
    overlong_buffer_len: int = option(
        0, "soft overlong punishment window in tokens before max_completion_length (0 = off)"
    )
    overlong_penalty: float = option(1.0, "largest overlong punishment (reached at max_completion_length)")
    sft_warm_start_steps: int = option(
        400, "SFT steps of the tiny policy's warm start (model_name_or_path: tiny)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.fail_on_infra_rate <= 1.0:
            raise ConfigError(f"fail_on_infra_rate={self.fail_on_infra_rate} must be in (0, 1], e.g. 0.1")
        if not 0.0 <= self.negative_advantage_weight <= 1.0:
            raise ConfigError(
                f"negative_advantage_weight={self.negative_advantage_weight} must be in [0, 1] (1 = plain GRPO)"
            )
        if self.rollout_temperature is not None:
            if not 0.0 < self.rollout_temperature <= 2.0:
                raise ConfigError(
                    f"rollout_temperature={self.rollout_temperature} must be in (0, 2], e.g. 0.5; "
                    "or null to sample at `temperature`"
                )
            extra = self.generation_kwargs or {}
            if isinstance(extra, str):
                extra = json.loads(extra)
            self.generation_kwargs = {**extra, "temperature": self.rollout_temperature}
        if self.overlong_buffer_len and self.overlong_buffer_len >= self.max_completion_length:
            raise ConfigError(
                f"overlong_buffer_len={self.overlong_buffer_len} must be < max_completion_length="
                f"{self.max_completion_length}; e.g. a quarter of it"
            )


def script_defaults() -> dict[str, Any]:
    """The embedded CPU recipe (configs/grpo/tiny_cpu.yaml holds the same values), under YAML and flags."""
    return {
        "output_dir": "runs/grpo-tiny",
        # 80 steps fit the 30-minute budget on 2 cores with the warm start and four held-out measurements
        "max_steps": 80,
        # a LoRA adapter at 1e-3 (docs/learning.md: full weights at 1e-4 gave -0.8 points on test; the
        # adapter moves far fewer coordinates with each sparse-reward update's noise)
        "use_peft": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        # the final RMSNorm trained in full at 2.5e-2: its scale multiplies every logit, so the reward
        # can sharpen the policy toward its passing mode (docs/learning.md, "Sharpness as a parameter";
        # chosen at 2e-2 for 100 steps, scaled to keep rate x steps for 80)
        "lora_modules_to_save": ["model.norm"],
        "modules_to_save_learning_rate": 2.5e-2,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "scale_rewards": "none",
        "per_device_train_batch_size": 32,
        "num_generations": 8,
        "max_completion_length": 320,
        "temperature": 1.0,
        "beta": 0.0,
        "loss_type": "dapo",
        "epsilon_high": 0.28,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 20,
        "save_total_limit": 2,
        "report_to": "wandb",
        "activation_checkpointing": False,
        "seed": 0,
        **cpu_training_defaults(),
    }


# --------------------------------------------------------------------------------------- rewards
@contextlib.contextmanager
def reward_service(cfg: GRPOScriptConfig, tasks: Sequence[Task]) -> Iterator[list[str]]:
    """Yield reward server URLs: ``cfg.reward_urls``, or one server started on loopback by the main process."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if cfg.reward_urls:
        yield list(cfg.reward_urls)
        return
    state = PartialState()
    handle, url = None, [None]
    if state.is_main_process:
        from rewards.background import start_background

        handle = start_background(
            "127.0.0.1",
            0,
            config=load_reward_config(cfg.reward_config),
            tasks=list(tasks),
            workers=cfg.reward_workers or None,
        )
        url = [handle.url]
        log.info("reward server started on %s", handle.url)
    if state.num_processes > 1:
        broadcast_object_list(url)
    finished = False
    try:
        yield [url[0]]
        finished = True
    finally:
        if finished and state.num_processes > 1:
            state.wait_for_everyone()  # on an error a peer may never arrive: stop without waiting
        if handle is not None:
            handle.stop()


def make_client(urls: list[str], tasks: Sequence[Task], cfg: GRPOScriptConfig):
    """A reward client over ``urls`` that knows ``tasks`` by id."""
    from rewards.client import RewardClient

    return RewardClient(
        urls,
        tasks={t.id: t for t in tasks},
        config=load_reward_config(cfg.reward_config),
        timeout_s=cfg.reward_timeout_s,
        retries=cfg.reward_retries,
    )


def make_reward(client, cfg: GRPOScriptConfig) -> TRLReward:
    """The reward function handed to GRPOTrainer (the stop check on INFRA is the trainer's, per batch)."""
    return TRLReward(
        client,
        fail_on_infra_rate=None,
        max_completion_length=cfg.max_completion_length,
        overlong_buffer_len=cfg.overlong_buffer_len,
        overlong_penalty=cfg.overlong_penalty,
        shuffle_seed=cfg.seed if cfg.shuffle_rewards else None,
    )


# --------------------------------------------------------------------------------------- trainer
class RTLGRPOTrainer(SavedModulesLearningRate, GRPOTrainer):
    """GRPOTrainer plus DAPO dynamic sampling, the INFRA_ERROR stop and a learning rate for saved modules."""

    def __init__(
        self,
        *args,
        verilog_reward: TRLReward,
        dynamic_sampling: bool,
        fail_on_infra_rate: float,
        negative_advantage_weight: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.verilog_reward = verilog_reward
        self.dynamic_sampling = dynamic_sampling
        self.fail_on_infra_rate = fail_on_infra_rate
        self.negative_advantage_weight = negative_advantage_weight

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self._check_infra_rate()
        if self.dynamic_sampling and self.model.training:
            drop_flat_groups(self, output, self.verilog_reward.last_rewards)
        if self.negative_advantage_weight != 1.0 and self.model.training:
            output["advantages"] = weight_negative_advantages(
                output["advantages"], self.negative_advantage_weight
            )
        return output

    def _check_infra_rate(self) -> None:
        infra, total = self.verilog_reward.last_counts
        counts = self.accelerator.gather(torch.tensor([[infra, total]], device=self.accelerator.device))
        infra, total = (int(v) for v in counts.sum(dim=0).tolist())
        if total and infra / total > self.fail_on_infra_rate:
            raise RewardInfraError(
                f"reward scoring failed (INFRA_ERROR) for {infra} of {total} completions at step "
                f"{self.state.global_step} ({infra / total:.0%} > fail_on_infra_rate={self.fail_on_infra_rate:.0%}): "
                f"the reward server or an EDA tool is broken, so these completions have no reward (e.g. "
                f"{self.verilog_reward.last_infra_log[:300]!r}). Check that the "
                "reward server is up (GET /healthz) and `python -m rewards tools` lists every tool; raise "
                "fail_on_infra_rate only if occasional failures are expected."
            )


def flat_group_keep_mask(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Per-completion keep mask (1 = keep) that drops groups whose rewards are all equal.

    Flatness is decided from the rewards themselves, not from the advantages: TRL divides by
    ``std + 1e-4``, so an all-equal group's advantages are only exactly zero when every reward is 0.0
    (an all-0.1 group gets about -7e-5 each, all-pass groups about -1e-3). INFRA items (NaN) are left
    out; a group with fewer than two scored completions carries no advantage either.
    """
    groups = rewards.view(-1, num_generations)
    scored = ~torch.isnan(groups)
    high = torch.where(scored, groups, torch.full_like(groups, -math.inf)).max(dim=1).values
    low = torch.where(scored, groups, torch.full_like(groups, math.inf)).min(dim=1).values
    flat = (scored.sum(dim=1) < 2) | torch.isclose(high, low, rtol=0.0, atol=1e-9)
    return (~flat).repeat_interleave(num_generations)


def weight_negative_advantages(advantages: torch.Tensor, weight: float) -> torch.Tensor:
    """Advantages with the below-baseline ones scaled by ``weight`` (0 keeps only the reinforcement of
    completions better than their group's mean)."""
    return torch.where(advantages < 0, advantages * weight, advantages)


def drop_flat_groups(trainer: GRPOTrainer, output: dict, rewards: Sequence[float]) -> int:
    """Mask the completions of all-equal-reward groups out of the loss; returns (and logs) how many groups.

    ``rewards`` are this process' rewards of the batch, in the order TRL gathers them.
    """
    local = output["advantages"]
    device = local.device
    gathered = trainer.accelerator.gather(torch.tensor(list(rewards), dtype=torch.float32, device=device))
    keep_all = flat_group_keep_mask(gathered, trainer.num_generations)
    start = trainer.accelerator.process_index * local.shape[0]
    keep = keep_all[start : start + local.shape[0]].to(output["completion_mask"].dtype).unsqueeze(1)
    mask = output.get("tool_mask")
    output["tool_mask"] = keep.expand_as(output["completion_mask"]) * (1 if mask is None else mask)
    output["num_items_in_batch"] = trainer.accelerator.gather(
        (output["completion_mask"] * output["tool_mask"]).sum()
    ).sum()
    groups = keep_all.numel() // trainer.num_generations
    dropped = groups - int(keep_all.sum().item()) // trainer.num_generations
    metrics = trainer._metrics["train"]
    metrics["dynamic_sampling/dropped_groups"].append(float(dropped))
    metrics["dynamic_sampling/dropped_frac"].append(dropped / max(1, groups))
    kept_adv = trainer.accelerator.gather(local)[keep_all]
    metrics["advantages/abs_mean"].append(kept_adv.abs().mean().item() if kept_adv.numel() else 0.0)
    metrics["advantages/mean"].append(kept_adv.mean().item() if kept_adv.numel() else 0.0)
    return dropped


# ------------------------------------------------------------------------------------------ data
def prompt_rows(tasks: Sequence[Task], tokenizer, style: str) -> list[dict]:
    """Dataset rows: the prompt (text, or chat messages for style 'chat') and the task id the reward needs."""
    if style == "chat":
        return [{"prompt": build_messages(t.prompt, style=style), "task_id": t.id} for t in tasks]
    return [{"prompt": render_prompt(tokenizer, t.prompt, style=style), "task_id": t.id} for t in tasks]


def policy_sampler(model, tokenizer, cfg: GRPOScriptConfig):
    """``tasks -> completions per task`` from the live policy (the pass@1 measurement's sampler)."""
    from rollout.hf import sample_hf

    def sample(tasks: Sequence[Task]) -> list[list[str]]:
        was_training = model.training
        model.eval()
        tokenizer.padding_side = "left"
        from tqdm.auto import tqdm

        prompts = [render_prompt(tokenizer, t.prompt, style=cfg.prompt_style) for t in tasks]
        bar = tqdm(total=len(prompts) * cfg.eval_samples, desc="held-out sampling", unit="seq")
        out = sample_hf(
            model,
            tokenizer,
            prompts,
            n=cfg.eval_samples,
            temperature=cfg.eval_temperature,
            top_p=1.0,
            max_new_tokens=cfg.max_completion_length,
            batch_size=64,
            seed=cfg.seed + 10_000,
            progress=bar.update,
            cache_implementation=cfg.cache_implementation,
        )
        bar.close()
        if was_training:
            model.train()
        return out

    return sample


def _evaluate_on_main(trainer, tokenizer, splits, client, cfg) -> dict | None:
    result = None
    if trainer.accelerator.is_main_process:
        model = trainer.accelerator.unwrap_model(trainer.model)
        result = evaluate(splits, policy_sampler(model, tokenizer, cfg), client.score)
    trainer.accelerator.wait_for_everyone()
    return result


# ------------------------------------------------------------------------------------------ main
def train(cfg: GRPOScriptConfig) -> dict:
    """Run GRPO as configured; returns the run summary (held-out pass@1 before/after when measured)."""
    from datasets import Dataset

    started = time.time()
    all_train = resolve_tasks(cfg.train_tasks, "train")
    train_tasks = all_train[: cfg.max_train_tasks or None]
    splits = (
        held_out_splits(cfg.eval_tasks, cfg.eval_ood_tasks, cfg.eval_max_tasks) if cfg.eval_pass_at_1 else {}
    )
    all_tasks = union_tasks(train_tasks, *splits.values())  # one reward server knows them all
    # the warm start learns from the whole training split (max_train_tasks limits the RL prompts only)
    cfg.model_name_or_path = warm_start_policy(cfg.model_name_or_path, all_train, cfg.sft_warm_start_steps)
    setup_reporting(cfg.report_to, cfg.output_dir)
    run_dir = Path(cfg.output_dir)
    save_resolved_config(cfg, run_dir)
    summary: dict[str, Any] = {"algo": "grpo", "model": cfg.model_name_or_path, "output_dir": str(run_dir)}
    with reward_service(cfg, all_tasks) as urls:
        client = make_client(urls, all_tasks, cfg)
        reward = make_reward(client, cfg)
        model, tokenizer = load_model_and_tokenizer(cfg)
        trainer = RTLGRPOTrainer(
            model=model,
            args=cfg,
            reward_funcs=[reward],
            processing_class=tokenizer,
            train_dataset=Dataset.from_list(prompt_rows(train_tasks, tokenizer, cfg.prompt_style)),
            peft_config=lora_config(cfg),
            callbacks=[JsonlMetrics(run_dir / "metrics.jsonl")],
            verilog_reward=reward,
            dynamic_sampling=cfg.dynamic_sampling,
            fail_on_infra_rate=cfg.fail_on_infra_rate,
            negative_advantage_weight=cfg.negative_advantage_weight,
            saved_modules=cfg.lora_modules_to_save,
            saved_modules_learning_rate=cfg.modules_to_save_learning_rate,
        )
        before = _evaluate_on_main(trainer, tokenizer, splits, client, cfg) if splits else None
        train_start = time.time()
        trainer.train(resume_from_checkpoint=resume_arg(cfg.resume_from_checkpoint, run_dir))
        summary["train_s"] = round(time.time() - train_start, 1)
        trainer.save_model(cfg.output_dir)
        tokenizer.save_pretrained(cfg.output_dir)
        after = _evaluate_on_main(trainer, tokenizer, splits, client, cfg) if splits else None
        counts = torch.tensor([reward.scored_total, reward.infra_total], device=trainer.accelerator.device)
        summary["scored_items"], summary["infra_errors"] = (
            int(v) for v in trainer.accelerator.reduce(counts, reduction="sum").tolist()
        )
    if before and after:
        summary.update(summarise(before, after, seed=cfg.seed))
    return finish_run(summary, run_dir, algo="GRPO", started=started)


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point: ``accelerate launch train/grpo.py [--config YAML] [--field value ...]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(
        GRPOScriptConfig, list(sys.argv[1:] if argv is None else argv), defaults=script_defaults()
    )
    summary = train(cfg)
    if is_main():
        print_summary(summary, algo="GRPO")
    return summary


if __name__ == "__main__":
    main()
