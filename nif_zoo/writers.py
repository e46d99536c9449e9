"""Metric writers: clu's ``MetricWriter`` interface without TensorFlow.

``clu.metric_writers`` imports TensorFlow (~600 MB) for its summary writer. ``jax_loop_utils``
is clu's TensorFlow-free fork with the same interface; its TensorBoard writer needs PyTorch, so
TensorBoard event files come from ``tensorboardX`` (a few MB) behind that same interface, and a
JSON-lines file keeps the curves that the training-curve PNG is drawn from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from jax_loop_utils.metric_writers import LoggingWriter, MultiWriter
from jax_loop_utils.metric_writers.interface import MetricWriter


class TensorBoardXWriter(MetricWriter):
    """Scalars and images as TensorBoard event files."""

    def __init__(self, logdir: str | Path):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(logdir))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        for key, value in scalars.items():
            self._writer.add_scalar(key, float(value), step)

    def write_images(self, step: int, images: Mapping[str, Any]):
        for key, value in images.items():
            self._writer.add_images(key, np.asarray(value), step, dataformats="NHWC")

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        for key, value in texts.items():
            self._writer.add_text(key, value, step)

    def write_histograms(self, step, arrays, num_buckets=None):
        for key, value in arrays.items():
            self._writer.add_histogram(key, np.asarray(value), step)

    def write_hparams(self, hparams):
        pass

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


class JsonLinesWriter(MetricWriter):
    """Appends ``{"step": ..., **scalars}`` lines to a file (read back by the curve plots)."""

    def __init__(self, path: str | Path):
        self._path = Path(path)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with self._path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def write_images(self, step, images):
        pass

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        pass

    def write_histograms(self, step, arrays, num_buckets=None):
        pass

    def write_hparams(self, hparams):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def read_json_lines(path: str | Path) -> list[dict[str, float]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def create_writer(workdir: str | Path, console: bool = True) -> MetricWriter:
    """Console (absl logging), TensorBoard and ``metrics.jsonl`` under ``workdir``."""
    workdir = Path(workdir)
    writers: list[MetricWriter] = [TensorBoardXWriter(workdir / "tensorboard"),
                                   JsonLinesWriter(workdir / "metrics.jsonl")]
    if console:
        writers.append(LoggingWriter())
    return MultiWriter(writers)
