"""Format level: finding the answer's Verilog in a model completion."""

from __future__ import annotations

import time

from rewards.extract import extract_verilog

TOP = "TopModule"
GOOD = "module TopModule(input a, output y);\n  assign y = ~a;\nendmodule"


def test_single_verilog_fence_with_prose():
    got = extract_verilog(f"Here is the design:\n```verilog\n{GOOD}\n```\nIt inverts a.", TOP)
    assert got.code == GOOD + "\n"
    assert got.modules == (TOP,) and got.error == ""


def test_fence_languages_sv_v_and_bare():
    for lang in ("systemverilog", "sv", "v", "", "Verilog"):
        got = extract_verilog(f"```{lang}\n{GOOD}\n```", TOP)
        assert got.code == GOOD + "\n", lang


def test_code_inside_think_is_ignored():
    wrong = GOOD.replace("~a", "a")
    completion = f"<think>\nDraft:\n```verilog\n{wrong}\n```\n</think>\nFinal:\n```verilog\n{GOOD}\n```"
    assert extract_verilog(completion, TOP).code == GOOD + "\n"


def test_unclosed_think_hides_everything_after_it():
    got = extract_verilog(f"<think>\nlet me try\n```verilog\n{GOOD}\n```", TOP)
    assert got.code is None
    assert "outside <think>" in got.error and "module TopModule" in got.error


def test_closing_think_without_opening_tag():
    draft = GOOD.replace("~a", "a")
    got = extract_verilog(f"reasoning {draft}\n</think>\n```verilog\n{GOOD}\n```", TOP)
    assert got.code == GOOD + "\n"


def test_answer_tags_are_preferred():
    other = GOOD.replace("~a", "1'b0")
    completion = f"Example:\n```verilog\n{other}\n```\n<answer>\n```verilog\n{GOOD}\n```\n</answer>"
    assert extract_verilog(completion, TOP).code == GOOD + "\n"


def test_answer_tags_without_fences():
    assert extract_verilog(f"<answer>\n{GOOD}\n</answer>", TOP).code == GOOD + "\n"


def test_last_block_defining_top_wins_and_keeps_needed_helpers():
    helper = "module half(input a, b, output s, c);\n  assign s = a ^ b;\n  assign c = a & b;\nendmodule"
    first = "module TopModule(input a, b, output s, c);\n  assign {c, s} = 0;\nendmodule"
    final = "module TopModule(input a, b, output s, c);\n  half h(a, b, s, c);\nendmodule"
    bench = "module tb;\n  TopModule dut();\nendmodule"
    completion = (
        f"```verilog\n{helper}\n```\nfirst try\n```verilog\n{first}\n```\nbetter:\n"
        f"```verilog\n{final}\n```\nand a test:\n```verilog\n{bench}\n```"
    )
    got = extract_verilog(completion, TOP)
    assert got.modules == (TOP, "half")
    assert "half h(a, b, s, c)" in got.code and "assign {c, s} = 0" not in got.code
    assert "module tb" not in got.code


def test_testbench_in_the_same_block_is_dropped():
    helper = "module inv(input a, output y); assign y = ~a; endmodule"
    top = "module TopModule(input a, output y); inv u(a, y); endmodule"
    bench = "module tb;\n  reg a; wire y;\n  TopModule dut(a, y);\n  initial begin a = 0; #1 $finish; end\nendmodule"
    got = extract_verilog(f"```verilog\n`define W 1\n{helper}\n{top}\n\n{bench}\n```", TOP)
    assert got.modules == ("inv", TOP)
    assert got.code == f"`define W 1\n{helper}\n{top}\n\n"


def test_raw_module_in_prose_without_fences():
    completion = f"Sure. The module below inverts its input.\n{GOOD}\nThis module is combinational."
    got = extract_verilog(completion, TOP)
    assert got.code == GOOD + "\n"


def test_raw_modules_pick_top_and_its_helpers():
    completion = (
        "module inv(input a, output y); assign y = ~a; endmodule\n"
        "then\nmodule TopModule(input a, output y); inv u(a, y); endmodule\n"
        "module unrelated; endmodule\n"
    )
    got = extract_verilog(completion, TOP)
    assert got.modules == (TOP, "inv")


def test_keywords_in_comments_and_strings_are_not_modules():
    code = (
        "// module TopModule(input z); endmodule\n/* module TopModule */\n"
        'module TopModule(input a, output y);\n  initial $display("endmodule");\n'
        "  assign y = a;\nendmodule : TopModule"
    )
    got = extract_verilog(f"```verilog\n{code}\n```", TOP)
    assert got.code == code + "\n" and got.modules == (TOP,)


def test_closing_fence_glued_to_endmodule():
    got = extract_verilog(f"```verilog\n{GOOD}```\n", TOP)
    assert got.code == GOOD + "\n"


def test_truncated_answer_reports_missing_endmodule():
    got = extract_verilog("```verilog\nmodule TopModule(input a);\n  assign", TOP)
    assert got.code is None and "no matching endmodule" in got.error


def test_wrong_module_name_is_named_in_the_error():
    got = extract_verilog("```verilog\nmodule top_module(input a);\nendmodule\n```", TOP)
    assert got.code is None
    assert got.error.startswith("no module named TopModule found (found top_module)")
    assert "the answer must define `module TopModule`" in got.error


def test_no_code_at_all():
    got = extract_verilog("I am not able to help with that.", TOP)
    assert got.code is None and "no module named TopModule found" in got.error


def test_crlf_line_endings():
    got = extract_verilog(f"```verilog\r\n{GOOD.replace(chr(10), chr(13) + chr(10))}\r\n```\r\n", TOP)
    assert got.code == GOOD + "\n"


def test_adversarial_inputs_stay_linear():
    # 2 MB per pattern: a quadratic scan would take hours, a linear one well under a second each.
    bad_inputs = [
        "/*" * 1_000_000,
        '"' * 2_000_000,
        "module " * 300_000,
        "```\n" * 500_000,
        "<think>" * 300_000,
        "module  TopModule ( " * 100_000,
        "x" * 10_000_000,
    ]
    for text in bad_inputs:
        start = time.perf_counter()
        got = extract_verilog(text, TOP)
        elapsed = time.perf_counter() - start
        assert got.code is None
        assert elapsed < 20, (text[:20], elapsed)


def test_large_valid_answer_with_long_dependency_chain():
    chain = "".join(
        f"module m{i}(input a, output y); m{i + 1} u(a, y); endmodule\n" for i in reversed(range(20_000))
    )
    completion = (
        f"```verilog\nmodule TopModule(input a, output y); m0 u(a, y); endmodule\n```\n```\n{chain}```"
    )
    got = extract_verilog(completion, TOP)
    assert got.modules[0] == TOP and len(got.modules) == 20_001


def test_body_completion_gets_the_task_header():
    header = "module TopModule(input a, input b, output out);"
    got = extract_verilog("  assign out = a & b;\nendmodule\n\nThis ANDs the inputs.", TOP, header=header)
    assert got.code == header + "\n  assign out = a & b;\nendmodule\n" and got.modules == (TOP,)
    fenced = extract_verilog("```verilog\n  assign out = a & b;\nendmodule\n```", TOP, header=header)
    assert fenced.code == got.code


def test_full_module_wins_over_header_completion():
    header = "module TopModule(input a, input b, output out);"
    full = "module TopModule(input a, input b, output out); assign out = a | b; endmodule"
    assert extract_verilog(f"```verilog\n{full}\n```", TOP, header=header).code == full + "\n"


def test_body_without_endmodule_is_not_completed():
    got = extract_verilog("  assign out = a & b;\n", TOP, header="module TopModule(input a, b, output out);")
    assert got.code is None
