"""make run's secrets in .local/: made once, kept, and an old Ed25519 signing key replaced."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from devtools import local


def signing_key(path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def test_made_once_then_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "LOCAL", tmp_path)
    values = local.ensure_local_secrets()
    key_file = tmp_path / "token_key.pem"
    key = key_file.read_bytes()
    assert (
        isinstance(signing_key(key_file), RSAPrivateKey) and signing_key(key_file).key_size >= 2048
    )
    assert key_file.stat().st_mode & 0o077 == 0
    assert local.ensure_local_secrets() == values
    assert key_file.read_bytes() == key


def test_an_ed25519_key_of_an_earlier_version_is_replaced(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(local, "LOCAL", tmp_path)
    key_file = tmp_path / "token_key.pem"
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    local.ensure_local_secrets()
    assert "is not an RSA key" in capsys.readouterr().err
    assert isinstance(signing_key(key_file), RSAPrivateKey)
    assert key_file.stat().st_mode & 0o077 == 0
