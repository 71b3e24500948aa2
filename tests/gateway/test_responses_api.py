"""The Responses API of a real server process, driven by the official openai client."""

from __future__ import annotations

import json

import openai
import pytest
from conftest import BUNDLED, Server
from openai import OpenAI

pytestmark = pytest.mark.slow

SEA = "Write one sentence about the sea."
LOGPROBS = "message.output_text.logprobs"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _chat_text(client: OpenAI, messages: list[dict[str, str]], max_tokens: int) -> str:
    out = client.chat.completions.create(
        model=BUNDLED,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0,
    )
    return out.choices[0].message.content or ""


def test_a_response_is_the_chat_answer_in_the_responses_shape(client: OpenAI) -> None:
    r = client.responses.create(model=BUNDLED, input=SEA, max_output_tokens=16, temperature=0)
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.model == BUNDLED
    assert r.status in ("completed", "incomplete")
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant"
    assert r.output_text == _chat_text(client, [{"role": "user", "content": SEA}], 16)
    assert r.usage is not None and 0 < r.usage.output_tokens <= 16
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if r.status == "incomplete":
        assert r.incomplete_details is not None
        assert r.incomplete_details.reason == "max_output_tokens"


def test_instructions_lead_the_conversation(client: OpenAI) -> None:
    r = client.responses.create(
        model=BUNDLED,
        instructions="You are a pirate.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": SEA}]}],
        max_output_tokens=12,
        temperature=0,
    )
    expected = _chat_text(
        client,
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": SEA}],
        12,
    )
    assert r.output_text == expected
    assert r.instructions == "You are a pirate."


def test_streaming_sends_the_typed_events_in_order(client: OpenAI) -> None:
    whole = client.responses.create(
        model=BUNDLED, input="Say hi.", max_output_tokens=48, temperature=0, store=False
    )
    events = list(
        client.responses.create(
            model=BUNDLED, input="Say hi.", max_output_tokens=48, temperature=0, stream=True
        )
    )
    types = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    end = f"response.{whole.status}"
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        end,
    ]
    assert whole.status == "completed"  # the model ends "hi" on its own well within 48
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert deltas and "".join(e.delta for e in deltas) == whole.output_text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == whole.output_text
    assert final.usage is not None and final.usage.output_tokens == whole.usage.output_tokens  # type: ignore[union-attr]
    # A streamed response is stored like any other.
    assert client.responses.retrieve(final.id).output_text == whole.output_text


def test_previous_response_id_continues_the_conversation(client: OpenAI) -> None:
    first = client.responses.create(
        model=BUNDLED, input="My name is Ana.", max_output_tokens=16, temperature=0
    )
    second = client.responses.create(
        model=BUNDLED,
        previous_response_id=first.id,
        input="What is my name?",
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    history = [
        {"role": "user", "content": "My name is Ana."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]
    assert second.output_text == _chat_text(client, history, 16)
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_a_function_call_round_trip(client: OpenAI) -> None:
    asked = client.responses.create(
        model=BUNDLED,
        input="What's the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
        temperature=0,
    )
    (call,) = [item for item in asked.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    answered = client.responses.create(
        model=BUNDLED,
        previous_response_id=asked.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": '{"temperature_c": 21, "sky": "sunny"}',
            }
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",  # the answer this time, not another call
        max_output_tokens=24,
        temperature=0,
    )
    assert [item.type for item in answered.output] == ["message"]
    assert answered.output_text
    items = client.responses.input_items.list(answered.id).data
    assert [i.type for i in items] == ["function_call_output"]


def test_a_streamed_function_call(client: OpenAI) -> None:
    events = list(
        client.responses.create(
            model=BUNDLED,
            input="What's the weather in Paris?",
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice="required",
            max_output_tokens=40,
            temperature=0,
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert isinstance(json.loads(done.arguments)["city"], str)  # type: ignore[union-attr]
    (call,) = events[-1].response.output  # type: ignore[union-attr]
    assert call.type == "function_call" and call.arguments == done.arguments  # type: ignore[union-attr]


def test_json_schema_output(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = client.responses.create(
        model=BUNDLED,
        input="Invent a person.",
        text={
            "format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}
        },
        max_output_tokens=60,
        temperature=0,
    )
    if r.status == "completed":
        person = json.loads(r.output_text)
        assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_retrieve_list_input_items_and_delete(client: OpenAI) -> None:
    r = client.responses.create(
        model=BUNDLED,
        input=[
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": SEA},
        ],
        max_output_tokens=8,
        temperature=0,
        metadata={"ticket": "42"},
    )
    got = client.responses.retrieve(r.id)
    assert (got.id, got.output_text, got.metadata) == (r.id, r.output_text, {"ticket": "42"})
    items = client.responses.input_items.list(r.id, order="asc").data
    assert [(i.type, i.role) for i in items] == [  # type: ignore[union-attr]
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[2].content[0].text == SEA  # type: ignore[union-attr]
    newest = client.responses.input_items.list(r.id, limit=1)
    assert newest.data[0].id == items[2].id and newest.has_more
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_store_false_keeps_nothing(client: OpenAI) -> None:
    r = client.responses.create(model=BUNDLED, input="Hi", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model=BUNDLED, previous_response_id=r.id, input="And?")
    assert exc.value.body["param"] == "previous_response_id"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"background": True}, "background"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"include": [LOGPROBS, "file_search_call.results"]}, "include[1]"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(
    client: OpenAI, extra: dict[str, object], param: str
) -> None:
    kwargs: dict[str, object] = {"model": BUNDLED, "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(**kwargs)  # type: ignore[call-overload]
    assert exc.value.code == "unsupported_parameter"
    assert exc.value.body["param"] == param  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"text": {"format": "json_object"}}, "text.format"),
        (
            {
                "input": [
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": {"ok": 1}},
                ]
            },
            "input",
        ),
    ],
)
def test_malformed_input_is_a_400_naming_the_parameter(
    client: OpenAI, extra: dict[str, object], param: str
) -> None:
    kwargs: dict[str, object] = {"model": BUNDLED, "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(**kwargs)  # type: ignore[call-overload]
    assert exc.value.body["param"] == param  # type: ignore[index]


def test_logprobs_are_the_chat_answers_when_included(client: OpenAI) -> None:
    r = client.responses.create(
        model=BUNDLED, input=SEA, max_output_tokens=8, temperature=0, include=[LOGPROBS],
        top_logprobs=2,
    )  # fmt: skip
    chat = client.chat.completions.create(
        model=BUNDLED, messages=[{"role": "user", "content": SEA}], max_tokens=8,
        temperature=0, logprobs=True, top_logprobs=2,
    )  # fmt: skip
    assert r.top_logprobs == 2
    part = r.output[0].content[0]  # type: ignore[union-attr]
    expected = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [t.token for t in part.logprobs] == [t.token for t in expected]  # type: ignore[union-attr]
    # The same numbers up to float noise: a prompt-cache hit or another batch shape sums
    # the same logits in another order.
    assert [t.logprob for t in part.logprobs] == pytest.approx(  # type: ignore[union-attr]
        [t.logprob for t in expected], abs=0.05
    )
    assert "".join(t.token for t in part.logprobs) == r.output_text  # type: ignore[union-attr]
    assert all(len(t.top_logprobs) == 2 for t in part.logprobs)  # type: ignore[union-attr]
    assert all(bytes(t.bytes).decode() == t.token for t in part.logprobs)  # type: ignore[union-attr]
    # Streamed: each delta carries its tokens' logprobs, and the stored answer has them all.
    events = list(
        client.responses.create(
            model=BUNDLED,
            input=SEA,
            max_output_tokens=8,
            temperature=0,
            include=[LOGPROBS],
            stream=True,
        )
    )
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert all(e.delta == "".join(lp.token for lp in e.logprobs) for e in deltas)  # type: ignore[union-attr]
    final = events[-1].response.output[0].content[0]  # type: ignore[union-attr]
    assert [t.token for t in final.logprobs] == [t.token for t in part.logprobs]
    # Without include there are none, as with OpenAI.
    plain = client.responses.create(model=BUNDLED, input=SEA, max_output_tokens=4, store=False)
    assert plain.output[0].content[0].logprobs == []  # type: ignore[union-attr]


def _collapsed(types: list[str]) -> list[str]:
    """Event types with runs of deltas as one: a replay sends each text in one delta."""
    return [t for i, t in enumerate(types) if i == 0 or not (t == types[i - 1] and "delta" in t)]


@pytest.mark.parametrize("tools", [False, True])
def test_a_stored_response_replays_as_its_stream(client: OpenAI, tools: bool) -> None:
    extra: dict[str, object] = (
        {"tools": [WEATHER_TOOL], "tool_choice": "required", "input": "Weather in Paris?"}
        if tools
        else {"input": "Say hi."}
    )
    live = list(
        client.responses.create(  # type: ignore[call-overload]
            model=BUNDLED, max_output_tokens=40, temperature=0, stream=True, **extra
        )
    )
    stored = live[-1].response
    replayed = list(client.responses.retrieve(stored.id, stream=True))
    assert [e.sequence_number for e in replayed] == list(range(len(replayed)))
    assert [e.type for e in replayed] == _collapsed([e.type for e in live])
    assert replayed[-1].response.output == stored.output  # type: ignore[union-attr]
    assert replayed[-1].response.id == stored.id  # type: ignore[union-attr]
    later = list(client.responses.retrieve(stored.id, stream=True, starting_after=2))
    assert [e.sequence_number for e in later] == list(range(3, len(replayed)))
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.retrieve(stored.id, include=["file_search_call.results"])  # type: ignore[list-item]
    assert exc.value.body["param"] == "include[0]"  # type: ignore[index]
