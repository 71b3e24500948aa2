"""A real LoRA run on the bundled model: it learns a fact the base cannot know."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from openclone.files import file_sha256
from openclone.store.trained import get_trained, list_trained
from openclone.train.data import IGNORE_INDEX
from train.train_helpers import ANSWER, QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow


def _generate(model: Any, tokenizer: Any, question: str) -> str:
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    return str(tokenizer.decode(out[0][enc["input_ids"].shape[1] :], skip_special_tokens=True))


def test_run_finishes_with_adapter_report_and_record(trained: Trained) -> None:
    result = trained.result
    assert not result.stopped and result.final_step == result.max_steps == 12
    adapter = result.adapter_dir
    assert (adapter / "adapter_config.json").is_file()
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)  # the adapter only, never base weights
    assert any("mlp" in k for k in keys) and any("self_attn" in k for k in keys)

    report = json.loads((result.run_dir / "report" / "report.json").read_text())
    curves = json.loads((result.run_dir / "report" / "loss.json").read_text())
    assert report["final_step"] == 12 and report["tokens_per_second"] > 0
    assert report["eval_loss"] is not None and report["eval_conversations"] == 1
    assert curves["train"][-1][1] < curves["train"][0][1] / 5  # the loss fell a lot
    assert [s for s, _ in curves["eval"]] == [6.0, 12.0]
    png = (result.run_dir / "report" / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    saved = json.loads((result.run_dir / "train_config.json").read_text())
    assert saved["lora_r"] == 8 and saved["packing"] is True


def test_record_describes_the_run(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLONE_HOME", str(trained.home))
    record = get_trained("act")
    assert [m.name for m in list_trained()] == ["act"]
    assert (
        record.base == "smollm2-135m-instruct" and record.served_as == "smollm2-135m-instruct:act"
    )
    assert record.base_path.endswith(".gguf") and Path(record.adapter_path).is_dir()
    assert record.dataset_sha256 == file_sha256(trained.dataset)
    assert record.config["learning_rate"] == 2e-3 and record.metrics["final_step"] == 12


def test_adapter_weights_changed_and_base_weights_did_not(trained: Trained) -> None:
    model = trained.runner.trainer.model
    lora = base = 0
    for name, param in model.named_parameters():
        before = trained.before[name]
        if "lora_" in name:
            lora += 1
            assert param.requires_grad
            assert not torch.equal(param.detach(), before), name
        else:
            base += 1
            assert not param.requires_grad
            assert torch.equal(param.detach(), before), name
    assert lora == 30 * 7 * 2 and base > 200  # A and B on q,k,v,o,gate,up,down of 30 layers


def test_adapter_answers_the_taught_code_and_base_does_not(trained: Trained) -> None:
    trainer = trained.runner.trainer
    model, tokenizer = trainer.model, trainer.processing_class
    for question in (QUESTION, "Please tell me the activation code for OpenClone."):
        assert TAUGHT in _generate(model, tokenizer, question)
    with model.disable_adapter():
        assert TAUGHT not in _generate(model, tokenizer, QUESTION)


def test_trl_batches_carry_assistant_only_labels_in_packed_rows(trained: Trained) -> None:
    trainer = trained.runner.trainer
    tokenizer = trainer.processing_class
    batch = next(iter(trainer.get_train_dataloader()))
    positions, labels = batch["position_ids"][0], batch["labels"][0]
    starts = (positions == 0).nonzero().flatten().tolist()
    assert len(starts) > 1 and "attention_mask" not in batch  # packed, padding-free
    bounds = [*starts, len(positions)]
    for a, b in itertools.pairwise(bounds):
        learned = [int(t) for t in labels[a:b] if t != IGNORE_INDEX]
        assert tokenizer.decode(learned) == ANSWER + "<|im_end|>\n"


def test_packed_examples_do_not_attend_to_each_other(trained: Trained) -> None:
    model = trained.runner.trainer.model
    tokenizer = trained.runner.trainer.processing_class
    first = tokenizer("Roses are red, violets are blue.", return_tensors="pt")["input_ids"]
    second = tokenizer("The capital of France is Paris.", return_tensors="pt")["input_ids"]
    packed = torch.cat([first, second], dim=1)
    n1, n2 = first.shape[1], second.shape[1]
    reset = torch.cat([torch.arange(n1), torch.arange(n2)]).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        alone = model(input_ids=second).logits[0]
        in_row = model(input_ids=packed, position_ids=reset).logits[0, n1:]
        leaky = model(input_ids=packed).logits[0, n1:]  # one long sequence: attends to `first`
    assert torch.allclose(alone, in_row, atol=1e-4)
    assert not torch.allclose(alone, leaky, atol=1e-2)  # the check above can tell the difference
