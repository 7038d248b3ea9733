"""TensorBoard scalars in CleanRL-style tag groups, and a one-line console progress report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from torch.utils.tensorboard import SummaryWriter


class Logger:
    def __init__(
        self, run_dir: Path, *, stream: TextIO | None = sys.stdout, purge_step: int | None = None
    ) -> None:
        """``purge_step``: on resume, points at or after it from earlier event files are
        dropped by TensorBoard, so a continued curve has no duplicates."""
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.stream = stream

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def progress(self, step: int, total: int, values: dict[str, float]) -> None:
        """One console line: steps done, then the given values."""
        if self.stream is None:
            return
        parts = [f"{step:>{len(str(total))}d}/{total} steps"]
        parts += [f"{name} {value:.4g}" for name, value in values.items()]
        print(" | ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
