"""Ed25519 package signatures: sign and verify for real, then change a package, its
signature file or the keys the way a careless copy or an attacker would."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from inspector.core.card import read_card, write_card
from inspector.core.errors import InvalidTextError, ModelPackageError
from inspector.core.package import open_package
from inspector.core.signing import (
    SIGNATURE_FILE,
    PackageSignatureError,
    TrustPolicy,
    sign_package,
    verify_package,
)
from inspector.core.signing_keys import (
    SigningKeyError,
    generate_key_pair,
    key_id,
    load_private_key,
    load_public_key,
    read_trusted,
)
from inspector.settings import Settings
from tests.model_factory import make_package


@pytest.fixture
def alice() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signed(tiny_package: Path, alice: Ed25519PrivateKey) -> Path:
    sign_package(tiny_package, alice, "alice")
    return tiny_package


def trusting(*keys: Ed25519PrivateKey) -> dict[str, Ed25519PublicKey]:
    return {key_id(k.public_key()): k.public_key() for k in keys}


def edit_signature(pkg: Path, **changes: object) -> None:
    path = pkg / SIGNATURE_FILE
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_round_trip_names_key_signer_and_time(signed: Path, alice: Ed25519PrivateKey) -> None:
    v = verify_package(signed, trusting(alice))
    kid = key_id(alice.public_key())
    assert v.status == "trusted" and v.trusted
    assert (v.key_id, v.signer) == (kid, "alice") and v.signed_at is not None
    assert kid in v.message and "alice" in v.message
    doc = json.loads((signed / SIGNATURE_FILE).read_text())
    assert doc["algorithm"] == "ed25519" and len(kid) == 16
    assert doc["payload"]["onnx_sha256"] == read_card(signed / "card.json").onnx_sha256


def test_unsigned_package(tiny_package: Path) -> None:
    v = verify_package(tiny_package, {})
    assert v.status == "unsigned" and v.key_id is None and "not signed" in v.message
    with pytest.raises(ModelPackageError, match="not a folder"):
        TrustPolicy({}, require_signed=True).check(tiny_package / "gone")


def test_reindented_card_keeps_its_signature(signed: Path, alice: Ed25519PrivateKey) -> None:
    card = signed / "card.json"
    card.write_text(json.dumps(json.loads(card.read_text()), indent=7, sort_keys=True))
    assert verify_package(signed, trusting(alice)).status == "trusted"


def test_recalibrated_card_is_tampered(signed: Path, alice: Ed25519PrivateKey) -> None:
    card = read_card(signed / "card.json")
    threshold = card.threshold.model_copy(update={"value": 0.9})
    write_card(card.model_copy(update={"threshold": threshold}), signed / "card.json")
    v = verify_package(signed, trusting(alice))
    assert v.status == "tampered"
    assert "card changed since signing" in v.message and "re-sign" in v.message
    assert key_id(alice.public_key()) in v.message
    for require in (False, True):  # never served, required or not
        with pytest.raises(PackageSignatureError, match="card changed since signing"):
            TrustPolicy(trusting(alice), require).check(signed)


def test_model_bytes_changed_is_tampered_and_fails_the_checksum(
        signed: Path, alice: Ed25519PrivateKey) -> None:
    model = signed / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    v = verify_package(signed, trusting(alice))
    assert v.status == "tampered" and "model.onnx changed since signing" in v.message
    with pytest.raises(ModelPackageError, match=r"does not match card.json"):
        open_package(signed)


def test_new_model_with_a_matching_card_is_still_tampered(
        signed: Path, alice: Ed25519PrivateKey) -> None:
    """An attacker who swaps the model and fixes the card's checksum changes the card."""
    other = make_package(signed.parent.parent / "x", threshold=0.1, width=32, height=32)
    for name in ("model.onnx", "card.json"):
        (signed / name).write_bytes((other / name).read_bytes())
    open_package(signed)  # consistent on its own
    v = verify_package(signed, trusting(alice))
    assert v.status == "tampered" and "card and model.onnx changed" in v.message


def test_untrusted_key_is_named(signed: Path, alice: Ed25519PrivateKey) -> None:
    mallory = Ed25519PrivateKey.generate()
    v = verify_package(signed, trusting(mallory))
    kid = key_id(alice.public_key())
    assert v.status == "untrusted" and kid in v.message and "not a trusted key" in v.message
    assert TrustPolicy(trusting(mallory)).check(signed).status == "untrusted"
    with pytest.raises(PackageSignatureError, match=kid) as exc:
        TrustPolicy(trusting(mallory), require_signed=True).check(signed)
    assert "trusted_keys" in (exc.value.hint or "")


def test_unsigned_refused_only_when_required(tiny_package: Path,
                                             alice: Ed25519PrivateKey) -> None:
    assert TrustPolicy(trusting(alice)).check(tiny_package).status == "unsigned"
    with pytest.raises(PackageSignatureError, match=r"not signed.*require_signed is on"):
        TrustPolicy(trusting(alice), True).check(tiny_package)


def test_forged_key_id_does_not_borrow_trust(tiny_package: Path,
                                             alice: Ed25519PrivateKey) -> None:
    """Mallory signs with her own key and writes Alice's key id: checked with Alice's key."""
    mallory = Ed25519PrivateKey.generate()
    sign_package(tiny_package, mallory, "alice")
    edit_signature(tiny_package, key_id=key_id(alice.public_key()))
    v = verify_package(tiny_package, trusting(alice))
    assert v.status == "invalid"


@pytest.mark.parametrize("changes, needle", [
    ({"signer": "bob"}, "does not verify"),
    ({"signed_at": "2020-01-01T00:00:00Z"}, "does not verify"),
    ({"signature": "!!not base64!!"}, "not base64"),
    ({"signature": base64.b64encode(b"short").decode()}, "expected 64"),
    ({"signature": base64.b64encode(bytes(64)).decode()}, "does not verify"),
    ({"public_key": base64.b64encode(bytes(31)).decode()}, "expected 32"),
    ({"algorithm": "rsa"}, "algorithm"),
    ({"extra": 1}, "extra"),
    ({"payload_sha256": "0" * 64}, "payload_sha256"),
])
def test_edited_signature_file_is_invalid(signed: Path, alice: Ed25519PrivateKey,
                                          changes: dict[str, object], needle: str) -> None:
    edit_signature(signed, **changes)
    v = verify_package(signed, trusting(alice))
    assert v.status == "invalid" and needle in v.message, v.message
    with pytest.raises(PackageSignatureError):
        TrustPolicy(trusting(alice)).check(signed)


@pytest.mark.parametrize("content", [
    b"", b"{not json", b"\xff\xfe garbage", b"[]", b"[" * 50_000 + b"]" * 50_000,
    b" " * 70_000 + b"{}",
])
def test_garbage_signature_file_is_invalid_not_a_crash(signed: Path, alice: Ed25519PrivateKey,
                                                       content: bytes) -> None:
    (signed / SIGNATURE_FILE).write_bytes(content)
    v = verify_package(signed, trusting(alice))
    assert v.status == "invalid" and "not a valid signature file" in v.message


def test_keys_with_passphrase(tmp_path: Path) -> None:
    pair = generate_key_pair("correct horse")
    assert b"ENCRYPTED" in pair.private_pem
    key = load_private_key(pair.private_pem, "k.pem", "correct horse")
    assert key_id(key.public_key()) == pair.key_id
    assert key_id(load_public_key(pair.public_pem, "k.pub")) == pair.key_id
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        load_private_key(pair.private_pem, "k.pem", "wrong")
    with pytest.raises(SigningKeyError, match=r"k.pem"):
        load_private_key(pair.private_pem, "k.pem")


def test_wrong_key_types_and_garbage_are_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for key in (rsa_key, ec_key):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        with pytest.raises(SigningKeyError, match="key; signing needs Ed25519"):
            load_private_key(pem, "other.pem")
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(SigningKeyError, match=r"other.pub: holds an? .* key"):
            load_public_key(pub, "other.pub")
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
                         "g.pem")
    with pytest.raises(SigningKeyError, match="not a PEM public key"):
        load_public_key(generate_key_pair().private_pem, "private-as-public.pub")


def test_trusted_keys_from_files_and_inline_pem(tmp_path: Path) -> None:
    a, b = generate_key_pair(), generate_key_pair()
    (tmp_path / "a.pub").write_bytes(a.public_pem)
    keys = read_trusted([str(tmp_path / "a.pub"), b.public_pem.decode()])
    assert set(keys) == {a.key_id, b.key_id}
    (tmp_path / "huge.pub").write_bytes(b"x" * 100_000)
    with pytest.raises(SigningKeyError, match="not a key file"):
        read_trusted([str(tmp_path / "huge.pub")])
    with pytest.raises(SigningKeyError, match=r"missing.pub: cannot read"):
        read_trusted([str(tmp_path / "missing.pub")])


def test_settings_refuse_unreadable_keys_and_require_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"nope.pub: cannot read the key file"):
        Settings(trusted_keys=[str(tmp_path / "nope.pub")])
    with pytest.raises(ValidationError, match="require_signed=true needs at least one"):
        Settings(require_signed=True)
    pair = generate_key_pair()
    s = Settings(trusted_keys=[pair.public_pem.decode()], require_signed=True)
    assert s.require_signed


def test_signing_refuses_a_broken_package_and_a_bad_signer(tiny_package: Path,
                                                           alice: Ed25519PrivateKey) -> None:
    with pytest.raises(InvalidTextError, match="signer"):
        sign_package(tiny_package, alice, "alice\x00")
    (tiny_package / "model.onnx").write_bytes(b"changed")
    with pytest.raises(ModelPackageError, match=r"does not match card.json"):
        sign_package(tiny_package, alice, "alice")
    assert not (tiny_package / SIGNATURE_FILE).exists()


def test_a_model_swapped_on_disk_after_the_check_is_not_what_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who can write the models folder swaps model.onnx for another graph right after
    the server read the package (the race between checking and loading): the server runs
    the bytes it checked, the signed model, not the file now on disk."""
    import numpy as np
    import onnx

    from inspector.core.package import PackageFiles
    from inspector.lifecycle import registry as registry_module
    from inspector.lifecycle.registry import ModelRegistry
    from tests.model_factory import brightness_graph

    pair = generate_key_pair()
    models = tmp_path / "models"
    pkg = make_package(models, width=64, height=48)
    sign_package(pkg, load_private_key(pair.private_pem, "k.pem"), "qa")
    evil = tmp_path / "evil.onnx"
    onnx.save(brightness_graph(48, 64, pool=1), evil)  # max pixel, not max 4x4 mean
    read = registry_module.read_package_files

    def read_then_swap(root: Path) -> PackageFiles:
        files = read(root)
        (Path(root) / "model.onnx").write_bytes(evil.read_bytes())
        return files

    monkeypatch.setattr(registry_module, "read_package_files", read_then_swap)
    settings = Settings(models_dir=models, data_dir=tmp_path / "data", providers="cpu",
                        trusted_keys=[pair.public_pem.decode()], require_signed=True)
    detector, signature = ModelRegistry(settings).open_verified(pkg)
    assert signature.trusted
    assert (pkg / "model.onnx").read_bytes() == evil.read_bytes()  # the swap happened
    frame = np.zeros((1, 48, 64, 3), dtype=np.uint8)
    frame[0, 10, 10] = 255  # one bright pixel: 1/16 after the signed 4x4 mean, 1 after max
    score = detector.model.run(frame)["score"][0]
    assert score == pytest.approx(1 / 16)
    with pytest.raises(PackageSignatureError, match=r"model\.onnx changed since signing"):
        ModelRegistry(settings).open_verified(pkg)  # the next load reads the swapped file
