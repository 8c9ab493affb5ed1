"""Development keys: outside the repository, made by `python -m shared.cli keys`, 0600 / 0700;
the audit trusts the services' public verifier files and never opens a private key."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.checkpoint import load_signer, parse_verifier_key, raw_public_key, signing_key_path
from shared.settings import REPO_ROOT, Settings
from shared.topics import SERVICES


@pytest.fixture(autouse=True)
def no_keys_env(monkeypatch, tmp_path):
    # data_dir too: the keys command moves the keys an older checkout kept under data_dir/keys.
    monkeypatch.setenv("PASSERELLE_DATA_DIR", str(tmp_path / "data"))
    for name in ("PASSERELLE_KEYS_DIR", "PASSERELLE_CHECKPOINT_KEY_PATH", "PASSERELLE_MASTER_KEY_PATH",
                 "PASSERELLE_JWT_PRIVATE_KEY_PATH", "PASSERELLE_JWT_PUBLIC_KEY_PATH", "PASSERELLE_JWT_JWKS_URL",
                 "PASSERELLE_AUDIT_VERIFIER_KEYS", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_keys_live_outside_the_repository_under_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().keys_dir == tmp_path / "xdg" / "passerelle" / "keys"

    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    keys_dir = Settings().keys_dir
    assert keys_dir == tmp_path / "home" / ".local" / "share" / "passerelle" / "keys"
    assert REPO_ROOT not in keys_dir.parents, "the development keys are not in the checkout"
    # data_dir (var/, in the checkout by default) no longer decides where the keys are
    assert Settings(data_dir=tmp_path / "data").keys_dir == keys_dir

    monkeypatch.setenv("PASSERELLE_KEYS_DIR", str(tmp_path / "elsewhere"))
    assert Settings().keys_dir == tmp_path / "elsewhere"


def test_the_keys_command_makes_private_keys_0600_and_public_verifier_files(monkeypatch, tmp_path):
    from shared.cli import app

    keys_dir = tmp_path / "keys"
    monkeypatch.setenv("PASSERELLE_KEYS_DIR", str(keys_dir))
    result = CliRunner().invoke(app, ["keys"])
    assert result.exit_code == 0, result.output
    assert str(keys_dir) in result.output

    assert mode(keys_dir) == 0o700
    settings = Settings()
    for service in SERVICES:
        private = keys_dir / f"{service}.checkpoint.ed25519.pem"
        assert mode(private) == 0o600, private
        assert str(private) in result.output
        verifier = keys_dir / f"{service}.verifier"
        assert str(verifier) in result.output
        name, public = parse_verifier_key(verifier.read_text())
        signer = load_signer(settings.model_copy(update={"service": service}))
        assert (name, public) == (f"passerelle/{service}", signer.public_key)
        assert public == raw_public_key(signer.key.public_key())
        assert verifier.read_text().strip() == signer.describe()["verifier_key"], "what GET /v1/keys serves"
    for private in ("master.key", "jwt-dev.pem"):
        assert mode(keys_dir / private) == 0o600, private

    before = {p.name: p.read_bytes() for p in keys_dir.iterdir()}
    assert CliRunner().invoke(app, ["keys"]).exit_code == 0
    assert {p.name: p.read_bytes() for p in keys_dir.iterdir()} == before, "made once, then kept"


def test_the_keys_of_an_older_checkout_under_var_keys_are_moved_not_made_again(monkeypatch, tmp_path):
    """The data `make run` kept (sealed personal data, signed checkpoints) still opens after the move."""
    from shared.cli import app

    old = tmp_path / "data" / "keys"
    old.mkdir(parents=True)
    (old / "master.key").write_text("b2xkIG1hc3RlciBrZXkgb2YgMzIgYnl0ZXMgLi4uLi4=\n")
    (old / "master.key").chmod(0o644)  # a sloppy old file is made private on the way
    old_signer = load_signer(Settings(service="intake", keys_dir=old))
    (old / ".keys.lock").touch()
    keys_dir = tmp_path / "keys"
    monkeypatch.setenv("PASSERELLE_KEYS_DIR", str(keys_dir))

    result = CliRunner().invoke(app, ["keys"])
    assert result.exit_code == 0, result.output
    assert f"moved from {old}: {keys_dir / 'master.key'}" in result.output
    assert (keys_dir / "master.key").read_text().startswith("b2xk") and mode(keys_dir / "master.key") == 0o600
    assert load_signer(Settings(service="intake", keys_dir=keys_dir)).public_key == old_signer.public_key
    assert (keys_dir / "intake.verifier").read_text().strip() == old_signer.describe()["verifier_key"]
    assert not old.exists(), "nothing left behind in the checkout"

    # A key of the same name already in keys_dir wins; the old one is named and left where it is.
    old.mkdir()
    (old / "master.key").write_text("another\n")
    result = CliRunner().invoke(app, ["keys"])
    assert result.exit_code == 0, result.output
    assert f"{old / 'master.key'} is not used" in result.output
    assert (keys_dir / "master.key").read_text().startswith("b2xk") and (old / "master.key").exists()


def test_a_service_makes_its_key_on_first_start_and_writes_its_verifier_beside_it(tmp_path):
    settings = Settings(service="funding", keys_dir=tmp_path / "keys")
    signer = load_signer(settings)
    assert mode(signing_key_path(settings)) == 0o600
    assert (tmp_path / "keys" / "funding.verifier").read_text().strip() == signer.describe()["verifier_key"]

    explicit = Settings(service="funding", keys_dir=tmp_path / "other", checkpoint_key_path=tmp_path / "none.pem")
    with pytest.raises(FileNotFoundError):
        load_signer(explicit)
    assert not (tmp_path / "none.pem").exists() and not (tmp_path / "other").exists(), "nothing made"


def test_the_audit_trusts_the_verifier_files_and_never_opens_a_private_key(tmp_path, caplog):
    from services.audit.application import trusted_keys

    keys_dir = tmp_path / "keys"
    settings = Settings(service="audit", keys_dir=keys_dir)
    expected = {}
    for service in ("intake", "funding"):
        signer = load_signer(settings.model_copy(update={"service": service}))
        expected[signer.name] = signer.public_key
    for private in keys_dir.glob("*.pem"):
        private.unlink()  # the audit has no business with them

    with caplog.at_level(logging.WARNING):
        assert trusted_keys(settings) == expected
    assert not list(keys_dir.glob("*.pem")), "the audit made no private key"
    for missing in ("partners", "followup"):
        assert str(keys_dir / f"{missing}.verifier") in caplog.text, "a missing verifier file is named"


def test_a_malformed_verifier_file_is_named_and_skipped(tmp_path, caplog):
    from services.audit.application import trusted_keys

    keys_dir = tmp_path / "keys"
    signer = load_signer(Settings(service="intake", keys_dir=keys_dir))
    (keys_dir / "funding.verifier").write_text("not a key\n")
    (keys_dir / "partners.verifier").write_text(signer.describe()["verifier_key"])  # intake's key, not partners'
    with caplog.at_level(logging.WARNING):
        assert trusted_keys(Settings(service="audit", keys_dir=keys_dir)) == {signer.name: signer.public_key}
    assert str(keys_dir / "funding.verifier") in caplog.text
    assert str(keys_dir / "partners.verifier") in caplog.text
