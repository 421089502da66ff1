"""API key hashing and credential sealing (ash_ray.crypto)."""

from __future__ import annotations

import base64
import re

import pytest

from ash_ray.crypto import KeyHasher, new_api_key, seal, unseal
from ash_ray.errors import ConfigError, CredentialInvalid

SECRET = "a-long-random-credential-key"


def test_keys_are_ash_plus_192_random_bits() -> None:
    keys = {new_api_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"ash_[A-Za-z0-9_-]{32}", key)
        assert len(base64.urlsafe_b64decode(key[4:])) == 24


def test_hashes_are_hmac_with_the_secret_and_sha256_without() -> None:
    key = new_api_key()
    keyed, plain = KeyHasher(SECRET).hash(key), KeyHasher(None).hash(key)
    assert keyed.startswith("hmac:") and plain.startswith("sha256:")
    assert KeyHasher(SECRET).hash(key) == keyed  # stable: lookups work
    assert KeyHasher("another-secret").hash(key) != keyed
    assert key not in keyed + plain


def test_sealed_keys_open_only_with_the_secret_tenant_and_id() -> None:
    sealed = seal(SECRET, "sk-secret", tenant="acme", credential_id="c1")
    assert b"sk-secret" not in sealed.ciphertext
    assert unseal(SECRET, sealed, tenant="acme", credential_id="c1") == "sk-secret"
    again = seal(SECRET, "sk-secret", tenant="acme", credential_id="c1")
    assert (again.nonce, again.salt) != (sealed.nonce, sealed.salt)
    for secret, tenant, cid in (
        ("wrong-secret", "acme", "c1"), (SECRET, "globex", "c1"), (SECRET, "acme", "c2"),
    ):  # fmt: skip
        with pytest.raises(CredentialInvalid):
            unseal(secret, sealed, tenant=tenant, credential_id=cid)
    tampered = type(sealed)(bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:],
                            sealed.nonce, sealed.salt)
    with pytest.raises(CredentialInvalid):
        unseal(SECRET, tampered, tenant="acme", credential_id="c1")


def test_no_credential_key_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="ASH_CREDENTIAL_KEY"):
        seal(None, "sk", tenant="acme", credential_id="c1")
