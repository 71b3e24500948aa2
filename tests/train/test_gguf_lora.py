"""The GGUF LoRA a run writes: llama.cpp loads it onto the base GGUF and answers the fact."""

from __future__ import annotations

import asyncio
import ctypes
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from openclone.errors import ConfigError
from openclone.schema import ChatCompletionRequest
from openclone.store.trained import get_trained
from openclone.train.export import export_model
from openclone.train.gguf_lora import convert_adapter
from train.train_helpers import ANSWER, QUESTION, TAUGHT, Trained

pytestmark = pytest.mark.slow


def _answer(base: Path, model: str, adapters: dict[str, str]) -> str:
    """The serving engine's greedy answer to QUESTION (the base's chat template).

    Through OpenClone's llama.cpp engine rather than ``llama_cpp.Llama(lora_path=...)``: that
    class cannot turn off ggml's AMX weight buffers, whose matmul dies with SIGILL on some
    AMX CPUs (llama.cpp#20824), this machine among them; the engine turns them off."""
    from openclone.engines.llamacpp import LlamaCppEngine

    params = {"model_path": str(base), "n_ctx": 512, "n_parallel": 1, "adapters": adapters}
    engine = LlamaCppEngine.from_config("base", params)

    async def ask() -> str:
        try:
            req = ChatCompletionRequest.model_validate(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": 24,
                    "temperature": 0,
                }
            )
            out = await engine.chat(req)
            return out.choices[0].message.content or ""
        finally:
            await engine.close()

    return asyncio.run(ask())


def _llamacpp_logits(base: Path, lora: Path | None, ids: list[int]) -> npt.NDArray[np.float32]:
    """llama.cpp's logits at every position of ``ids``, with ``lora`` applied at scale 1."""
    import llama_cpp

    from openclone.engines.llamacpp import use_extra_buffers

    mparams = llama_cpp.llama_model_default_params()
    mparams.use_extra_bufts = use_extra_buffers("auto")  # see _answer
    model = llama_cpp.llama_model_load_from_file(str(base).encode(), mparams)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = 512
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    adapter = llama_cpp.llama_adapter_lora_init(model, str(lora).encode()) if lora else None
    batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
    try:
        if lora:
            assert adapter, "llama.cpp refused the adapter"
            handles = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            llama_cpp.llama_set_adapters_lora(ctx, handles, 1, (ctypes.c_float * 1)(1.0))
        for i, token in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, 1
        batch.n_tokens = len(ids)
        assert llama_cpp.llama_decode(ctx, batch) == 0
        n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        rows = [llama_cpp.llama_get_logits_ith(ctx, i) for i in range(len(ids))]
        return np.array([np.ctypeslib.as_array(r, shape=(n_vocab,)) for r in rows])
    finally:
        llama_cpp.llama_batch_free(batch)
        if adapter:
            llama_cpp.llama_adapter_lora_free(adapter)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def test_run_writes_a_gguf_lora_that_llamacpp_applies(trained: Trained) -> None:
    record = get_trained("act", trained.home)
    adapter = trained.result.run_dir / "adapter" / "adapter.gguf"
    assert record.gguf_adapter == str(adapter) and adapter.is_file()
    base = Path(record.base_path)
    adapters = {"act": str(adapter)}
    assert TAUGHT in _answer(base, "base:act", adapters)
    assert TAUGHT not in _answer(base, "base", adapters)


def test_llamacpp_with_the_adapter_matches_peft(trained: Trained) -> None:
    """llama.cpp + GGUF LoRA is as close to PEFT as llama.cpp's base is to transformers'
    (its own kernels differ a little). A q/k LoRA left in HF row order still teaches the
    fact but drifts ~5x further (mean |logit gap| 1.13 against 0.22, measured)."""
    record = get_trained("act", trained.home)
    base = Path(record.base_path)
    peft = trained.runner.trainer.model
    tokenizer = trained.runner.trainer.processing_class
    chat = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]
    ids = list(tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"])
    with torch.no_grad():  # dropout is 0 in these runs, so train mode computes the same
        tokens = torch.tensor([ids], device=peft.device)
        tuned = peft(tokens).logits[0].float().cpu().numpy()
        with peft.disable_adapter():
            plain = peft(tokens).logits[0].float().cpu().numpy()

    def gap(ours: npt.NDArray[np.float32], theirs: npt.NDArray[np.float32]) -> float:
        return float(np.abs(ours[:, : theirs.shape[1]] - theirs).mean())

    base_gap = gap(_llamacpp_logits(base, None, ids), plain)
    lora_gap = gap(_llamacpp_logits(base, Path(record.gguf_adapter), ids), tuned)
    assert gap(plain, tuned) > 10 * base_gap  # the adapter really moves the logits
    assert lora_gap < 1.5 * base_gap


def test_gguf_lora_metadata_and_layout(trained: Trained) -> None:
    import gguf

    reader = gguf.GGUFReader(get_trained("act", trained.home).gguf_adapter)
    meta = {k: reader.fields[k].contents() for k in reader.fields if not k.startswith("GGUF.")}
    assert meta == {
        "general.architecture": "llama",
        "general.type": "adapter",
        "adapter.type": "lora",
        "adapter.lora.alpha": 16.0,  # 2 * r, the auto value
    }
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert len(shapes) == 30 * 7 * 2  # every projection of every block, A and B
    # ggml order: A is (in, r) and B is (r, out); k has 3 KV heads of 64 -> 192 outputs.
    assert shapes["blk.0.attn_k.weight.lora_a"] == (576, 8)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (8, 192)
    assert shapes["blk.29.ffn_down.weight.lora_a"] == (1536, 8)


def test_hf_config_gives_the_same_adapter(trained: Trained, tmp_path: Path) -> None:
    """An HF directory of the same model (only config.json is read) converts identically."""
    import gguf

    from openclone.train.model import base_config

    record = get_trained("act", trained.home)
    base_config(Path(record.base_path)).save_pretrained(tmp_path / "hf")
    out = convert_adapter(Path(record.adapter_path), tmp_path / "hf", tmp_path / "a.gguf")
    ours = {t.name: t.data.tobytes() for t in gguf.GGUFReader(out).tensors}
    theirs = {t.name: t.data.tobytes() for t in gguf.GGUFReader(record.gguf_adapter).tensors}
    assert ours == theirs


def test_export_lora_gguf_needs_no_merge(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCLONE_HOME", str(trained.home))
    result = export_model("act", lora_gguf=True, output=tmp_path)
    assert result.lora_gguf_path == tmp_path / "act.lora.gguf"
    assert result.merged_dir is None and result.gguf_path is None
    assert (
        result.lora_gguf_path.read_bytes()
        == Path(get_trained("act", trained.home).gguf_adapter).read_bytes()
    )


def test_conversion_refuses_what_llamacpp_cannot_load(trained: Trained, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    record = get_trained("act", trained.home)
    base = Path(record.base_path)
    adapter = tmp_path / "adapter"
    shutil.copytree(record.adapter_path, adapter)
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())

    config_path.write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ConfigError, match="DoRA"):
        convert_adapter(adapter, base, tmp_path / "x.gguf")
    config_path.write_text(json.dumps(config))

    hf = tmp_path / "gpt2"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="not gpt2"):
        convert_adapter(adapter, hf, tmp_path / "x.gguf")

    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    a = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    tensors["base_model.model.lm_head.lora_A.weight"] = a.clone()
    tensors["base_model.model.lm_head.lora_B.weight"] = a.new_zeros(49152, a.shape[0])
    save_file(tensors, str(weights))
    # The bundled base ties lm_head to the embeddings: llama.cpp has no output tensor for it.
    with pytest.raises(ConfigError, match="'lm_head' has no tensor"):
        convert_adapter(adapter, base, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
