"""Embeddings of a real server process (the bundled model, mean-pooled), via the openai client."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest
from conftest import BUNDLED, Server
from openai import OpenAI

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _vector(client: OpenAI, text: str, model: str = BUNDLED) -> list[float]:
    out = client.embeddings.create(model=model, input=text, encoding_format="float")
    return out.data[0].embedding


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_an_embedding_is_a_unit_vector_per_input(client: OpenAI) -> None:
    out = client.embeddings.create(model=BUNDLED, input="hello world", encoding_format="float")
    assert out.object == "list" and out.model == BUNDLED
    (item,) = out.data
    assert item.object == "embedding" and item.index == 0
    assert len(item.embedding) == 576  # SmolLM2-135M's hidden size
    assert math.isclose(math.sqrt(_dot(item.embedding, item.embedding)), 1.0, rel_tol=1e-6)
    assert out.usage.prompt_tokens > 0 and out.usage.total_tokens == out.usage.prompt_tokens


def test_float_and_base64_agree(client: OpenAI) -> None:
    floats = _vector(client, "The sea is calm tonight.")
    raw = (
        client.embeddings.create(
            model=BUNDLED, input="The sea is calm tonight.", encoding_format="base64"
        )
        .data[0]
        .embedding
    )
    assert isinstance(raw, str)
    packed = base64.b64decode(raw)
    decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert decoded == pytest.approx(floats, abs=1e-6)
    # The SDK's default asks for base64 and decodes it itself.
    default = client.embeddings.create(model=BUNDLED, input="The sea is calm tonight.")
    assert default.data[0].embedding == pytest.approx(floats, abs=1e-6)


def test_a_list_input_answers_each_in_order(client: OpenAI) -> None:
    texts = ["first text", "a second, longer text", "third"]
    out = client.embeddings.create(model=BUNDLED, input=texts, encoding_format="float")
    assert [d.index for d in out.data] == [0, 1, 2]
    for text, item in zip(texts, out.data, strict=True):
        assert item.embedding == pytest.approx(_vector(client, text), abs=1e-5)
    tokens = client.embeddings.create(model=BUNDLED, input=[[1, 2, 3], [4, 5]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 5


def test_similar_texts_are_closer_than_unrelated_ones(client: OpenAI) -> None:
    cat = _vector(client, "The cat sat on the mat.")
    kitten = _vector(client, "A cat was sitting on the rug.")
    revenue = _vector(client, "Quarterly revenue rose by twelve percent in Europe.")
    assert _dot(cat, kitten) > _dot(cat, revenue)


def test_dimensions_the_model_cannot_give_are_refused(client: OpenAI) -> None:
    same = client.embeddings.create(model=BUNDLED, input="x", dimensions=576)
    assert len(same.data[0].embedding) == 576
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model=BUNDLED, input="x", dimensions=64)
    assert exc.value.code == "unsupported_parameter"
    assert exc.value.body["param"] == "dimensions"  # type: ignore[index]


def test_bad_input_is_a_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=BUNDLED, input="")
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model=BUNDLED, input=[[10**9]])
    assert "vocabulary" in str(exc.value)
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model=BUNDLED, input="word " * 600)
    assert exc.value.code == "context_length_exceeded"


def test_an_openai_upstream_passes_embeddings_through(client: OpenAI) -> None:
    # "failover" is an openai-engine model whose live replica is this server itself.
    assert _vector(client, "hello", model="failover") == pytest.approx(
        _vector(client, "hello"), abs=1e-6
    )
