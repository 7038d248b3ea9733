"""TensorBoard in CleanRL-style tag groups, a dashboard layout, and a console progress bar."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

# The CUSTOM SCALARS tab: what to read at a glance (a Margin chart draws a line and its band)
LAYOUT = {
    "trpo-ng": {
        "episode return (mean, min-max)": [
            "Margin",
            ["rollout/ep_return", "rollout/ep_return_min", "rollout/ep_return_max"],
        ],
        "evaluation return (mean, min-max)": [
            "Margin",
            ["eval/return_mean", "eval/return_min", "eval/return_max"],
        ],
        "KL against max_kl": ["Multiline", ["train/kl", "train/max_kl"]],
        "line search": [
            "Multiline",
            ["train/line_search_accepted", "train/line_search_backtracks"],
        ],
        "time per phase (s)": [
            "Multiline",
            ["time/collect_s", "time/policy_update_s", "time/value_update_s", "time/eval_s"],
        ],
    }
}


class Logger:
    def __init__(
        self, run_dir: Path, *, stream: TextIO | None = sys.stdout, purge_step: int | None = None
    ) -> None:
        """``purge_step``: on resume, points at or after it from earlier event files are
        dropped by TensorBoard, so a continued curve has no duplicates."""
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.stream = stream
        self._bar: tqdm | None = None

    def layout(self) -> None:
        self.writer.add_custom_scalars(LAYOUT)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def histograms(self, values: dict[str, torch.Tensor | np.ndarray], step: int) -> None:
        for tag, value in values.items():
            array = np.asarray(value, dtype=np.float64).reshape(-1)
            array = array[np.isfinite(array)]  # a NaN batch is skipped, not a crash
            if array.size:
                self.writer.add_histogram(tag, array, step)

    def video(self, tag: str, frames: list[np.ndarray], step: int, *, fps: int) -> None:
        """An episode as an animated GIF in TensorBoard's Images tab (how TensorBoard shows
        videos); ``frames`` are HxWxC uint8 images. Encoded with Pillow (the video extra)."""
        from PIL import Image

        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        buffer = io.BytesIO()
        images[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(1, round(1000 / fps)),
            loop=0,
        )
        height, width = frames[0].shape[:2]
        image = Summary.Image(
            height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue()
        )
        self.writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=tag, image=image)]), step
        )

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The HPARAMS tab: the config's scalar settings against the final metrics."""
        self.writer.add_hparams(hparams, metrics, run_name=".")

    def start_progress(self, total: int, initial: int = 0) -> None:
        """A console progress bar with steps/s and ETA (none when ``stream`` is None)."""
        if self.stream is not None:
            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="step",
                unit_scale=True,
                file=self.stream,
                dynamic_ncols=True,
            )

    def progress(self, step: int, values: dict[str, float]) -> None:
        """Advance the bar to ``step`` and show the latest ``values``."""
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self.writer.flush()
        self.writer.close()
