"""``openclone loop create``: append a checked ``[[loops]]`` block to openclone.toml.

The block is checked as the loader checks it (:meth:`LoopConfig.from_dict`), a name
already in the file is refused, and the file is read back after the write: if the
settings no longer load, the file is put back as it was and the error is raised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openclone.config import load_settings
from openclone.errors import ConfigError
from openclone.loop.config import LoopConfig, load_loops

__all__ = ["append_loop", "loop_toml"]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        # A JSON string is a TOML basic string: the same escapes (\" \\ \n \uXXXX).
        return json.dumps(v, ensure_ascii=False)
    raise ConfigError(f"cannot write {v!r} to TOML")


def loop_toml(values: dict[str, Any]) -> str:
    """The ``[[loops]]`` block of ``values`` (None values left out; ``budget`` a subtable)."""
    lines = ["", "[[loops]]"]
    budget = values.get("budget") or {}
    lines += [f"{k} = {_value(v)}" for k, v in values.items() if k != "budget" and v is not None]
    if any(v is not None for v in budget.values()):
        lines.append("[loops.budget]")
        lines += [f"{k} = {_value(v)}" for k, v in budget.items() if v is not None]
    return "\n".join(lines) + "\n"


def append_loop(path: Path, values: dict[str, Any]) -> LoopConfig:
    """Check ``values`` as one ``[[loops]]`` entry and append it to ``path`` (made if new)."""
    clean = {k: v for k, v in values.items() if v is not None and k != "budget"}
    clean["budget"] = {k: v for k, v in (values.get("budget") or {}).items() if v is not None}
    loop = LoopConfig.from_dict(clean)
    before = path.read_text(encoding="utf-8") if path.exists() else None
    if before is not None:
        names = [existing.name for existing in load_loops(load_settings(path))]
        if loop.name in names:
            raise ConfigError(f"{path} already has a loop named {loop.name!r}")
    text = (before or "").rstrip("\n")
    path.write_text((text + "\n\n" if text else "") + loop_toml(clean).lstrip("\n"), "utf-8")
    try:  # read back as `loop run` will: what was written must load
        (written,) = [x for x in load_loops(load_settings(path)) if x.name == loop.name]
    except Exception:
        if before is None:
            path.unlink()
        else:
            path.write_text(before, encoding="utf-8")
        raise
    return written
