"""The default redactor: what it removes, what it must leave alone, and that it is stable."""

from __future__ import annotations

import json

import pytest

from openclone.store.redact import redact, redact_messages

# (text, the kinds replaced with how many). Test values are made up or documentation values
# that pass the same checksums as real ones.
FOUND = [
    ("write to ana.lopez+work@example.co.uk today", {"EMAIL": 1}),
    ("Markdown escapes it: marlene\\_zamora@example.com", {"EMAIL": 1}),
    ("card 4111 1111 1111 1111 exp 12/29", {"CARD": 1}),
    ("card 4111-1111-1111-1111", {"CARD": 1}),
    ("IBAN GB82 WEST 1234 5698 7654 32 please", {"IBAN": 1}),
    ("iban DE89370400440532013000", {"IBAN": 1}),
    ("SSN 123-45-6789", {"NATIONAL_ID": 1}),
    ("NI number JG 10 37 82 A", {"NATIONAL_ID": 1}),
    ("DNI 12345678Z", {"NATIONAL_ID": 1}),
    ("server at 192.168.10.24 is down", {"IP": 1}),
    ("from fe80::1ff:fe23:4567:890a", {"IP": 1}),
    ("call me on +44 20 7946 0958", {"PHONE": 1}),
    ("Tel: (555) 123-4567", {"PHONE": 1}),
    ("office 555-123-4567, ask for Bo", {"PHONE": 1}),
    ("mobile 06 12 34 56 78", {"PHONE": 1}),
    ("key sk-proj-abcdefghijklmnopqrstuvwxyz012345", {"SECRET": 1}),
    ("AWS AKIAIOSFODNN7EXAMPLE here", {"SECRET": 1}),
    ("postgresql://admin:hunter2pass@db.internal:5432/app", {"SECRET": 1}),
    ('config = {"password": "correct horse battery"}', {"SECRET": 1}),
    ("pAssword=hunter22xyz", {"SECRET": 1}),  # the keyword in any case
    ("to\u212aen: abc123xyz", {"SECRET": 1}),  # a Kelvin sign folds to "k" under IGNORECASE
    ("Authorization: Bearer abcdefghijklmnop1234567890", {"SECRET": 1}),
]

# Text with digits, dots and at-signs that identifies no one.
KEPT = [
    "Meeting on 2024-03-15 at 10:30, budget $1,250,000.",
    "Upgrade from version 10.0.0.1 to 1.2.3.4 today",
    "User-Agent: Mozilla/5.0 Chrome/110.0.0.0 Safari/537.36",
    "localhost is 127.0.0.1 and the mask is 255.255.255.0",
    "pages 1263-1273 of the 1990-2020 report",
    "pi is 3.14159265 and e is 2.71828",
    "a random 16 digit number 1234 5678 9012 3456 is no card",
    "icon@2x.png and @media screen",
    "std::vector<int> v; a::b::c",
    'password = request.form["password"]',
    'headers = {"Authorization": "Bearer %s" % token}',
    "pad_token = '<pad>'",
    "Password: must be at least twelve characters",
]


@pytest.mark.parametrize(("text", "counts"), FOUND)
def test_personal_data_is_replaced_by_a_typed_placeholder(
    text: str, counts: dict[str, int]
) -> None:
    result = redact(text)
    assert result.counts == counts
    for kind in counts:
        assert f"[{kind}]" in result.text


@pytest.mark.parametrize("text", KEPT)
def test_text_that_identifies_no_one_is_kept(text: str) -> None:
    result = redact(text)
    assert result.text == text, result.counts


@pytest.mark.parametrize("text", [t for t, _ in FOUND] + KEPT)
def test_redacting_twice_changes_nothing(text: str) -> None:
    once = redact(text)
    twice = redact(once.text)
    assert twice.text == once.text
    assert twice.counts == {}


def test_the_secret_value_goes_and_its_name_stays() -> None:
    out = redact("DISCORD_TOKEN: MTA4NzQ2NzM5ODk3x_Gq and api_key=zz9-plural-z-alpha").text
    assert out == "DISCORD_TOKEN: [SECRET] and api_key=[SECRET]"


def test_tool_call_arguments_stay_valid_json() -> None:
    args = json.dumps({"to": "bo@example.com", "note": "line one\nip 10.1.2.3"})
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "mail bo@example.com"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "send", "arguments": args}}
            ],
        },
    ]
    out, counts = redact_messages(messages)
    assert counts == {"EMAIL": 2, "IP": 1}
    decoded = json.loads(out[1]["tool_calls"][0]["function"]["arguments"])
    assert decoded == {"to": "[EMAIL]", "note": "line one\nip [IP]"}
    assert out[0]["content"][0]["text"] == "mail [EMAIL]"
    # the caller's messages are untouched
    assert messages[0]["content"][0]["text"] == "mail bo@example.com"
    assert (
        json.loads(messages[1]["tool_calls"][0]["function"]["arguments"])["to"] == "bo@example.com"
    )


def test_a_long_run_of_digits_and_symbols_is_redacted_in_linear_time() -> None:
    # Many rejected candidates back to back: a pattern that backtracked would take minutes.
    text = "1-2." * 50_000 + " +1 555 123 4567"
    result = redact(text)
    assert result.counts == {"PHONE": 1}


def test_a_captured_exchange_is_redacted_in_every_place_text_travels() -> None:
    from openclone.store.redact import redact as default
    from openclone.store.scrub import redact_exchange

    call = {"name": "mail", "arguments": json.dumps({"to": "bo@example.com"})}
    request = {
        "messages": [
            {"role": "user", "content": "I am bo@example.com"},
            {"role": "assistant", "content": None, "function_call": call},  # legacy form
        ],
        "prompt": ["call +44 20 7946 0958"],
    }
    response = {"choices": [{"message": {"role": "assistant", "content": "ip 10.1.2.3"}}]}
    req, resp, counts = redact_exchange(request, response, default)
    assert counts == {"EMAIL": 2, "PHONE": 1, "IP": 1}
    assert req["messages"][0]["content"] == "I am [EMAIL]"
    assert json.loads(req["messages"][1]["function_call"]["arguments"]) == {"to": "[EMAIL]"}
    assert req["prompt"] == ["call [PHONE]"]
    assert resp is not None and resp["choices"][0]["message"]["content"] == "ip [IP]"
    assert request["messages"][0]["content"] == "I am bo@example.com"  # the input is kept
