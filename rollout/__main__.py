"""Batch sampling CLI.

    python -m rollout sample --model CKPT [--base BASE] --tasks TASKS.jsonl --n N --out OUT.jsonl \\
        [--backend auto|hf|vllm] [--style chat|plain|think|raw] [--temperature T] [--max-new-tokens M]

Writes one Completion record per line: ``{"task_id", "completion", "sample_index"}`` (task order, then
sample order), ready for ``python -m rewards score`` or ``python -m evals run --samples``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from rollout.model import check_checkpoint
from rollout.sampling import add_sampling_args, sample_completions, sampling_config


def read_specs(path: Path) -> list[tuple[str, str]]:
    """``(id, prompt)`` of every task in a JSONL (or parquet) task file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path, columns=["id", "prompt"]).to_pylist()
    else:
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    specs = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("id"), str) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"{path}: record {number} needs string fields 'id' and 'prompt'")
        specs.append((row["id"], row["prompt"]))
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rollout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="draw completions for a task file")
    sample.add_argument("--model", required=True, help="checkpoint dir (full, merged, or LoRA adapter)")
    sample.add_argument("--tasks", required=True, type=Path, help="JSONL/parquet of Task records")
    sample.add_argument("--out", required=True, type=Path, help="output JSONL of Completion records")
    sample.add_argument("--style", default="chat", help="prompt style: chat | plain | think | raw")
    add_sampling_args(sample)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_checkpoint(args.model)
        specs = read_specs(args.tasks)
        config = sampling_config(args, args.style)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not specs:
        print(f"warning: task file {args.tasks} holds no tasks; nothing to sample", file=sys.stderr)
    with tqdm(total=len(specs) * args.n, desc="sampling", unit="seq") as bar:
        completions = sample_completions(
            args.model,
            [p for _, p in specs],
            config,
            base=args.base,
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            progress=bar.update,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as handle:
        for (task_id, _), texts in zip(specs, completions, strict=True):
            for index, text in enumerate(texts):
                handle.write(
                    json.dumps({"task_id": task_id, "completion": text, "sample_index": index}) + "\n"
                )
    print(f"wrote {sum(len(c) for c in completions)} completions to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
