"""Ed25519 signatures of model packages: who vouches for a card and its model.

A signature is a detached file, `signature.json`, in the package folder. It signs the package's
name and version, the sha256 of card.json (of its canonical JSON: re-indenting the file changes
nothing, any changed value does) and the sha256 of model.onnx, plus the signer's name and the
time. Recalibrating a card therefore invalidates its signature on purpose: the threshold
decides verdicts, so a changed threshold needs someone to vouch for it again.

Trust is a set of public keys (the `trusted_keys` setting), each named by its key id: the first
16 hex digits of the sha256 of the raw 32-byte public key. The file carries the signer's public
key too, so a signature by a key nobody listed is still checked for integrity (a package
changed after signing is caught even then); it counts as trusted only when its key id is in
the set, and is then checked with the trusted key itself, never the embedded copy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspector.core.card import ModelCard, parse_card
from inspector.core.errors import ModelPackageError
from inspector.core.names import utcnow
from inspector.core.package import (
    CARD_FILE,
    SIGNATURE_FILE,
    PackageFiles,
    open_package,
    read_package_files,
)
from inspector.core.signing_keys import key_id, raw_public_bytes
from inspector.core.text import check_text

__all__ = ["SIGNATURE_FILE", "PackageSignatureError", "SignatureDoc", "TrustPolicy",
           "Verification", "sign_package", "verify_package"]

FORMAT = "inspector-package-signature/1"
ALGORITHM = "ed25519"
#: signature.json is a few hundred bytes; anything far larger is not one.
MAX_FILE_BYTES = 64 * 1024
SIGNER_MAX_CHARS = 200
_HEX64 = r"^[0-9a-f]{64}$"
_SIGN_HINT = "sign it with `inspector models sign MODEL_DIR --key KEY.pem`"

Status = Literal["trusted", "untrusted", "unsigned", "tampered", "invalid"]


class PackageSignatureError(ModelPackageError):
    """A package refused for its signature: changed after signing, a damaged signature file,
    or (with require_signed) unsigned or signed by a key that is not trusted."""


def _canonical(value: Any) -> bytes:
    """The one byte form of a JSON value that is hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      ).encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(card: ModelCard, card_bytes: bytes, onnx_sha256: str) -> dict[str, str]:
    """What a signature vouches for: the card as read (`card_bytes`, which parse_card already
    accepted as JSON) and the model's sha256."""
    canonical = _canonical(json.loads(card_bytes))
    return {"name": card.name, "version": card.version, "card_sha256": _sha256(canonical),
            "onnx_sha256": onnx_sha256}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Payload(_Strict):
    name: str
    version: str
    card_sha256: str = Field(pattern=_HEX64)
    onnx_sha256: str = Field(pattern=_HEX64)


class SignatureDoc(_Strict):
    """Schema of signature.json; every field but `signature` is signed."""

    format: Literal["inspector-package-signature/1"]
    algorithm: Literal["ed25519"]
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    #: The signer's raw public key, base64: lets anyone check integrity, never grants trust.
    public_key: str = Field(max_length=64)
    signer: str = Field(max_length=SIGNER_MAX_CHARS)
    signed_at: datetime
    payload: _Payload
    #: sha256 of the payload's canonical JSON.
    payload_sha256: str = Field(pattern=_HEX64)
    signature: str = Field(max_length=128)


def sign_package(root: Path, key: Ed25519PrivateKey, signer: str) -> SignatureDoc:
    """Sign a package (its card must be valid and its model must match the card) and write
    signature.json beside the card, atomically."""
    check_text(signer, "signer", max_length=SIGNER_MAX_CHARS)
    files = read_package_files(root)
    package = open_package(root, files)
    payload = _payload(package.card, files.card, package.card.onnx_sha256)
    public = key.public_key()
    body: dict[str, Any] = {
        "format": FORMAT, "algorithm": ALGORITHM, "key_id": key_id(public),
        "public_key": base64.b64encode(raw_public_bytes(public)).decode(), "signer": signer,
        "signed_at": utcnow().isoformat(timespec="seconds").replace("+00:00", "Z"),
        "payload": payload, "payload_sha256": _sha256(_canonical(payload)),
    }
    body["signature"] = base64.b64encode(key.sign(_canonical(body))).decode()
    target = package.root / SIGNATURE_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
    return SignatureDoc.model_validate(body)


@dataclass(frozen=True)
class Verification:
    """A package's signature as checked against the trusted keys."""

    status: Status
    message: str
    hint: str | None = None
    key_id: str | None = None
    signer: str | None = None
    signed_at: datetime | None = None

    @property
    def trusted(self) -> bool:
        return self.status == "trusted"


class _Damaged(Exception):
    """signature.json cannot be a signature (reported as status `invalid`)."""


def _read_doc(data: bytes) -> tuple[SignatureDoc, dict[str, Any]]:
    """The parsed file and its raw JSON object (the signed bytes come from the raw form, so
    parsing can never change what is checked)."""
    if len(data) > MAX_FILE_BYTES:
        raise _Damaged(f"over {MAX_FILE_BYTES} bytes")
    try:
        raw = json.loads(data)
        doc = SignatureDoc.model_validate(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _Damaged(f"not valid JSON ({exc})") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise _Damaged(problems) from exc
    return doc, raw


def _b64(value: str, size: int, what: str) -> bytes:
    try:
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Damaged(f"{what} is not base64") from exc
    if len(out) != size:
        raise _Damaged(f"{what} is {len(out)} bytes, expected {size}")
    return out


def verify_package(root: Path, trusted: Mapping[str, Ed25519PublicKey],
                   files: PackageFiles | None = None) -> Verification:
    """Check a package's signature.json against the package and the trusted keys: against
    `files` when given (the bytes the caller will load), else read from disk here.

    Order: the file's own integrity (schema, key id, signature over its fields), then whether
    the package still matches what was signed, then trust. Raises ModelPackageError only when
    the package itself is unreadable (not a folder, no card, no model, an invalid card)."""
    files = files or read_package_files(root)
    path = files.root / SIGNATURE_FILE
    if files.signature is None:
        return Verification("unsigned", f"{root}: not signed (no {SIGNATURE_FILE})",
                            hint=_SIGN_HINT)
    damaged_hint = f"re-sign it: {_SIGN_HINT}"
    try:
        doc, raw = _read_doc(files.signature)
    except _Damaged as exc:
        return Verification("invalid", f"{path}: not a valid signature file: {exc}",
                            hint=damaged_hint)
    who = Verification("invalid", "", key_id=doc.key_id, signer=doc.signer,
                       signed_at=doc.signed_at)
    by = f"key {doc.key_id} ({doc.signer})"
    try:
        embedded = Ed25519PublicKey.from_public_bytes(_b64(doc.public_key, 32, "public_key"))
        signature = _b64(doc.signature, 64, "signature")
        if key_id(embedded) != doc.key_id:
            raise _Damaged("key_id does not belong to public_key")
        if _sha256(_canonical(raw["payload"])) != doc.payload_sha256:
            raise _Damaged("payload_sha256 does not match the payload")
        signed = _canonical({k: v for k, v in raw.items() if k != "signature"})
        trusted_key = trusted.get(doc.key_id)
        (trusted_key or embedded).verify(signature, signed)
    except (_Damaged, InvalidSignature, ValueError) as exc:
        reason = str(exc) or "the signature does not verify: the file was edited or damaged"
        return replace(who, message=f"{path}: signature by {by} is invalid: {reason}",
                       hint=damaged_hint)
    card = parse_card(files.root / CARD_FILE, files.card)
    now = _payload(card, files.card, files.model_sha256)
    changed = [what for what, key in (("card", "card_sha256"), ("model.onnx", "onnx_sha256"))
               if now[key] != raw["payload"][key]]
    if changed:
        return replace(who, status="tampered",
                       message=f"{root}: {' and '.join(changed)} changed since signing: "
                               f"re-sign (it was signed by {by})",
                       hint=f"check the change, then {_SIGN_HINT}")
    if trusted_key is None:
        return replace(who, status="untrusted",
                       message=f"{root}: signed by {by}, which is not a trusted key",
                       hint="add the signer's .pub file to trusted_keys, or re-sign the "
                            "package with a trusted key")
    return replace(who, status="trusted",
                   message=f"{root}: signed by {by} at {doc.signed_at:%Y-%m-%d %H:%M} UTC, "
                           "a trusted key")


@dataclass(frozen=True)
class TrustPolicy:
    """What a server accepts: tampered or damaged signatures never; unsigned packages and
    unknown keys only while `require_signed` is off."""

    trusted: Mapping[str, Ed25519PublicKey]
    require_signed: bool = False

    def check(self, root: Path, files: PackageFiles | None = None) -> Verification:
        """Verify the package's signature (on `files`, the bytes that will be loaded, when
        given) and raise PackageSignatureError when it is refused. Runs before ONNX Runtime
        reads a byte of the model: an unaccepted file is never parsed."""
        v = verify_package(root, self.trusted, files)
        if v.status in ("tampered", "invalid"):
            raise PackageSignatureError(v.message, hint=v.hint)
        if self.require_signed and v.status in ("unsigned", "untrusted"):
            raise PackageSignatureError(f"{v.message}; require_signed is on", hint=v.hint)
        return v
