"""Encryption at rest (issue 19, item 4): what is on disk, what reads back, and the keys'
life — rotation, crypto-shredding, wrong keys — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from openclone.cli import app
from openclone.config import load_settings
from openclone.errors import ConfigError, EncryptionError
from openclone.store import Store, open_store
from openclone.store.accounts import ensure_tenant, set_tenant_policy
from openclone.store.audit import list_audit
from openclone.store.conversations import (
    create_conversation,
    get_conversation,
    list_conversations,
    update_conversation,
)
from openclone.store.crypto import (
    SEALED,
    Keyring,
    LocalMasterKey,
    keyring_for,
    parse_master_key,
)
from openclone.store.encryption import rotate_master
from openclone.store.export import (
    CaptureFilter,
    decrypt_export,
    export_captures,
    search_captures,
)
from openclone.store.privacy import add_feedback, erase
from openclone.store.responses import ResponseRecord, get_response, save_response
from openclone.store.sealed import keyring, open_comment, seal_exchange
from openclone.store.tables import Capture, EncryptionKey, Feedback, Tenant
from store.helpers import ANA, exchange, jsonl, write

MARKER = "ZQX-sealed-canary-4417"
LEGACY = "ZQX-legacy-canary-0815"
runner = CliRunner()


class LocalKms:
    """A KMS hook as docs/encryption.md writes one, its key held here instead of in Vault
    or a cloud KMS: the context goes in as associated data, as Transit's ``context`` or
    AWS's ``EncryptionContext`` would."""

    key_id = "kms:test-key-1"

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(256))

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], context)


def _master() -> LocalMasterKey:
    return LocalMasterKey(os.urandom(32), "a test key")


def _sealing(master: LocalMasterKey | None = None, **kw: object) -> Keyring:
    return Keyring(master or _master(), encrypt=True, source="a test key", **kw)  # type: ignore[arg-type]


def _holding(files: list[Path], text: str) -> list[Path]:
    return [f for f in files if text.encode() in f.read_bytes()]


def _consent(store: Store, *tenants: str) -> None:
    for t in tenants:
        set_tenant_policy(store, t, actor="admin", consent=True)


def _tenant_id(s: Session, name: str) -> str:
    tid = s.scalar(select(Tenant.id).where(Tenant.name == name))
    assert tid is not None
    return str(tid)


def _raw_request(store: Store, capture_id: str) -> object:
    with store.session() as s:
        return s.scalar(select(Capture.request).where(Capture.id == capture_id))


def test_sealed_text_is_not_on_disk_and_everything_reads_back(
    store: Store, home: Path, database_files: Callable[[], list[Path]]
) -> None:
    _consent(store, "acme")
    old = exchange(f"an old question {LEGACY}", conversation="c-old")
    write(store, old)  # before encryption was on: stays plain, and readable
    store.keyring = _sealing()
    ana = exchange(f"my plan {MARKER}", f"ok {MARKER}", conversation="c-ana", system=f"be {MARKER}")
    write(store, ana)
    add_feedback(store, ANA, ana.id, -1, f"comment {MARKER}")
    conv = create_conversation(store, ANA, title=f"title {MARKER}", system_prompt=f"sys {MARKER}")
    save_response(store, "acme", "ana", ResponseRecord(
        id="resp_1", model="m", body={"output_text": MARKER},
        input_items=[{"id": "in_1", "content": MARKER}],
        messages=[{"role": "user", "content": MARKER}],
    ))  # fmt: skip

    files = database_files()
    assert _holding(files, LEGACY)  # the canary: plain text is found where it lies
    assert not _holding(files, MARKER)
    assert str(_raw_request(store, ana.id)).startswith(SEALED)

    view = get_conversation(store, ANA, "c-ana")
    assert [m["content"] for m in view.messages] == [f"my plan {MARKER}", f"ok {MARKER}"]
    assert (view.title, view.system_prompt) == (f"my plan {MARKER}", f"be {MARKER}")
    assert get_conversation(store, ANA, "c-old").messages[0]["content"].endswith(LEGACY)
    mine = get_conversation(store, ANA, conv.id)
    assert (mine.title, mine.system_prompt) == (f"title {MARKER}", f"sys {MARKER}")
    # The web chat's search: by title or any message, sealed or legacy, ignoring case.
    assert {c.id for c in list_conversations(store, ANA, MARKER.lower())} == {"c-ana", conv.id}
    assert [c.id for c in list_conversations(store, ANA, "OLD QUESTION")] == ["c-old"]
    assert {c.title for c in list_conversations(store, ANA)} >= {f"title {MARKER}"}
    update_conversation(store, ANA, conv.id, title=f"renamed {MARKER}")
    assert get_conversation(store, ANA, conv.id).title == f"renamed {MARKER}"
    assert get_response(store, "acme", "resp_1").body == {"output_text": MARKER}
    with store.session() as s:
        fb = s.scalar(select(Feedback).where(Feedback.capture_id == ana.id))
        assert fb is not None and fb.comment.startswith(SEALED)
        assert open_comment(s, _tenant_id(s, "acme"), ana.id, fb.comment) == f"comment {MARKER}"

    assert [c.id for c in search_captures(store, MARKER.lower())] == [ana.id]
    assert [c.id for c in search_captures(store, "AN OLD QUESTION", tenant="acme")] == [old.id]
    out = home / "train.jsonl"
    assert export_captures(store, out).rows == 2
    assert MARKER in out.read_text() and LEGACY in out.read_text()


def test_encrypted_exports_and_erasure_work_on_sealed_rows(store: Store, home: Path) -> None:
    _consent(store, "acme", "globex")
    legacy = exchange(f"from before {MARKER}", tenant="globex")
    write(store, legacy)  # plain, and its tenant has no key yet: the export makes one
    store.keyring = _sealing()
    ana, bob = exchange(f"ana {MARKER}"), exchange(f"bob {MARKER}", user="bob")
    write(store, ana, bob)
    plain, sealed = home / "plain.jsonl", home / "sealed.jsonl"
    export_captures(store, plain)
    result = export_captures(store, sealed, encrypt=True)
    assert result.rows == 3 and MARKER in plain.read_text()
    assert MARKER not in sealed.read_text()
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    opened = decrypt_export(store, sealed, home / "opened.jsonl")
    assert (opened.rows, opened.unreadable) == (3, 0)
    assert jsonl(home / "opened.jsonl") == jsonl(plain)

    erase(store, actor="admin", tenant="acme", user="ana")  # rewrites both exports
    assert [r["metadata"]["capture_id"] for r in jsonl(plain)] == [legacy.id, bob.id]
    assert [r["metadata"]["capture_id"] for r in jsonl(sealed)] == [legacy.id, bob.id]
    assert decrypt_export(store, sealed, home / "opened.jsonl").rows == 2


def test_erasing_a_tenant_destroys_its_key_and_every_copy_goes_dark(
    store: Store, store_url: str, home: Path
) -> None:
    store.keyring = _sealing()
    _consent(store, "acme", "globex")
    acme, globex = exchange(f"acme {MARKER}"), exchange("globex asks", tenant="globex")
    write(store, acme, globex)
    with store.session() as s:
        acme_id = _tenant_id(s, "acme")
    copied = _raw_request(store, acme.id)  # a copy of the row, made before the erasure
    export_captures(store, home / "both.jsonl", encrypt=True)
    backup = home / "backup-copy.jsonl"  # a copy of the export, never registered
    shutil.copyfile(home / "both.jsonl", backup)

    result = erase(store, actor="admin", tenant="acme")
    assert result.counts["data_keys"] == 1
    with store.session() as s:
        assert s.get(EncryptionKey, acme_id) is None
        with pytest.raises(EncryptionError, match="no data key"):
            keyring(s).open_json(s, acme_id, "captures.request", acme.id, copied)
    # Another process with the same master key, nothing cached: the same.
    fresh = open_store(store_url, keyring=Keyring(store.keyring.master, encrypt=True))
    try:
        opened = decrypt_export(fresh, backup, home / "opened.jsonl")
        assert (opened.rows, opened.unreadable) == (1, 1)  # globex's row only
        assert MARKER not in (home / "opened.jsonl").read_text()
    finally:
        fresh.close()


def test_a_ciphertext_moved_to_another_row_or_tenant_does_not_open(store: Store) -> None:
    store.keyring = _sealing()
    _consent(store, "acme", "globex")
    first, second = exchange("first"), exchange("second")
    theirs = exchange("globex's", tenant="globex")
    write(store, first, second, theirs)
    moved = _raw_request(store, first.id)
    with store.session() as s:
        s.execute(update(Capture).where(Capture.id == theirs.id).values(request=moved))
    with pytest.raises(EncryptionError, match="sealed for another tenant or another row"):
        _prompts(store, "globex")
    with store.session() as s:  # within the tenant, another row: bound to its capture id
        s.execute(update(Capture).where(Capture.id == second.id).values(request=moved))
    with pytest.raises(EncryptionError, match="another row"):
        _prompts(store, "acme")


def _prompts(store: Store, tenant: str) -> list[object]:
    from openclone.store.export import iter_captured_prompts

    return list(iter_captured_prompts(store, CaptureFilter(tenant=tenant)))


def test_a_wrong_or_missing_master_key_is_a_clear_error(store: Store, store_url: str) -> None:
    store.keyring = _sealing()
    _consent(store, "acme")
    write(store, exchange(f"sealed {MARKER}"))
    with pytest.raises(ConfigError, match="wrong master key: the store's data keys are wrapped"):
        open_store(store_url, keyring=_sealing())
    with pytest.raises(ConfigError, match="no master key is configured"):
        open_store(store_url)
    off = open_store(store_url, keyring=Keyring(mode="off"))  # opens, reads what is plain
    try:
        with pytest.raises(EncryptionError, match="no master key is configured"):
            _prompts(off, "acme")
    finally:
        off.close()


def test_rotating_the_master_key_rewraps_keys_and_old_rows_still_read(
    store: Store, store_url: str
) -> None:
    old = _master()
    store.keyring = _sealing(old)
    _consent(store, "acme", "globex")
    a, g = exchange(f"acme {MARKER}"), exchange(f"globex {MARKER}", tenant="globex")
    write(store, a, g)
    before = _raw_request(store, a.id), _raw_request(store, g.id)
    new = _master()

    rotation = rotate_master(store, new, source="the new key", actor="admin")
    assert (rotation.keys, rotation.old, rotation.new) == (2, old.key_id, new.key_id)
    assert (_raw_request(store, a.id), _raw_request(store, g.id)) == before  # rows untouched
    with store.session() as s:
        assert {k.master_id for k in s.scalars(select(EncryptionKey))} == {new.key_id}
    assert [e.detail["new"] for e in list_audit(store, action="keys")] == [new.key_id]
    with pytest.raises(ConfigError, match="wrong master key"):
        open_store(store_url, keyring=_sealing(old))
    reopened = open_store(store_url, keyring=_sealing(new))
    try:
        assert reopened.keyring.unwraps == 0
        assert len(_prompts(reopened, "acme")) == len(_prompts(reopened, "globex")) == 1
        assert reopened.keyring.unwraps == 2
        write(reopened, exchange("after the rotation"))
        assert len(_prompts(reopened, "acme")) == 2
    finally:
        reopened.close()


def test_text_that_looks_sealed_round_trips_and_so_does_any_unicode(store: Store) -> None:
    tricky = [SEALED + "AAAA", "\x01oc0:x", "emoji 🔐 and a lone \ud800 surrogate", "plain"]
    for keys in (Keyring(), _sealing()):
        store.keyring = keys
        for text in tricky:
            conv = create_conversation(store, ANA, title=text[:40], system_prompt=text)
            back = get_conversation(store, ANA, conv.id)
            # The store keeps what both databases can hold: a lone surrogate becomes '?'.
            assert back.system_prompt == text.encode("utf-8", "replace").decode("utf-8")


def test_data_keys_are_cached_bounded_and_never_before_they_are_committed(store: Store) -> None:
    master = _master()
    store.keyring = _sealing(master, cache_size=2)
    tenants = ["t1", "t2", "t3"]
    _consent(store, *tenants)
    write(store, *(exchange(f"from {t}", tenant=t) for t in tenants))
    assert store.keyring.unwraps == 0  # made in the writer's transaction, not yet cached
    for t in tenants:
        _prompts(store, t)
    assert store.keyring.unwraps == 3 and len(store.keyring._cache) == 2

    store.keyring = _sealing(master)
    for _ in range(3):
        for t in tenants:
            assert len(_prompts(store, t)) == 1
    assert store.keyring.unwraps == 3  # each key unwrapped once, then from memory

    with pytest.raises(RuntimeError), store.session() as s:  # a transaction rolled back
        tenant = ensure_tenant(s, "newco")
        seal_exchange(s, tenant.id, "never", {"messages": []}, None)
        raise RuntimeError("the batch failed")
    with store.session() as s:
        assert s.scalar(select(EncryptionKey).join(Tenant).where(Tenant.name == "newco")) is None
    _consent(store, "newco")
    write(store, exchange("newco, for real", tenant="newco"))
    assert len(_prompts(store, "newco")) == 1


def test_a_second_gateway_making_the_same_tenants_key_keeps_the_first(
    store: Store, store_url: str
) -> None:
    master = _master()
    store.keyring = _sealing(master)
    _consent(store, "acme")
    write(store, exchange(f"first {MARKER}"))
    with store.session() as s:
        (first,) = s.scalars(select(EncryptionKey.wrapped))
    other = open_store(store_url, keyring=_sealing(master))
    try:
        with other.session() as s:  # what the loser of the race does after its look-up
            other.keyring._new_key(s, _tenant_id(s, "acme"), {})
        with other.session() as s:
            assert list(s.scalars(select(EncryptionKey.wrapped))) == [first]
        assert other.keyring.unwraps == 1  # it took the first key, and keeps it
        assert MARKER in str(_prompts(other, "acme"))
        assert other.keyring.unwraps == 1
    finally:
        other.close()


def test_where_the_master_key_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    made = keyring_for(home=home, local_store=True, new_store=True)  # a new home: made
    key_file = home / "master.key"
    assert made.encrypt and made.source == str(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = keyring_for(home=home, local_store=True)
    assert again.master_id == made.master_id and again.encrypt
    assert keyring_for(home=home, mode="off").encrypt is False  # opens, seals nothing new
    existing = keyring_for(home=tmp_path / "old-home", local_store=True)  # a store from before
    assert existing.master is None and not existing.encrypt
    assert not (tmp_path / "old-home" / "master.key").exists()
    forced = keyring_for(home=tmp_path / "forced", mode="on", local_store=True)
    assert forced.encrypt and (tmp_path / "forced" / "master.key").exists()
    with pytest.raises(ConfigError, match="needs a master key"):
        keyring_for(home=tmp_path / "pg-home", mode="on", local_store=False)

    raw = os.urandom(32)
    std, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_master_key(std, "x").key_id == parse_master_key(url, "y").key_id
    with pytest.raises(ConfigError, match="not a master key"):
        keyring_for(master_key="hunter2")
    loose = tmp_path / "loose.key"
    loose.write_text(std)
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        keyring_for(master_key_file=loose)
    loose.chmod(0o600)
    assert keyring_for(master_key_file=loose).master_id == parse_master_key(std, "x").key_id
    with pytest.raises(ConfigError, match="set one master key"):
        keyring_for(master_key=std, master_key_file=loose)
    kms = keyring_for(kms="store.test_encryption:LocalKms")
    assert kms.encrypt and kms.master_id == "kms:test-key-1"
    with pytest.raises(ConfigError, match="cannot be loaded"):
        keyring_for(kms="store.test_encryption:NoSuchKms")

    monkeypatch.setenv("OPENCLONE_MASTER_KEY", std)
    settings = load_settings()
    assert settings.master_key is not None and std not in repr(settings)


def test_a_kms_hook_seals_and_its_key_id_is_checked(store: Store, store_url: str) -> None:
    store.keyring = keyring_for(kms="store.test_encryption:LocalKms")
    _consent(store, "acme")
    write(store, exchange(f"via the kms {MARKER}"))
    assert "via the kms" in str(_prompts(store, "acme"))
    with store.session() as s:
        assert {k.master_id for k in s.scalars(select(EncryptionKey))} == {"kms:test-key-1"}
    with pytest.raises(ConfigError, match="wrong master key"):
        open_store(store_url, keyring=_sealing())


# -- the commands ------------------------------------------------------------------------


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _error(code: int, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_keys_rotate_master_from_the_command_line(
    store_url: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("OPENCLONE_DATABASE_URL", store_url)
    monkeypatch.setenv("OPENCLONE_MASTER_KEY", old)
    store = open_store(load_settings())
    try:
        _consent(store, "acme")
        write(store, exchange(f"ask {MARKER}"))
    finally:
        store.close()
    assert "1 tenant data key(s) wrapped by master key local:" in _ok("keys", "encryption")
    assert "acme" in _ok("captures", "search", MARKER.lower())  # opened to be searched
    assert "no captures" in _ok("captures", "search", "nowhere to be found")
    assert "--new-key-file" in _error(2, "keys", "rotate-master")  # the key is not the home's
    assert "--new-key-file" in _error(2, "keys", "rotate-master", "--generate")

    new_file = tmp_path / "keys" / "new.key"
    out = _ok("keys", "rotate-master", "--new-key-file", str(new_file), "--generate")
    assert "re-wrapped 1 tenant data key(s)" in out
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert "wrong master key" in _error(2, "captures", "list")  # the old key is refused
    monkeypatch.delenv("OPENCLONE_MASTER_KEY")
    monkeypatch.setenv("OPENCLONE_MASTER_KEY_FILE", str(new_file))
    sealed, opened = tmp_path / "sealed.jsonl", tmp_path / "opened.jsonl"
    assert "wrote 1 rows" in _ok("captures", "export", "--out", str(sealed), "--encrypt")
    assert MARKER not in sealed.read_text()
    assert "wrote 1 rows" in _ok("captures", "decrypt", str(sealed), "--out", str(opened))
    assert MARKER in opened.read_text()

    monkeypatch.setenv("NEXT_KEY", base64.b64encode(os.urandom(32)).decode())
    assert "re-wrapped 1" in _ok("keys", "rotate-master", "--new-key-env", "NEXT_KEY")
    monkeypatch.delenv("OPENCLONE_MASTER_KEY_FILE")
    monkeypatch.setenv("OPENCLONE_MASTER_KEY", os.environ["NEXT_KEY"])
    assert "wrote 1 rows" in _ok("captures", "decrypt", str(sealed), "--out", str(opened))


def test_a_new_home_encrypts_and_rotates_its_own_key(home: Path) -> None:
    out = _ok("keys", "encryption")  # creates the store in a new home: a key is made for it
    key_file = home / "master.key"
    assert "encryption: on; master key local:" in out and str(key_file) in out
    store = open_store(load_settings())
    try:
        _consent(store, "acme")
        write(store, exchange(f"ask {MARKER}"))
    finally:
        store.close()
    before = key_file.read_text()
    assert "re-wrapped 1 tenant data key(s)" in _ok("keys", "rotate-master")
    assert key_file.read_text() != before and not (home / "master.key.new").exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    store = open_store(load_settings())
    try:
        assert len(_prompts(store, "acme")) == 1
    finally:
        store.close()
    assert MARKER.encode() not in (home / "openclone.db").read_bytes()


def test_what_openclone_makes_on_disk_is_private(tmp_path: Path) -> None:
    from openclone.files import atomic_write

    atomic_write(tmp_path / "new-home" / "jobs" / "status.json", "{}")
    for made in (tmp_path / "new-home", tmp_path / "new-home" / "jobs"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    assert stat.S_IMODE((tmp_path / "new-home" / "jobs" / "status.json").stat().st_mode) == 0o600
