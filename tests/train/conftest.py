"""Training fixtures: a dataset teaching a made-up fact, and one real training run shared by
every test that needs a trained adapter (the bundled model on CPU, ~12 LoRA steps)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from train.train_helpers import OTHER, Trained, fast_config, write_teaching_set


class _Snapshot:
    """A TrainerCallback that copies all parameters when training begins."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.params: dict[str, Any] = {}
        outer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                model = kw["model"]
                outer.params = {n: p.detach().clone() for n, p in model.named_parameters()}

        self.callback = Callback()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    from openclone.train.sft import SFTRunner

    root = tmp_path_factory.mktemp("trained")
    home = root / "home"
    dataset = write_teaching_set(root / "teach.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCLONE_HOME", str(home))
        snapshot = _Snapshot()
        runner = SFTRunner(
            fast_config(dataset, home / "models" / "act", eval_fraction=0.1),
            callbacks=[snapshot.callback],
        )
        result = runner.run()
    yield Trained(home, dataset, result, runner, snapshot.params)


@pytest.fixture(scope="session")
def other_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second adapter's GGUF LoRA, taught :data:`OTHER` for the same question: two
    adapters that must not answer with each other's weights."""
    from openclone.store.trained import get_trained
    from openclone.train.sft import SFTRunner

    root = tmp_path_factory.mktemp("other")
    home = root / "home"
    dataset = write_teaching_set(root / "teach.jsonl", code=OTHER)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCLONE_HOME", str(home))
        config = fast_config(dataset, home / "models" / "other", name="other", eval_steps=100)
        SFTRunner(config).run()
        return Path(get_trained("other", home).gguf_adapter)


@pytest.fixture(scope="session")
def other_peft(other_gguf: Path) -> Path:
    """The same second adapter as :func:`other_gguf`, as its PEFT directory (for the
    transformers engine); training writes the GGUF LoRA inside that directory."""
    peft_dir = other_gguf.parent
    assert (peft_dir / "adapter_config.json").is_file(), peft_dir
    return peft_dir
