"""Issue 19, F1-F4: what one client request may cost the gateway, on a real server.

Every over-limit request gets a clear 4xx in OpenAI's error shape, and nothing a client
names (a model that does not exist) becomes lasting state such as a metrics label.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import BUNDLED, Server

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "Say hi."}]
MiB = 1024 * 1024


def _post(server: Server, path: str, body: dict[str, Any] | bytes) -> httpx.Response:
    if isinstance(body, bytes):
        headers = {"Content-Type": "application/json"}
        return httpx.post(server.base_url + path, content=body, headers=headers, timeout=120)
    return httpx.post(server.base_url + path, json=body, timeout=120)


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    return err


# ---- F1: client-chosen model names are bounded -----------------------------------------


def test_unknown_model_names_share_one_metrics_label(server: Server) -> None:
    names = [f"no-such-model-{uuid.uuid4().hex}" for _ in range(5)]
    for name in names:
        r = _post(server, "/chat/completions", {"model": name, "messages": HELLO})
        assert r.status_code == 404
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert not any(name in metrics for name in names)
    assert 'model="unknown",status="404"' in metrics


def test_overlong_model_name_is_400_before_any_lookup(server: Server) -> None:
    # 5,000 characters once reached the trained-model lookup's file name: a 500.
    name = "m" * 5000
    err = _error(_post(server, "/chat/completions", {"model": name, "messages": HELLO}), 400)
    assert err["param"] == "model" and err["code"] == "model_name_too_long"
    assert "256" in err["message"]
    err = _error(httpx.get(f"{server.base_url}/models/{name}", timeout=10), 400)
    assert err["code"] == "model_name_too_long"


def test_a_long_trained_model_name_is_404_not_500(server: Server) -> None:
    # At the name cap, yet over a file name's 255 bytes, in the trained-model alphabet.
    r = _post(server, "/chat/completions", {"model": "a" * 256, "messages": HELLO})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "model_not_found"


# ---- F2: the body cap ------------------------------------------------------------------


def test_body_over_the_cap_is_413_before_parsing(server: Server) -> None:
    # Not even valid JSON: had it been parsed, the answer would be a 400.
    r = _post(server, "/chat/completions", b"{" + b" " * (9 * MiB))
    err = _error(r, 413)
    assert err["code"] == "request_too_large"
    assert str(8 * MiB) in err["message"]


def test_chunked_body_over_the_cap_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield b'{"model": "' + BUNDLED.encode() + b'", "messages": [], "pad": "'
        for _ in range(9):
            yield b"x" * MiB
        yield b'"}'

    r = httpx.post(
        server.base_url + "/chat/completions",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert "content-length" not in r.request.headers
    assert _error(r, 413)["code"] == "request_too_large"


def test_body_under_the_cap_still_works(server: Server) -> None:
    body = {"model": BUNDLED, "messages": HELLO, "max_tokens": 2, "pad": "x" * MiB}
    r = _post(server, "/chat/completions", body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] is not None


# ---- F3: text that is not Unicode ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/chat/completions",
            b'{"model": "%s", "messages": [{"role": "user", "content": "x\\ud800y"}]}',
            "messages",
        ),
        ("/completions", b'{"model": "%s", "prompt": "x\\ud800y", "max_tokens": 1}', "prompt"),
        ("/completions", b'{"model": "%s", "prompt": ["ok", "x\\udfffy"]}', "prompt"),
        ("/completions", b'{"model": "%s", "prompt": "x\\uDBFFy", "max_tokens": 1}', "prompt"),
    ],
)
def test_lone_surrogate_is_400(server: Server, path: str, body: bytes, param: str) -> None:
    err = _error(_post(server, path, body % BUNDLED.encode()), 400)
    assert err["param"] == param and err["code"] == "invalid_unicode"
    assert "surrogate" in err["message"]


@pytest.mark.parametrize(
    "body",
    [
        # Python's json.loads decodes bytes with "surrogatepass": a lone surrogate needs no
        # JSON escape when its UTF-8-style bytes (ED A0 80) are sent raw ...
        b'{"model": "%s", "prompt": "x\xed\xa0\x80y", "max_tokens": 1}',
        # ... and a UTF-16 body hides a "\\ud800" escape from a byte-level search.
        '{"model": "%s", "prompt": "x\\ud800y", "max_tokens": 1}'.encode("utf-16-le"),
    ],
)
def test_lone_surrogate_without_a_utf8_escape_is_400(server: Server, body: bytes) -> None:
    if body.startswith(b"{\x00"):
        body = body.decode("utf-16-le").replace("%s", BUNDLED).encode("utf-16-le")
    else:
        body = body % BUNDLED.encode()
    err = _error(_post(server, "/completions", body), 400)
    assert err["code"] == "invalid_unicode"


def test_paired_surrogates_are_text(server: Server) -> None:
    body = b'{"model": "%s", "prompt": "\\ud83d\\ude00", "max_tokens": 1}' % BUNDLED.encode()
    assert _post(server, "/completions", body).status_code == 200


# ---- F4: small requests that would cost a lot ------------------------------------------


def test_prompt_list_is_capped(server: Server) -> None:
    body = {"model": BUNDLED, "prompt": ["hi"] * 17, "max_tokens": 1}
    err = _error(_post(server, "/completions", body), 400)
    assert err["param"] == "prompt" and err["code"] == "too_many_prompts"


def test_n_times_prompts_is_capped(server: Server) -> None:
    body = {"model": BUNDLED, "prompt": ["hi"] * 3, "n": 16, "max_tokens": 1}
    err = _error(_post(server, "/completions", body), 400)
    assert err["param"] == "n" and err["code"] == "too_many_choices"
    assert "48" in err["message"]


def test_tool_count_is_capped(server: Server) -> None:
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]
    err = _error(
        _post(server, "/chat/completions", {"model": BUNDLED, "messages": HELLO, "tools": tools}),
        400,
    )
    assert err["param"] == "tools" and err["code"] == "too_many_tools"


def _schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def test_schema_whose_grammar_explodes_is_400(server: Server) -> None:
    # 273 bytes that took 10 s of the model's only thread to turn into a grammar.
    schema = {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "integer"}, "minItems": 300000}},
        "required": ["a"],
    }
    body = {"model": BUNDLED, "messages": HELLO, "response_format": _schema_format(schema)}
    err = _error(_post(server, "/chat/completions", body), 400)
    assert err["param"] == "response_format" and err["code"] == "schema_too_complex"
    pattern = {"type": "string", "pattern": "^a{1,100000}$"}
    body = {"model": BUNDLED, "messages": HELLO, "response_format": _schema_format(pattern)}
    assert _error(_post(server, "/chat/completions", body), 400)["code"] == "schema_too_complex"


def test_oversized_tool_schema_is_400(server: Server) -> None:
    props = {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(1000)}
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": props}},
        }
    ]
    body = {"model": BUNDLED, "messages": HELLO, "tools": tools, "tool_choice": "required"}
    err = _error(_post(server, "/chat/completions", body), 400)
    assert err["param"] == "tools" and err["code"] == "schema_too_large"


def test_a_modest_schema_is_still_enforced(server: Server) -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["tags"],
    }
    body = {
        "model": BUNDLED,
        "messages": HELLO,
        "max_tokens": 40,
        "temperature": 0,
        "response_format": _schema_format(schema),
    }
    r = _post(server, "/chat/completions", body)
    assert r.status_code == 200, r.text
