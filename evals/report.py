"""Markdown report and PNG plot of an evaluation summary (``summary.json`` as written by ``evals run``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _suite_table(suites: dict[str, Any]) -> list[str]:
    ks = sorted({int(k) for s in suites.values() for k in s["pass_at_k_all_problems"]})
    head = (
        ["suite", "problems", "n"]
        + [f"pass@{k} all" for k in ks]
        + [f"pass@{k} w/o errata" for k in ks]
        + ["errata (solved)", "infra errors"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in suites.items():
        row = [name, str(s["problems"]), str(s["samples_per_problem"])]
        row += [_fmt(s["pass_at_k_all_problems"].get(str(k))) for k in ks]
        row += [_fmt(s["pass_at_k_excluding_errata"].get(str(k))) for k in ks]
        row += [f"{len(s['errata'])} ({len(s['errata_solved'])})", str(s["infra_errors"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _status_table(suites: dict[str, Any]) -> list[str]:
    statuses = sorted({st for s in suites.values() for st in s["status_counts"]})
    lines = ["| suite | " + " | ".join(statuses) + " |", "|---|" + "---|" * len(statuses)]
    for name, s in suites.items():
        lines.append(
            f"| {name} | " + " | ".join(str(s["status_counts"].get(st, 0)) for st in statuses) + " |"
        )
    return lines


def _ppa_section(ppa: dict[str, Any]) -> list[str]:
    if not ppa or not ppa.get("designs"):
        return ["No passing design was compared with its golden."]
    counts = ppa["counts"]
    lines = [
        f"Designs compared: {counts['compared']} (best passing sample per design, synthesised like the golden).",
        "",
        "| metric | beats golden | ties | worse |",
        "|---|---|---|---|",
    ]
    for metric in ("area", "delay", "power", "product"):
        lines.append(
            f"| {metric} | {counts[f'beats_{metric}']} | {counts.get(f'ties_{metric}', 0)} | "
            f"{counts.get(f'worse_{metric}', 0)} |"
        )
    lines += [
        "",
        "| design | area ratio | delay ratio | power ratio | product ratio |",
        "|---|---|---|---|---|",
    ]
    for task_id, design in sorted(ppa["designs"].items()):
        ratio = design.get("ratio", {})
        lines.append(
            f"| {task_id} | "
            + " | ".join(
                "—" if ratio.get(m) is None else f"{ratio[m]:.3f}"
                for m in ("area", "delay", "power", "product")
            )
            + " |"
        )
    if ppa.get("errors"):
        lines += [
            "",
            f"PPA could not be measured for {len(ppa['errors'])} designs: "
            + ", ".join(sorted(ppa["errors"])[:20]),
        ]
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    """The report text: pass@k table (with and without errata), statuses, errata, PPA vs golden."""
    suites = summary["suites"]
    headline = "without errata" if summary.get("exclude_errata") else "over all problems"
    lines = ["# Evaluation report", ""]
    source = summary.get("source", {})
    if source.get("model"):
        lines.append(
            f"Model: `{source['model']}`"
            + (f" on base `{source['base']}`" if source.get("base") else "")
            + f", n={source['n']}, temperature={source['temperature']}, prompts: {source['prompt_style']}."
        )
    elif source.get("samples"):
        lines.append(f"Samples graded from `{source['samples']}`.")
    lines += ["", f"## pass@k (%, unbiased estimator; headline {headline})", ""] + _suite_table(suites)
    lines += ["", "## Statuses (samples)", ""] + _status_table(suites)
    lines += [
        "",
        "## Known errata (graded, reported; excluded from denominators only with --exclude-errata)",
        "",
    ]
    for s in suites.values():
        for task_id, why in s["errata"].items():
            solved = "solved" if task_id in s["errata_solved"] else "not solved"
            lines.append(f"- `{task_id}`: {why} ({solved})")
    if not any(s["errata"] for s in suites.values()):
        lines.append("None among the selected problems.")
    lines += ["", "## PPA vs golden", ""] + _ppa_section(summary.get("ppa_vs_golden", {}))
    timings = summary.get("timings", {})
    if timings:
        lines += ["", "Timings: " + ", ".join(f"{k} {v}" for k, v in timings.items())]
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> Path:
    """PNG with pass@k per suite (left) and the PPA ratio sample/golden per design (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = summary["suites"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    ks = sorted({int(k) for s in suites.values() for k in s["pass_at_k_all_problems"]})
    width = 0.8 / max(1, len(ks))
    for i, k in enumerate(ks):
        values = [100 * (s["pass_at_k"].get(str(k)) or 0.0) for s in suites.values()]
        left.bar([x + i * width for x in range(len(suites))], values, width, label=f"pass@{k}")
    left.set_xticks([x + width * (len(ks) - 1) / 2 for x in range(len(suites))])
    left.set_xticklabels(list(suites), rotation=20, ha="right", fontsize=8)
    left.set_ylabel("%")
    left.set_ylim(0, 100)
    left.set_title("pass@k per suite")
    left.legend()
    designs = summary.get("ppa_vs_golden", {}).get("designs", {})
    names = sorted(designs)
    ratios = [designs[n].get("ratio", {}).get("product") for n in names]
    shown = [(n.split("/", 1)[-1], r) for n, r in zip(names, ratios, strict=True) if r is not None]
    if shown:
        logs = [math.log2(r) for _, r in shown]
        colors = ["tab:green" if v < -1e-9 else "tab:red" if v > 1e-9 else "tab:gray" for v in logs]
        right.barh(range(len(shown)), logs, color=colors)
        right.plot(logs, range(len(shown)), "k|", markersize=8)  # ties stay visible as a tick at 0
        right.set_yticks(range(len(shown)))
        right.set_yticklabels([n for n, _ in shown], fontsize=6)
        right.axvline(0.0, color="black", linewidth=0.8)
        right.set_xlabel("log2(sample / golden)")
    else:
        right.text(0.5, 0.5, "no PPA comparison", ha="center", va="center")
    right.set_title("area×delay×power vs golden (left of 0 beats the golden)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out_dir: Path, summary: dict[str, Any], *, plot_png: bool = True) -> Path:
    """Write ``report.md`` (and ``report.png`` unless ``plot_png`` is false) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_markdown(summary)
    if plot_png:
        plot(summary, out_dir / "report.png")
        text += "\n![pass@k and PPA](report.png)\n"
    path = out_dir / "report.md"
    path.write_text(text)
    return path
