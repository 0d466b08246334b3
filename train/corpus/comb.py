"""Combinational task families: arithmetic, comparison, selection, encoding, shifting, small ALUs."""

from __future__ import annotations

from typing import Any

from train.corpus.base import (
    Design,
    Family,
    Port,
    article,
    bits,
    by_value,
    clog2,
    module,
    only,
    prompts,
    width_grid,
)

WIDTHS_TRAIN = (2, 3, 4, 8, 16)
WIDTHS_VAL = (5, 10)
WIDTHS_TEST = (6, 12)
WIDTHS = WIDTHS_TRAIN + WIDTHS_VAL + WIDTHS_TEST
split_by_width = by_value("w", WIDTHS_VAL, WIDTHS_TEST)


def _adder(p: dict[str, Any]) -> Design:
    w, cin, cout = p["w"], p["cin"], p["cout"]
    ports = [Port("input", "a", w), Port("input", "b", w)]
    if cin:
        ports.append(Port("input", "cin", note="carry in"))
    ports.append(Port("output", "sum", w))
    if cout:
        ports.append(Port("output", "cout", note="carry out"))
    lhs = "{cout, sum}" if cout else "sum"
    rhs = "a + b + cin" if cin else "a + b"
    body = f"  assign {lhs} = {rhs};\n"
    total = "a + b + cin" if cin else "a + b"
    details = [f"sum is the low {w} bits of the unsigned sum {total}."]
    if cout:
        details.append(f"cout is bit {w} of that sum (1 when the sum does not fit in {w} bits).")
    else:
        details.append("The carry out of the top bit is discarded.")
    return Design(
        "adder",
        f"w{w}{'_cin' if cin else ''}{'_cout' if cout else ''}",
        prompts(
            f"It adds two {w}-bit unsigned numbers.",
            f"adds two {w}-bit unsigned numbers",
            article(f"{w}-bit adder"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _subtractor(p: dict[str, Any]) -> Design:
    w, borrow = p["w"], p["borrow"]
    ports = [Port("input", "a", w), Port("input", "b", w), Port("output", "diff", w)]
    if borrow:
        ports.append(Port("output", "borrow", note="1 when a < b"))
        body = "  assign {borrow, diff} = {1'b0, a} - {1'b0, b};\n"
    else:
        body = "  assign diff = a - b;\n"
    details = [f"diff is a - b modulo 2^{w} (the low {w} bits of the difference)."]
    if borrow:
        details.append("borrow is 1 exactly when a < b as unsigned numbers, else 0.")
    return Design(
        "subtractor",
        f"w{w}{'_borrow' if borrow else ''}",
        prompts(
            f"It subtracts two {w}-bit unsigned numbers.",
            f"computes a - b for {w}-bit inputs",
            article(f"{w}-bit subtractor"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _comparator(p: dict[str, Any]) -> Design:
    w, signed = p["w"], p["signed"]
    ports = [
        Port("input", "a", w),
        Port("input", "b", w),
        Port("output", "eq"),
        Port("output", "lt"),
        Port("output", "gt"),
    ]
    x, y = ("$signed(a)", "$signed(b)") if signed else ("a", "b")
    body = f"  assign eq = a == b;\n  assign lt = {x} < {y};\n  assign gt = {x} > {y};\n"
    kind = "two's-complement signed" if signed else "unsigned"
    details = [
        f"a and b are {kind} numbers.",
        "eq is 1 when a equals b, lt is 1 when a is less than b, gt is 1 when a is greater than b; "
        "each is 0 otherwise.",
    ]
    return Design(
        "comparator",
        f"w{w}_{'signed' if signed else 'unsigned'}",
        prompts(
            f"It compares two {w}-bit {kind} numbers.",
            f"compares two {w}-bit {kind} numbers",
            article(f"{w}-bit {kind} comparator"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _mux(p: dict[str, Any]) -> Design:
    w, n = p["w"], p["n"]
    s = clog2(n)
    ports = [Port("input", f"in{i}", w) for i in range(n)]
    ports += [Port("input", "sel", s), Port("output", "out", w, reg=n > 2)]
    if n == 2:
        ports[-1] = Port("output", "out", w)
        body = "  assign out = sel ? in1 : in0;\n"
    else:
        cases = "".join(f"      {s}'d{i}: out = in{i};\n" for i in range(n - 1))
        body = (
            f"  always @* begin\n    case (sel)\n{cases}      default: out = in{n - 1};\n    endcase\n  end\n"
        )
    details = [
        f"out equals in<k> where k is the value of sel (sel = 0 selects in0, sel = {n - 1} selects in{n - 1})."
    ]
    return Design(
        "mux",
        f"n{n}_w{w}",
        prompts(
            f"It is a {n}-to-1 multiplexer of {w}-bit values.",
            f"selects one of {n} {w}-bit inputs",
            article(f"{n}-to-1 multiplexer of {w}-bit values"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _decoder(p: dict[str, Any]) -> Design:
    n, en, low = p["n"], p["en"], p["active_low"]
    m = 1 << n
    ports = [Port("input", "a", n)]
    if en:
        ports.append(Port("input", "en", note="enable"))
    name = "y_n" if low else "y"
    ports.append(Port("output", name, m))
    onehot = f"{m}'d1 << a"
    value = f"en ? ({onehot}) : {m}'d0" if en else onehot
    body = f"  assign {name} = {'~(' + value + ')' if low else value};\n"
    if low:
        details = [f"Outputs are active-low: bit a of {name} is 0 and every other bit is 1."]
        if en:
            details.append(f"When en is 0, every bit of {name} is 1.")
    else:
        details = ["Bit a of y is 1 and every other bit is 0."]
        if en:
            details.append("When en is 0, every bit of y is 0.")
    return Design(
        "decoder",
        f"n{n}{'_en' if en else ''}{'_low' if low else ''}",
        prompts(
            f"It is a {n}-to-{m} decoder.",
            f"decodes a {n}-bit value into {m} lines",
            article(f"{n}-to-{m} decoder"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _priority(p: dict[str, Any]) -> Design:
    w, msb = p["w"], p["msb"]
    k = clog2(w)
    ports = [Port("input", "in", w), Port("output", "pos", k, reg=True), Port("output", "valid")]
    loop = f"i = 0; i < {w}; i = i + 1" if msb else f"i = {w - 1}; i >= 0; i = i - 1"
    body = (
        f"  integer i;\n  always @* begin\n    pos = {k}'d0;\n    for ({loop})\n"
        f"      if (in[i]) pos = i[{k - 1}:0];\n  end\n  assign valid = |in;\n"
    )
    which = "highest" if msb else "lowest"
    details = [
        f"pos is the index of the {which}-numbered bit of in that is 1 (bit {w - 1 if msb else 0} has priority).",
        "valid is 1 when any bit of in is 1. When in is 0, valid is 0 and pos is 0.",
    ]
    return Design(
        "priority_encoder",
        f"w{w}_{'msb' if msb else 'lsb'}",
        prompts(
            f"It is a {w}-bit priority encoder.",
            f"encodes the {which} set bit of a {w}-bit input",
            article(f"{w}-bit priority encoder"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _parity(p: dict[str, Any]) -> Design:
    w, odd = p["w"], p["odd"]
    ports = [Port("input", "in", w), Port("output", "p")]
    body = f"  assign p = {'^' if odd else '~^'}in;\n"
    details = [f"p is 1 exactly when in has an {'odd' if odd else 'even'} number of 1 bits, else 0."]
    return Design(
        "parity",
        f"w{w}_{'odd' if odd else 'even'}",
        prompts(
            f"It computes the parity of a {w}-bit value.",
            f"computes the parity of a {w}-bit value",
            article(f"{w}-bit parity checker"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _popcount(p: dict[str, Any]) -> Design:
    w = p["w"]
    k = bits(w)
    ports = [Port("input", "in", w), Port("output", "count", k, reg=True)]
    body = (
        (
            f"  integer i;\n  always @* begin\n    count = {k}'d0;\n    for (i = 0; i < {w}; i = i + 1)\n"
            f"      count = count + {{{{{k - 1}{{1'b0}}}}, in[i]}};\n  end\n"
        )
        if k > 1
        else "  assign count = in;\n"
    )
    if k == 1:
        ports[-1] = Port("output", "count", k)
    details = [f"count is the number of bits of in that are 1 (0 to {w})."]
    return Design(
        "popcount",
        f"w{w}",
        prompts(
            f"It counts the 1 bits of a {w}-bit value.",
            f"counts the 1 bits of a {w}-bit input",
            article(f"{w}-bit population counter"),
            ports,
            details,
        ),
        module(ports, body),
    )


_SHIFT_TEXT = {
    "shl": (
        "shifts in left by amt bit positions; zeros enter at the bottom and bits shifted out are lost",
        "assign out = in << amt;",
    ),
    "shr": (
        "shifts in right by amt bit positions; zeros enter at the top and bits shifted out are lost",
        "assign out = in >> amt;",
    ),
    "sra": (
        "shifts in right by amt bit positions, arithmetically: copies of in's top bit enter at the top",
        "assign out = $signed(in) >>> amt;",
    ),
}


def _shifter(p: dict[str, Any]) -> Design:
    w, op = p["w"], p["op"]
    k = clog2(w)
    ports = [Port("input", "in", w), Port("input", "amt", k), Port("output", "out", w)]
    if op in _SHIFT_TEXT:
        text, line = _SHIFT_TEXT[op]
        body = f"  {line}\n"
        details = [
            f"out {text}.",
            f"A shift by {w} or more positions gives {'all copies of the top bit' if op == 'sra' else 'zero'}."
            if (1 << k) > w
            else f"amt ranges over 0 to {w - 1}.",
        ]
    else:
        left = op == "rotl"
        shift = "<<" if left else ">>"
        part = f"[{2 * w - 1}:{w}]" if left else f"[{w - 1}:0]"
        body = f"  wire [{2 * w - 1}:0] d = {{in, in}} {shift} amt;\n  assign out = d{part};\n"
        details = [
            f"out is in rotated {'left' if left else 'right'} by amt bit positions: bits leaving one end "
            "re-enter at the other."
        ]
    noun = {
        "shl": "left shifter",
        "shr": "right shifter",
        "sra": "arithmetic right shifter",
        "rotl": "left rotator",
        "rotr": "right rotator",
    }[op]
    return Design(
        "barrel_shifter",
        f"w{w}_{op}",
        prompts(
            f"It is a {w}-bit barrel {noun}.",
            f"is a {w}-bit barrel {noun}",
            article(f"{w}-bit barrel {noun}"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _shifter_grid() -> list[dict[str, Any]]:
    grid = width_grid(WIDTHS, op=("shl", "shr", "sra"))
    return grid + width_grid((4, 8, 16, 32), op=("rotl", "rotr"))


def _shifter_split(p: dict[str, Any]) -> str:
    if p["op"] in ("rotl", "rotr"):
        return {4: "val", 32: "test"}.get(p["w"], "train")
    return split_by_width(p)


def _bin2gray(p: dict[str, Any]) -> Design:
    w = p["w"]
    ports = [Port("input", "bin", w), Port("output", "gray", w)]
    body = "  assign gray = bin ^ (bin >> 1);\n"
    details = [
        f"gray is the reflected Gray code of bin: gray[{w - 1}] = bin[{w - 1}] and gray[i] = bin[i+1] xor bin[i] "
        "for the other bits."
    ]
    return Design(
        "bin2gray",
        f"w{w}",
        prompts(
            f"It converts a {w}-bit binary number to Gray code.",
            f"converts {w}-bit binary to Gray code",
            article(f"{w}-bit binary-to-Gray converter"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _gray2bin(p: dict[str, Any]) -> Design:
    w = p["w"]
    ports = [Port("input", "gray", w), Port("output", "bin", w, reg=True)]
    body = (
        f"  integer i;\n  always @* begin\n    bin[{w - 1}] = gray[{w - 1}];\n"
        f"    for (i = {w - 2}; i >= 0; i = i - 1)\n      bin[i] = bin[i + 1] ^ gray[i];\n  end\n"
    )
    details = [
        f"bin is the binary value whose reflected Gray code is gray: bin[{w - 1}] = gray[{w - 1}] and "
        "bin[i] = bin[i+1] xor gray[i] for the other bits."
    ]
    return Design(
        "gray2bin",
        f"w{w}",
        prompts(
            f"It converts a {w}-bit Gray code to binary.",
            f"converts {w}-bit Gray code to binary",
            article(f"{w}-bit Gray-to-binary converter"),
            ports,
            details,
        ),
        module(ports, body),
    )


def _bin2bcd(p: dict[str, Any]) -> Design:
    w = p["w"]
    top = (1 << w) - 1
    digits = len(str(top))
    names = ["ones", "tens", "hundreds"][:digits]
    ports = [Port("input", "bin", w)] + [Port("output", n, 4) for n in names]
    lines = [
        "  assign ones = bin % 10;",
        "  assign tens = (bin / 10) % 10;" if digits > 2 else "  assign tens = bin / 10;",
    ]
    if digits > 2:
        lines.append("  assign hundreds = bin / 100;")
    body = "\n".join(lines) + "\n"
    details = [
        f"bin is an unsigned number from 0 to {top}; the outputs are its decimal digits in BCD: "
        + ", ".join(
            f"{n} is the {label} digit"
            for n, label in zip(names, ["units", "tens", "hundreds"], strict=False)
        )
        + "."
    ]
    return Design(
        "bin2bcd",
        f"w{w}",
        prompts(
            f"It converts a {w}-bit binary number to BCD digits.",
            f"converts a {w}-bit binary number to BCD",
            article(f"{w}-bit binary-to-BCD converter"),
            ports,
            details,
        ),
        module(ports, body),
    )


_ALU_OPS = {
    "add": ("a + b", "a + b (low {w} bits)"),
    "sub": ("a - b", "a - b (low {w} bits)"),
    "and": ("a & b", "bitwise a AND b"),
    "or": ("a | b", "bitwise a OR b"),
    "xor": ("a ^ b", "bitwise a XOR b"),
    "nota": ("~a", "bitwise NOT a"),
}
_ALU_TABLES = (
    ("add", "sub", "and", "or"),
    ("add", "sub", "xor", "and"),
    ("and", "or", "xor", "add"),
    ("sub", "add", "or", "xor"),
    ("add", "and", "or", "nota"),
)


def _alu(p: dict[str, Any]) -> Design:
    w, table, zero = p["w"], _ALU_TABLES[p["table"]], p["zero"]
    ports = [
        Port("input", "a", w),
        Port("input", "b", w),
        Port("input", "op", 2),
        Port("output", "y", w, reg=True),
    ]
    if zero:
        ports.append(Port("output", "zero", note="1 when y is 0"))
    cases = "".join(f"      2'd{i}: y = {_ALU_OPS[o][0]};\n" for i, o in enumerate(table[:-1]))
    body = f"  always @* begin\n    case (op)\n{cases}      default: y = {_ALU_OPS[table[-1]][0]};\n    endcase\n  end\n"
    if zero:
        body += "  assign zero = y == 0;\n"
    ops = "; ".join(f"op = {i}: y = {_ALU_OPS[o][1].format(w=w)}" for i, o in enumerate(table))
    details = [f"Operations: {ops}."]
    if zero:
        details.append("zero is 1 exactly when y is 0.")
    return Design(
        "alu",
        f"w{w}_t{p['table']}{'_z' if zero else ''}",
        prompts(
            f"It is a {w}-bit ALU with four operations.",
            f"is a {w}-bit ALU with four operations",
            article(f"{w}-bit four-operation ALU"),
            ports,
            details,
        ),
        module(ports, body),
    )


FAMILIES = (
    Family("adder", "comb", lambda: width_grid(WIDTHS, cin=(0, 1), cout=(0, 1)), split_by_width, _adder),
    Family("subtractor", "comb", lambda: width_grid(WIDTHS, borrow=(0, 1)), split_by_width, _subtractor),
    Family("comparator", "comb", lambda: width_grid(WIDTHS, signed=(0, 1)), split_by_width, _comparator),
    Family("mux", "comb", lambda: width_grid(WIDTHS + (1,), n=(2, 4, 8)), split_by_width, _mux),
    Family(
        "decoder",
        "comb",
        lambda: [{"n": n, "en": e, "active_low": lo} for n in (2, 3, 4, 5) for e in (0, 1) for lo in (0, 1)],
        by_value("n", (5,), (4,)),
        _decoder,
    ),
    Family(
        "priority_encoder",
        "comb",
        lambda: width_grid((4, 8, 16, 5, 10, 6, 12), msb=(0, 1)),
        split_by_width,
        _priority,
    ),
    Family("parity", "comb", lambda: width_grid(WIDTHS, odd=(0, 1)), split_by_width, _parity),
    Family("popcount", "comb", lambda: width_grid(WIDTHS), split_by_width, _popcount),
    Family("barrel_shifter", "comb", _shifter_grid, _shifter_split, _shifter),
    Family("bin2gray", "comb", lambda: width_grid(WIDTHS), split_by_width, _bin2gray),
    Family("gray2bin", "comb", lambda: width_grid(WIDTHS), only("test"), _gray2bin),
    Family("bin2bcd", "comb", lambda: width_grid((4, 6, 8, 5, 7, 9)), by_value("w", (5,), (7, 9)), _bin2bcd),
    Family(
        "alu",
        "comb",
        lambda: width_grid((4, 8, 16, 5, 10, 6, 12), table=tuple(range(len(_ALU_TABLES))), zero=(0, 1)),
        split_by_width,
        _alu,
    ),
)
