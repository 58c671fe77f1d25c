"""What a person watching the terminal sees: one style of progress bar, and no third-party noise.

Every step that takes more than a few seconds (SQuAD's windows, the teacher's fine-tune and its
logits, the sweep and each trial) shows a rich bar with what it is doing, how far it is and how
long is left. Model loading in transformers prints a bar per load and a "LOAD REPORT" table
whenever a checkpoint lacks a head; putting a new question-answering head on a pretrained
encoder is what paretune means to do, so that report is dropped (any other report still shows)
and the caller says it in one line. Loads rich and, when asked, transformers; nothing heavier.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console, RenderableType
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

# A pretrained encoder given a question-answering head: the head is new (MISSING) and the
# pretraining pooler is unused (UNEXPECTED). Any other key in a LOAD REPORT is worth reading.
EXPECTED_REPORT_KEY = re.compile(r"^(qa_outputs|pooler)\.\S+$")
LINE_EVERY_S = 30.0
REPORT_ROW = re.compile(r"^(\S+)\s+\|\s+(MISSING|UNEXPECTED|MISMATCH\w*)\b", re.M)


class WhenTotalKnown(ProgressColumn):
    """A column shown only for rows with a total (a running trial's row has none)."""

    def __init__(self, column: ProgressColumn):
        super().__init__()
        self.column = column

    def render(self, task: Task) -> RenderableType:
        return self.column.render(task) if task.total is not None else Text("")


def progress_columns() -> tuple[ProgressColumn, ...]:
    """What it is doing, the bar, how far (n of total), time spent and time left."""
    return (TextColumn("{task.description}"), BarColumn(), WhenTotalKnown(MofNCompleteColumn()), TimeElapsedColumn(),
            WhenTotalKnown(TextColumn("left")), WhenTotalKnown(TimeRemainingColumn()))


@contextmanager
def step_progress(description: str, total: int, console: Console | None = None) -> Iterator[Callable[[int], None]]:
    """A bar for `total` steps while the block runs; yields `advance(n=1)`. Where the output is
    not a terminal (a pipe, a log file), which cannot redraw a bar, a line every `LINE_EVERY_S`."""
    if console is None:
        console = Console(stderr=True)
        if not console.is_terminal:
            console.width = 160  # rich assumes 80 columns in a file and would cut the last line short
    with Progress(*progress_columns(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        if console.is_terminal:
            yield lambda steps=1: bar.advance(task, steps)
            return
        last_line = time.monotonic()

        def advance(steps: int = 1) -> None:
            nonlocal last_line
            bar.advance(task, steps)
            if time.monotonic() - last_line >= LINE_EVERY_S:
                last_line = time.monotonic()
                console.print(progress_line(bar.tasks[0]), highlight=False, soft_wrap=True)
        yield advance


def progress_line(task: Task) -> str:
    """`fine-tuning the teacher: 120/1082 (11%), 2:05 so far, about 17:40 left`."""
    line = f"{task.description}: {task.completed:g}/{task.total:g} ({task.percentage:.0f}%), " \
           f"{timedelta(seconds=round(task.elapsed or 0))} so far"
    if task.time_remaining is not None:
        line += f", about {timedelta(seconds=round(task.time_remaining))} left"
    return line


class ExpectedHeadReport(logging.Filter):
    """Drops transformers' LOAD REPORT when it lists only a new QA head and an unused pooler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        keys = [key for key, _ in REPORT_ROW.findall(message)]
        return not keys or not all(EXPECTED_REPORT_KEY.match(key) for key in keys)


def quiet_model_loading() -> None:
    """transformers without its per-load progress bars and its expected-head LOAD REPORTs
    (idempotent; call it in every process that loads models)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    for name in ("transformers.modeling_utils", "transformers.utils.loading_report"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedHeadReport) for f in logger.filters):
            logger.addFilter(ExpectedHeadReport())
