"""Encryption at rest from the command line: ``keys encryption``, ``keys rotate-master`` and
``captures decrypt`` (registered on the ``keys`` and ``captures`` groups in ``cli/__init__``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from openclone.cli.common import USAGE, ConfigOpt, console, err, exit_on_error, fail, opened_store
from openclone.config import load_settings
from openclone.errors import ConfigError

__all__ = ["decrypt_command", "rotate_master_command", "status_command"]


def status_command(config: ConfigOpt = None) -> None:
    """Whether new text is encrypted, with which master key, and the tenants' data keys."""
    from openclone.store.encryption import encryption_status

    with opened_store(config) as store:
        st = encryption_status(store)
    if st.master_id is None:
        console.print("encryption: off (no master key)")
    else:
        state = "on" if st.sealing else 'off for new text (encryption = "off")'
        console.print(f"encryption: {state}; master key {st.master_id} from {st.source}",
                      highlight=False, soft_wrap=True)  # fmt: skip
    for master_id, n in sorted(st.data_keys.items()):
        console.print(f"{n} tenant data key(s) wrapped by master key {master_id}")
    if not st.data_keys:
        console.print("no tenant data keys yet")


def rotate_master_command(
    new_key_file: Annotated[
        Path | None, typer.Option(help="file holding the new master key (base64, mode 0600)")
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="write a new random key to --new-key-file first")
    ] = False,
    new_key_env: Annotated[
        str | None, typer.Option(help="name of the environment variable holding the new key")
    ] = None,
    new_kms: Annotated[str | None, typer.Option(help="module:attr of the new KMS hook")] = None,
    config: ConfigOpt = None,
) -> None:
    """Re-wrap every tenant's data key under a new master key; no encrypted row changes.

    With no new key named, a store using the home's own master.key gets a new one in its
    place. Otherwise point every gateway and command at the new key afterwards, and destroy
    the old one: a backup taken before the rotation opens only with it.
    """
    from openclone.store.crypto import (
        create_master_key_file,
        load_kms,
        parse_master_key,
        read_master_key_file,
    )
    from openclone.store.encryption import rotate_home_master, rotate_master

    named = [n for n, v in (("--new-key-file", new_key_file), ("--new-key-env", new_key_env),
                            ("--new-kms", new_kms)) if v]  # fmt: skip
    if len(named) > 1:
        raise fail(f"name one new master key, not {' and '.join(named)}", USAGE)
    if generate and new_key_file is None:
        raise fail("--generate writes the key to --new-key-file PATH", USAGE)
    with exit_on_error(USAGE):
        if new_kms:
            new, source = load_kms(new_kms), f"kms {new_kms}"
        elif new_key_env:
            if not os.environ.get(new_key_env):
                raise fail(f"the environment variable {new_key_env} is not set", USAGE)
            new, source = parse_master_key(os.environ[new_key_env], new_key_env), new_key_env
        elif new_key_file is not None:
            if generate and new_key_file.exists():
                raise fail(f"{new_key_file} exists; --generate never overwrites a key", USAGE)
            make = create_master_key_file if generate else read_master_key_file
            new, source = make(new_key_file), str(new_key_file)
    with opened_store(config) as store:
        try:
            if named:
                rotation = rotate_master(store, new, source=source, actor="cli")
            else:
                home = load_settings(config).home
                rotation = rotate_home_master(store, home, actor="cli")
        except ConfigError as exc:  # which key to rotate to: a usage error, nothing changed
            raise fail(exc, USAGE) from None
    console.print(f"re-wrapped {rotation.keys} tenant data key(s) under master key "
                  f"{rotation.new} (was {rotation.old}); no encrypted row was rewritten")  # fmt: skip
    if named:
        err.print(f"now give every gateway and command the new key ({source}) and destroy the "
                  "old one: backups taken before now open only with it")  # fmt: skip


def decrypt_command(
    src: Annotated[Path, typer.Argument(help="an export written with --encrypt")],
    out: Annotated[Path, typer.Option(help="plain JSONL to write (0600)")],
    config: ConfigOpt = None,
) -> None:
    """Open an encrypted export for training; rows of erased tenants are left out."""
    from openclone.store.export import decrypt_export

    if not src.is_file():
        raise fail(f"no file {src}", USAGE)
    with opened_store(config) as store:
        result = decrypt_export(store, src, out)
    console.print(f"wrote {result.rows} rows to {result.path}", highlight=False)
    if result.unreadable:
        err.print(f"{result.unreadable} row(s) could not be opened: their tenant was erased "
                  "(its key is gone) or they were altered")  # fmt: skip
