"""`inspector models keygen | sign | verify | validate` and the re-sign warning of `calibrate`,
run as real subprocesses on real key files and packages."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from inspector.core.signing import SIGNATURE_FILE
from tests.conftest import encode_bgr
from tests.model_factory import make_package, part_image
from tests.server.harness import base_env, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path / "state")


def cli(env: dict[str, str], *args: str | Path) -> tuple[int, str, str]:
    proc = run_cli([str(a) for a in args], env, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def keygen(env: dict[str, str], out: Path, name: str) -> str:
    """Make a key pair; returns its key id."""
    code, stdout, stderr = cli(env, "models", "keygen", "--out", out, "--name", name)
    assert code == 0, stderr
    return stdout.split()[2]


def test_keygen_sign_verify_round_trip(env: dict[str, str], tmp_path: Path,
                                       tiny_package: Path) -> None:
    keys = tmp_path / "keys"
    kid = keygen(env, keys, "alice")
    assert stat.S_IMODE((keys / "alice.pem").stat().st_mode) == 0o600
    assert (keys / "alice.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")

    code, stdout, stderr = cli(env, "models", "sign", tiny_package, "--key", keys / "alice.pem",
                               "--signer", "Alice QA")
    assert code == 0, stderr
    assert kid in stdout and "Alice QA" in stdout and (tiny_package / SIGNATURE_FILE).is_file()

    code, stdout, stderr = cli(env, "models", "verify", tiny_package,
                               "--trusted", keys / "alice.pub")
    assert code == 0, stderr
    assert stdout.startswith("ok:") and kid in stdout and "Alice QA" in stdout

    code, stdout, _ = cli(env, "models", "validate", tiny_package, "--trusted", keys / "alice.pub")
    assert code == 0
    assert f"signature: key {kid} (Alice QA)" in stdout and stdout.rstrip().endswith("trusted")


def test_verify_refuses_untrusted_unsigned_and_tampered(env: dict[str, str], tmp_path: Path,
                                                       models_root: Path) -> None:
    keys = tmp_path / "keys"
    kid = keygen(env, keys, "alice")
    keygen(env, keys, "bob")
    pkg = make_package(models_root)
    code, _, stderr = cli(env, "models", "verify", pkg, "--trusted", keys / "alice.pub")
    assert code == 1 and "not signed" in stderr and "inspector models sign" in stderr

    assert cli(env, "models", "sign", pkg, "--key", keys / "alice.pem")[0] == 0
    code, _, stderr = cli(env, "models", "verify", pkg, "--trusted", keys / "bob.pub")
    assert code == 1 and f"key {kid}" in stderr and "not a trusted key" in stderr
    code, stdout, _ = cli(env, "models", "validate", pkg, "--trusted", keys / "bob.pub")
    assert code == 0 and "NOT trusted" in stdout  # validate checks integrity, not trust

    (pkg / "card.json").write_text((pkg / "card.json").read_text().replace(
        '"value": 0.5', '"value": 0.25'))
    code, _, stderr = cli(env, "models", "verify", pkg, "--trusted", keys / "alice.pub")
    assert code == 1 and "card changed since signing" in stderr and "re-sign" in stderr
    code, _, stderr = cli(env, "models", "validate", pkg)
    assert code == 1 and "card changed since signing" in stderr


def test_bad_keys_and_arguments_are_one_line_errors(env: dict[str, str], tmp_path: Path,
                                                    tiny_package: Path) -> None:
    keys = tmp_path / "keys"
    keygen(env, keys, "alice")
    code, _, stderr = cli(env, "models", "keygen", "--out", keys, "--name", "alice")
    assert code == 2 and "exists already" in stderr
    code, _, stderr = cli(env, "models", "sign", tiny_package, "--key", keys / "alice.pub")
    assert code == 2 and "alice.pub: not a PEM private key" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = cli(env, "models", "verify", tiny_package, "--trusted", keys / "alice.pem")
    assert code == 2 and "not a PEM public key" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = cli(env, "models", "verify", tiny_package)
    assert code == 2 and "--trusted" in stderr
    code, _, stderr = cli(env, "models", "sign", tmp_path / "nowhere", "--key",
                          keys / "alice.pem")
    assert code == 2 and "not a folder" in stderr


def test_passphrase_protected_key(env: dict[str, str], tmp_path: Path,
                                  tiny_package: Path) -> None:
    keys = tmp_path / "keys"
    locked = {**env, "INSPECTOR_KEY_PASSPHRASE": "correct horse battery"}
    code, _, stderr = cli(locked, "models", "keygen", "--out", keys, "--encrypt")
    assert code == 0, stderr
    assert b"ENCRYPTED" in (keys / "signing.pem").read_bytes()
    code, _, stderr = cli(env, "models", "sign", tiny_package, "--key", keys / "signing.pem")
    assert code == 2 and "INSPECTOR_KEY_PASSPHRASE" in stderr
    code, _, stderr = cli({**env, "INSPECTOR_KEY_PASSPHRASE": "wrong"}, "models", "sign",
                          tiny_package, "--key", keys / "signing.pem")
    assert code == 2 and "wrong passphrase" in stderr
    code, _, stderr = cli(locked, "models", "sign", tiny_package, "--key", keys / "signing.pem",
                          "--signer", "ci")
    assert code == 0, stderr


def test_calibrate_warns_and_verify_asks_to_re_sign(env: dict[str, str], tmp_path: Path,
                                                    tiny_package: Path) -> None:
    data = tmp_path / "data"
    for split, kind, defect, n in (("train", "good", False, 2), ("test", "good", False, 6),
                                   ("test", "spot", True, 3)):
        folder = data / split / kind
        folder.mkdir(parents=True)
        for i in range(n):
            img = part_image(64, 48, defect=defect, seed=i)
            (folder / f"{i:03d}.png").write_bytes(encode_bgr(img, ".png"))
    keys = tmp_path / "keys"
    keygen(env, keys, "alice")
    assert cli(env, "models", "sign", tiny_package, "--key", keys / "alice.pem")[0] == 0

    code, _, stderr = cli(env, "calibrate", tiny_package, "--data", data, "--split", "test")
    assert code == 0, stderr
    assert "no longer matches the new card.json" in stderr and "inspector models sign" in stderr
    code, _, stderr = cli(env, "models", "verify", tiny_package, "--trusted", keys / "alice.pub")
    assert code == 1 and "card changed since signing: re-sign" in stderr
