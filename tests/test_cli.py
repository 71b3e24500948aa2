"""The command line: a thin layer with clear errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from openclone.cli import app

runner = CliRunner()


def test_models_lists_the_catalog(tmp_path: Path) -> None:
    cfg = tmp_path / "openclone.toml"
    cfg.write_text('[[models]]\nname = "alpha"\n[[models]]\nname = "gpt-4o"\nengine = "openai"\n')
    result = runner.invoke(app, ["models", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert (
        "alpha (default)" in result.output
        and "gpt-4o" in result.output
        and "openai" in result.output
    )


def test_bad_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "openclone.toml"
    cfg.write_text("port = 'x'\n")
    result = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "port" in result.output


def test_serve_model_must_be_an_existing_gguf(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "missing.gguf")])
    assert result.exit_code == 2 and "not found" in result.output
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    result = runner.invoke(app, ["serve", "--model", str(other)])
    assert result.exit_code == 2 and ".gguf" in result.output


def test_unknown_engine_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "openclone.toml"
    cfg.write_text('[[models]]\nname = "x"\nengine = "warp-drive"\n')
    result = runner.invoke(app, ["chat", "--config", str(cfg)], input="\n")
    assert result.exit_code == 1
    assert "unknown engine 'warp-drive'" in result.output


def test_terminal_chat_streams_a_reply_from_the_bundled_model(tmp_path: Path) -> None:
    cfg = tmp_path / "openclone.toml"
    cfg.write_text('[[models]]\nname = "tiny"\nparams = { n_ctx = 512, n_parallel = 1 }\n')
    result = runner.invoke(
        app, ["chat", "--config", str(cfg), "--temperature", "0"], input="Say hello.\n\n"
    )
    assert result.exit_code == 0, result.output
    reply = result.output.split("bot>", 1)[1].split("you>", 1)[0].strip()
    assert reply  # the model answered something


def test_terminal_chat_in_process_reaches_a_registry_version(tmp_path: Path) -> None:
    """``openclone chat`` opens the same router as the gateway: NAME@N resolves."""
    cfg = tmp_path / "openclone.toml"
    cfg.write_text('[[models]]\nname = "tiny"\nparams = { n_ctx = 512, n_parallel = 1 }\n')
    registered = runner.invoke(
        app, ["registry", "register", "bot", "--target", "tiny", "--config", str(cfg)]
    )
    assert registered.exit_code == 0, registered.output
    assert registered.output.strip() == "bot@1"
    result = runner.invoke(
        app,
        ["chat", "--config", str(cfg), "--model", "bot@1", "--temperature", "0"],
        input="Say hello.\n\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.split("bot>", 1)[1].split("you>", 1)[0].strip()
