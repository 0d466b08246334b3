"""Sequential task families: counters, shift registers, edge detectors, dividers, LFSRs, FSMs, FIFOs."""

from __future__ import annotations

from typing import Any

from train.corpus.base import (
    RESET_STYLES,
    Design,
    Family,
    Port,
    Reset,
    article,
    by_value,
    clog2,
    module,
    only,
    ordinal,
    prompts,
    reg,
    stable_hash,
    width_grid,
)

RESETS = RESET_STYLES
split_by_width = by_value("w", (5, 10), (6, 12))


def _seq_body(reset: Reset, on_reset: str, logic: str) -> str:
    """``always`` block: reset assignments, then ``logic`` (lines already indented by 6)."""
    return (
        f"  {reset.always} begin\n    {reset.cond} begin\n{on_reset}    end else begin\n"
        f"{logic}    end\n  end\n"
    )


def _ind(*lines: str, depth: int = 6) -> str:
    return "".join(" " * depth + line + "\n" for line in lines)


def _counter(p: dict[str, Any]) -> Design:
    w, kind, en, load, reset = p["w"], p["kind"], p["en"], p["load"], Reset(p["reset"])
    ports = reset.ports()
    if load:
        ports += [Port("input", "load", note="load d into q"), Port("input", "d", w)]
    if en:
        ports.append(Port("input", "en", note="count enable"))
    if kind == "updown":
        ports.append(Port("input", "up", note="1 = count up, 0 = count down"))
    ports.append(Port("output", "q", w, reg=True))
    step = {
        "up": f"q <= q + {w}'d1;",
        "down": f"q <= q - {w}'d1;",
        "updown": f"q <= up ? q + {w}'d1 : q - {w}'d1;",
    }[kind]
    lines = [f"if (en) {step}" if en else step]
    if load:
        lines = ["if (load) q <= d;", "else " + lines[0]]
    body = _seq_body(reset, _ind(f"q <= {w}'d0;"), _ind(*lines))
    what = {
        "up": "counts up by 1",
        "down": "counts down by 1",
        "updown": "counts up by 1 when up is 1 and down by 1 when up is 0",
    }[kind]
    details = [reset.sentence("q becomes 0")]
    rule = f"Otherwise, at each rising edge q {what}, wrapping around modulo 2^{w}"
    if en:
        rule += ", but only when en is 1 (when en is 0, q holds its value)"
    details.append(rule + ".")
    if load:
        details.append(
            "When load is 1, q takes the value of d at the rising edge instead"
            + (", whatever en is." if en else ".")
        )
    return Design(
        "counter",
        f"{kind}_w{w}{'_en' if en else ''}{'_load' if load else ''}_{reset.slug()}",
        prompts(
            f"It is a {w}-bit {kind} counter.",
            f"implements a {w}-bit {kind} counter",
            article(f"{w}-bit {kind} counter"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _mod_counter(p: dict[str, Any]) -> Design:
    m, en, reset = p["m"], p["en"], Reset(p["reset"])
    w = clog2(m)
    ports = reset.ports() + ([Port("input", "en", note="count enable")] if en else [])
    ports.append(Port("output", "q", w, reg=True))
    step = f"q <= (q == {w}'d{m - 1}) ? {w}'d0 : q + {w}'d1;"
    body = _seq_body(reset, _ind(f"q <= {w}'d0;"), _ind(f"if (en) {step}" if en else step))
    rule = f"Otherwise, at each rising edge q counts 0, 1, ..., {m - 1}, then back to 0"
    rule += " (it only advances when en is 1; when en is 0 it holds)." if en else "."
    details = [reset.sentence("q becomes 0"), rule]
    return Design(
        "mod_counter",
        f"m{m}{'_en' if en else ''}_{reset.slug()}",
        prompts(
            f"It is a modulo-{m} counter.", f"counts modulo {m}", f"a modulo-{m} counter", ports, details
        ),
        module(ports, body),
        reset.meta(),
    )


def _shift_register(p: dict[str, Any]) -> Design:
    w, left, en, reset = p["w"], p["left"], p["en"], Reset(p["reset"])
    ports = reset.ports() + [Port("input", "sin", note="serial input")]
    if en:
        ports.append(Port("input", "en", note="shift enable"))
    ports.append(Port("output", "q", w, reg=True))
    if w == 1:
        step = "q <= sin;"
    else:
        step = f"q <= {{q[{w - 2}:0], sin}};" if left else f"q <= {{sin, q[{w - 1}:1]}};"
    body = _seq_body(reset, _ind(f"q <= {w}'d0;"), _ind(f"if (en) {step}" if en else step))
    if left:
        move = (
            f"q shifts left by one: q[0] takes sin and q[i] takes the old q[i-1]; the old q[{w - 1}] is lost"
        )
    else:
        move = (
            f"q shifts right by one: q[{w - 1}] takes sin and q[i] takes the old q[i+1]; the old q[0] is lost"
        )
    rule = f"Otherwise, at each rising edge{' where en is 1' if en else ''}, {move}."
    details = [reset.sentence("q becomes 0"), rule + (" When en is 0, q holds." if en else "")]
    return Design(
        "shift_register",
        f"w{w}_{'left' if left else 'right'}{'_en' if en else ''}_{reset.slug()}",
        prompts(
            f"It is a {w}-bit serial-in shift register.",
            f"implements a {w}-bit shift register",
            article(f"{w}-bit shift register"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


_EDGE_WORD = {"rise": "rising", "fall": "falling", "both": "rising and falling"}


def _edge_detector(p: dict[str, Any]) -> Design:
    w, edge, registered, reset = p["w"], p["edge"], p["registered"], Reset(p["reset"])
    ports = reset.ports() + [Port("input", "d", w), Port("output", "pulse", w, reg=bool(registered))]
    expr = {"rise": "d & ~prev", "fall": "~d & prev", "both": "d ^ prev"}[edge]
    zero = f"{w}'d0"
    word = {"rise": "rises (was 0, is now 1)", "fall": "falls (was 1, is now 0)", "both": "changes value"}[
        edge
    ]
    scope = "Each bit of d is handled separately: " if w > 1 else ""
    if registered:
        body = _seq_body(
            reset, _ind(f"prev <= {zero};", f"pulse <= {zero};"), _ind("prev <= d;", f"pulse <= {expr};")
        )
        details = [
            reset.sentence("prev and pulse become 0"),
            f"The module keeps prev, the value of d sampled at the previous rising edge. {scope}at each rising "
            f"edge, pulse takes 1 where d {word} between prev and the d sampled now, else 0, and prev takes d. "
            "pulse is a register: it changes only at clock edges (and at reset).",
        ]
    else:
        body = _seq_body(reset, _ind(f"prev <= {zero};"), _ind("prev <= d;")) + f"  assign pulse = {expr};\n"
        details = [
            reset.sentence("prev becomes 0"),
            f"The module keeps prev, the value of d sampled at the previous rising edge (prev takes d at every "
            f"rising edge). {scope}pulse is combinational: it is 1 where d {word} relative to prev, "
            "i.e. it reacts to d within the same cycle.",
        ]
    decl = reg("prev", w)
    return Design(
        "edge_detector",
        f"{edge}_w{w}{'_reg' if registered else ''}_{reset.slug()}",
        prompts(
            f"It detects {_EDGE_WORD[edge]} edges of d.",
            f"detects {_EDGE_WORD[edge]} edges of {article(f'{w}-bit signal')}",
            article(f"{_EDGE_WORD[edge]}-edge detector"),
            ports,
            details,
        ),
        module(ports, decl + body),
        reset.meta(),
    )


def _clock_divider(p: dict[str, Any]) -> Design:
    n, reset = p["n"], Reset(p["reset"])
    half = n // 2
    ports = reset.ports() + [Port("output", "clk_out", reg=True)]
    if half == 1:
        body = _seq_body(reset, _ind("clk_out <= 1'b0;"), _ind("clk_out <= ~clk_out;"))
    else:
        k = clog2(half)
        body = reg("cnt", k) + _seq_body(
            reset,
            _ind(f"cnt <= {k}'d0;", "clk_out <= 1'b0;"),
            _ind(
                f"if (cnt == {k}'d{half - 1}) begin",
                f"  cnt <= {k}'d0;",
                "  clk_out <= ~clk_out;",
                "end else begin",
                f"  cnt <= cnt + {k}'d1;",
                "end",
            ),
        )
    details = [
        reset.sentence("clk_out becomes 0 and the cycle count restarts"),
        f"clk_out divides clk by {n}: it toggles at every {ordinal(half)} rising edge of clk, so the first toggle "
        f"(to 1) happens at the {ordinal(half)} rising edge after reset is released, giving a period of {n} clk "
        "cycles with a 50% duty cycle.",
    ]
    return Design(
        "clock_divider",
        f"div{n}_{reset.slug()}",
        prompts(
            f"It divides the clock by {n}.",
            f"divides clk by {n}",
            f"a divide-by-{n} clock divider",
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _tick(p: dict[str, Any]) -> Design:
    n, reset = p["n"], Reset(p["reset"])
    k = clog2(n)
    ports = reset.ports() + [Port("output", "tick")]
    body = reg("cnt", k) + _seq_body(
        reset, _ind(f"cnt <= {k}'d0;"), _ind(f"cnt <= (cnt == {k}'d{n - 1}) ? {k}'d0 : cnt + {k}'d1;")
    )
    body += f"  assign tick = cnt == {k}'d{n - 1};\n"
    details = [
        reset.sentence("the internal cycle count becomes 0"),
        f"A counter runs 0, 1, ..., {n - 1}, 0, ... advancing at every rising edge. tick is 1 while the count "
        f"is {n - 1} and 0 otherwise, so tick is high for one cycle in every {n}, first in the cycle after the "
        f"{ordinal(n - 1)} rising edge after reset is released.",
    ]
    return Design(
        "tick_generator",
        f"n{n}_{reset.slug()}",
        prompts(
            f"It produces a one-cycle tick every {n} clock cycles.",
            f"pulses tick once every {n} clock cycles",
            f"a divide-by-{n} tick generator",
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


_TAPS = {
    3: (2, 1),
    4: (3, 2),
    5: (4, 2),
    6: (5, 4),
    7: (6, 5),
    8: (7, 5, 4, 3),
    10: (9, 6),
    12: (11, 10, 9, 3),
    16: (15, 14, 12, 3),
}


def _lfsr(p: dict[str, Any]) -> Design:
    w, en, reset = p["w"], p["en"], Reset(p["reset"])
    taps = _TAPS[w]
    seed = p["seed"] % ((1 << w) - 1) + 1
    ports = reset.ports() + ([Port("input", "en", note="step enable")] if en else [])
    ports.append(Port("output", "q", w, reg=True))
    fb = " ^ ".join(f"q[{t}]" for t in taps)
    step = f"q <= {{q[{w - 2}:0], {fb}}};"
    body = _seq_body(reset, _ind(f"q <= {w}'d{seed};"), _ind(f"if (en) {step}" if en else step))
    details = [
        reset.sentence(f"q becomes {seed} (binary {seed:0{w}b})"),
        f"Otherwise, at each rising edge{' where en is 1' if en else ''}, q shifts left by one bit and the new "
        f"q[0] is the XOR of the old bits {', '.join(f'q[{t}]' for t in taps)}."
        + (" When en is 0, q holds." if en else ""),
    ]
    return Design(
        "lfsr",
        f"w{w}_s{seed}{'_en' if en else ''}_{reset.slug()}",
        prompts(
            f"It is a {w}-bit Fibonacci LFSR.",
            f"implements a {w}-bit linear-feedback shift register",
            article(f"{w}-bit LFSR"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _match(pattern: str, text: str) -> int:
    """Length of the longest prefix of ``pattern`` that ends ``text``."""
    for k in range(min(len(text), len(pattern)), -1, -1):
        if text.endswith(pattern[:k]):
            return k
    return 0


def _fsm_next(pattern: str, state: int, bit: str, overlap: bool, moore: bool) -> int:
    """Next state of a detector whose state counts the pattern bits matched so far.

    Moore machines have a state ``len(pattern)`` meaning "just detected"; Mealy machines leave
    the last matching state directly (to the longest proper border when overlapping, else to 0).
    """
    length = len(pattern)
    seen = (pattern if overlap else "") if state == length else pattern[:state]
    nxt = _match(pattern, seen + bit)
    if nxt == length and not moore:
        return _match(pattern, pattern[1:]) if overlap else 0
    return nxt


def _detector(p: dict[str, Any], moore: bool) -> Design:
    pattern, overlap, reset = p["pattern"], p["overlap"], Reset(p["reset"])
    length = len(pattern)
    states = length + 1 if moore else length
    k = clog2(states)
    ports = reset.ports() + [Port("input", "x", note="serial input bit")] + [Port("output", "z")]
    rows = []
    for s in range(states):
        n1 = _fsm_next(pattern, s, "1", overlap, moore)
        n0 = _fsm_next(pattern, s, "0", overlap, moore)
        rows.append(f"{k}'d{s}: state <= x ? {k}'d{n1} : {k}'d{n0};")
    body = f"  reg [{k - 1}:0] state;\n" + (
        f"  {reset.always} begin\n    {reset.cond} state <= {k}'d0;\n    else begin\n      case (state)\n"
        + "".join(f"        {r}\n" for r in rows[:-1])
        + f"        default: {rows[-1].split(': ', 1)[1]}\n      endcase\n    end\n  end\n"
    )
    if moore:
        body += f"  assign z = state == {k}'d{length};\n"
    else:
        body += f"  assign z = (state == {k}'d{length - 1}) && (x == 1'b{pattern[-1]});\n"
    overlap_text = (
        "Occurrences may overlap: bits of one detected occurrence can start the next."
        if overlap
        else "Occurrences may not overlap: after a detection, matching starts again from "
        "scratch with the next bit."
    )
    if moore:
        timing = (
            "This is a Moore machine: z is 1 for the one clock cycle that follows the rising edge at which "
            "the last bit of the sequence was sampled, and 0 otherwise."
        )
    else:
        timing = (
            "This is a Mealy machine: z is 1 (combinationally) during the cycle in which x carries the last "
            "bit of the sequence and the bits sampled at the previous rising edges complete it, and 0 "
            "otherwise."
        )
    details = [
        reset.sentence("the detector forgets every bit seen so far"),
        f"x is sampled at each rising edge of clk; the module detects the bit sequence {pattern} (first "
        f"bit {pattern[0]}, last bit {pattern[-1]}), counting only bits sampled after reset. {overlap_text}",
        timing,
    ]
    fam = "seq_detector_moore" if moore else "seq_detector_mealy"
    kind = "Moore" if moore else "Mealy"
    return Design(
        fam,
        f"p{pattern}_{'ov' if overlap else 'nov'}_{reset.slug()}",
        prompts(
            f"It is a {kind} sequence detector for {pattern}.",
            f"detects the sequence {pattern} on x ({kind} style)",
            article(f"{kind} detector for the sequence {pattern}"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _patterns(lengths: tuple[int, ...]) -> list[str]:
    return [
        format(v, f"0{n}b")
        for n in lengths
        for v in range(1 << n)
        if "0" in format(v, f"0{n}b") and "1" in format(v, f"0{n}b")
    ]


def _detector_split(p: dict[str, Any]) -> str:
    if len(p["pattern"]) < 5:
        return "train"
    return "val" if stable_hash(p["pattern"]) % 2 else "test"


def _detector_grid() -> list[dict[str, Any]]:
    return [
        {"pattern": s, "overlap": o, "reset": r} for s in _patterns((3, 4, 5)) for o in (0, 1) for r in RESETS
    ]


def _debouncer(p: dict[str, Any]) -> Design:
    n, reset = p["n"], Reset(p["reset"])
    k = clog2(n)
    ports = reset.ports() + [Port("input", "d", note="noisy input"), Port("output", "q", reg=True)]
    body = reg("cnt", k) + _seq_body(
        reset,
        _ind("q <= 1'b0;", f"cnt <= {k}'d0;"),
        _ind(
            f"if (d == q) cnt <= {k}'d0;",
            f"else if (cnt == {k}'d{n - 1}) begin",
            "  q <= d;",
            f"  cnt <= {k}'d0;",
            f"end else cnt <= cnt + {k}'d1;",
        ),
    )
    details = [
        reset.sentence("q becomes 0 and the count becomes 0"),
        f"At each rising edge where d differs from q, a count goes up by one; at the {ordinal(n)} consecutive such "
        f"edge q takes the value of d and the count restarts at 0. Any rising edge where d equals q resets "
        f"the count to 0. So q changes only after d has differed from it at {n} consecutive rising edges.",
    ]
    return Design(
        "debouncer",
        f"n{n}_{reset.slug()}",
        prompts(
            f"It debounces d with a {n}-cycle filter.",
            f"debounces a noisy input over {n} cycles",
            article(f"{n}-cycle debouncer"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _fifo(p: dict[str, Any]) -> Design:
    w, depth, reset = p["w"], p["depth"], Reset(p["reset"])
    a = clog2(depth)
    c = a + 1
    ports = reset.ports() + [
        Port("input", "wr_en"),
        Port("input", "wr_data", w),
        Port("input", "rd_en"),
        Port("output", "rd_data", w),
        Port("output", "full"),
        Port("output", "empty"),
    ]
    decl = (
        f"  reg [{w - 1}:0] mem [0:{depth - 1}];\n  reg [{a - 1}:0] wp, rp;\n  reg [{c - 1}:0] count;\n"
        "  wire push = wr_en && !full;\n  wire pop = rd_en && !empty;\n"
        f"  assign full = count == {c}'d{depth};\n  assign empty = count == {c}'d0;\n"
        f"  assign rd_data = empty ? {w}'d0 : mem[rp];\n"
    )
    logic = _ind(
        f"if (push) wp <= wp + {a}'d1;",
        f"if (pop) rp <= rp + {a}'d1;",
        f"if (push && !pop) count <= count + {c}'d1;",
        f"else if (pop && !push) count <= count - {c}'d1;",
    )
    body = decl + _seq_body(reset, _ind(f"wp <= {a}'d0;", f"rp <= {a}'d0;", f"count <= {c}'d0;"), logic)
    body += "  always @(posedge clk)\n    if (push) mem[wp] <= wr_data;\n"
    details = [
        reset.sentence("the FIFO becomes empty"),
        f"It stores up to {depth} words of {w} bits in first-in first-out order. At a rising edge, a write "
        "happens when wr_en is 1 and the FIFO is not full (wr_data is stored); a read happens when rd_en is "
        "1 and the FIFO is not empty (the oldest word is removed). Both may happen at the same edge. A "
        "write when full and a read when empty are ignored.",
        "full is 1 when the FIFO holds " + str(depth) + " words; empty is 1 when it holds none. rd_data "
        "always shows the oldest stored word (combinationally, before it is read), and is 0 when the FIFO is "
        "empty.",
    ]
    return Design(
        "fifo",
        f"d{depth}_w{w}_{reset.slug()}",
        prompts(
            f"It is a {depth}-entry synchronous FIFO of {w}-bit words.",
            f"implements a {depth}-deep FIFO of {w}-bit words",
            article(f"{depth}x{w} FIFO"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _accumulator(p: dict[str, Any]) -> Design:
    w, extra, clr, reset = p["w"], p["extra"], p["clr"], Reset(p["reset"])
    aw = w + extra
    ports = reset.ports() + [Port("input", "en", note="add enable"), Port("input", "din", w)]
    if clr:
        ports.append(Port("input", "clr", note="synchronous clear"))
    ports.append(Port("output", "acc", aw, reg=True))
    add = "acc <= acc + din;" if not extra else f"acc <= acc + {{{extra}'d0, din}};"
    lines = [f"if (clr) acc <= {aw}'d0;", f"else if (en) {add}"] if clr else [f"if (en) {add}"]
    body = _seq_body(reset, _ind(f"acc <= {aw}'d0;"), _ind(*lines))
    details = [
        reset.sentence("acc becomes 0"),
        f"Otherwise, at each rising edge where en is 1, acc takes acc + din (din is unsigned; the sum wraps "
        f"modulo 2^{aw}); when en is 0, acc holds.",
    ]
    if clr:
        details.append("clr has priority over en: at a rising edge with clr = 1, acc becomes 0.")
    return Design(
        "accumulator",
        f"w{w}_a{aw}{'_clr' if clr else ''}_{reset.slug()}",
        prompts(
            f"It is an accumulator with a {aw}-bit sum.",
            f"accumulates {w}-bit inputs into a {aw}-bit sum",
            article(f"{aw}-bit accumulator"),
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


def _serial2parallel(p: dict[str, Any]) -> Design:
    n, msb_first, reset = p["n"], p["msb_first"], Reset(p["reset"])
    k = clog2(n)
    ports = reset.ports() + [
        Port("input", "din", note="serial data bit"),
        Port("input", "din_valid"),
        Port("output", "dout", n, reg=True),
        Port("output", "dout_valid", reg=True),
    ]
    word = f"{{sh[{n - 2}:0], din}}" if msb_first else f"{{din, sh[{n - 1}:1]}}"
    decl = f"  reg [{n - 1}:0] sh;\n  reg [{k - 1}:0] cnt;\n"
    logic = _ind(
        "dout_valid <= 1'b0;",
        "if (din_valid) begin",
        f"  sh <= {word};",
        f"  if (cnt == {k}'d{n - 1}) begin",
        f"    cnt <= {k}'d0;",
        f"    dout <= {word};",
        "    dout_valid <= 1'b1;",
        f"  end else cnt <= cnt + {k}'d1;",
        "end",
    )
    body = decl + _seq_body(reset, _ind(f"cnt <= {k}'d0;", f"dout <= {n}'d0;", "dout_valid <= 1'b0;"), logic)
    order = (
        f"the first bit received ends up in dout[{n - 1}] and the last in dout[0]"
        if msb_first
        else f"the first bit received ends up in dout[0] and the last in dout[{n - 1}]"
    )
    details = [
        reset.sentence("dout and dout_valid become 0 and any partly received word is discarded"),
        f"At each rising edge where din_valid is 1, din is taken as the next bit of an {n}-bit word. At the "
        f"edge that takes the {ordinal(n)} bit, dout is loaded with the whole word ({order}) and dout_valid is 1 "
        "for the following cycle only; then the next word starts. dout keeps its value until the next word "
        "completes. Edges where din_valid is 0 are ignored.",
        "dout and dout_valid are registers (they change only at clock edges and at reset).",
    ]
    return Design(
        "serial2parallel",
        f"n{n}_{'msb' if msb_first else 'lsb'}_{reset.slug()}",
        prompts(
            f"It converts a serial bit stream to {n}-bit words.",
            f"collects serial bits into {n}-bit words",
            f"a serial-to-parallel converter for {n}-bit words",
            ports,
            details,
        ),
        module(ports, body),
        reset.meta(),
    )


FAMILIES = (
    Family(
        "counter",
        "seq",
        lambda: width_grid(
            (2, 3, 4, 8, 16, 5, 10, 6, 12),
            kind=("up", "down", "updown"),
            en=(0, 1),
            load=(0, 1),
            reset=RESETS,
        ),
        split_by_width,
        _counter,
    ),
    Family(
        "mod_counter",
        "seq",
        lambda: [
            {"m": m, "en": e, "reset": r} for m in (3, 5, 6, 10, 7, 9, 11, 12) for e in (0, 1) for r in RESETS
        ],
        by_value("m", (7, 9), (11, 12)),
        _mod_counter,
    ),
    Family(
        "shift_register",
        "seq",
        lambda: width_grid((1, 2, 4, 8, 16, 5, 10, 6, 12), left=(0, 1), en=(0, 1), reset=RESETS),
        split_by_width,
        _shift_register,
    ),
    Family(
        "edge_detector",
        "seq",
        lambda: width_grid(
            (1, 4, 8, 2, 3, 6), edge=("rise", "fall", "both"), registered=(0, 1), reset=RESETS
        ),
        by_value("w", (2,), (3, 6)),
        _edge_detector,
    ),
    Family(
        "clock_divider",
        "seq",
        lambda: [{"n": n, "reset": r} for n in (2, 4, 6, 8, 10, 16, 12, 14, 20) for r in RESETS],
        by_value("n", (12,), (14, 20)),
        _clock_divider,
    ),
    Family(
        "tick_generator",
        "seq",
        lambda: [{"n": n, "reset": r} for n in (3, 4, 5, 8, 10, 7, 9, 6, 12) for r in RESETS],
        by_value("n", (7, 9), (6, 12)),
        _tick,
    ),
    Family(
        "lfsr",
        "seq",
        lambda: width_grid(tuple(_TAPS), seed=(0, 6, 12, 90), en=(0, 1), reset=RESETS),
        by_value("w", (5, 10), (6, 12)),
        _lfsr,
    ),
    Family("seq_detector_moore", "seq", _detector_grid, _detector_split, lambda p: _detector(p, True)),
    Family("seq_detector_mealy", "seq", _detector_grid, only("test"), lambda p: _detector(p, False)),
    Family(
        "debouncer",
        "seq",
        lambda: [{"n": n, "reset": r} for n in (2, 3, 4, 5, 6) for r in RESETS],
        by_value("n", (5,), (6,)),
        _debouncer,
    ),
    Family(
        "fifo",
        "seq",
        lambda: width_grid((1, 4, 8, 5, 6, 12), depth=(2, 4, 8), reset=RESETS),
        by_value("w", (5,), (6, 12)),
        _fifo,
    ),
    Family(
        "accumulator",
        "seq",
        lambda: width_grid((4, 8, 16, 5, 10, 6, 12), extra=(0, 4), clr=(0, 1), reset=RESETS),
        split_by_width,
        _accumulator,
    ),
    Family(
        "serial2parallel",
        "seq",
        lambda: [
            {"n": n, "msb_first": m, "reset": r}
            for n in (4, 8, 16, 5, 10, 6, 12)
            for m in (0, 1)
            for r in RESETS
        ],
        by_value("n", (5, 10), (6, 12)),
        _serial2parallel,
    ),
)
