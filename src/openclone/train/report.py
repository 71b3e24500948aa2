"""A run's report: metrics and loss curves as JSON, and the curves as a PNG.

The PNG is drawn here with numpy and written with zlib (a few dozen lines) rather than
pulling in matplotlib (~40 MB with its dependencies) for one chart: two polylines, axes,
grid lines and numeric labels in a built-in 3x5 pixel font.
"""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from openclone.train.config import TrainConfig

__all__ = ["loss_curves", "plot_png", "write_png", "write_report"]

Canvas = npt.NDArray[np.uint8]
TRAIN_RGB, EVAL_RGB, INK, GRID = (31, 119, 180), (255, 127, 14), (40, 40, 40), (225, 225, 225)

# 3x5 glyphs, rows top to bottom, 3 bits each (4 = left pixel).
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), "-": (0, 0, 7, 0, 0),
    "A": (2, 5, 7, 5, 5), "E": (7, 4, 6, 4, 7), "I": (7, 2, 2, 2, 7), "L": (4, 4, 4, 4, 7),
    "N": (5, 7, 7, 7, 5), "O": (7, 5, 5, 5, 7), "P": (7, 5, 7, 4, 4), "R": (6, 5, 6, 5, 5),
    "S": (7, 4, 7, 1, 7), "T": (7, 2, 2, 2, 2), "V": (5, 5, 5, 5, 2), " ": (0, 0, 0, 0, 0),
}  # fmt: skip


def loss_curves(log_history: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """``{"train": [[step, loss], ...], "eval": [[step, eval_loss], ...]}`` from Trainer logs
    (one point per step; a repeated step keeps its last value)."""
    train = {float(e["step"]): float(e["loss"]) for e in log_history if "loss" in e}
    evals = {float(e["step"]): float(e["eval_loss"]) for e in log_history if "eval_loss" in e}
    return {"train": [[s, v] for s, v in train.items()], "eval": [[s, v] for s, v in evals.items()]}


def _text(img: Canvas, x: int, y: int, text: str, scale: int = 2) -> None:
    for i, ch in enumerate(text.upper()):
        rows = _FONT.get(ch, _FONT[" "])
        for r, bits in enumerate(rows):
            for c in range(3):
                if bits & (4 >> c):
                    x0, y0 = x + (i * 4 + c) * scale, y + r * scale
                    img[y0 : y0 + scale, x0 : x0 + scale] = INK


def _line(img: Canvas, pts: npt.NDArray[np.float64], rgb: tuple[int, int, int]) -> None:
    h, w, _ = img.shape
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        xs = np.rint(np.linspace(x0, x1, n)).astype(int)
        ys = np.rint(np.linspace(y0, y1, n)).astype(int)
        for dx, dy in ((0, 0), (1, 0), (0, 1)):  # 2 px wide
            img[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = rgb


def plot_png(curves: dict[str, list[list[float]]], width: int = 640, height: int = 400) -> Canvas:
    """Loss against step on white: train in blue, eval in orange (dots mark eval points)."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 60, width - 20, 30, height - 40
    points = [p for series in curves.values() for p in series]
    if not points:
        _text(img, left, height // 2, "NO LOSS LOGGED")
        return img
    arr = np.array(points)
    x_max = max(float(arr[:, 0].max()), 1.0)
    y_lo, y_hi = float(arr[:, 1].min()), float(arr[:, 1].max())
    if y_hi - y_lo < 1e-6:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5

    def to_px(series: list[list[float]]) -> npt.NDArray[np.float64]:
        s = np.array(series, dtype=np.float64)
        xs = left + s[:, 0] / x_max * (right - left)
        ys = bottom - (s[:, 1] - y_lo) / (y_hi - y_lo) * (bottom - top)
        return np.stack([xs, ys], axis=1)

    for k in range(5):  # horizontal grid with loss labels
        y = round(bottom - k / 4 * (bottom - top))
        img[y, left:right] = GRID
        _text(img, 4, y - 5, f"{y_lo + k / 4 * (y_hi - y_lo):.2f}")
    img[top:bottom, left] = INK
    img[bottom, left:right] = INK
    _text(img, left, bottom + 8, "0")
    _text(img, right - 4 * 2 * len(str(int(x_max))), bottom + 8, str(int(x_max)))
    _text(img, (left + right) // 2 - 16, bottom + 22, "STEP")
    _text(img, left, 8, "TRAIN LOSS")
    img[8:18, left + 90 : left + 110] = TRAIN_RGB
    _text(img, left + 130, 8, "EVAL LOSS")
    img[8:18, left + 210 : left + 230] = EVAL_RGB
    for name, rgb in (("train", TRAIN_RGB), ("eval", EVAL_RGB)):
        if curves.get(name):
            px = to_px(curves[name])
            if len(px) > 1:
                _line(img, px, rgb)
            for x, y in px if name == "eval" or len(px) == 1 else []:
                img[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = rgb
    return img


def write_png(path: Path, img: Canvas) -> None:
    """An 8-bit RGB PNG: signature, IHDR, one zlib IDAT (filter 0 per row), IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    h, w, _ = img.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), img.reshape(h, w * 3)], axis=1)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def write_report(
    cfg: TrainConfig,
    log_history: list[dict[str, Any]],
    *,
    device: str,
    train_seconds: float,
    wall_seconds: float,
    tokens: int,
    steps: int,
    gpus: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``report/{report.json,loss.json,loss.png}`` under the run dir; return the metrics.

    ``tokens`` and ``steps`` are this session's (a resumed run reports its last leg's speed);
    cost is machine-hours (GPU-hours on GPUs) times ``cost_per_hour``.
    """
    out = cfg.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    curves = loss_curves(log_history)
    hours = wall_seconds / 3600
    gpu_hours = hours * gpus if device == "cuda" else 0.0
    metrics: dict[str, Any] = {
        "final_step": int(log_history[-1]["step"]) if log_history else 0,
        "train_loss": curves["train"][-1][1] if curves["train"] else None,
        "eval_loss": curves["eval"][-1][1] if curves["eval"] else None,
        "device": device,
        "steps_this_session": steps,
        "tokens_this_session": tokens,
        "tokens_per_second": round(tokens / train_seconds, 1) if train_seconds > 0 else None,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "gpu_hours": round(gpu_hours, 5),
        "cost_per_hour": cfg.cost_per_hour,
        "estimated_cost": round((gpu_hours if device == "cuda" else hours) * cfg.cost_per_hour, 4),
        **(extra or {}),
    }
    (out / "report.json").write_text(json.dumps(metrics, indent=2))
    (out / "loss.json").write_text(json.dumps(curves))
    write_png(out / "loss.png", plot_png(curves))
    return metrics
