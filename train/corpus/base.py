"""Building blocks of task families: ports, reset styles, spec text and the :class:`Family` record.

A family turns one parameter dict into a :class:`Design`: a golden module, the spec phrasings that
describe it, and the meta the co-simulation needs. Every spec lists the ports in one fixed format
and states every number the golden depends on (widths, constants, reset polarity and timing), so
that any design meeting the spec matches the golden on every output the golden defines.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TOP = "top_module"
SPLITS = ("train", "val", "test", "test_ood")
# Share of each family's training-range designs held out as unseen instances (val for choosing
# hyper-parameters, test for the learning target); the rest is trained on.
INSTANCE_SHARE = {"val": 0.10, "test": 0.15}


@dataclass(frozen=True)
class Port:
    """One port as the spec lists it and the golden declares it."""

    direction: str  # "input" | "output"
    name: str
    width: int = 1
    note: str = ""
    reg: bool = False  # golden declares ``output reg``

    def declaration(self) -> str:
        # "[W-1:0]" spells the width as the spec states it: a copy, not a subtraction, for a model.
        rng = f" [{self.width}-1:0]" if self.width > 1 else ""
        kind = " reg" if self.reg else ""
        return f"{self.direction}{kind}{rng} {self.name}"

    def listing(self) -> str:
        size = f"{self.width}-bit" if self.width > 1 else "1-bit"
        note = f": {self.note}" if self.note else ""
        return f"- {self.direction} {self.name} ({size}){note}"


@dataclass(frozen=True)
class Design:
    """One concrete design: what the generator turns into tasks (one per phrasing)."""

    family: str
    slug: str
    prompts: tuple[str, ...]
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """A parameterised task family.

    ``grid()`` lists every parameter dict; ``split_of(params)`` says which split a design belongs
    to (held-out parameter ranges); ``build(params)`` makes the :class:`Design`.
    """

    name: str
    kind: str  # "comb" | "seq"
    grid: Callable[[], list[dict[str, Any]]]
    split_of: Callable[[dict[str, Any]], str]
    build: Callable[[dict[str, Any]], Design]


def module(ports: Sequence[Port], body: str) -> str:
    """Golden source: ANSI header, one port per line, then ``body`` (already indented)."""
    header = ",\n".join(f"  {p.declaration()}" for p in ports)
    return f"module {TOP}(\n{header}\n);\n{body.rstrip()}\nendmodule\n"


def port_list(ports: Sequence[Port]) -> str:
    return "\n".join(p.listing() for p in ports)


INTROS = (
    "Implement the Verilog module `{top}`. {what}",
    "Write a Verilog module named `{top}` that {verb}.",
    "Design `{top}`, {noun}.",
)


def prompts(
    what: str, verb: str, noun: str, ports: Sequence[Port], details: Sequence[str]
) -> tuple[str, ...]:
    """The spec phrasings of one design: three openings, the port list, then the details.

    ``what`` is a full sentence, ``verb`` a predicate ("adds two numbers"), ``noun`` a noun phrase
    ("an 8-bit adder"); ``details`` are the sentences that pin the behaviour down.
    """
    body = "\n".join(details)
    out = []
    for intro in INTROS:
        head = intro.format(top=TOP, what=what, verb=verb, noun=noun)
        text = f"{head}\n\nPorts:\n{port_list(ports)}\n\n{body}".rstrip()
        out.append(re.sub(r"\b([Aa]) (?=(?:8|11|18|8\d)\b)", r"\1n ", text))
    return tuple(out)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def article(text: str) -> str:
    """``text`` with "a" or "an" in front ("an 8-bit adder", "a 16-bit adder")."""
    spoken_vowel = text[:1] in "aeiou" or text.startswith(
        ("8", "11", "18", "80", "81", "82", "83", "84", "85", "86", "87", "88", "89")
    )
    return f"{'an' if spoken_vowel else 'a'} {text}"


def reg(name: str, width: int) -> str:
    """``  reg [w-1:0] name;`` (or ``  reg name;`` for one bit), the width spelled as in the spec."""
    return f"  reg [{width}-1:0] {name};\n" if width > 1 else f"  reg {name};\n"


def clog2(n: int) -> int:
    """Bits needed to count 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


def bits(n: int) -> int:
    """Bits needed to hold the value n (at least 1)."""
    return max(1, n.bit_length())


def stable_hash(*parts: Any) -> int:
    """A run-independent hash (Python's ``hash`` is salted per process)."""
    return int(hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def by_value(key: str, val: Sequence[Any], test: Sequence[Any]) -> Callable[[dict[str, Any]], str]:
    """Split rule: designs whose ``params[key]`` is in ``val``/``test`` are held out there."""

    def split_of(params: dict[str, Any]) -> str:
        if params[key] in test:
            return "test"
        if params[key] in val:
            return "val"
        return "train"

    return split_of


def only(split: str) -> Callable[[dict[str, Any]], str]:
    """Split rule for a whole held-out family."""
    return lambda params: split


def assign_splits(family: Family) -> list[tuple[dict[str, Any], str]]:
    """Every design of ``family`` with the split it belongs to.

    Designs outside the training ranges (``split_of`` says val or test: unseen widths, moduli, ...)
    and whole held-out families go to ``test_ood``. The designs inside the training ranges are ranked
    by a stable hash of their parameters and :data:`INSTANCE_SHARE` of them are held out as unseen
    instances (``val``, ``test``); the rest is ``train``. The split of a design depends only on its
    family and parameters, never on the seed or the corpus size.
    """
    grid = family.grid()
    in_range = [p for p in grid if family.split_of(p) == "train"]
    ranked = sorted(in_range, key=lambda p: stable_hash("instance", family.name, _params_key(p)))
    n_test = max(1, round(len(ranked) * INSTANCE_SHARE["test"])) if len(ranked) >= 3 else 0
    n_val = max(1, round(len(ranked) * INSTANCE_SHARE["val"])) if len(ranked) >= 6 else 0
    held = {_params_key(p): "test" for p in ranked[:n_test]}
    held |= {_params_key(p): "val" for p in ranked[n_test : n_test + n_val]}
    return [
        (p, held.get(_params_key(p), "train") if family.split_of(p) == "train" else "test_ood") for p in grid
    ]


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def normalised_golden(source: str) -> str:
    """A golden with comments and whitespace removed: equal for designs that differ only in layout."""
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    source = re.sub(r"//[^\n]*", " ", source)
    return re.sub(r"\s+", "", source)


# --- clocking and reset ------------------------------------------------------------------------

RESET_STYLES = ("sync_high", "sync_low", "async_high", "async_low")


@dataclass(frozen=True)
class Reset:
    """How a sequential golden resets: name, polarity, synchronous or not."""

    style: str

    @property
    def active_high(self) -> bool:
        return self.style.endswith("high")

    @property
    def sync(self) -> bool:
        return self.style.startswith("sync")

    @property
    def name(self) -> str:
        return "rst" if self.active_high else "rst_n"

    @property
    def cond(self) -> str:
        return f"if ({self.name})" if self.active_high else f"if (!{self.name})"

    @property
    def always(self) -> str:
        if self.sync:
            return "always @(posedge clk)"
        edge = "posedge" if self.active_high else "negedge"
        return f"always @(posedge clk or {edge} {self.name})"

    def ports(self) -> list[Port]:
        level = "active-high" if self.active_high else "active-low"
        timing = "synchronous" if self.sync else "asynchronous"
        return [Port("input", "clk", note="clock"), Port("input", self.name, note=f"{timing} {level} reset")]

    def sentence(self, effect: str) -> str:
        """The spec sentence for this reset; ``effect`` says what reset does ("q becomes 0")."""
        level = "1" if self.active_high else "0"
        if self.sync:
            return (
                f"Everything happens on the rising edge of clk. {self.name} is a synchronous reset, "
                f"active when {level}: at a rising edge of clk where {self.name} = {level}, {effect}; "
                "reset has priority over every other input and acts only at clock edges."
            )
        return (
            f"Everything happens on the rising edge of clk, except reset. {self.name} is an asynchronous "
            f"reset, active when {level}: as soon as {self.name} = {level}, {effect}, without waiting "
            "for a clock edge; reset has priority over every other input."
        )

    def meta(self) -> dict[str, Any]:
        return {
            "clock": "clk",
            "reset": self.name,
            "reset_active": int(self.active_high),
            "reset_sync": self.sync,
        }

    def slug(self) -> str:
        return {"sync_high": "srst", "sync_low": "srstn", "async_high": "arst", "async_low": "arstn"}[
            self.style
        ]


def width_grid(widths: Sequence[int], **axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Cartesian product of ``widths`` (key ``w``) and the other ``axes``."""
    grid: list[dict[str, Any]] = [{"w": w} for w in widths]
    for key, values in axes.items():
        grid = [{**g, key: v} for g in grid for v in values]
    return grid
