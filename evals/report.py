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
    """pass@k per suite, strict and official side by side (all problems, then without errata)."""
    ks = sorted({int(k) for s in suites.values() for k in s["pass_at_k_all_problems"]})
    head = ["suite", "problems sampled", "n"]
    for k in ks:
        head += [f"pass@{k} strict", f"pass@{k} official"]
    for k in ks:
        head += [f"pass@{k} strict w/o errata", f"pass@{k} official w/o errata"]
    head += [
        "strict passes formally equivalent (proved / bounded / unknown / not run)",
        "verdicts differ (problems)",
        "strict falls back",
        "errata (solved)",
        "infra errors",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in suites.items():
        official = s.get("official", {})
        row = [name, s.get("coverage", str(s["problems"])), str(s["samples_per_problem"])]
        for k in ks:
            row += [
                _fmt(s["pass_at_k_all_problems"].get(str(k))),
                _fmt(official.get("pass_at_k_all_problems", {}).get(str(k))),
            ]
        for k in ks:
            row += [
                _fmt(s["pass_at_k_excluding_errata"].get(str(k))),
                _fmt(official.get("pass_at_k_excluding_errata", {}).get(str(k))),
            ]
        formal = s.get("formal", {})
        row += [
            " / ".join(str(formal.get(kind, 0)) for kind in ("proved", "bounded", "unknown", "not_run")),
            str(len(s.get("verdicts_differ", {}))),
            str(len(s.get("strict_fallback", []))),
            f"{len(s['errata'])} ({len(s['errata_solved'])})",
            str(s["infra_errors"]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _headlines(suites: dict[str, Any]) -> list[str]:
    """One line per suite: coverage, then the headline pass@1 (lowest k) under both verdicts."""
    lines = []
    for name, s in suites.items():
        k = min(s["pass_at_k"], key=int, default=None)
        official = s.get("official", {}).get("pass_at_k", {})
        figures = (
            f"pass@{k} strict {_fmt(s['pass_at_k'][k])} %, official {_fmt(official.get(k))} %"
            if k is not None
            else "no pass@k (no gradable samples)"
        )
        lines.append(f"- **{name}**: {s.get('coverage', str(s['problems']) + ' problems')}; {figures}")
    return lines


def _coverage_section(summary: dict[str, Any]) -> list[str]:
    selection = summary.get("selection") or {}
    lines = []
    if selection.get("limited"):
        chosen = [f"--problems {selection['problems']}" if selection.get("problems") else ""]
        chosen += [f"--limit {selection['limit']}" if selection.get("limit") else ""]
        lines.append(
            f"Run limited on purpose ({' '.join(c for c in chosen if c)}): pass@k is over the sampled "
            "problems only."
        )
    for name, s in summary["suites"].items():
        line = f"- {name}: {s.get('coverage', '')}"
        if s.get("unsampled"):
            how = "left out of pass@k" if s.get("limited") else "counted as unsolved"
            shown = ", ".join(f"`{t.split('/', 1)[-1]}`" for t in s["unsampled"][:40])
            more = f" and {len(s['unsampled']) - 40} more" if len(s["unsampled"]) > 40 else ""
            line += f"; **{len(s['unsampled'])} selected problems have no sample ({how})**: {shown}{more}"
        lines.append(line)
    return lines


def _differ_section(suites: dict[str, Any]) -> list[str]:
    """Samples the official bench passes but the strict verdict fails (or the reverse), per problem."""
    lines = []
    for s in suites.values():
        for task_id, spots in s.get("verdicts_differ", {}).items():
            indices = ", ".join(str(spot["sample_index"]) for spot in spots)
            why = spots[0]["why"].replace("\n", " ")[:200]
            lines.append(f"- `{task_id}`: samples {indices} pass official, fail strict. First: {why}")
    if not lines:
        lines.append("None: every sample has the same verdict under both.")
    fallback = [t for s in suites.values() for t in s.get("strict_fallback", [])]
    if fallback:
        lines += [
            "",
            "No usable reference, so the strict verdict is the official one for: "
            + ", ".join(f"`{t}`" for t in fallback),
        ]
    return lines


def _known_weak_section(suites: dict[str, Any]) -> list[str]:
    lines = []
    for s in suites.values():
        for task_id, why in s.get("weak_bench", {}).items():
            lines.append(f"- `{task_id}`: {why}")
        for task_id, why in s.get("module_names", {}).items():
            lines.append(f"- `{task_id}`: {why}")
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
    lines += [""] + _headlines(suites)
    lines += ["", "## Coverage", ""] + _coverage_section(summary)
    lines += [
        "",
        f"## pass@k (%, unbiased estimator; headline {headline})",
        "",
        "strict: the official bench passes AND the co-simulation against the reference passes (no x/z "
        "output where the reference's is defined) AND the formal level, where it runs, did not refute "
        "it. official: the benchmark's own bench, judged from the harness-owned trace.",
        "",
    ] + _suite_table(suites)
    lines += ["", "## Where the verdicts differ (weak spots of the official benches)", ""]
    lines += _differ_section(suites)
    known = _known_weak_section(suites)
    if known:
        lines += ["", "## Known weak benches and name disagreements among the selected problems", ""] + known
    lines += ["", "## Statuses (samples, official grading)", ""] + _status_table(suites)
    lines += [
        "",
        "## Known errata (graded, reported; excluded from denominators only with --exclude-errata)",
        "",
    ]
    for s in suites.values():
        for task_id, why in s["errata"].items():
            strict = "solved" if task_id in s["errata_solved"] else "not solved"
            official = "solved" if task_id in s.get("errata_solved_official", []) else "not solved"
            lines.append(f"- `{task_id}`: {why} (strict: {strict}; official: {official})")
    if not any(s["errata"] for s in suites.values()):
        lines.append("None among the selected problems.")
    lines += ["", "## PPA vs golden", ""] + _ppa_section(summary.get("ppa_vs_golden", {}))
    timings = summary.get("timings", {})
    if timings:
        lines += ["", "Timings: " + ", ".join(f"{k} {v}" for k, v in timings.items())]
    return "\n".join(lines) + "\n"


def _pass_bars(axis, suites: dict[str, Any]) -> None:
    """Headline pass@k per suite, strict and official side by side, each bar labelled with its value."""
    ks = sorted({int(k) for s in suites.values() for k in s["pass_at_k"]})
    series = [(f"pass@{k} {verdict}", k, verdict) for k in ks for verdict in ("strict", "official")]
    width = 0.8 / max(1, len(series))
    for i, (label, k, verdict) in enumerate(series):
        values = [
            (s if verdict == "strict" else s.get("official", s))["pass_at_k"].get(str(k))
            for s in suites.values()
        ]
        xs = [x + i * width for x in range(len(suites))]
        bars = axis.bar(
            xs,
            [100 * (v or 0.0) for v in values],
            width,
            label=label,
            hatch="//" if verdict == "official" else None,
            edgecolor="black",
            linewidth=0.5,
        )
        axis.bar_label(
            bars, labels=["—" if v is None else f"{100 * v:.1f}" for v in values], fontsize=6, padding=1
        )
    axis.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(suites))])
    axis.set_xticklabels(
        [f"{name}\n{s.get('coverage', '')}" for name, s in suites.items()],
        rotation=20,
        ha="right",
        fontsize=7,
    )
    axis.set_ylabel("%")
    axis.set_ylim(0, 108)
    axis.set_title("pass@k per suite: strict vs official")
    axis.legend(fontsize=7)


def plot(summary: dict[str, Any], path: Path) -> Path:
    """PNG with pass@k per suite, both verdicts (left) and the PPA ratio sample/golden per design (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2))
    _pass_bars(left, summary["suites"])
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
