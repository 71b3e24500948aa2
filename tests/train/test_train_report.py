"""The run report: loss curves as JSON and a PNG drawn without matplotlib."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from openclone.train.config import TrainConfig
from openclone.train.report import TRAIN_RGB, loss_curves, plot_png, write_png, write_report


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(h, 1 + w * 3)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_curves_from_trainer_logs_keep_one_point_per_step() -> None:
    logs = [
        {"loss": 2.0, "step": 1},
        {"loss": 1.0, "step": 2},
        {"eval_loss": 1.5, "step": 2},
        {"eval_loss": 1.4, "step": 2},
        {"train_runtime": 3.0, "step": 2},
    ]
    assert loss_curves(logs) == {"train": [[1.0, 2.0], [2.0, 1.0]], "eval": [[2.0, 1.4]]}


def test_png_is_valid_and_draws_the_curve(tmp_path: Path) -> None:
    curves = {"train": [[float(s), 3.0 / s] for s in range(1, 21)], "eval": [[10.0, 0.5]]}
    path = tmp_path / "loss.png"
    write_png(path, plot_png(curves, width=320, height=200))
    img = _decode_png(path.read_bytes())
    assert img.shape == (200, 320, 3)
    blue = (img == np.array(TRAIN_RGB, dtype=np.uint8)).all(axis=2)
    ys, xs = np.nonzero(blue[30:])  # below the legend
    assert xs.max() - xs.min() > 200  # the line spans the plot
    left, right = ys[xs < xs.min() + 10].mean(), ys[xs > xs.max() - 10].mean()
    assert left < right  # the loss falls: high on the left, low on the right


def test_png_without_points(tmp_path: Path) -> None:
    write_png(tmp_path / "e.png", plot_png({"train": [], "eval": []}))
    assert _decode_png((tmp_path / "e.png").read_bytes()).shape == (400, 640, 3)


def test_cost_counts_every_gpu_of_the_run(tmp_path: Path) -> None:
    cfg = TrainConfig(
        dataset=tmp_path / "d.jsonl", name="r", output_dir=tmp_path / "run", cost_per_hour=2.0
    )
    metrics = write_report(
        cfg, [], device="cuda", train_seconds=3000, wall_seconds=3600, tokens=0, steps=0, gpus=8
    )
    assert metrics["gpu_hours"] == 8.0 and metrics["estimated_cost"] == 16.0
    assert json.loads((tmp_path / "run" / "report" / "report.json").read_text())["gpu_hours"] == 8
