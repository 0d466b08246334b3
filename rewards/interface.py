"""Port lists of Verilog/SystemVerilog modules, and the interface check of a candidate against its golden.

Ports are read from an elaborated pyslang compilation, so parameters and localparams in widths are
resolved, ANSI and non-ANSI headers look the same, and packed multi-dimensional ports are reported
by their total width.
"""

from __future__ import annotations

import functools
import logging

from pyslang import Bag, DiagnosticEngine, SourceManager, ast, syntax

from rewards.types import Port, Task

log = logging.getLogger(__name__)

_DIRECTIONS = {
    ast.ArgumentDirection.In: "input",
    ast.ArgumentDirection.Out: "output",
    ast.ArgumentDirection.InOut: "inout",
    ast.ArgumentDirection.Ref: "ref",
}


class InterfaceError(ValueError):
    """A module's ports cannot be read (module absent, unparseable, or a port of unknown width)."""


def compile_source(code: str, top: str | None = None) -> tuple[syntax.SyntaxTree, ast.Compilation]:
    """Parse ``code`` with pyslang (fresh source manager, no include paths) and build a compilation.

    ``top``, when given, is elaborated as the only top-level module. The compilation is not yet
    elaborated: the caller asks for ``getRoot()`` or diagnostics when it needs them.
    """
    options = ast.CompilationOptions()
    if top:
        options.topModules = {top}
    options.errorLimit = 50
    bag = Bag([options])
    tree = syntax.SyntaxTree.fromText(code, SourceManager(), "candidate.sv", "", bag)
    compilation = ast.Compilation(bag)
    compilation.addSyntaxTree(tree)
    return tree, compilation


def syntax_errors(tree: syntax.SyntaxTree, limit: int = 3) -> list[str]:
    """First ``limit`` preprocessor/parser errors of ``tree`` as 'line N: message' strings."""
    engine = DiagnosticEngine(tree.sourceManager)
    out = []
    for diag in tree.diagnostics:
        if diag.isError():
            line = tree.sourceManager.getLineNumber(diag.location)
            out.append(f"line {line}: {engine.formatMessage(diag)}")
            if len(out) >= limit:
                break
    return out


def _port_of(symbol) -> Port:
    ty = symbol.type
    if ty.isError:
        raise InterfaceError(
            f"port {symbol.name!r} has a type pyslang cannot resolve: fix its declaration or the "
            "parameters its width uses"
        )
    if not ty.isIntegral:
        raise InterfaceError(
            f"port {symbol.name!r} has type {ty} (not a packed bit vector): unpacked arrays, reals and "
            "strings cannot be driven bit by bit. Declare it as a packed vector"
        )
    direction = _DIRECTIONS.get(symbol.direction, str(symbol.direction))
    width = int(ty.bitWidth)
    msb, lsb = width - 1, 0
    if ty.hasFixedRange:
        rng = ty.fixedRange
        msb, lsb = int(rng.left), int(rng.right)
        if abs(msb - lsb) + 1 != width:
            # Multi-dimensional packed port or struct: report it flattened, [width-1:0].
            msb, lsb = width - 1, 0
    return Port(
        name=symbol.name, direction=direction, width=width, msb=msb, lsb=lsb, signed=bool(ty.isSigned)
    )


def parse_ports(code: str, module: str) -> list[Port]:
    """Ports of ``module`` in ``code``, in declaration order, with parameter defaults applied.

    Raises :class:`InterfaceError` when the module is not defined, cannot be parsed, or has a
    port whose width cannot be resolved.
    """
    tree, compilation = compile_source(code, top=module)
    errors = syntax_errors(tree)
    if errors:
        raise InterfaceError(
            f"cannot parse the source of module {module!r} ({'; '.join(errors)}): "
            "it is not valid Verilog. Fix the syntax errors."
        )
    instance = next((i for i in compilation.getRoot().topInstances if i.name == module), None)
    if instance is None:
        defined = sorted(d.name for d in compilation.getDefinitions() if d.name)
        if module in defined:
            raise InterfaceError(
                f"module {module!r} cannot be elaborated on its own: give every parameter a default value"
            )
        raise InterfaceError(
            f"module {module!r} not found (modules defined: {defined or 'none'}). Define `module {module}`."
        )
    ports = []
    for symbol in instance.body.portList:
        if symbol.kind != ast.SymbolKind.Port:
            raise InterfaceError(
                f"module {module!r} port {getattr(symbol, 'name', '?')!r} is a {symbol.kind.name}: "
                "only plain input/output/inout ports are supported"
            )
        ports.append(_port_of(symbol))
    return ports


def _describe(port: Port) -> str:
    sign = " signed" if port.signed else ""
    rng = f" [{port.msb}:{port.lsb}]" if port.width != 1 or port.msb != port.lsb else ""
    return f"{port.direction}{sign}{rng} {port.name}"


def compare_ports(golden: list[Port], candidate: list[Port]) -> list[str]:
    """Differences between two port lists (names, directions, widths; order ignored)."""
    want = {p.name: p for p in golden}
    have = {p.name: p for p in candidate}
    problems = []
    for name, port in want.items():
        got = have.get(name)
        if got is None:
            problems.append(f"missing port `{_describe(port)}`")
        elif got.direction != port.direction:
            problems.append(f"port {name!r} is {got.direction}, expected {port.direction}")
        elif got.width != port.width:
            problems.append(
                f"port {name!r} is {got.width} bits wide, expected {port.width} (`{_describe(port)}`)"
            )
    for name, port in have.items():
        if name not in want:
            problems.append(f"unexpected extra port `{_describe(port)}`")
    return problems


@functools.lru_cache(maxsize=4096)
def _golden_ports(reference: str, module: str) -> tuple[Port, ...]:
    return tuple(parse_ports(reference, module))


def check_interface(task: Task, code: str) -> str | None:
    """Compare the candidate's ``task.top_module`` ports with the golden's; ``None`` when they match.

    Signedness and bit ordering are not compared: the harness connects ports by name and width.
    A golden whose ports cannot be read raises :class:`InterfaceError` (a broken task, not a
    candidate failure).
    """
    golden = list(_golden_ports(task.reference, task.top_module))
    try:
        candidate = parse_ports(code, task.top_module)
    except InterfaceError as exc:
        return f"cannot read the ports of {task.top_module}: {exc}"
    problems = compare_ports(golden, candidate)
    if not problems:
        return None
    return f"interface of {task.top_module} differs from the specification: " + "; ".join(problems)
