"""Embedded task corpus: committed splits, determinism, verification with real tools, decontamination, loader."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from rewards.types import Status, Task
from train.corpus import CorpusFileError, load_split, load_task_file
from train.corpus.base import SPLITS
from train.corpus.decontam import Decontaminator, benchmark_root, code_hash
from train.corpus.generate import FAMILIES, candidate_stream, designs_by_split, generate, write_corpus
from train.corpus.loader import DATA_DIR
from train.corpus.mutants import all_mutants
from train.corpus.seq import _fsm_next
from train.corpus.verify import fenced, verification_config, verify_tasks

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
VERIFY_SAMPLE = 60


def _manifest() -> dict:
    return json.loads((DATA_DIR / "manifest.json").read_text())


def _all_committed() -> dict[str, list[Task]]:
    return {split: load_split(split) for split in SPLITS}


def test_committed_splits_match_manifest_and_record_format():
    manifest = _manifest()
    splits = _all_committed()
    for split, tasks in splits.items():
        assert len(tasks) == sum(manifest["counts"][split].values()) > 0
        for task in tasks:
            family, _, name = task.id.partition("/")
            assert family == task.meta["family"] and name
            assert task.top_module == "top_module" and task.testbench is None
            if task.meta["kind"] == "seq":
                assert task.meta["clock"] == "clk" and task.meta["reset"] in ("rst", "rst_n")
                assert task.meta["reset_active"] == (task.meta["reset"] == "rst")
            assert f"`{task.top_module}`" in task.prompt
    assert sum(len(t) for t in splits.values()) == manifest["size"] - sum(manifest["shortfall"].values())
    assert len(splits["train"]) >= 600 and len(splits["val"]) >= 80
    assert len(splits["test"]) >= 100 and len(splits["test_ood"]) >= 60


def test_splits_are_disjoint_and_hold_out_designs_and_families():
    splits = _all_committed()
    ids = [t.id for tasks in splits.values() for t in tasks]
    assert len(ids) == len(set(ids))
    designs = {split: {(t.reference, t.meta.get("reset")) for t in tasks} for split, tasks in splits.items()}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not designs[a] & designs[b], (a, b)
    train_families = {t.meta["family"] for t in splits["train"]}
    ood_families = {t.meta["family"] for t in splits["test_ood"]}
    assert {"gray2bin", "seq_detector_mealy"} <= ood_families - train_families
    # test: unseen instances inside the training ranges; test_ood: unseen widths
    widths = {
        split: {t.meta["params"].get("w") for t in splits[split] if t.meta["family"] == "adder"}
        for split in SPLITS
    }
    assert widths["train"] and not widths["train"] & {5, 6, 10, 12}
    assert widths["test"] and widths["test"] <= {2, 3, 4, 8, 16}
    assert widths["test_ood"] <= {5, 6, 10, 12}
    assert {t.meta["family"] for t in splits["test"]} <= train_families


def test_every_design_split_is_fixed_by_its_parameters():
    by_split = designs_by_split()
    seen = {}
    for split, families in by_split.items():
        for name, entries in families.items():
            for params, _family in entries:
                key = (name, json.dumps(params, sort_keys=True))
                assert seen.setdefault(key, split) == split
    assert len(FAMILIES) >= 24


def test_generation_is_deterministic(tmp_path):
    first, report_a = generate(160, 7)
    second, report_b = generate(160, 7)
    paths_a = write_corpus(first, report_a, tmp_path / "a")
    paths_b = write_corpus(second, report_b, tmp_path / "b")
    for a, b in zip(paths_a, paths_b, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    other, _ = generate(160, 8)
    assert [t.id for t in other["train"]] != [t.id for t in first["train"]]


def test_committed_files_regenerate_byte_for_byte(tmp_path):
    """Replaying the recorded verification verdicts reproduces the committed files exactly."""
    manifest = _manifest()
    dropped = {d["id"] for d in manifest["dropped"]}

    class Replayed:
        def __init__(self, task_id):
            self.ok = task_id not in dropped
            self.reason = "recorded drop"
            record = manifest["mutants"].get(task_id, {})
            self.killed = record.get("killed", [])
            self.survived = record.get("survived", [])
            self.invalid = record.get("invalid", [])

    removed = {d["id"]: d for d in manifest["decontaminated"]}
    splits, report = generate(
        manifest["size"],
        manifest["seed"],
        verifier=lambda tasks: [Replayed(t.id) for t in tasks],
        is_contaminated=lambda task: (
            removed.get(task.id) and {k: v for k, v in removed[task.id].items() if k not in ("id", "split")}
        ),
    )
    write_corpus(splits, report, tmp_path)
    for split in SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (DATA_DIR / f"{split}.jsonl").read_bytes(), split


def test_candidate_stream_balances_families():
    families = len(designs_by_split()["train"])
    stream = candidate_stream("train", 0)
    first = [next(stream).design.family for _ in range(families)]
    assert len(set(first)) == len(first)


def _sample(tasks: list[Task], k: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    return rng.sample(tasks, min(k, len(tasks)))


def test_every_split_stream_yields_each_task_id_once():
    # LFSR seeds are taken modulo the period, so two grid points can build the same design; a
    # corpus of thousands once held the same task id twice.
    for split in SPLITS:
        ids = [c.task_id for c in candidate_stream(split, 0)]
        assert ids and len(ids) == len(set(ids)), split
        designs = {c.design.slug for c in candidate_stream(split, 0) if c.design.family == "lfsr"}
        assert len(designs) * 3 == sum(1 for i in ids if i.startswith("lfsr/"))


def test_committed_goldens_pass_and_their_mutants_fail():
    """A deterministic sample (the whole corpus was verified when it was generated; see manifest)."""
    tasks = [t for split in SPLITS for t in load_split(split)]
    sample = _sample(tasks, VERIFY_SAMPLE, 0)
    verdicts = verify_tasks(sample)
    recorded = _manifest()["mutants"]
    still_killed = total = 0
    for task, verdict in zip(sample, verdicts, strict=True):
        assert verdict.ok, f"{task.id}: {verdict.reason}"
        assert verdict.killed, task.id
        total += len(recorded[task.id]["killed"])
        still_killed += len(set(recorded[task.id]["killed"]) & set(verdict.killed))
    # A change of stimulus (seeds, harness version) may let a rare mutant through; most must stay caught.
    assert still_killed >= 0.9 * total


def test_fsm_next_state_matches_a_reference_detector():
    rng = random.Random(1)
    for pattern in ("1011", "0110", "111", "010", "10010"):
        for overlap in (0, 1):
            for moore in (True, False):
                bits = "".join(rng.choice("01") for _ in range(400))
                state, outputs, expected, start = 0, [], [], 0
                for i, bit in enumerate(bits):
                    if not moore:
                        outputs.append(int(state == len(pattern) - 1 and bit == pattern[-1]))
                    state = _fsm_next(pattern, state, bit, bool(overlap), moore)
                    if moore:
                        outputs.append(int(state == len(pattern)))
                    hit = bits[max(start, 0) : i + 1].endswith(pattern) and i + 1 - start >= len(pattern)
                    expected.append(int(hit))
                    if hit and not overlap:
                        start = i + 1
                assert outputs == expected, (pattern, overlap, moore)


def test_alternative_designs_meeting_the_spec_are_accepted():
    """Specs leave the state encoding free: a one-hot Moore detector passes a binary-coded golden's task."""
    task = next(t for t in load_split("train") if t.meta["family"] == "seq_detector_moore")
    pattern, reset = task.meta["params"]["pattern"], task.meta["reset"]
    overlap = bool(task.meta["params"]["overlap"])
    n = len(pattern) + 1
    active = "1" if task.meta["reset_active"] else "0"
    edge = "" if task.meta["reset_sync"] else f" or {'posedge' if active == '1' else 'negedge'} {reset}"
    rows = []
    for s in range(n):
        for bit in "01":
            rows.append(
                f"      if (s[{s}] && x == 1'b{bit}) ns[{_fsm_next(pattern, s, bit, overlap, True)}] = 1'b1;"
            )
    code = "\n".join(
        [
            f"module top_module(input clk, input {reset}, input x, output z);",
            f"  reg [{n - 1}:0] s, ns;",
            f"  always @* begin\n    ns = {n}'d0;",
            *rows,
            "  end",
            f"  always @(posedge clk{edge})",
            f"    if ({reset} == 1'b{active}) s <= {n}'d1;",
            "    else s <= ns;",
            f"  assign z = s[{n - 1}];",
            "endmodule",
        ]
    )
    from rewards.score import score

    result = score(task, fenced(code), verification_config())
    assert result.status is Status.OK, result.log


def test_mutants_never_touch_the_port_list():
    task = next(t for t in load_split("train") if t.meta["family"] == "fifo")
    header = task.reference.split(");", 1)[0]
    mutants = all_mutants(task.reference)
    assert {m.kind for m in mutants} == {"operator", "constant", "reset", "signal"}
    assert all(m.code.startswith(header) for m in mutants)


@pytest.fixture(scope="module")
def decontaminator() -> Decontaminator:
    if not BENCH.is_dir():
        pytest.skip(f"benchmarks not found at {BENCH}")
    assert benchmark_root() == BENCH
    return Decontaminator.from_benchmarks(BENCH)


UNRELATED = "module top_module(input [2:0] a, output [5:0] y);\n  assign y = {a, ~a} + 6'd17;\nendmodule\n"


def test_decontamination_flags_planted_near_copies(decontaminator):
    v2 = BENCH / "verilog-eval-v2" / "dataset_spec-to-rtl"
    prompt = (v2 / "Prob001_zero_prompt.txt").read_text().replace("LOW", "logic low")
    planted = Task(id="x/zero", prompt=prompt, top_module="top_module", reference=UNRELATED)
    hit = decontaminator.check(planted)
    assert hit and hit["check"] == "spec" and hit["benchmark"].endswith("Prob001_zero")

    spec = (BENCH / "rtllm-v1.1" / "adder_8bit" / "design_description.txt").read_text()
    planted = Task(
        id="x/adder", prompt=spec.replace("8-bit", "eight bit"), top_module="top_module", reference=UNRELATED
    )
    hit = decontaminator.check(planted)
    assert hit and hit["benchmark"] == "rtllm-v1.1/adder_8bit"

    ref = (v2 / "Prob001_zero_ref.sv").read_text().replace("RefModule", "top_module").replace("zero", "out")
    ref = "// a different comment\n" + ref.replace("\n", "\n\n")
    planted = Task(
        id="x/code", prompt="Drive the output low forever.", top_module="top_module", reference=ref
    )
    hit = decontaminator.check(planted)
    assert hit and hit["check"] == "code" and "Prob001_zero" in hit["benchmark"]


def test_decontamination_passes_the_committed_corpus(decontaminator):
    flagged = [t.id for split in SPLITS for t in load_split(split) if decontaminator.check(t)]
    assert flagged == []
    assert code_hash("module a(input x, output y); assign y = x; endmodule") == code_hash(
        "module b (input p,\n output q); // c\n assign q = p; endmodule"
    )


GOOD = {
    "id": "u/ok",
    "prompt": "p",
    "top_module": "m",
    "reference": "module m(output y); assign y = 0; endmodule",
}


def test_loader_reports_every_bad_record_with_file_line_and_field(tmp_path):
    path = tmp_path / "tasks.jsonl"
    lines = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({**GOOD, "id": "u/noprompt", "prompt": ""}),
        json.dumps({**GOOD, "id": "u/badmeta", "meta": {"reset_active": 2}}),
        json.dumps({**GOOD, "id": "u/notop", "top_module": "other"}),
        json.dumps({**GOOD, "colour": "red"}),
        json.dumps(GOOD),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusFileError) as info:
        load_task_file(path)
    problems = info.value.problems
    assert problems[0].startswith(f"{path}:2: (record): not valid JSON")
    assert problems[1].startswith(f"{path}:3: prompt:")
    assert problems[2].startswith(f"{path}:4: meta.reset_active: must be 0 or 1")
    assert problems[3].startswith(f"{path}:5: reference: does not define module 'other'")
    assert problems[4].startswith(f"{path}:6: (record):") and "colour" in problems[4]
    assert problems[5].startswith(f"{path}:7: id: duplicate task id 'u/ok'")
    assert len(problems) == 6
    with pytest.raises(CorpusFileError, match="no such file"):
        load_task_file(tmp_path / "missing.jsonl")


def test_loader_reads_parquet_and_saved_hf_datasets(tmp_path):
    from datasets import Dataset

    tasks = load_split("val")[:5]
    records = [t.to_dict() for t in tasks]
    for r in records:
        r["meta"] = json.loads(json.dumps(r["meta"]))
    data = Dataset.from_list([{k: v for k, v in r.items() if k != "meta"} for r in records])
    data.to_parquet(str(tmp_path / "t.parquet"))
    loaded = load_task_file(tmp_path / "t.parquet")
    assert [t.id for t in loaded] == [t.id for t in tasks]
    assert [t.reference for t in loaded] == [t.reference for t in tasks]
    data.save_to_disk(str(tmp_path / "hf"))
    assert [t.id for t in load_task_file(tmp_path / "hf")] == [t.id for t in tasks]
    bad = Dataset.from_list([{**GOOD, "top_module": "zz"}])
    bad.to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(CorpusFileError, match=r"bad\.parquet:1: reference"):
        load_task_file(tmp_path / "bad.parquet")


def test_cli_verify_and_stats(tmp_path, capsys):
    from train.corpus.__main__ import main

    tasks = [t for t in load_split("test") if t.meta["kind"] == "comb"][:2]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tasks))
    assert main(["verify", str(good)]) == 0
    broken = {**tasks[0].to_dict(), "reference": tasks[0].reference.replace("assign", "asign")}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(broken) + "\n")
    assert main(["verify", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["stats", str(good)]) == 0
    assert "2 tasks" in capsys.readouterr().out
    assert main(["stats", str(tmp_path / "nope.jsonl")]) == 2
