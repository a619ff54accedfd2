"""`inspector models keygen | sign | verify`: Ed25519 signatures of model packages.

The private key never leaves the signer's machine; servers hold only public keys
(`trusted_keys`). A passphrase-protected key asks for its passphrase on the terminal, or reads
it from INSPECTOR_KEY_PASSPHRASE (for scripts).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from inspector.cli.errors import fail
from inspector.core.errors import InspectorError
from inspector.core.names import NAME_RE

if TYPE_CHECKING:  # imported in the commands: `inspector --help` loads no ONNX Runtime
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from inspector.core.signing import Verification

PASSPHRASE_ENV = "INSPECTOR_KEY_PASSPHRASE"

ModelDir = Annotated[Path, typer.Argument(help="Model package folder (models/NAME/VERSION).")]
Trusted = Annotated[list[Path] | None, typer.Option(
    "--trusted", help="A trusted public key file (.pub); repeat for several.")]


def _passphrase(confirm: bool) -> str:
    """INSPECTOR_KEY_PASSPHRASE, else a hidden prompt on a terminal."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    if not sys.stdin.isatty():
        raise fail("the key needs a passphrase and there is no terminal to ask on",
                   hint=f"set {PASSPHRASE_ENV}")
    phrase: str = typer.prompt("passphrase", hide_input=True, confirmation_prompt=confirm)
    if not phrase:
        raise fail("the passphrase is empty")
    return phrase


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError) as exc:  # no name for this uid (some containers)
        raise fail("cannot tell your login name", hint="give --signer NAME") from exc


def keygen(
    out: Annotated[Path, typer.Option("--out", help="Folder for the key files.")],
    name: Annotated[str, typer.Option(help="File name stem: NAME.pem and NAME.pub.")] = "signing",
    encrypt: Annotated[bool, typer.Option(
        "--encrypt", help=f"Protect the private key with a passphrase (asked for, or "
                          f"{PASSPHRASE_ENV}).")] = False,
) -> None:
    """Make an Ed25519 key pair for signing packages.

    Writes NAME.pem (private, mode 0600: keep it secret) and NAME.pub (public: list it in the
    servers' trusted_keys).

    Example: inspector models keygen --out ~/.inspector/keys --name alice --encrypt
    """
    from inspector.core.signing_keys import generate_key_pair

    if not NAME_RE.match(name):
        raise fail(f"--name {name!r} must be a plain file name (letters, digits, '.', '_', '-')")
    private, public = out / f"{name}.pem", out / f"{name}.pub"
    for path in (private, public):
        if path.exists():
            raise fail(f"{path} exists already", hint="delete it first or choose another --name")
    pair = generate_key_pair(_passphrase(confirm=True) if encrypt else None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: the private key is never readable by others, not even
        # for a moment.
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pair.private_pem)
        public.write_bytes(pair.public_pem)
    except OSError as exc:
        raise fail(f"cannot write the key files in {out}: {exc.strerror or exc}") from exc
    print(f"key id {pair.key_id}\nprivate key: {private} (keep it secret)\n"
          f"public key:  {public} (add it to trusted_keys)")


def sign(
    model_dir: ModelDir,
    key: Annotated[Path, typer.Option("--key", help="Private key file (NAME.pem).")],
    signer: Annotated[str | None, typer.Option(
        help="Who signs, shown wherever the package is listed (default: your login name).")
    ] = None,
) -> None:
    """Sign a package: writes MODEL_DIR/signature.json.

    The signature covers the card (threshold included) and the model's checksum: sign
    again after any change to card.json (`inspector calibrate` changes it).

    Example: inspector models sign models/tiles/2 --key ~/.inspector/keys/alice.pem --signer alice
    """
    from inspector.core.signing import SIGNATURE_FILE, sign_package
    from inspector.core.signing_keys import is_encrypted, load_private_key, read_key_file

    try:
        pem = read_key_file(key)
        private = load_private_key(pem, str(key),
                                   _passphrase(confirm=False) if is_encrypted(pem) else None)
        doc = sign_package(model_dir, private, signer or _login_name())
    except InspectorError as exc:
        raise fail(exc) from exc
    print(f"signed {doc.payload.name}:{doc.payload.version} with key {doc.key_id} as "
          f"{doc.signer}: {model_dir / SIGNATURE_FILE}")


def _trusted_keys(files: list[Path] | None) -> dict[str, Ed25519PublicKey]:
    from inspector.core.signing_keys import read_trusted

    try:
        return read_trusted([str(p) for p in files or []])
    except InspectorError as exc:
        raise fail(exc) from exc


def checked_signature(model_dir: Path, trusted: list[Path] | None) -> Verification:
    """The package's signature against the given public key files, under the servers' policy
    with require_signed off: exit 1 with its one-line error for a package changed since
    signing or a damaged signature file."""
    from inspector.core.signing import TrustPolicy

    try:
        return TrustPolicy(_trusted_keys(trusted)).check(model_dir)
    except InspectorError as exc:
        raise fail(exc, code=1) from exc


def describe(v: Verification, checked: bool) -> str:
    """One line on who signed a package, for `models validate`."""
    if v.status == "unsigned":
        return "signature: none (unsigned)"
    trust = "trusted" if v.trusted else "NOT trusted" if checked else \
        "trust not checked (pass --trusted KEY.pub)"
    return f"signature: key {v.key_id} ({v.signer}), {v.signed_at:%Y-%m-%d %H:%M} UTC, {trust}"


def verify(model_dir: ModelDir, trusted: Trusted = None) -> None:
    """Check that a package is intact and signed by one of the trusted keys.

    Exit 0 printing the key id and signer; exit 1 saying why not (unsigned, changed since
    signing, untrusted key, damaged signature file).

    Example: inspector models verify models/tiles/2 --trusted keys/alice.pub --trusted keys/bob.pub
    """
    from inspector.core.signing import verify_package

    if not trusted:
        raise fail("name at least one trusted public key with --trusted KEY.pub")
    keys = _trusted_keys(trusted)
    try:
        result = verify_package(model_dir, keys)
    except InspectorError as exc:
        raise fail(exc, code=1) from exc
    if not result.trusted:
        raise fail(result.message, code=1, hint=result.hint)
    print(f"ok: {result.message}")
