"""Find the Verilog answer in a model's completion (the *format* level of the reward).

The completion may hold ``<think>…</think>`` reasoning (ignored, even when never closed),
``<answer>…</answer>`` tags, several fenced blocks (```verilog, ```systemverilog, ```sv, ```v or
bare ```), or raw ``module … endmodule`` text in prose. The chosen code is the last fenced block
that defines ``top_module`` plus the blocks defining modules it instantiates; without such a block,
the last raw ``module top_module … endmodule`` span (plus the modules it needs) is taken.

Everything is a linear scan: no regular expression here can backtrack catastrophically, so a
10 MB completion costs milliseconds, not minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Comments and strings are matched so that keywords inside them are skipped; an unclosed block
# comment or string runs to the end of its scope (text / line) instead of being retried.
_TOKEN = re.compile(
    r"//[^\n]*"
    r"|/\*(?:[^*]|\*(?!/))*(?:\*/)?"
    r'|"(?:[^"\\\n]|\\.)*"?'
    r"|\b(?P<kw>endmodule|(?:macro)?module\b(?:[ \t\r\n]+(?P<name>[A-Za-z_][A-Za-z0-9_$]*))?)\b"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_FENCE = re.compile(r"[ \t]{0,3}(?:```|~~~)")


@dataclass(frozen=True)
class Extraction:
    """Result of extraction: ``code`` is ``None`` when no usable module was found (see ``error``)."""

    code: str | None
    modules: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class _Module:
    name: str
    start: int
    end: int  # one past the end of ``endmodule``; -1 when the module is never closed


def _strip_think(text: str) -> tuple[str, bool]:
    """Text outside ``<think>`` reasoning, and whether any reasoning was removed."""
    close = text.rfind("</think>")
    if close >= 0:  # a chat template may open <think> in the prompt: keep only what follows
        text = text[close + len("</think>") :]
        removed = True
    else:
        removed = False
    out, pos = [], 0
    while True:
        start = text.find("<think>", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        removed = True
        end = text.find("</think>", start)
        if end < 0:  # unclosed: the rest is reasoning
            break
        pos = end + len("</think>")
    return "".join(out), removed


def _answer_region(text: str) -> str | None:
    """Content of the last ``<answer>`` tag (to the end of text when never closed), else ``None``."""
    start = text.rfind("<answer>")
    if start < 0:
        return None
    start += len("<answer>")
    end = text.find("</answer>", start)
    return text[start:] if end < 0 else text[start:end]


def _fenced_blocks(text: str) -> list[str]:
    """Bodies of Markdown fenced blocks, in order; a block left open runs to the end of text."""
    blocks: list[str] = []
    body: list[str] | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if body is None:
            if _FENCE.match(line):
                body = []
                rest = stripped[3:].strip()
                # "```verilog module x; … endmodule```" on one line, or code after the info word.
                if " " in rest or rest.endswith("```"):
                    first = rest.split(None, 1)[1] if " " in rest else ""
                    if first.endswith("```"):
                        blocks.append(first[:-3])
                        body = None
                    else:
                        body.append(first)
            continue
        if _FENCE.match(line) and stripped.strip("`~") == "":
            blocks.append("\n".join(body))
            body = None
        elif stripped.endswith("```") and not stripped.startswith("//"):
            body.append(line[: line.rfind("```")])
            blocks.append("\n".join(body))
            body = None
        else:
            body.append(line)
    if body is not None:
        blocks.append("\n".join(body))
    return blocks


def find_modules(code: str) -> list[_Module]:
    """Module declarations in ``code`` (comments and strings skipped), in order."""
    modules: list[_Module] = []
    open_name, open_start = None, 0
    for match in _TOKEN.finditer(code):
        kw = match.group("kw")
        if kw is None:
            continue
        if kw == "endmodule":
            if open_name is not None:
                modules.append(_Module(open_name, open_start, match.end()))
                open_name = None
        elif match.group("name"):
            if open_name is not None:  # a new module before endmodule: the previous one is cut off
                modules.append(_Module(open_name, open_start, -1))
            open_name, open_start = match.group("name"), match.start()
    if open_name is not None:
        modules.append(_Module(open_name, open_start, -1))
    return modules


def _with_dependencies(chosen: str, pool: list[tuple[str, list[_Module]]]) -> list[str]:
    """``chosen`` plus the pieces of ``pool`` defining modules it instantiates (transitively)."""
    owner: dict[str, int] = {}
    for index, (_, mods) in enumerate(pool):
        for mod in mods:
            if mod.end >= 0:
                owner[mod.name] = index  # later pieces win: models revise helpers too
    defined = {m.name for m in find_modules(chosen)}
    result, taken = [chosen], set()
    todo = [chosen]
    while todo:
        for name in set(_IDENT.findall(todo.pop())) - defined:
            index = owner.get(name)
            if index is None or index in taken:
                continue
            piece, mods = pool[index]
            if any(m.name in defined for m in mods):  # would redefine a module already chosen
                continue
            taken.add(index)
            result.append(piece)
            defined |= {m.name for m in mods}
            todo.append(piece)
    return result


def _from_blocks(blocks: list[str], top: str) -> list[str] | None:
    """Chosen fenced blocks (top's block first, then its dependencies), or ``None``."""
    pool = [(b, find_modules(b)) for b in blocks]
    pool = [(b, mods) for b, mods in pool if mods]
    tops = [b for b, mods in pool if any(m.name == top and m.end >= 0 for m in mods)]
    if not tops:
        return None
    return _with_dependencies(tops[-1], pool)


def _from_raw(text: str, top: str) -> list[str] | None:
    """Chosen raw ``module … endmodule`` spans in prose, or ``None``."""
    mods = [m for m in find_modules(text) if m.end >= 0]
    tops = [m for m in mods if m.name == top]
    if not tops:
        return None
    pool = [(text[m.start : m.end], [m]) for m in mods]
    return _with_dependencies(text[tops[-1].start : tops[-1].end], pool)


def _drop_unused_modules(code: str, top: str) -> str:
    """Remove modules the top does not reach (e.g. a test bench written next to the answer).

    Reachability follows every identifier in a module's text, and text outside modules (macro
    definitions) counts as reached, so nothing the top may need is dropped.
    """
    mods = [m for m in find_modules(code) if m.end >= 0]
    if len(mods) < 2:
        return code
    by_name: dict[str, list[_Module]] = {}
    for mod in mods:
        by_name.setdefault(mod.name, []).append(mod)
    outside, pos = [], 0
    for mod in mods:
        outside.append(code[pos : mod.start])
        pos = mod.end
    outside.append(code[pos:])
    reached = {top}
    todo = [code[m.start : m.end] for m in by_name.get(top, [])] + ["".join(outside)]
    while todo:
        for name in set(_IDENT.findall(todo.pop())):
            if name in by_name and name not in reached:
                reached.add(name)
                todo.extend(code[m.start : m.end] for m in by_name[name])
    if len(reached) == len(by_name):
        return code
    kept, pos = [], 0
    for mod in mods:
        if mod.name not in reached:
            kept.append(code[pos : mod.start])
            pos = mod.end
    kept.append(code[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(kept))


def _missing_error(text: str, top: str, think_removed: bool, had_blocks: bool) -> str:
    """Why nothing usable was found, with what the answer must contain."""
    must = f"the answer must define `module {top}` ... `endmodule`"
    mods = find_modules(text)
    if any(m.name == top and m.end < 0 for m in mods):
        return f"module {top} has no matching endmodule (truncated answer?); {must}"
    names = sorted({m.name for m in mods})
    if names:
        return f"no module named {top} found (found {', '.join(names[:8])}); {must}"
    where = " outside <think>" if think_removed else ""
    fences = " (fenced blocks hold no module)" if had_blocks else ""
    return f"no module named {top} found{where}{fences}; {must}"


def _leading_body(text: str) -> str | None:
    """``text`` up to its first ``endmodule`` that no ``module`` opened, else ``None``."""
    depth = 0
    for match in _TOKEN.finditer(text):
        kw = match.group("kw")
        if kw is None:
            continue
        if kw != "endmodule":
            depth += 1 if match.group("name") else 0
        elif depth:
            depth -= 1
        else:
            return text[: match.end()]
    return None


def _with_header(region: str, header: str, top: str) -> str | None:
    """A module body completed after a given header (code-completion prompts), as full source."""
    if not re.search(rf"\bmodule\s+{re.escape(top)}\b", header):
        return None
    for body in [_leading_body(b) for b in reversed(_fenced_blocks(region))] + [_leading_body(region)]:
        if body and body.strip() != "endmodule":
            return header.rstrip() + "\n" + body.strip("\n") + "\n"
    return None


def extract_verilog(completion: str, top_module: str, *, header: str | None = None) -> Extraction:
    """Extract the Verilog answer defining ``top_module`` from ``completion``.

    ``header`` (the task's module header, for code-completion prompts) is put in front of a module
    body that ends in ``endmodule`` without its own ``module`` line, when no full module is found.
    Returns an :class:`Extraction` whose ``code`` holds the chosen source (``None`` on failure, with
    ``error`` saying what was missing) and ``modules`` the names of the modules that code defines.
    """
    text = completion.replace("\r\n", "\n")
    text, think_removed = _strip_think(text)
    regions = [r for r in (_answer_region(text), text) if r is not None]
    had_blocks = False
    for region in regions:
        blocks = _fenced_blocks(region)
        had_blocks = had_blocks or bool(blocks)
        pieces = _from_blocks(blocks, top_module) or _from_raw(region, top_module)
        if pieces:
            code = _drop_unused_modules("\n\n".join(p.strip("\n") for p in pieces) + "\n", top_module)
            names = tuple(dict.fromkeys(m.name for m in find_modules(code)))
            return Extraction(code=code, modules=names)
    for region in regions if header else ():
        code = _with_header(region, header, top_module)
        if code:
            return Extraction(code=code, modules=tuple(dict.fromkeys(m.name for m in find_modules(code))))
    return Extraction(code=None, error=_missing_error(text, top_module, think_removed, had_blocks))
