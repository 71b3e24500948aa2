"""Settings: TOML + environment, precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from openclone.config import BUNDLED_MODEL_NAME, ModelConfig, bundled_model_path, load_settings
from openclone.errors import ConfigError


def test_defaults_serve_the_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert [m.name for m in s.models] == [BUNDLED_MODEL_NAME]
    assert s.default_model == BUNDLED_MODEL_NAME
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.home == Path(str(tmp_path / "openclone-home"))  # from the autouse fixture
    assert bundled_model_path().stat().st_size > 50_000_000


def test_toml_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "openclone.toml"
    cfg.write_text(
        'port = 9000\nhost = "0.0.0.0"\ndefault_model = "b"\n'
        '[[models]]\nname = "a"\nengine = "openai"\nparams = { base_url = "http://x/v1" }\n'
        '[[models]]\nname = "b"\n[[models.replicas]]\nparams = { n_ctx = 512 }\n'
        '[[models.replicas]]\nengine = "openai"\nparams = { base_url = "http://y/v1" }\n'
    )
    monkeypatch.setenv("OPENCLONE_PORT", "9100")
    s = load_settings(cfg)
    assert s.port == 9100 and s.host == "0.0.0.0"
    assert s.default_model == "b"
    b = s.model("b")
    assert b is not None
    assert b.replica_specs() == [
        ("llamacpp", {"n_ctx": 512}),
        ("openai", {"base_url": "http://y/v1"}),
    ]
    s2 = load_settings(cfg, port=9200, models=[ModelConfig(name="only")])
    assert s2.port == 9200
    assert [m.name for m in s2.models] == ["only"] and s2.default_model == "only"


def test_config_found_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "openclone.toml").write_text("port = 8123\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().port == 8123


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("port = 'high'\n", "port"),
        ("port = 70000\n", "port"),
        ("bogus = 1\n", "bogus"),
        ("[[models]]\nengine = 'llamacpp'\n", "models.0.name"),
        ("[[models]]\nname = 'a'\n[[models]]\nname = 'a'\n", "repeated: a"),
        ("default_model = 'zzz'\n[[models]]\nname = 'a'\n", "'zzz' is not in the catalog"),
        ("[[models]]\nname = 'bad name!'\n", "not a valid model name"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "openclone.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg)
    assert needle in str(exc.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_env_catalog_as_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENCLONE_MODELS", '[{"name": "gpt-4o", "engine": "openai"}]')
    s = load_settings()
    assert s.default_model == "gpt-4o"
