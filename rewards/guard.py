"""Static checks that keep a candidate from deciding its own verdict (docs/design.md, "The verdict is
the harness's, never the design's").

A candidate is checked in two layers, both on allow-lists rather than deny-lists:

1. **Source scan** (before any preprocessing, over every byte outside comments and strings): system
   names (``$name``) must be on :data:`ALLOWED_SYSTEM_NAMES`; compiler directives on
   :data:`ALLOWED_DIRECTIVES`; every other backtick must be a use of a macro the candidate defines
   itself. Preprocessor features whose result could differ between pyslang, Icarus (whose
   preprocessor emits *text* that is lexed again) and Verilator are rejected outright: function-like
   macros, token pasting (````), stringification (`` `" ``), a macro use glued to an adjacent
   identifier or system name, and conditional compilation on macros the candidate does not define
   (``VERILATOR``, ``__ICARUS__``, ``SYNTHESIS`` … differ per tool). With those gone, every tool
   expands the candidate's macros to the same tokens pyslang sees. Macros whose uses would expand
   past :data:`MAX_MACRO_EXPANSION` characters (each level doubling the last) are rejected before
   anything parses them. Synthesis pragmas in comments
   (``translate_off``, ``full_case``) and ``(* attributes *)`` are rejected because simulation and
   synthesis would read different designs.
2. **Syntax tree** (pyslang, after preprocessing): only ``module`` declarations (plus typedefs and
   parameters) at the top level; no ``force``/``release``, procedural ``assign``/``deassign``,
   ``defparam``, ``bind``, DPI, packages, classes, interfaces, programs, checkers, UDPs, bidirectional
   switches (``tran``, ``rtranif1`` …: they let a design drive its own inputs), nested
   modules; instances only of modules the candidate defines; dotted names only rooted at a name
   declared in the same module (downward references into its own instances and blocks);
   ``::``/``$root``/``$unit`` never; tasks and functions called by simple name only when the
   candidate declares them; no module named like anything in the harness.

Code pyslang cannot parse still gets the source scan plus conservative token rules (no dotted
names, no SystemVerilog-only keywords of the list above, no reserved identifiers); a parse failure
is not itself a violation (the lint level reports syntax errors).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable

from pyslang.parsing import Token, TokenKind

from rewards.extract import find_modules
from rewards.interface import compile_source
from rewards.types import Task

log = logging.getLogger(__name__)

HARNESS_PREFIX = "rtlf_"
_HARNESS_PATTERN = HARNESS_PREFIX + "*"
_TESTBENCH_NAMES = ("tb", "RefModule")

_PRINT = ("display", "write", "strobe", "monitor")
ALLOWED_SYSTEM_NAMES = frozenset(
    [f"${p}{s}" for p in _PRINT for s in ("", "b", "h", "o")]
    + [
        "$signed",
        "$unsigned",
        "$cast",
        "$rtoi",
        "$itor",
        "$realtobits",
        "$bitstoreal",
        "$shortrealtobits",
        "$bitstoshortreal",
        "$clog2",
        "$ln",
        "$log10",
        "$exp",
        "$sqrt",
        "$pow",
        "$floor",
        "$ceil",
        "$sin",
        "$cos",
        "$tan",
        "$asin",
        "$acos",
        "$atan",
        "$atan2",
        "$hypot",
        "$sinh",
        "$cosh",
        "$tanh",
        "$asinh",
        "$acosh",
        "$atanh",
        "$bits",
        "$size",
        "$high",
        "$low",
        "$left",
        "$right",
        "$increment",
        "$dimensions",
        "$unpacked_dimensions",
        "$typename",
        "$isunknown",
        "$onehot",
        "$onehot0",
        "$countones",
        "$countbits",
        "$sformat",
        "$sformatf",
        "$past",
        "$rose",
        "$fell",
        "$stable",
        "$changed",
        "$sampled",
    ]
)
"""System tasks/functions a design may use: printing, math, conversions, type queries, sampling.

Left out on purpose: nondeterminism ($random, $urandom, $urandom_range, $dist_*) and simulation time
($time, $stime, $realtime), which synthesis ignores or misreads, so the formal level would call such a
design equivalent to the golden although the simulator sees something else; anything touching files or
the host ($fopen … $readmem*, $dump*, $system), ending
or pausing the run ($finish, $stop, $exit, $fatal, $error), tool back doors ($c), and $test$plusargs /
$value$plusargs, which read the simulator command line: harness state a design has no use for and
could use to tell the scoring run apart from synthesis.
"""

ALLOWED_DIRECTIVES = frozenset(
    [
        "define",
        "undef",
        "ifdef",
        "ifndef",
        "elsif",
        "else",
        "endif",
        "timescale",
        "default_nettype",
        "resetall",
        "celldefine",
        "endcelldefine",
        "__FILE__",
        "__LINE__",
    ]
)

_KNOWN_DIRECTIVES = ALLOWED_DIRECTIVES | frozenset(
    [
        "include",
        "line",
        "pragma",
        "begin_keywords",
        "end_keywords",
        "undefineall",
        "unconnected_drive",
        "nounconnected_drive",
        "uselib",
        "protect",
        "endprotect",
        "protected",
        "endprotected",
        "default_decay_time",
        "default_trireg_strength",
        "delay_mode_distributed",
        "delay_mode_path",
        "delay_mode_unit",
        "delay_mode_zero",
        "accelerate",
        "noaccelerate",
        "expand_vectornets",
        "noexpand_vectornets",
        "remove_gatenames",
        "noremove_gatenames",
        "remove_netnames",
        "noremove_netnames",
        "suppress_faults",
        "nosuppress_faults",
        "enable_portfaults",
        "disable_portfaults",
        "verilog",
        "verilator_config",
        "systemc_header",
        "systemc_imp_header",
        "systemc_interface",
        "systemc_implementation",
        "systemc_ctor",
        "systemc_dtor",
        "systemc_header_post",
        "systemc_interface_floor",
        "systemc_class_name",
    ]
)

_TOOL_MACROS = frozenset(
    [
        "VERILATOR",
        "verilator",
        "verilator3",
        "coverage",
        "systemc_clock",
        "SYSTEMVERILOG",
        "__ICARUS__",
        "IVERILOG",
        "SYNTHESIS",
        "YOSYS",
        "FORMAL",
        "SIMULATION",
        "COCOTB_SIM",
        "SV_COV_START",
        "SV_COV_STOP",
        "SV_COV_RESET",
        "SV_COV_CHECK",
        "SV_COV_MODULE",
        "SV_COV_HIER",
        "SV_COV_ASSERTION",
        "SV_COV_FSM_STATE",
        "SV_COV_STATEMENT",
        "SV_COV_TOGGLE",
        "SV_COV_OVERFLOW",
        "SV_COV_ERROR",
        "SV_COV_NOCOV",
        "SV_COV_OK",
        "SV_COV_PARTIAL",
    ]
)

_PRAGMA_COMMENT = re.compile(
    r"\b(?:translate_off|translate_on|synthesis_off|synthesis_on|full_case|parallel_case|"
    r"black_?box|keep_hierarchy|protect)\b",
    re.I,
)

_FALLBACK_KEYWORDS = frozenset(
    [
        "force",
        "release",
        "deassign",
        "defparam",
        "bind",
        "import",
        "export",
        "program",
        "class",
        "interface",
        "package",
        "checker",
        "config",
        "library",
        "extern",
        "primitive",
        *("tran", "tranif0", "tranif1", "rtran", "rtranif0", "rtranif1"),
    ]
)

_SWITCHES = frozenset(["tran", "tranif0", "tranif1", "rtran", "rtranif0", "rtranif1"])
"""Bidirectional switches: through one, a design drives its own input nets, which a test bench
shares with the reference (the reference then sees x and its outputs become don't-care)."""

# One alternative per lexical class; each is linear (no nested quantifiers over the same text).
_SOURCE_TOKEN = re.compile(
    r"(?P<lc>//[^\n]*)"
    r"|(?P<bc>/\*(?:[^*]|\*(?!/))*(?:\*/)?)"
    r'|(?P<str>"(?:[^"\\\n]|\\[^\n])*"?)'
    r"|(?P<esc>\\[^\s]+)"
    r"|(?P<dir>`[A-Za-z_][A-Za-z0-9_$]*)"
    r"|(?P<tick>`)"
    r"|(?P<sys>\$[A-Za-z0-9_$]+)"
    r"|(?P<num>[0-9][0-9_]*|'[sS]?[bBoOdDhH][ \t]*[0-9a-fA-FxXzZ?_]+)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_$]*)"
    r"|(?P<dot>\.)"
    r"|(?P<attr>\(\*(?![ \t\r\n]*\)))"
    r"|(?P<close>[\])])"
    r"|(?P<other>[^\s])"
)
_DEFINE_NAME = re.compile(r"[ \t]+(?P<name>[A-Za-z_][A-Za-z0-9_$]*)(?P<paren>\()?")
_GLUE = re.compile(r"[A-Za-z0-9_$`]")
_DEFINE_BODY = re.compile(r"(?:[^\n\\]|\\.|\\\n)*", re.S)  # to the end of the line; backslash continues it
_MACRO_REF = re.compile(r"`([A-Za-z_][A-Za-z0-9_$]*)")
MAX_MACRO_EXPANSION = 1_000_000
"""Characters all macro uses of an answer may expand to (honest answers use a few hundred)."""


def reserved_names(task: Task, *, include_reference_helpers: bool = False) -> frozenset[str]:
    """Names a candidate may not define as modules.

    Always: the modules of the task's test bench (which the candidate is compiled with) and, when a
    test bench exists, ``tb`` and ``RefModule``; and ``rtlf_*`` (the harness prefix, kept as a glob
    pattern). The golden's helper modules are added only with ``include_reference_helpers``: the
    co-simulation runs the golden in a separate compilation, and a natural helper name such as
    ``full_adder`` (RTLLM's adder_8bit golden) must not turn a correct answer into a violation.
    """
    names = {_HARNESS_PATTERN}
    if include_reference_helpers:
        names |= {m.name for m in find_modules(task.reference)}
    if task.testbench:
        names |= {m.name for m in find_modules(task.testbench)}
        names |= set(_TESTBENCH_NAMES)
    names.discard(task.top_module)
    return frozenset(names)


def _is_reserved(name: str, reserved: Iterable[str]) -> bool:
    for item in reserved:
        if ("*" in item and fnmatch.fnmatchcase(name, item)) or name == item:
            return True
    return name.startswith(HARNESS_PREFIX)


def _system_message(name: str) -> str:
    if name in ("$root", "$unit"):
        return f"{name} references are not allowed"
    return (
        f"system task/function {name} is not allowed (only printing, math, conversion and type "
        "query system functions are)"
    )


def _line_of(code: str, pos: int) -> int:
    return code.count("\n", 0, pos) + 1


class _SourceScan:
    """Result of the source-level scan: violations, macro names defined, and token facts."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.defined: set[str] = set()
        self.blocks_parse = False  # a directive pyslang must not see (e.g. `include)
        self.idents: list[tuple[str, int]] = []
        self.dotted: list[int] = []
        self.bodies: dict[str, str] = {}  # macro name -> its (last) definition's text

    def add(self, message: str, blocks_parse: bool = False) -> None:
        if message not in self.violations:
            self.violations.append(message)
        self.blocks_parse = self.blocks_parse or blocks_parse


def _scan_directive(code: str, match: re.Match, scan: _SourceScan, uses: list) -> None:
    name = match.group("dir")[1:]
    line = _line_of(code, match.start())
    if match.start() > 0 and _GLUE.match(code, match.start() - 1):
        scan.add(
            f"line {line}: `{name} is glued to the preceding token; tools re-lex macro text "
            "differently, so separate it with a space",
            blocks_parse=True,
        )
    if name == "define":
        head = _DEFINE_NAME.match(code, match.end())
        if not head:
            scan.add(f"line {line}: malformed `define", blocks_parse=True)
            return
        macro = head.group("name")
        if head.group("paren"):
            scan.add(
                f"line {line}: macro `{macro} takes arguments; function-like macros are not "
                "allowed (use a function or a parameter)",
                blocks_parse=True,
            )
        if (
            macro in _TOOL_MACROS
            or macro in _KNOWN_DIRECTIVES
            or macro.startswith(HARNESS_PREFIX)
            or macro.startswith("systemc_")
        ):
            scan.add(f"line {line}: `define {macro} redefines a tool or harness macro", blocks_parse=True)
        scan.defined.add(macro)
        scan.bodies[macro] = _DEFINE_BODY.match(code, head.end()).group()
    elif name in ("ifdef", "ifndef", "elsif", "undef"):
        head = _DEFINE_NAME.match(code, match.end())
        uses.append((name, head.group("name") if head else "", line))
    elif name not in ALLOWED_DIRECTIVES:
        uses.append(("use", name, line))


def scan_source(code: str) -> _SourceScan:
    """Source-level checks on the text before preprocessing (see the module docstring)."""
    scan = _SourceScan()
    uses: list[tuple[str, str, int]] = []
    previous = ""
    for match in _SOURCE_TOKEN.finditer(code):
        kind = match.lastgroup
        if kind == "dot" and previous in ("ident", "esc", "close"):
            scan.dotted.append(match.start())
        if kind not in ("lc", "bc"):
            previous = kind
        if kind in ("lc", "bc"):
            pragma = _PRAGMA_COMMENT.search(match.group())
            if pragma:
                scan.add(
                    f"line {_line_of(code, match.start())}: synthesis pragma "
                    f"'{pragma.group()}' in a comment; simulation and synthesis would see "
                    "different designs"
                )
        elif kind == "dir":
            _scan_directive(code, match, scan, uses)
        elif kind == "tick":
            scan.add(
                f"line {_line_of(code, match.start())}: token pasting (``), stringification "
                '(`") or a stray backtick; macros may not build tokens',
                blocks_parse=True,
            )
        elif kind == "sys" and match.group() not in ALLOWED_SYSTEM_NAMES:
            scan.add(_system_message(match.group()))
        elif kind == "attr":
            scan.add(
                f"line {_line_of(code, match.start())}: attributes (* ... *) are not allowed; "
                "tools interpret them differently"
            )
        elif kind == "ident":
            scan.idents.append((match.group(), match.start()))
    _check_macro_uses(uses, scan)
    _check_macro_growth(uses, scan)
    return scan


def _check_macro_uses(uses: list[tuple[str, str, int]], scan: _SourceScan) -> None:
    for kind, name, line in uses:
        if kind == "use" and name not in scan.defined:
            what = "directive" if name in _KNOWN_DIRECTIVES else "macro (not defined in the answer)"
            scan.add(f"line {line}: `{name} {what} is not allowed", blocks_parse=True)
        elif kind in ("ifdef", "ifndef", "elsif") and name not in scan.defined:
            scan.add(
                f"line {line}: `{kind} {name or '?'} tests a macro the answer does not define; "
                "tools predefine different macros, so the code must not depend on them",
                blocks_parse=True,
            )


def _check_macro_growth(uses: list[tuple[str, str, int]], scan: _SourceScan) -> None:
    """Reject macros whose expansion explodes (each level doubling the last): every tool, and the
    guard's own parse, would spend exponential time and memory on them."""
    sizes: dict[str, int] = {}

    def size(name: str, depth: int = 0) -> int:
        if name not in sizes:
            sizes[name] = len(scan.bodies[name])  # provisional: a recursive definition stops here
            if depth < 200:
                refs = [m for m in _MACRO_REF.findall(scan.bodies[name]) if m in scan.bodies]
                sizes[name] = min(
                    MAX_MACRO_EXPANSION + 1, sizes[name] + sum(size(m, depth + 1) for m in refs)
                )
        return sizes[name]

    total = sum(size(name) for kind, name, _ in uses if kind == "use" and name in scan.bodies)
    if total > MAX_MACRO_EXPANSION:
        scan.add(
            f"macro uses expand to over {MAX_MACRO_EXPANSION} characters; write the code out or "
            "use parameters",
            blocks_parse=True,
        )


_FORBIDDEN_KINDS = {
    "ProceduralForceStatement": "force",
    "ProceduralReleaseStatement": "release",
    "ProceduralAssignStatement": "procedural assign",
    "ProceduralDeassignStatement": "deassign",
    "DefParam": "defparam",
    "BindDirective": "bind",
    "DPIImport": "DPI import",
    "DPIExport": "DPI export",
    "ClassDeclaration": "class",
    "ProgramDeclaration": "program",
    "InterfaceDeclaration": "interface",
    "PackageDeclaration": "package",
    "PackageImportDeclaration": "package import",
    "PackageExportDeclaration": "package export",
    "PackageExportAllDeclaration": "package export",
    "CheckerDeclaration": "checker",
    "CheckerInstantiation": "checker instance",
    "ConfigDeclaration": "config",
    "LibraryDeclaration": "library",
    "UdpDeclaration": "user-defined primitive",
    "ExternModuleDecl": "extern module",
    "ExternUdpDecl": "extern primitive",
    "AttributeInstance": "attribute (* ... *)",
}

_TOP_LEVEL_OK = frozenset(
    [
        "ModuleDeclaration",
        "TypedefDeclaration",
        "ParameterDeclarationStatement",
        "TimeUnitsDeclaration",
        "EmptyMember",
    ]
)

_SCOPES = frozenset(["InstanceName", "NamedBlockClause", "NamedLabel"])


def _children(node) -> Iterable:
    for child in node:
        if child is not None:
            yield child


def _tokens(node) -> Iterable[Token]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            yield item
        else:
            stack.extend(reversed(list(_children(item))))


def _flatten(root) -> tuple[list[tuple[object, str]], list[Token]]:
    """All nodes (with their kind names) and all tokens under ``root``, in one walk."""
    nodes: list[tuple[object, str]] = []
    tokens: list[Token] = []
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            tokens.append(item)
            continue
        nodes.append((item, item.kind.name))
        stack.extend(reversed([c for c in item if c is not None]))
    return nodes, tokens


def _first_identifier(node) -> str | None:
    for token in _tokens(node):
        if token.kind == TokenKind.Identifier:
            return token.valueText
    return None


def _declared_names(nodes: list[tuple[object, str]]) -> tuple[set[str], set[str]]:
    """(scope names, data names) declared inside one module: instances, blocks and subroutines;
    signals, variables and genvars."""
    scopes, data = set(), set()
    for node, kind in nodes:
        if kind in _SCOPES:
            scopes.add(_first_identifier(node))
        elif kind == "FunctionPrototype":
            scopes.add(_first_identifier(node.name))
        elif kind == "Declarator":
            data.add(_first_identifier(node))
        elif kind == "GenvarDeclaration":
            data |= {_first_identifier(i) for i in _children(node.identifiers) if not isinstance(i, Token)}
    scopes.discard(None)
    data.discard(None)
    return scopes, data


def _subroutine_names(nodes: list[tuple[object, str]]) -> set[str]:
    return {
        n for node, kind in nodes if kind == "FunctionPrototype" for n in [_first_identifier(node.name)] if n
    }


def _module_name(module) -> str:
    return module.header.name.valueText


def _check_scoped_name(node, context: _ModuleContext, out: list[str]) -> None:
    tokens = list(_tokens(node))
    text = "".join(t.valueText for t in tokens)
    module = context.name
    if any(t.kind == TokenKind.DoubleColon for t in tokens):
        out.append(f"scope reference {text} in module {module}: package/class/$unit scopes are not allowed")
        return
    root = tokens[0] if tokens else None
    if root is None or root.kind != TokenKind.Identifier:
        out.append(
            f"hierarchical reference {text} in module {module}: $root and other absolute "
            "paths are not allowed"
        )
    elif root.valueText in context.scopes:
        if context.has_error_in(node):
            # The scope is declared but not visible here (e.g. a block inside a function):
            # simulators then search upward, through the harness.
            out.append(
                f"hierarchical reference {text} in module {module}: it does not resolve to a "
                f"scope of that module visible at this point"
            )
    elif root.valueText not in context.data:
        out.append(
            f"hierarchical reference {text} in module {module}: '{root.valueText}' is not "
            "declared in that module; only references into its own instances are allowed"
        )
    elif context.has_error_in(node):
        # A dotted name on a non-struct signal: tools may then search upward through the harness.
        out.append(
            f"hierarchical reference {text} in module {module}: '{root.valueText}' is a "
            "signal, not a struct or an instance of the answer's modules"
        )


class _ModuleContext:
    """What the checks of one module need: its name, local names, and the compilation's errors."""

    def __init__(
        self, module, nodes: list[tuple[object, str]], error_offsets: Callable[[], list[int]]
    ) -> None:
        self.name = _module_name(module)
        self.nodes = nodes
        self.scopes, self.data = _declared_names(nodes)
        self._error_offsets = error_offsets

    def has_error_in(self, node) -> bool:
        rng = node.sourceRange
        return any(rng.start.offset <= off <= rng.end.offset for off in self._error_offsets())


def _check_module(
    context: _ModuleContext, defined_modules: set[str], subroutines: set[str], out: list[str]
) -> None:
    name = context.name
    for index, (node, kind) in enumerate(context.nodes):
        if index and kind == "ModuleDeclaration":
            out.append(
                f"module {_module_name(node)} is nested inside module {name}; declare modules "
                "at the top level"
            )
        elif kind == "HierarchyInstantiation":
            target = node.getFirstToken().valueText
            if target not in defined_modules:
                out.append(
                    f"module {name} instantiates {target}, which the answer does not define; "
                    "a design may only instantiate its own modules"
                )
        elif kind == "PrimitiveInstantiation" and node.getFirstToken().valueText in _SWITCHES:
            out.append(
                f"module {name} uses the bidirectional switch {node.getFirstToken().valueText}; "
                "it can drive the module's input ports (use assign or gates)"
            )
        elif kind == "ScopedName" and node.parent.kind.name != "ScopedName":
            _check_scoped_name(node, context, out)
        elif kind in ("InvocationExpression", "ExpressionStatement"):
            callee = node[0] if kind == "InvocationExpression" else node.expr
            if callee is not None and not isinstance(callee, Token) and callee.kind.name == "IdentifierName":
                called = _first_identifier(callee)
                if called and called not in subroutines:
                    out.append(
                        f"module {name} calls {called}, which the answer does not declare "
                        "as a function or task"
                    )


def _check_tree(tree, compilation, reserved: frozenset[str]) -> list[str]:
    """Structure checks on pyslang's (preprocessed) syntax tree."""
    out: list[str] = []
    root = tree.root
    members = list(_children(root.members)) if root.kind.name == "CompilationUnit" else [root]
    walked = [_flatten(member) for member in members]
    for nodes, tokens in walked:
        for node, kind in nodes:
            what = _FORBIDDEN_KINDS.get(kind)
            if what:
                line = tree.sourceManager.getLineNumber(node.getFirstToken().location)
                out.append(f"line {line}: {what} is not allowed")
        for token in tokens:
            if token.kind == TokenKind.SystemIdentifier and token.valueText not in ALLOWED_SYSTEM_NAMES:
                out.append(_system_message(token.valueText))
            elif token.kind in (TokenKind.RootSystemName, TokenKind.UnitSystemName):
                out.append(f"{token.valueText} references are not allowed")
    for member in members:
        if member.kind.name not in _TOP_LEVEL_OK and member.kind.name not in _FORBIDDEN_KINDS:
            out.append(
                f"{member.kind.name} at the top level is not allowed; only modules, typedefs and parameters"
            )
    modules = [
        (m, nodes)
        for m, (nodes, _) in zip(members, walked, strict=True)
        if m.kind.name == "ModuleDeclaration"
    ]
    defined = {_module_name(m) for m, _ in modules}
    for name in sorted(defined):
        if _is_reserved(name, reserved):
            out.append(f"module {name} uses a name reserved by the harness; rename it")
    subroutines = _subroutine_names([pair for nodes, _ in walked for pair in nodes])
    errors: list[int] = []

    def error_offsets() -> list[int]:
        if not errors:
            errors.extend(d.location.offset for d in compilation.getAllDiagnostics() if d.isError())
            errors.append(-1)
        return errors

    for module, nodes in modules:
        _check_module(_ModuleContext(module, nodes, error_offsets), defined, subroutines, out)
    return out


def _fallback_checks(scan: _SourceScan, code: str, reserved: frozenset[str]) -> list[str]:
    """Token rules for code pyslang cannot parse: no structure is known, so be strict."""
    out = []
    for word, pos in scan.idents:
        if word in _FALLBACK_KEYWORDS:
            out.append(f"line {_line_of(code, pos)}: '{word}' is not allowed")
        elif _is_reserved(word, reserved):
            out.append(f"line {_line_of(code, pos)}: '{word}' is a name reserved by the harness")
    if scan.dotted:
        out.append(
            f"line {_line_of(code, scan.dotted[0])}: dotted (hierarchical) names cannot be "
            "checked in code that does not parse"
        )
    return out


def check_candidate(code: str, reserved: frozenset[str]) -> list[str]:
    """Static verdict on candidate source: a list of violation messages (empty = clean).

    ``reserved`` comes from :func:`reserved_names`; entries with ``*`` are glob patterns.
    """
    scan = scan_source(code)
    violations = list(scan.violations)
    if scan.blocks_parse:
        return violations
    try:
        tree, compilation = compile_source(code)
    except RuntimeError as exc:  # pyslang gives up on pathological nesting
        return violations + [
            f"the design cannot be analysed ({type(exc).__name__}: {str(exc)[:100] or 'too deeply nested'}); "
            "simplify deeply nested expressions or blocks"
        ]
    if any(d.isError() for d in tree.diagnostics):
        violations += _fallback_checks(scan, code, reserved)
    else:
        violations += _check_tree(tree, compilation, reserved)
    return list(dict.fromkeys(violations))
