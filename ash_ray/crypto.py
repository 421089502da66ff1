"""API keys and stored model credentials: generation, hashing, sealing (AES-256-GCM).

One secret, ``ASH_CREDENTIAL_KEY``, protects both, through two sub-keys derived with
HKDF-SHA256 so that neither use can stand in for the other:

- API keys (``ash_`` + 192 random bits) are stored only as HMAC-SHA256 under the
  ``api-key`` sub-key; without ``ASH_CREDENTIAL_KEY`` the hash is plain SHA-256 (the
  server warns: a stolen database then allows offline guessing, though 192 bits make
  that hopeless for keys minted here).
- Credentials are sealed with AES-256-GCM (``cryptography``'s AESGCM) under a key
  derived per credential from a random 16-byte salt, with a 12-byte random nonce; the
  credential's tenant and id are the associated data, so a row copied under another
  tenant or id does not open.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ash_ray.errors import ConfigError, CredentialInvalid

logger = logging.getLogger(__name__)

KEY_PREFIX = "ash_"
KEY_BYTES = 24  # 192 bits, as Ash's keys
SALT_BYTES = 16
NONCE_BYTES = 12
MISSING_CREDENTIAL_KEY = (
    "ASH_CREDENTIAL_KEY is not set: stored credentials are encrypted with it. Set it on "
    "the server (e.g. `openssl rand -base64 32`) and restart."
)


def new_api_key() -> str:
    """A fresh API key: ``ash_`` + 24 random bytes, base64url (32 characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def _subkey(secret: str, purpose: bytes, salt: bytes | None = None) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"ash-ray " + purpose)
    return hkdf.derive(secret.encode())


class KeyHasher:
    """Hashes API keys for storage and lookup (see the module docstring)."""

    def __init__(self, secret: str | None) -> None:
        self._mac_key = _subkey(secret, b"api-key") if secret else None

    @property
    def keyed(self) -> bool:
        return self._mac_key is not None

    def hash(self, key: str) -> str:
        if self._mac_key is None:
            return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return "hmac:" + hmac.new(self._mac_key, key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Sealed:
    """A credential's secret as stored: ciphertext (with its GCM tag), nonce, salt."""

    ciphertext: bytes
    nonce: bytes
    salt: bytes


def _aad(tenant: str, credential_id: str) -> bytes:
    return f"{tenant}\x00{credential_id}".encode()


def _aead(secret: str | None, salt: bytes) -> AESGCM:
    if not secret:
        raise ConfigError(MISSING_CREDENTIAL_KEY)
    return AESGCM(_subkey(secret, b"credential", salt))


def seal(secret: str | None, plaintext: str, *, tenant: str, credential_id: str) -> Sealed:
    """Encrypt a credential's key; ConfigError when ``ASH_CREDENTIAL_KEY`` is unset."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    data = _aead(secret, salt).encrypt(nonce, plaintext.encode(), _aad(tenant, credential_id))
    return Sealed(ciphertext=data, nonce=nonce, salt=salt)


def unseal(secret: str | None, sealed: Sealed, *, tenant: str, credential_id: str) -> str:
    """The plaintext key; InvalidInput when the row does not open under this secret."""
    aead = _aead(secret, sealed.salt)
    try:
        data = aead.decrypt(sealed.nonce, sealed.ciphertext, _aad(tenant, credential_id))
    except InvalidTag:
        raise CredentialInvalid(
            f"credential {credential_id} cannot be decrypted: ASH_CREDENTIAL_KEY changed "
            "since it was stored, or the row was altered; add the credential again",
            credential_id=credential_id,
        ) from None
    return data.decode()
