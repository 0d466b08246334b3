"""Keep benchmark problems out of the training corpus.

Two checks against VerilogEval (v1 descriptions and JSONL, v2 prompts and references) and RTLLM
(``design_description.txt`` and ``verified_*.v``, flat v1.1 or nested v2 layouts):

- **spec overlap**: word 6-grams of a task's prompt against every benchmark description. N-grams
  found in many benchmark descriptions (their shared boilerplate, e.g. "I would like you to
  implement a module named TopModule") are ignored. A task is flagged when at least half of its
  remaining n-grams (and at least :data:`MIN_SHARED`) come from one benchmark description.
- **code identity**: the golden's token stream with comments and whitespace dropped and every
  identifier renamed in order of first use (so renaming ports or the module changes nothing) is
  hashed; equal hashes with any benchmark reference are flagged.

The benchmark files are read in place (never copied into the repository).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rewards.types import Task

log = logging.getLogger(__name__)

NGRAM = 6
THRESHOLD = 0.5
MIN_SHARED = 3
BOILERPLATE_DOCS = 10
"""An n-gram in this many benchmark descriptions or more is boilerplate, not content."""

_WORD = re.compile(r"[a-z0-9_]+")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_CODE_TOKEN = re.compile(
    r"\d+'[sS]?[bBdDhH][0-9a-fA-F_xXzZ?]+|[A-Za-z_$][A-Za-z0-9_$]*|\d+|<<<|>>>|[<>=!]=|"
    r"<<|>>|&&|\|\||\S"
)
_KEYWORDS = frozenset(
    """
always always_comb always_ff and assign automatic begin case casex casez default else end endcase endfunction
endgenerate endmodule endtask for function generate genvar if initial inout input integer localparam logic module
negedge or output parameter posedge reg signed task unsigned while wire
""".split()
)


def benchmark_root() -> Path:
    """``../shared/benchmarks`` next to the repository root."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


@dataclass(frozen=True)
class BenchDoc:
    """One benchmark problem: where it comes from, its description and its reference code."""

    source: str  # e.g. "verilog-eval-v2/Prob001_zero"
    spec: str
    code: str


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _jsonl(path: Path) -> Iterator[dict]:
    for line in _read(path).splitlines():
        if line.strip():
            yield json.loads(line)


def iter_benchmarks(root: Path | None = None) -> Iterator[BenchDoc]:
    """Every VerilogEval / RTLLM problem found under ``root`` (missing suites are skipped)."""
    root = root or benchmark_root()
    for prompt in sorted(root.glob("verilog-eval-v2/*/Prob*_prompt.txt")):
        name = prompt.name[: -len("_prompt.txt")]
        ref = prompt.with_name(f"{name}_ref.sv")
        yield BenchDoc(
            f"verilog-eval-v2/{prompt.parent.name}/{name}", _read(prompt), _read(ref) if ref.is_file() else ""
        )
    v1 = root / "verilog-eval-v1"
    specs: dict[str, str] = {}
    for path in sorted(v1.glob("descriptions/*.jsonl")):
        for rec in _jsonl(path):
            specs[f"{path.stem}:{rec.get('task_id')}"] = rec.get("detail_description", "")
            yield BenchDoc(
                f"verilog-eval-v1/{path.stem}/{rec.get('task_id')}", rec.get("detail_description", ""), ""
            )
    for path in sorted(v1.glob("data/*.jsonl")):
        for rec in _jsonl(path):
            code = rec.get("prompt", "") + rec.get("canonical_solution", "")
            yield BenchDoc(
                f"verilog-eval-v1/{path.stem}/{rec.get('task_id')}", rec.get("description", ""), code
            )
    for desc in sorted(root.glob("rtllm*/**/design_description.txt")):
        refs = sorted(desc.parent.glob("verified_*.v"))
        yield BenchDoc(f"{desc.parent.relative_to(root)}", _read(desc), "\n".join(_read(r) for r in refs))


def spec_ngrams(text: str, n: int = NGRAM) -> set[str]:
    words = _WORD.findall(text.lower())
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def code_hash(code: str) -> str:
    """Hash of ``code``'s tokens with comments dropped and identifiers renamed by first use."""
    names: dict[str, str] = {}
    tokens = []
    for token in _CODE_TOKEN.findall(_COMMENT.sub(" ", code)):
        if re.match(r"[A-Za-z_$]", token) and token not in _KEYWORDS:
            token = names.setdefault(token, f"v{len(names)}")
        tokens.append(token)
    return hashlib.sha256(" ".join(tokens).encode()).hexdigest()


def _modules(code: str) -> list[str]:
    return re.findall(r"\bmodule\b.*?\bendmodule\b", _COMMENT.sub(" ", code), re.S)


@dataclass
class Decontaminator:
    """Index of benchmark specs and code; call :meth:`check` per task."""

    docs: list[BenchDoc]
    ngram_docs: dict[str, set[int]] = field(default_factory=dict)
    code_hashes: dict[str, str] = field(default_factory=dict)
    boilerplate: set[str] = field(default_factory=set)

    @classmethod
    def from_benchmarks(cls, root: Path | None = None, extra: Iterable[BenchDoc] = ()) -> Decontaminator:
        docs = list(iter_benchmarks(root)) + list(extra)
        index: dict[str, set[int]] = defaultdict(set)
        hashes = {}
        for i, doc in enumerate(docs):
            for gram in spec_ngrams(doc.spec):
                index[gram].add(i)
            for mod in _modules(doc.code):
                hashes.setdefault(code_hash(mod), doc.source)
        boiler = {g for g, ids in index.items() if len(ids) >= BOILERPLATE_DOCS}
        content = {g: ids for g, ids in index.items() if g not in boiler}
        log.info(
            "decontamination index: %d benchmark problems, %d spec n-grams (%d boilerplate), %d code hashes",
            len(docs),
            len(content),
            len(boiler),
            len(hashes),
        )
        return cls(docs=docs, ngram_docs=content, code_hashes=hashes, boilerplate=boiler)

    def check(self, task: Task) -> dict | None:
        """``None`` when ``task`` is clean, else ``{"benchmark", "check", "detail"}``."""
        for mod in _modules(task.reference):
            source = self.code_hashes.get(code_hash(mod))
            if source:
                return {"benchmark": source, "check": "code", "detail": "same normalised token stream"}
        grams = spec_ngrams(task.prompt) - self.boilerplate
        if not grams:
            return None
        shared: Counter[int] = Counter()
        for gram in grams:
            for doc in self.ngram_docs.get(gram, ()):
                shared[doc] += 1
        if not shared:
            return None
        doc, hits = shared.most_common(1)[0]
        fraction = hits / len(grams)
        if hits >= MIN_SHARED and fraction >= THRESHOLD:
            return {
                "benchmark": self.docs[doc].source,
                "check": "spec",
                "detail": f"{hits} of {len(grams)} word {NGRAM}-grams shared ({fraction:.0%})",
            }
        return None

    def __call__(self, task: Task) -> dict | None:
        return self.check(task)
