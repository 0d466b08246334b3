"""Small deliberate bugs in a golden design, to check that co-simulation can tell them apart.

Three kinds, each a one-token edit in the module body (never in the port list, a bit range or a
``for`` header, where an edit would only break compilation or loop forever):

- ``operator``: flip an operator (``+``↔``-``, ``&``→``|``, ``==``↔``!=``, ``<<``↔``>>`` …)
  or drop a ``~``;
- ``constant``: change a numeric literal (``4'd9`` → ``4'd8``, ``1'b1`` → ``1'b0``);
- ``reset``: make the reset condition never true (``if (rst)`` → ``if (1'b0)``);
- ``signal``: read the wrong input (one use of an input replaced by another input of the same
  width, e.g. ``sel ? in1 : in0`` → ``sel ? in0 : in0``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"(?P<num>\d+'[sS]?[bBdDhH][0-9a-fA-F_xXzZ]+|\b\d+\b)"
    r"|(?P<id>[A-Za-z_$][A-Za-z0-9_$]*)"
    r"|(?P<op><<<|>>>|<<|>>|<=|>=|==|!=|&&|\|\||~\^|[-+&|^~<>?:!])"
    r"|(?P<open>[\[(])|(?P<close>[\])])"
)

_FLIPS = {
    "+": "-",
    "-": "+",
    "&": "|",
    "|": "&",
    "^": "|",
    "~^": "^",
    "==": "!=",
    "!=": "==",
    "<": ">",
    ">": "<",
    "<<": ">>",
    ">>": "<<",
    ">>>": ">>",
    "&&": "||",
    "||": "&&",
    "~": "",
}


@dataclass(frozen=True)
class Mutant:
    """One edited copy of a design."""

    kind: str  # "operator" | "constant" | "reset"
    where: str  # e.g. "line 7: '+' -> '-'"
    code: str


def _body_start(code: str) -> int:
    """Offset just after the ANSI port list (``);``), so header edits are never proposed."""
    match = re.search(r"\)\s*;", code)
    return match.end() if match else 0


def _changed_literal(text: str) -> str | None:
    match = re.fullmatch(r"(\d+)'([sS]?)([bBdDhH])([0-9a-fA-F_]+)", text)
    if match is None:
        return str(int(text) + 1) if text.isdigit() else None
    width, signed, base, digits = match.groups()
    radix = {"b": 2, "d": 10, "h": 16}[base.lower()]
    value = int(digits.replace("_", ""), radix)
    new = (value + 1) % (1 << int(width)) if value == 0 else value - 1
    shown = format(new, "b") if radix == 2 else format(new, "x") if radix == 16 else str(new)
    return f"{width}'{signed}{base}{shown}"


def _sites(code: str) -> list[tuple[str, int, int, str]]:
    """Every (kind, start, end, replacement) edit allowed in ``code``."""
    sites = []
    depth_bracket = 0
    in_for = False
    paren_depth = 0
    start = _body_start(code)
    previous = ""
    for match in _TOKEN.finditer(code, start):
        kind, text = match.lastgroup, match.group()
        if kind == "open":
            depth_bracket += text == "["
            paren_depth += text == "("
        elif kind == "close":
            depth_bracket -= text == "]" and depth_bracket > 0
            paren_depth -= text == ")" and paren_depth > 0
            if in_for and paren_depth == 0:
                in_for = False
        elif kind == "id" and text == "for":
            in_for = True
        guarded = depth_bracket > 0 or in_for
        if not guarded and kind == "op" and text in _FLIPS and not (text == "<=" or previous == "("):
            sites.append(("operator", match.start(), match.end(), _FLIPS[text]))
        if not guarded and kind == "num":
            new = _changed_literal(text)
            if new is not None and new != text:
                sites.append(("constant", match.start(), match.end(), new))
        previous = text
    for match in re.finditer(r"if \((rst|!rst_n)\)", code[start:]):
        sites.append(("reset", start + match.start(1), start + match.end(1), "1'b0"))
    return sites + _signal_sites(code, start)


_INPUT = re.compile(r"\binput\s+(?:wire\s+)?(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][A-Za-z0-9_]*)")


def _signal_sites(code: str, start: int) -> list[tuple[str, int, int, str]]:
    """Uses of an input in the body that could read another input of the same width instead."""
    widths: dict[str, int] = {}
    for msb, lsb, name in _INPUT.findall(code[:start]):
        widths[name] = abs(int(msb) - int(lsb)) + 1 if msb else 1
    skip = {"clk", "rst", "rst_n"}
    sites = []
    for match in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", code[start:]):
        name = match.group()
        if name not in widths or name in skip:
            continue
        for other, width in widths.items():
            if other != name and other not in skip and width == widths[name]:
                sites.append(("signal", start + match.start(), start + match.end(), other))
                break
    return sites


def _line_of(code: str, offset: int) -> int:
    return code.count("\n", 0, offset) + 1


def all_mutants(code: str) -> list[Mutant]:
    """Every single-edit mutant of ``code``, in source order (duplicates removed)."""
    out: dict[str, Mutant] = {}
    for kind, begin, end, new in _sites(code):
        edited = code[:begin] + new + code[end:]
        if edited != code and edited not in out:
            where = f"line {_line_of(code, begin)}: {code[begin:end]!r} -> {new!r}"
            out[edited] = Mutant(kind, where, edited)
    return list(out.values())


def pick_mutants(code: str, count: int, seed: str) -> list[Mutant]:
    """Up to ``count`` mutants, one per kind first (reset, operator, constant, signal), chosen by ``seed``."""
    rng = random.Random(seed)
    pool = all_mutants(code)
    rng.shuffle(pool)
    chosen: list[Mutant] = []
    for kind in ("reset", "operator", "constant", "signal"):
        match = next((m for m in pool if m.kind == kind and m not in chosen), None)
        if match is not None and len(chosen) < count:
            chosen.append(match)
    for mutant in pool:
        if len(chosen) >= count:
            break
        if mutant not in chosen:
            chosen.append(mutant)
    return chosen
