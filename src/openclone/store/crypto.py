"""Encryption at rest: envelope encryption, one data key per tenant under one master key.

- A tenant's **data key** is 32 random bytes (AES-256-GCM), made the first time something
  of the tenant is sealed. It is stored only wrapped by the master key, in
  ``encryption_keys`` (:class:`~openclone.store.tables.EncryptionKey`), and unwrapped at
  most once per process while it stays in a bounded in-memory cache (:class:`Keyring`).
- The **master key** comes from ``OPENCLONE_MASTER_KEY`` (base64 of 32 bytes), a key file
  (``master_key_file``, the same text, readable by its owner only), the home's own
  ``master.key`` (made when a new home's store is created, see :func:`keyring_for`), or a
  KMS: ``kms = "module:attr"`` names any object with ``wrap(key, context) -> bytes`` and
  ``unwrap(blob, context) -> bytes`` (:class:`MasterKey`; docs/encryption.md plugs in Vault
  Transit and the cloud KMSs). Only data keys ever meet the master key.
- A **sealed value** is ``"\\x01oc1:" + base64(nonce | ciphertext | tag)``; its
  associated data names the table and column, the tenant and the row, so a ciphertext
  copied into another row, or another tenant's, does not open. Text without the prefix
  (written before encryption was on, or with it off) reads as it is.
- **Crypto-shredding**: deleting a tenant's key row (erasure does) leaves every copy of
  its ciphertext — a copied row, an encrypted export, a replica — unreadable.

Which columns are sealed and what binds each is :mod:`openclone.store.sealed`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import importlib
import json
import logging
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openclone.errors import ConfigError, EncryptionError
from openclone.files import make_private_dir
from openclone.store.tables import EncryptionKey, now
from openclone.store.upsert import dialect_insert

__all__ = [
    "HOME_KEY_FILE",
    "SEALED",
    "Keyring",
    "LocalMasterKey",
    "MasterKey",
    "create_master_key_file",
    "data_key_context",
    "is_sealed",
    "keyring_for",
    "load_kms",
    "master_key_id",
    "parse_master_key",
    "read_master_key_file",
]

log = logging.getLogger("openclone.store")

Mode = Literal["auto", "on", "off"]
HOME_KEY_FILE = "master.key"  # in OPENCLONE_HOME: the key a new home makes for itself
SEALED = "\x01oc1:"  # a sealed value: this, then base64(nonce + ciphertext + tag)
_PLAIN = "\x01oc0:"  # text that happens to start like a sealed value, stored unsealed
_MARK = "\x01oc"  # no text a person types starts so; only such text needs the escape
_SEALED_BYTES, _PLAIN_BYTES, _MARK_BYTES = SEALED.encode(), _PLAIN.encode(), _MARK.encode()
_NONCE = 12
_KEY_BYTES = 32
KEYRING = "openclone.keyring"  # Session.info: the store's keyring (Store.session sets it)
_PENDING = "openclone.new_data_keys"  # Session.info: data keys made in this transaction


@runtime_checkable
class MasterKey(Protocol):
    """What wraps data keys: the local master key, or a KMS hook of your own.

    ``context`` names the tenant whose key it is; pass it as the KMS's associated data or
    encryption context, so a wrapped key cannot be unwrapped as another tenant's. A hook
    may have a ``key_id`` (e.g. the KMS key's ARN or name): the store records it beside
    each wrapped key and refuses to open with a different one, before anything is read.
    """

    def wrap(self, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalMasterKey:
    """A 256-bit master key held in memory: wraps each data key with AES-GCM."""

    def __init__(self, key: bytes, source: str = "a master key") -> None:
        if len(key) != _KEY_BYTES:
            raise ConfigError(f"{source}: a master key is 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.source = source
        # Names the key without revealing it: which key wrapped a data key, and whether the
        # one configured now is that one.
        digest = hashlib.sha256(b"openclone master key id\x00" + key).hexdigest()
        self.key_id = "local:" + digest[:16]

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], context)


def master_key_id(master: MasterKey) -> str:
    """What identifies ``master`` in ``encryption_keys.master_id``."""
    key_id = getattr(master, "key_id", None)
    return str(key_id)[:128] if key_id else "kms"


def parse_master_key(text: str, source: str) -> LocalMasterKey:
    """A master key from its text: base64, standard or URL-safe, padded or not."""
    value = text.strip()
    raw = b""
    try:
        padded = value + "=" * (-len(value) % 4)
        alphabet = b"-_" if ("-" in value or "_" in value) else None
        raw = base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        pass
    if len(raw) != _KEY_BYTES:
        raise ConfigError(
            f"{source} is not a master key: expected base64 of 32 random bytes, e.g. the "
            'output of `python -c "import os, base64; print(base64.b64encode(os.urandom(32))'
            '.decode())"` or `openssl rand -base64 32`'
        )
    return LocalMasterKey(raw, source)


def read_master_key_file(path: Path) -> LocalMasterKey:
    """The master key in ``path``, which only its owner may read (as ssh insists)."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"master key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read master key file {path}: {exc}") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"master key file {path} can be read by others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}"
        )
    return parse_master_key(text, f"master key file {path}")


def create_master_key_file(path: Path) -> LocalMasterKey:
    """Write a new random master key to ``path`` (0600); if another process made the file
    first, its key is the one returned, so racing openers of a new store agree."""
    make_private_dir(path.parent)
    text = base64.b64encode(os.urandom(_KEY_BYTES)).decode() + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it: theirs wins
            os.link(tmp, path)  # the whole file appears at once, and never over another
    finally:
        tmp.unlink(missing_ok=True)
    return read_master_key_file(path)


def load_kms(spec: str) -> MasterKey:
    """The KMS hook ``module:attr``: an object with ``wrap``/``unwrap``, or a callable
    (a class, a factory) that returns one when called without arguments."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"kms must be 'module:attr', not {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"kms {spec!r} cannot be loaded: {exc}") from exc
    if isinstance(target, type) or (not isinstance(target, MasterKey) and callable(target)):
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(f"kms {spec!r} failed to start: {exc}") from exc
    if not isinstance(target, MasterKey):
        raise ConfigError(f"kms {spec!r} has no wrap(key, context) and unwrap(blob, context)")
    return target


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED)


def _aad(field: str, tenant_id: str, row: str) -> bytes:
    # The tenant id is hex and the field fixed, so the row (any text) is what remains.
    return f"openclone|{field}|{tenant_id}|{row}".encode("utf-8", "surrogatepass")


def data_key_context(tenant_id: str) -> bytes:
    """What a tenant's data key is wrapped with: only that tenant's row unwraps it."""
    return f"openclone/data-key/tenant/{tenant_id}".encode()


class Keyring:
    """The store's data keys, and sealing and opening values with them.

    ``encrypt``: whether new values are sealed (a master key is configured and encryption
    is not off). Opening works whenever the master key is there, so sealed rows stay
    readable with ``encryption = "off"``. Thread-safe; the cache holds at most
    ``cache_size`` unwrapped keys (least recently used go first).
    """

    def __init__(
        self,
        master: MasterKey | None = None,
        *,
        encrypt: bool = False,
        mode: Mode = "auto",
        source: str = "",
        cache_size: int = 1024,
    ) -> None:
        if encrypt and master is None:
            raise ValueError("sealing needs a master key")
        self.master = master
        self.master_id = master_key_id(master) if master is not None else None
        self.encrypt = encrypt
        self.mode = mode
        self.source = source or ("no master key" if master is None else "a master key")
        self.cache_size = cache_size
        self.unwraps = 0  # data keys unwrapped by the master key in this process
        self._cache: OrderedDict[str, AESGCM] = OrderedDict()
        self._lock = threading.Lock()

    # -- values ----------------------------------------------------------------------------

    def seal_text(self, s: Session, tenant_id: str, field: str, row: str, text: str) -> str:
        """``text`` sealed for its place; empty text stays empty (it says nothing)."""
        if not text:
            return text
        if not self.encrypt:
            return _PLAIN + text if text.startswith(_MARK) else text
        return self._seal(s, tenant_id, _aad(field, tenant_id, row), _utf8(text))

    def open_text(self, s: Session, tenant_id: str, field: str, row: str, value: str) -> str:
        if not value or not value.startswith(_MARK):
            return value
        if value.startswith(SEALED):
            return self._open(s, tenant_id, _aad(field, tenant_id, row), value).decode(
                "utf-8", "surrogatepass"
            )
        if value.startswith(_PLAIN):
            return value[len(_PLAIN) :]
        return value

    def seal_json(self, s: Session, tenant_id: str, field: str, row: str, value: Any) -> Any:
        """``value`` (JSON) sealed as one string; ``None`` stays ``None``."""
        if value is None:
            return None
        if isinstance(value, str):
            return self.seal_text(s, tenant_id, field, row, value)
        if not self.encrypt:
            return value
        data = _utf8(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        return self._seal(s, tenant_id, _aad(field, tenant_id, row), data)

    def open_json(self, s: Session, tenant_id: str, field: str, row: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # a JSON column written before encryption: the value itself
        if value.startswith(SEALED):
            data = self._open(s, tenant_id, _aad(field, tenant_id, row), value)
            return json.loads(data.decode("utf-8", "surrogatepass"))
        return self.open_text(s, tenant_id, field, row, value)

    def seal_bytes(self, s: Session, tenant_id: str, field: str, row: str, data: bytes) -> bytes:
        """``data`` (a file's content) sealed for its place, as raw bytes: no base64, so a
        sealed file is only 34 bytes longer than its content."""
        if not self.encrypt:
            return _PLAIN_BYTES + data if data.startswith(_MARK_BYTES) else data
        aad = _aad(field, tenant_id, row)
        nonce = os.urandom(_NONCE)
        return (
            _SEALED_BYTES
            + nonce
            + self._data_key(s, tenant_id, create=True).encrypt(nonce, data, aad)
        )

    def open_bytes(self, s: Session, tenant_id: str, field: str, row: str, value: bytes) -> bytes:
        if value.startswith(_SEALED_BYTES):
            blob = value[len(_SEALED_BYTES) :]
            return self._decrypt(s, tenant_id, _aad(field, tenant_id, row), blob)
        if value.startswith(_PLAIN_BYTES):
            return value[len(_PLAIN_BYTES) :]
        return value

    def _seal(self, s: Session, tenant_id: str, aad: bytes, data: bytes) -> str:
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._data_key(s, tenant_id, create=True).encrypt(nonce, data, aad)
        return SEALED + base64.b64encode(sealed).decode("ascii")

    def _open(self, s: Session, tenant_id: str, aad: bytes, value: str) -> bytes:
        try:
            blob = base64.b64decode(value[len(SEALED) :], validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionError("a sealed value is damaged (not base64)") from None
        return self._decrypt(s, tenant_id, aad, blob)

    def _decrypt(self, s: Session, tenant_id: str, aad: bytes, blob: bytes) -> bytes:
        key = self._data_key(s, tenant_id, create=False)
        try:
            return key.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            raise EncryptionError(
                f"a sealed value does not open with tenant {tenant_id}'s data key: it was "
                "sealed for another tenant or another row, or it was altered"
            ) from None

    # -- data keys -------------------------------------------------------------------------

    def _data_key(self, s: Session, tenant_id: str, *, create: bool) -> AESGCM:
        with self._lock:
            key = self._cache.get(tenant_id)
            if key is not None:
                self._cache.move_to_end(tenant_id)
                return key
        pending: dict[str, AESGCM] = s.info.setdefault(_PENDING, {})
        if tenant_id in pending:  # made earlier in this transaction, not committed yet
            return pending[tenant_id]
        if self.master is None:
            raise EncryptionError(
                "this value is encrypted and no master key is configured: set "
                "OPENCLONE_MASTER_KEY, master_key_file or kms (docs/encryption.md)"
            )
        row = s.execute(
            select(EncryptionKey.wrapped, EncryptionKey.master_id).where(
                EncryptionKey.tenant_id == tenant_id
            )
        ).first()
        if row is None:
            if not create:
                raise EncryptionError(
                    f"tenant {tenant_id} has no data key: it was erased (crypto-shredded), "
                    "or the value comes from another store"
                )
            return self._new_key(s, tenant_id, pending)
        key = AESGCM(self.unwrap(tenant_id, row.wrapped, row.master_id))
        self._remember(tenant_id, key)
        return key

    def _new_key(self, s: Session, tenant_id: str, pending: dict[str, AESGCM]) -> AESGCM:
        assert self.master is not None and self.master_id is not None
        raw = os.urandom(_KEY_BYTES)
        wrapped = self.master.wrap(raw, data_key_context(tenant_id))
        s.flush()  # the tenant's row first: the key row refers to it
        values = {"tenant_id": tenant_id, "wrapped": wrapped, "master_id": self.master_id,
                  "created": now()}  # fmt: skip
        # Another gateway may be making this tenant's key right now: the first one stays.
        s.execute(dialect_insert(s, EncryptionKey).values(**values).on_conflict_do_nothing())
        stored = s.execute(
            select(EncryptionKey.wrapped, EncryptionKey.master_id).where(
                EncryptionKey.tenant_id == tenant_id
            )
        ).one()
        if bytes(stored.wrapped) != wrapped:
            key = AESGCM(self.unwrap(tenant_id, stored.wrapped, stored.master_id))
            self._remember(tenant_id, key)
            return key
        # Not cached until it is committed: a transaction rolled back takes its key along,
        # and nothing may be sealed with a key the store does not keep.
        pending[tenant_id] = key = AESGCM(raw)
        return key

    def unwrap(self, tenant_id: str, wrapped: bytes, master_id: str) -> bytes:
        """A tenant's data key, unwrapped by the master key (errors say what to fix)."""
        if self.master is None:
            raise EncryptionError("no master key is configured to unwrap data keys with")
        if not self._may_have_wrapped(master_id):
            raise EncryptionError(
                f"tenant {tenant_id}'s data key is wrapped by master key {master_id}, not "
                f"by the one configured ({self.master_id}, from {self.source})"
            )
        try:
            raw = self.master.unwrap(bytes(wrapped), data_key_context(tenant_id))
        except Exception as exc:
            raise EncryptionError(
                f"the master key from {self.source} cannot unwrap tenant {tenant_id}'s data "
                f"key (wrong master key?): {type(exc).__name__}: {exc}"
            ) from exc
        self.unwraps += 1
        return raw

    def _remember(self, tenant_id: str, key: AESGCM) -> None:
        with self._lock:
            self._cache[tenant_id] = key
            self._cache.move_to_end(tenant_id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def forget(self, tenant_id: str | None = None) -> None:
        """Drop a tenant's unwrapped key from memory (all of them: ``None``)."""
        with self._lock:
            if tenant_id is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant_id, None)

    def _may_have_wrapped(self, master_id: str) -> bool:
        # A KMS hook without a key_id cannot be told from another one: only a local key
        # is surely not it.
        if self.master_id == "kms":
            return not master_id.startswith("local:")
        return master_id == self.master_id

    def use_master(self, master: MasterKey, source: str) -> None:
        """Go on with ``master`` (after a rotation re-wrapped every key under it)."""
        self.master, self.master_id, self.source = master, master_key_id(master), source

    def check(self, s: Session) -> None:
        """Refuse a master key that did not wrap the store's data keys, and a store whose
        data is encrypted when no master key is configured — before anything is read."""
        found = dict(
            s.execute(
                select(EncryptionKey.master_id, func.count()).group_by(EncryptionKey.master_id)
            ).all()
        )
        if not found:
            return
        ids = ", ".join(sorted(found))
        if self.master is None:
            if self.mode == "off":
                log.warning("the store holds data keys (master key %s) but no master key is "
                            "configured: encrypted values cannot be read", ids)  # fmt: skip
                return
            raise ConfigError(
                f"the store's data is encrypted (data keys wrapped by master key {ids}) and "
                "no master key is configured: set OPENCLONE_MASTER_KEY, master_key_file or "
                'kms, or encryption = "off" to open it without reading encrypted values'
            )
        wrong = sorted(m for m in found if not self._may_have_wrapped(m))
        if not wrong:
            return
        raise ConfigError(
            f"wrong master key: the store's data keys are wrapped by master key {', '.join(wrong)}, and "
            f"the one configured ({self.source}) is {self.master_id}"
        )


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate survives the round trip


def keyring_for(
    *,
    mode: Mode = "auto",
    master_key: str | None = None,
    master_key_file: Path | None = None,
    kms: str | None = None,
    home: Path | None = None,
    local_store: bool = False,
    new_store: bool = False,
) -> Keyring:
    """The keyring settings describe. The master key is the one configured (``kms``,
    ``master_key``, ``master_key_file``: one of them), else ``HOME/master.key`` if there.

    Otherwise a key file is made in the home for a local (SQLite) store when the store is
    new and ``mode`` is ``auto`` — a fresh ``openclone serve`` encrypts from its first
    capture — or whenever ``mode`` is ``on``. A shared (PostgreSQL) store never gets one
    made: other gateways could not read what this one sealed.
    """
    given = [n for n, v in (("kms", kms), ("master_key", master_key),
                            ("master_key_file", master_key_file)) if v]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(f"set one master key, not {' and '.join(given)}")
    master: MasterKey | None = None
    if kms:
        master, source = load_kms(kms), f"kms {kms}"
    elif master_key:
        master, source = (
            parse_master_key(master_key, "OPENCLONE_MASTER_KEY"),
            "OPENCLONE_MASTER_KEY",
        )
    elif master_key_file:
        master, source = read_master_key_file(master_key_file), str(master_key_file)
    elif home is not None and (home / HOME_KEY_FILE).exists():
        if (home / (HOME_KEY_FILE + ".new")).exists():
            log.warning("%s.new exists: a master key rotation was interrupted; if the store "
                        "does not open, move it over %s", home / HOME_KEY_FILE,
                        home / HOME_KEY_FILE)  # fmt: skip
        master, source = read_master_key_file(home / HOME_KEY_FILE), str(home / HOME_KEY_FILE)
    elif home is not None and local_store and (mode == "on" or (mode == "auto" and new_store)):
        master, source = create_master_key_file(home / HOME_KEY_FILE), str(home / HOME_KEY_FILE)
        log.info("encryption at rest: made the master key %s", source)
    else:
        source = ""
    if mode == "on" and master is None:
        raise ConfigError(
            'encryption = "on" needs a master key: OPENCLONE_MASTER_KEY, master_key_file or '
            "kms (a shared PostgreSQL store never gets one made for it)"
        )
    return Keyring(master, encrypt=master is not None and mode != "off", mode=mode, source=source)
