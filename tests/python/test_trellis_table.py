"""tools/make_trellis_table.py end to end on a tiny model: rows measured into a workdir, skipped
when done, and the table written between its markers."""
import json
import math
import pathlib
import subprocess
import sys

from tiny_models import tiny_model_with_tokenizer

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "tools" / "make_trellis_table.py"


def make_table(marlin_bin, model, text, workdir, *args):
    r = subprocess.run([sys.executable, SCRIPT, "--workdir", workdir, "--model", model, "--marlin", marlin_bin,
                        "--chunks", "1", "--ctx", "64", "--text", text, "--calibration", text,
                        "--calibration-samples", "8", "--calibration-ctx", "64", "--threads", "2", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def test_rows_are_measured_once_and_written_to_the_doc(marlin_bin, tmp_path):
    model, text = tiny_model_with_tokenizer(tmp_path / "tiny_qwen3", "tiny_qwen3")
    workdir = tmp_path / "work"
    r = make_table(marlin_bin, model, text, workdir, "--rows", "int3-g128-gptq", "trellis3-gptq", "baseline")
    rows = {row["id"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert list(rows) == ["baseline", "trellis3-gptq", "int3-g128-gptq"]  # table order
    for row in rows.values():
        assert math.isfinite(row["ppl"]) and row["ppl"] > 1 and row["ppl_err"] > 0
    assert rows["baseline"]["kl"] is None and rows["baseline"]["bits_per_weight"] == 32
    # tiny_qwen3's block linears have 64, 96 or 256 columns: 3 bits a weight plus an fp16 scale per
    # row (trellis) or per group of at most 128 (int3-g128), so between 3 + 16/256 and 3 + 16/64.
    trellis, int3 = rows["trellis3-gptq"], rows["int3-g128-gptq"]
    assert trellis["linear_formats"] == ["trellis3"] and 3 + 16 / 256 < trellis["bits_per_weight"] < 3 + 16 / 64
    assert int3["linear_formats"] == ["int3-g128"] and 3 + 16 / 256 < int3["bits_per_weight"] < 3 + 16 / 64
    for row in (trellis, int3):
        assert 0 <= row["kl"] < 1 and 0 <= row["top1"] <= 1 and row["quantize_s"] > 0
    assert sorted(p.name for p in workdir.glob("*.marlin")) == ["int3-g128-gptq.marlin", "trellis3-gptq.marlin"]

    again = make_table(marlin_bin, model, text, workdir, "--rows", "trellis3-gptq", "int3-g128-gptq", "baseline")
    assert again.stdout == "" and again.stderr.count("done already") == 3
    # Rows that would outlast --budget (judged from the finished rows of their kind) wait for the next run.
    late = make_table(marlin_bin, model, text, workdir, "--rows", "int2-g64-rtn", "trellis4-rtn", "--budget", "0.001")
    assert late.stdout == "" and "run again for: trellis4-rtn int2-g64-rtn" in late.stderr
    assert not (workdir / "trellis4-rtn.marlin").exists() and not (workdir / "int2-g64-rtn.json").exists()

    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n\n<!-- trellis-table:begin -->\nto be measured\n<!-- trellis-table:end -->\n\nafter\n")
    make_table(marlin_bin, model, text, workdir, "--write-doc", "--doc", doc)
    lines = doc.read_text().splitlines()
    assert "to be measured" not in lines and lines[-1] == "after"
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 2 + 3 and table[3].startswith("| trellis 3 (rotation + LDLQ) | 3.1")
    assert any(line.startswith("Measured on CPU ") for line in lines)
