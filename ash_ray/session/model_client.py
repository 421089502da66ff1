"""The model client of a session: the server's key, or the session's stored credential.

A credential reaches the worker sealed (:mod:`ash_ray.crypto`) and is opened here, in
the worker process, with ``ASH_CREDENTIAL_KEY``; the plaintext lives only in the
client object. The sandbox never sees it: tool processes get an allowlisted
environment (:mod:`ash_ray.sandbox.env`), not this process's memory or variables.
"""

from __future__ import annotations

from typing import cast

import anthropic

from ash_ray.config import Settings
from ash_ray.crypto import Sealed, unseal
from ash_ray.tenants import CredentialRecord, bedrock_keys

MAX_RETRIES = 2


def server_client(settings: Settings) -> anthropic.AsyncAnthropic:
    """The client of sessions without a credential: ANTHROPIC_API_KEY/ANTHROPIC_BASE_URL."""
    key = settings.anthropic_api_key
    return anthropic.AsyncAnthropic(
        api_key=key.get_secret_value() if key else "unset",
        base_url=settings.anthropic_base_url,
        max_retries=MAX_RETRIES,
    )


def credential_client(
    settings: Settings, credential: CredentialRecord, server: anthropic.AsyncAnthropic
) -> anthropic.AsyncAnthropic:
    """A client that calls the model with the credential's key (and endpoint); an
    Anthropic one shares the ``server`` client's connection pool (its key is sent per
    request) rather than building a TLS context of its own."""
    secret = settings.credential_key.get_secret_value() if settings.credential_key else None
    sealed = Sealed(credential.ciphertext, credential.nonce, credential.salt)
    key = unseal(secret, sealed, tenant=credential.tenant_id, credential_id=credential.id)
    if credential.type == "bedrock":
        aws = bedrock_keys(key)
        # Same `messages` API as AsyncAnthropic (the loop uses nothing else).
        return cast(
            anthropic.AsyncAnthropic,
            anthropic.AsyncAnthropicBedrock(
                aws_access_key=aws["accessKeyId"],
                aws_secret_key=aws["secretAccessKey"],
                aws_region=aws["region"],
                aws_session_token=aws.get("sessionToken"),
                max_retries=MAX_RETRIES,
            ),
        )
    base_url = credential.base_url if credential.type == "custom" else None
    return server.copy(
        api_key=key, base_url=base_url or settings.anthropic_base_url, max_retries=MAX_RETRIES
    )
