"""Ed25519 signing keys: make a pair, read private and public keys, name them by key id.

Only the `cryptography` package (no ONNX Runtime), so settings validation and the command line
can read keys cheaply. Every failure is a SigningKeyError that names the file and what to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from inspector.core.errors import InspectorError

#: Key files are a few hundred bytes; anything far larger is not one.
MAX_KEY_BYTES = 64 * 1024


class SigningKeyError(InspectorError):
    """A key file or trusted_keys entry that is not a usable Ed25519 key."""

    status_code = 400


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes
    key_id: str


def key_id(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key: short enough to read aloud."""
    return hashlib.sha256(raw_public_bytes(public)).hexdigest()[:16]


def raw_public_bytes(public: Ed25519PublicKey) -> bytes:
    """The 32 bytes that the key id hashes and signature.json embeds."""
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key_pair(passphrase: str | None = None) -> KeyPair:
    """A new key pair as PEM (PKCS#8 private key, encrypted when a passphrase is given)."""
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase else serialization.NoEncryption())
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8, encryption)
    public = private.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(private_pem, public_pem, key_id(public))


def is_encrypted(private_pem: bytes) -> bool:
    """Whether a PEM private key needs a passphrase (so the CLI knows to ask for one)."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in private_pem


def load_private_key(pem: bytes, where: str, passphrase: str | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; SigningKeyError saying what is wrong otherwise."""
    try:
        key = serialization.load_pem_private_key(
            pem, passphrase.encode() if passphrase else None)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        raise SigningKeyError(f"{where}: {exc}",
                              hint="give the passphrase the key was made with") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase and is_encrypted(pem):
            raise SigningKeyError(f"{where}: wrong passphrase",
                                  hint="give the passphrase the key was made with") from exc
        raise SigningKeyError(f"{where}: not a PEM private key",
                              hint="make one with `inspector models keygen --out DIR`") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{where}: holds {_kind(key)} key; signing needs Ed25519",
                              hint="make one with `inspector models keygen --out DIR`")
    return key


def _kind(key: object) -> str:
    """`an RSA`, `an EllipticCurve`, `a DSA`... from the key's class name."""
    name = type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")
    return f"{'an' if name[:1] in 'AEIOR' else 'a'} {name}"


def load_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; SigningKeyError saying what is wrong otherwise."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{where}: not a PEM public key",
                              hint="use the .pub file that `inspector models keygen` wrote") \
            from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{where}: holds {_kind(key)} key; signatures use Ed25519",
                              hint="use the .pub file that `inspector models keygen` wrote")
    return key


def read_key_file(path: Path) -> bytes:
    """A key file's bytes, refusing a missing or oversized file with a clear message."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read the key file: {exc.strerror or exc}") \
            from exc
    if len(data) > MAX_KEY_BYTES:
        raise SigningKeyError(f"{path}: over {MAX_KEY_BYTES} bytes: not a key file")
    return data


def read_trusted(entries: Sequence[str]) -> dict[str, Ed25519PublicKey]:
    """`trusted_keys` -> {key id: key}. An entry starting with `-----BEGIN` is an inline PEM
    public key; any other entry is the path of a public key file."""
    keys: dict[str, Ed25519PublicKey] = {}
    for i, entry in enumerate(entries):
        if entry.lstrip().startswith("-----BEGIN"):
            key = load_public_key(entry.encode(), f"trusted_keys[{i}] (inline PEM)")
        else:
            key = load_public_key(read_key_file(Path(entry)), entry)
        keys[key_id(key)] = key
    return keys
