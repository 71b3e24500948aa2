"""The one parser of the model names clients send."""

from __future__ import annotations

from openclone.model_names import ModelName, adapters_key, is_internal, parse_model_name


def test_each_form_of_name_parses_into_its_parts() -> None:
    assert parse_model_name("gpt-4o") == ModelName("gpt-4o", base="gpt-4o")
    assert parse_model_name("support@3") == ModelName("support@3", base="support", version=3)
    assert parse_model_name("smollm2:support") == ModelName(
        "smollm2:support", base="smollm2", adapter="support"
    )
    assert parse_model_name("support@3").pinned and not parse_model_name("support").pinned


def test_names_that_only_look_like_a_form_stay_whole() -> None:
    for name in ("bot@latest", "@2", "a:", ":b", "meta-llama/Llama-3.1-8B-Instruct"):
        assert parse_model_name(name) == ModelName(name, base=name)


def test_internal_route_keys_are_recognised() -> None:
    key = adapters_key("smollm2")
    assert is_internal(key) and not is_internal("smollm2")
