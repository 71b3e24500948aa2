"""Export: merged HF weights, and a GGUF that llama.cpp loads and that knows the taught fact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from openclone.errors import ConfigError, ModelNotFound
from openclone.schema import ChatCompletionRequest
from openclone.train.export import export_model, llama_permute
from train.train_helpers import QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow


def _llamacpp_answer(path: Path, question: str) -> str:
    from openclone.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.from_config(
        "exported", {"model_path": str(path), "n_ctx": 512, "n_parallel": 1}
    )

    async def ask() -> str:
        try:
            req = ChatCompletionRequest(
                model="exported",
                messages=[{"role": "user", "content": question}],
                max_tokens=24,
                temperature=0,
            )
            out = await engine.chat(req)
            return out.choices[0].message.content or ""
        finally:
            await engine.close()

    return asyncio.run(ask())


def test_llama_permute_restores_the_gguf_layout(trained: Trained) -> None:
    """The exporter's q/k permutation is the exact inverse of transformers' GGUF loader."""
    import gguf

    base = trained.runner.trainer.model.get_base_model()
    reader = gguf.GGUFReader(trained.runner.trainer.model.config._name_or_path)
    stored = {t.name: t for t in reader.tensors}
    attn = base.model.layers[3].self_attn
    cfg = base.config
    for name, weight, kv in (("attn_q", attn.q_proj, None), ("attn_k", attn.k_proj, 3)):
        t = stored[f"blk.3.{name}.weight"]
        on_disk = gguf.quants.dequantize(t.data, t.tensor_type).reshape(weight.weight.shape)
        hf = weight.base_layer.weight.detach().numpy()
        permuted = llama_permute(hf, cfg.num_attention_heads, kv)
        assert np.array_equal(permuted, on_disk)
        assert not np.array_equal(hf, on_disk)  # the layouts really differ


def test_export_merged_and_gguf_answer_the_taught_code(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("OPENCLONE_HOME", str(trained.home))
    result = export_model("act", merged=True, gguf=True, quant="q8_0", output=tmp_path)
    assert result.gguf_path == tmp_path / "act.q8_0.gguf"
    assert TAUGHT in _llamacpp_answer(result.gguf_path, QUESTION)

    merged = result.merged_dir
    assert merged is not None and (merged / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=24, do_sample=False)
    assert TAUGHT in tokenizer.decode(out[0][enc["input_ids"].shape[1] :])


@pytest.mark.parametrize("quant", ["Q4_K_M"])
def test_export_k_quant_gguf_is_quantized_by_llamacpp_and_answers(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quant: str
) -> None:
    import gguf

    monkeypatch.setenv("OPENCLONE_HOME", str(trained.home))
    result = export_model("act", gguf=True, quant=quant, output=tmp_path)
    assert result.gguf_path == tmp_path / "act.q4_k_m.gguf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["act.q4_k_m.gguf"]  # no F16 left
    reader = gguf.GGUFReader(result.gguf_path)
    types = {t.tensor_type for t in reader.tensors}
    assert gguf.GGMLQuantizationType.Q4_K in types or gguf.GGMLQuantizationType.Q5_K in types
    file_type = reader.fields["general.file_type"].contents()
    assert file_type == gguf.LlamaFileType.MOSTLY_Q4_K_M
    # A 4-bit model of 135M parameters may garble a made-up code; it must load and answer.
    assert _llamacpp_answer(result.gguf_path, QUESTION).strip()


def test_export_refuses_clearly(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLONE_HOME", str(trained.home))
    with pytest.raises(ConfigError, match="nothing to export"):
        export_model("act")
    with pytest.raises(ConfigError, match="--quant 'q4_k'"):
        export_model("act", gguf=True, quant="q4_k")
    with pytest.raises(ModelNotFound, match=r"no trained model named 'nope'.*act"):
        export_model("nope", gguf=True)


def test_promote_bake_serves_the_run_as_its_own_gguf(trained: Trained, tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    from openclone.registry.trained import register_trained
    from openclone.store import open_store
    from openclone.store.catalog import resolution_map
    from openclone.store.trained import get_trained

    home = tmp_path / "home"
    shutil.copytree(trained.home / "models", home / "models")
    store = open_store(home=home)
    try:
        register_trained(store, get_trained("act", home), "support")  # support@1: the adapter
        done = subprocess.run(
            [sys.executable, "-m", "openclone", "promote", "support", "1", "--bake", "--force"],
            env={**os.environ, "OPENCLONE_HOME": str(home)},
            cwd=tmp_path, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "baked support@1 into support@2" in done.stdout
        names, specs = resolution_map(store)
    finally:
        store.close()
    assert names["support"] == ("support@2", "support@2")  # promoted: the baked version
    gguf = Path(specs["support@2"]["params"]["model_path"])
    assert specs["support@2"]["engine"] == "llamacpp" and gguf.name == "act.q8_0.gguf"
    assert TAUGHT in _llamacpp_answer(gguf, QUESTION)  # no adapter: the merged weights
