"""Signed checkpoints of the batch record chain (issue 15 item 5; 21 CFR 11.10(e), 11.70 [CFR11];
Annex 11 §7.1 [ANNEX11-2011]).

The hash chain alone is unkeyed: whoever can write the file can change an entry and recompute
every later hash with the public algorithm of :mod:`.canonical`. A *checkpoint* is the head
``(seq, hash)`` signed with the cell's Ed25519 record key; the record store writes one with every
commit (same transaction) when it is given a :class:`Sealer`. Without the private key a rewritten
chain no longer matches the signed checkpoints, and removing the checkpoints leaves the head
uncovered; :func:`~.store.verify_file` with the cell's public key reports both.

The key pair lives next to the other per-cell keys in the security directory
(``$ASEPTIC_CELL_SECURITY_DIR``, else ``<venv>/var/aseptic_cell/security``; never in git):
``record_seal.key`` (PKCS#8 PEM, mode 0600) and ``record_seal.pub`` (SubjectPublicKeyInfo PEM).
:func:`init_seal_key` creates them once (scripts/ensure_keys.sh);
a site creates its own and hands the public key to whoever verifies (QA, the MES anchor).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_json

CHECKPOINT_SCHEME = "aseptic_cell.record.checkpoint.v1"
PRIVATE_NAME = "record_seal.key"
PUBLIC_NAME = "record_seal.pub"


def _security_dir(directory: str | os.PathLike[str] | None) -> Path:
    if directory is not None:
        return Path(directory)
    from ..security.keys import default_security_dir

    return default_security_dir()


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key (names the key in a checkpoint)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_message(seq: int, head_hash: str, signed_at: str, kid: str) -> bytes:
    """The bytes a checkpoint signature covers (canonical JSON, domain-separated)."""
    return canonical_json(
        {"scheme": CHECKPOINT_SCHEME, "seq": seq, "hash": head_hash, "signed_at": signed_at, "key_id": kid}
    ).encode("utf-8")


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    signed_at: str
    key_id: str
    signature: str  # hex

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        if self.key_id != key_id(public_key):
            return False
        try:
            public_key.verify(bytes.fromhex(self.signature),
                              checkpoint_message(self.seq, self.hash, self.signed_at, self.key_id))
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_dict(self) -> dict[str, object]:
        return {"scheme": CHECKPOINT_SCHEME, "seq": self.seq, "hash": self.hash, "signed_at": self.signed_at,
                "key_id": self.key_id, "signature": self.signature}


class Sealer:
    """Signs checkpoints with the cell's Ed25519 record key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def checkpoint(self, seq: int, head_hash: str, signed_at: str) -> Checkpoint:
        sig = self._key.sign(checkpoint_message(seq, head_hash, signed_at, self.key_id))
        return Checkpoint(seq, head_hash, signed_at, self.key_id, sig.hex())


def init_seal_key(directory: str | os.PathLike[str] | None = None) -> Path:
    """Create the record key pair in ``directory`` unless it exists (idempotent); return the dir."""
    d = _security_dir(directory)
    priv, pub = d / PRIVATE_NAME, d / PUBLIC_NAME
    if priv.is_file():
        if not pub.is_file():  # re-derive a lost public half
            key = serialization.load_pem_private_key(priv.read_bytes(), password=None)
            assert isinstance(key, Ed25519PrivateKey)
            pub.write_bytes(_public_pem(key.public_key()))
        return d
    d.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub.write_bytes(_public_pem(key.public_key()))
    return d


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_sealer(directory: str | os.PathLike[str] | None = None) -> Sealer | None:
    """The cell's sealer from ``record_seal.key``; None when there is no key."""
    priv = _security_dir(directory) / PRIVATE_NAME
    if not priv.is_file():
        return None
    key = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{priv}: not an Ed25519 private key")
    return Sealer(key)


def load_public_key(path_or_dir: str | os.PathLike[str] | None = None) -> Ed25519PublicKey | None:
    """The record public key: a PEM file, or ``record_seal.pub`` in a directory (default: the
    security directory). None when there is none."""
    p = _security_dir(path_or_dir)
    if p.is_dir():
        p = p / PUBLIC_NAME
    if not p.is_file():
        return None
    key = serialization.load_pem_public_key(p.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{p}: not an Ed25519 public key")
    return key


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "init" or len(args) > 2:
        print("usage: seal init [DIR]", file=sys.stderr)
        return 2
    d = init_seal_key(args[1] if len(args) == 2 else None)
    print(f"record seal key: {d / PUBLIC_NAME}")
    return 0
