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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

# A pretrained encoder given a question-answering head: the head is new (MISSING) and the
# pretraining pooler is unused (UNEXPECTED). Any other key in a LOAD REPORT is worth reading.
EXPECTED_REPORT_KEY = re.compile(r"^(qa_outputs|pooler)\.\S+$")
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
    """A bar for `total` steps while the block runs; yields `advance(n=1)`."""
    with Progress(*progress_columns(), console=console or Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda steps=1: bar.advance(task, steps)


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
