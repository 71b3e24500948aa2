"""Continuous batching for the transformers engine: many sequences, many adapters, one pass.

The engine's worker thread runs :meth:`Batcher.run`. Every step decodes the next token of
every active sequence in one forward pass, each row with its own LoRA adapter (PEFT's
mixed-adapter batch inference: ``adapter_names=[...]``, one per row, ``"__base__"`` for the
base weights), and samples each row with its own parameters. Between steps, waiting requests
join (up to ``max_batch``) and finished or cancelled ones leave, so a new request never waits
for the others to finish.

The KV cache of the batch is one transformers ``DynamicCache`` whose rows are left-padded to a
common length (:class:`PaddedKV`). A joining request is prefilled alone (batch of one, no
padding, so its prompt is computed exactly as it would be solo) and its KV is then padded on
the left and concatenated to the batch's; if its prompt is longer than the batch, the batch
is padded instead. Each row carries its own ``position_ids`` and a 2-D attention mask hides
the padding, so a row's attention sees only its own tokens. When rows leave, columns that
are padding in every remaining row are cut off. This is the approach of Hugging Face TGI's
non-paged backend; it needs only public pieces of ``DynamicCache`` (its layers' ``keys`` and
``values``), where paged attention would need a custom kernel. The cost: the cache is as long
as its longest row, and a joining prompt is prefilled in one pass before the next step.

Padding changes only which cells the softmax ignores and the shape of the matrix products,
so greedy output batched equals greedy output alone up to float rounding (the tests check
it on the bundled model in float32; in bfloat16 on a GPU, expect the same tokens except
where the top two are within rounding of each other).

A model whose own cache is not plain full attention (sliding-window, chunked or
linear-attention layers) cannot be padded this way: it is served with ``padded=False``, one
sequence at a time in the cache the model builds for itself.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openclone.engines.local import Finished, GenParams, Job, TokenOut
from openclone.engines.textstream import StopAwareText
from openclone.errors import EngineError, InvalidRequestError
from openclone.schema import FinishReason, TokenLogprob, TopLogprob

__all__ = ["Batcher", "Forward", "PaddedKV"]

# (input ids [B, q], adapter per row, attention mask [B, past + q] or None, position ids
# [B, q] or None, cache) -> (last-position logits [B, vocab] as float32, the cache)
Forward = Callable[[Any, list[str | None], Any, Any, Any], tuple[Any, Any]]


class PaddedKV:
    """The batch's KV cache: one ``DynamicCache``, rows right-aligned, padding on the left."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.cache: Any = None
        self.mask: Any = None  # [B, T] long, 1 where the row holds a token

    @property
    def width(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def add(self, one: Any, length: int) -> None:
        """Append a row: ``one`` is a batch-of-one ``DynamicCache`` holding ``length`` tokens."""
        import torch

        row = torch.ones(1, length, dtype=torch.long, device=self.device)
        if self.cache is None:
            self.cache, self.mask = one, row
            return
        width = self.width
        target = max(width, length)
        for mine, theirs in zip(self.cache.layers, one.layers, strict=True):
            if mine.keys is None or theirs.keys is None:
                continue  # a layer that reuses another's KV (KV sharing) holds none itself
            mine.keys = torch.cat(
                [_pad(mine.keys, target - width), _pad(theirs.keys, target - length)]
            )
            mine.values = torch.cat(
                [_pad(mine.values, target - width), _pad(theirs.values, target - length)]
            )
        pad = torch.nn.functional.pad
        self.mask = torch.cat([pad(self.mask, (target - width, 0)), pad(row, (target - length, 0))])

    def grow(self) -> Any:
        """The mask for the next step, which adds one token to every row."""
        import torch

        ones = torch.ones(self.mask.shape[0], 1, dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        return self.mask

    def keep(self, rows: list[int]) -> None:
        """Keep these rows (in this order) and cut the columns that are padding in all of them."""
        import torch

        if not rows:
            self.clear()
            return
        index = torch.tensor(rows, device=self.device)
        mask = self.mask[index]
        first = int(mask.any(dim=0).int().argmax())  # rows are right-aligned
        for layer in self.cache.layers:
            if layer.keys is None:
                continue
            layer.keys = layer.keys[index, :, first:]
            layer.values = layer.values[index, :, first:]
        self.mask = mask[:, first:]

    def clear(self) -> None:
        self.cache = self.mask = None


@dataclass
class _Seq:
    job: Job
    gen: Any  # torch.Generator
    bias: Any  # [vocab] or None
    counts: Any  # [vocab]: how often each token was generated (penalties)
    text: StopAwareText
    detok: _Detokenizer
    length: int  # tokens in this row's KV: the prompt and every token fed back
    last: int = -1  # sampled last, fed next step
    generated: int = 0

    @property
    def params(self) -> GenParams:
        return self.job.params


class Batcher:
    """The scheduler loop and per-sequence sampling (worker thread only)."""

    def __init__(
        self,
        *,
        forward: Forward,
        tokenizer: Any,
        piece: Callable[[int], bytes],
        device: Any,
        n_vocab: int,
        eos: set[int],
        max_batch: int,
        padded: bool = True,
        tidy: Callable[[], None] | None = None,
    ) -> None:
        self._forward = forward
        self._tidy = tidy  # called between steps, e.g. to delete removed adapters
        self._tok = tokenizer
        self._piece = piece
        self._device = device
        self._n_vocab = n_vocab
        self._eos = eos
        self.max_batch = max_batch if padded else 1
        self._padded = padded
        self._seqs: list[_Seq] = []
        self._kv = PaddedKV(device)
        self.steps = 0  # forward passes returned (prefills and steps): a watchdog sees it move

    @property
    def active(self) -> int:
        return len(self._seqs)

    def adapters_in_use(self) -> set[str]:
        """Adapters of the sequences in the batch (worker thread only)."""
        return {s.params.adapter for s in self._seqs if s.params.adapter}

    def run(self, jobs: queue.Queue[Job | None]) -> None:
        """Serve jobs until the ``None`` sentinel; the sequences left then get a 503."""
        import torch

        with torch.inference_mode():
            while self._admit(jobs, block=not self._seqs):
                if self._seqs:
                    self._step()
                    self.steps += 1
                if self._tidy is not None:  # after the step: before the loop waits idle
                    self._tidy()
        for seq in self._seqs:
            if not seq.job.cancelled.is_set():
                seq.job.emit(EngineError("engine closed", retryable=True, status_code=503))
        self._seqs = []
        self._kv.clear()

    def _admit(self, jobs: queue.Queue[Job | None], block: bool) -> bool:
        """Prefill waiting jobs into the batch while it has room; False when closing."""
        while len(self._seqs) < self.max_batch:
            try:
                job = jobs.get(block=block)
            except queue.Empty:
                return True
            block = False
            if job is None:
                return False
            if job.cancelled.is_set():
                continue
            try:
                self._join(job)
            except BaseException as exc:  # this request's error, not the batch's
                job.emit(exc)
            self.steps += 1
        return True

    def _join(self, job: Job) -> None:
        import torch
        from transformers import DynamicCache

        if not job.prompt:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        p = job.params
        gen = torch.Generator(device=self._device)
        if p.seed is not None:
            gen.manual_seed(p.seed)
        else:
            gen.seed()
        seq = _Seq(
            job=job,
            gen=gen,
            bias=self._bias(p),
            counts=torch.zeros(self._n_vocab, device=self._device),
            text=StopAwareText(p.stop),
            detok=_Detokenizer(self._tok),
            length=len(job.prompt),
        )
        if p.max_tokens <= 0:
            self._finish(seq, "length")
            return
        ids = torch.tensor([job.prompt], device=self._device)
        # Unpadded, the model builds the cache it needs itself.
        fresh = DynamicCache() if self._padded else None
        logits, cache = self._forward(ids, [p.adapter], None, None, fresh)
        if self._advance(seq, logits[0], None):
            self._kv.add(cache, seq.length)
            self._seqs.append(seq)

    def _step(self) -> None:
        import torch

        # A cancelled or disconnected request leaves before the pass, not after it.
        live = [i for i, s in enumerate(self._seqs) if not s.job.cancelled.is_set()]
        if len(live) < len(self._seqs):
            self._keep(live)
        seqs = self._seqs
        if not seqs:
            return
        ids = torch.tensor([[s.last] for s in seqs], device=self._device)
        mask = positions = None  # one unpadded row: the model's own positions and mask
        if self._padded:
            positions = torch.tensor([[s.length] for s in seqs], device=self._device)
            mask = self._kv.grow()
        adapters = [s.params.adapter for s in seqs]
        try:
            logits, self._kv.cache = self._forward(ids, adapters, mask, positions, self._kv.cache)
        except BaseException as exc:  # the pass failed for every row: none can go on
            for s in seqs:
                if not s.job.cancelled.is_set():
                    s.job.emit(exc)
            self._seqs = []
            self._kv.clear()
            return
        greedy = logits.argmax(dim=-1).tolist()  # one device sync for every plain greedy row
        kept = []
        for i, seq in enumerate(seqs):
            seq.length += 1
            if seq.job.cancelled.is_set() or self._advance(seq, logits[i], greedy[i]):
                kept.append(i)  # cancelled rows go at the next step's start
        if len(kept) < len(seqs):
            self._keep(kept)

    def _keep(self, rows: list[int]) -> None:
        self._seqs = [self._seqs[i] for i in rows]
        self._kv.keep(rows)

    def _advance(self, seq: _Seq, logits: Any, greedy: int | None) -> bool:
        """Sample the row's next token and emit it; False when the sequence has finished."""
        p = seq.params
        plain = p.temperature == 0 and seq.bias is None
        plain = plain and not (p.frequency_penalty or p.presence_penalty)
        tok = greedy if plain and greedy is not None else self._sample(logits, seq)
        if tok in self._eos:
            self._finish(seq, "stop")
            return False
        seq.generated += 1
        seq.counts[tok] += 1
        piece = seq.text.push(seq.detok.push(tok).encode())
        lp = self._logprob(logits, tok, p.top_logprobs) if p.top_logprobs is not None else None
        if piece or lp:
            seq.job.emit(TokenOut(piece, lp))
        if seq.text.stopped:
            self._finish(seq, "stop")
            return False
        if seq.generated >= p.max_tokens:
            self._finish(seq, "length")
            return False
        seq.last = tok
        return True

    def _finish(self, seq: _Seq, reason: FinishReason) -> None:
        job = seq.job
        if job.cancelled.is_set():
            return
        rest = seq.text.push(seq.detok.flush().encode()) + seq.text.flush()
        if rest:
            job.emit(TokenOut(rest))
        job.emit(Finished(reason, len(job.prompt), seq.generated))

    # ---- sampling ----------------------------------------------------------------------

    def _bias(self, p: GenParams) -> Any:
        import torch

        if not p.logit_bias:
            return None
        if bad := [k for k in p.logit_bias if not 0 <= k < self._n_vocab]:
            raise InvalidRequestError(
                f"logit_bias token id {bad[0]} is outside the vocabulary (0..{self._n_vocab - 1})",
                param="logit_bias",
            )
        bias = torch.zeros(self._n_vocab, device=self._device)
        for k, v in p.logit_bias.items():
            bias[k] = v
        return bias

    def _sample(self, logits: Any, seq: _Seq) -> int:
        import torch

        p = seq.params
        # OpenAI's penalties: subtract per occurrence (frequency) and once if seen (presence).
        if seq.bias is not None:
            logits = logits + seq.bias
        if p.frequency_penalty or p.presence_penalty:
            counts = seq.counts
            logits = logits - p.frequency_penalty * counts - p.presence_penalty * (counts > 0)
        if p.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            # Keep the smallest prefix whose mass reaches top_p (always the top token).
            drop = (sorted_p.cumsum(0) - sorted_p) >= p.top_p
            drop[0] = False
            sorted_p[drop] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=seq.gen))

    def _logprob(self, logits: Any, tok: int, top: int) -> TokenLogprob:
        import torch

        logprobs = torch.log_softmax(logits, dim=-1)
        tops: list[TopLogprob] = []
        if top:
            values, indices = torch.topk(logprobs, top)
            tops = [
                TopLogprob(token=b.decode("utf-8", "replace"), logprob=v, bytes=list(b))
                for v, b in zip(values.tolist(), map(self._piece, indices.tolist()), strict=True)
            ]
        piece = self._piece(tok)
        return TokenLogprob(
            token=piece.decode("utf-8", "replace"),
            logprob=float(logprobs[tok]),
            bytes=list(piece),
            top_logprobs=tops,
        )


class _Detokenizer:
    """Text of a growing token list, decoded over a sliding window.

    Decoding each token alone loses a SentencePiece word's leading space and splits UTF-8
    characters, so the window's text is decoded twice and only the new part emitted.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # window start: context that keeps the decoder's spacing right
        self._read = 0  # tokens up to here have been emitted

    def push(self, tok: int) -> str:
        self._ids.append(tok)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""  # an incomplete character: wait for its next byte

    def flush(self) -> str:
        before = self._decode(self._ids[self._prefix : self._read])
        return self._decode(self._ids[self._prefix :])[len(before) :]

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tok.decode(ids, skip_special_tokens=True)
        return text


def _pad(t: Any, n: int) -> Any:
    """``t`` ([B, heads, T, dim]) with ``n`` zero positions in front."""
    import torch

    return torch.nn.functional.pad(t, (0, 0, n, 0)) if n else t
