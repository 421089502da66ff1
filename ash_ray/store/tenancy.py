"""API keys and credentials in the Store: one dialect-neutral mixin for both backends.

The SQL is written once with ``?`` placeholders; each backend provides :meth:`_query`
(Postgres rewrites the placeholders to ``$n``) and its timestamp conversion, and
inherits the methods below. Every read and delete is filtered by tenant, so a caller
cannot reach another tenant's row by its id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ash_ray.models import utcnow
from ash_ray.store import _valid as valid
from ash_ray.store._rows import Row
from ash_ray.tenants import ApiKeyRecord, CredentialRecord

_KEY_COLS = ("id", "tenant_id", "label", "key_hash", "key_prefix", "created_at")
_CRED_COLS = (
    "id", "tenant_id", "type", "label", "base_url", "ciphertext", "nonce", "salt",
    "created_at", "last_used_at",
)  # fmt: skip


def numbered(sql: str) -> str:
    """``?`` placeholders as Postgres's ``$1, $2, ...``."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


def _insert(table: str, cols: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"


class TenancyStore:
    """API keys and credentials (mixed into SqliteStore and PostgresStore)."""

    async def _query(self, what: str, sql: str, args: Sequence[Any]) -> list[Row]:
        raise NotImplementedError

    def _ts_db(self, ts: datetime) -> Any:
        raise NotImplementedError

    def _ts_py(self, value: Any) -> datetime:
        raise NotImplementedError

    # ------------------------------------------------------------------ api keys

    def _key(self, row: Row) -> ApiKeyRecord:
        return ApiKeyRecord(
            id=row["id"], tenant_id=row["tenant_id"], label=row["label"],
            key_hash=row["key_hash"], key_prefix=row["key_prefix"],
            created_at=self._ts_py(row["created_at"]),
        )  # fmt: skip

    async def add_api_key(self, rec: ApiKeyRecord) -> None:
        """Store a key's hash (never the key)."""
        await self._query(
            "add_api_key",
            _insert("api_keys", _KEY_COLS),
            (rec.id, rec.tenant_id, rec.label, rec.key_hash, rec.key_prefix,
             self._ts_db(rec.created_at)),
        )  # fmt: skip

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key whose hash this is, or None."""
        found = await self._query(
            "find_api_key", "SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return valid.parse_one("api key", "<hash>", found[0], self._key) if found else None

    async def list_api_keys(self, tenant: str) -> list[ApiKeyRecord]:
        """The tenant's keys, oldest first."""
        found = await self._query(
            "list_api_keys",
            "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id",
            (tenant,),
        )
        return valid.parse_each("api key", found, self._key)

    async def delete_api_key(self, key_id: str, tenant: str) -> bool:
        """Revoke one of the tenant's keys; False when it has none with this id."""
        found = await self._query(
            "delete_api_key",
            "DELETE FROM api_keys WHERE id = ? AND tenant_id = ? RETURNING id",
            (key_id, tenant),
        )
        return bool(found)

    # ------------------------------------------------------------------ credentials

    def _credential(self, row: Row) -> CredentialRecord:
        last = row["last_used_at"]
        return CredentialRecord(
            id=row["id"], tenant_id=row["tenant_id"], type=row["type"], label=row["label"],
            base_url=row["base_url"], ciphertext=bytes(row["ciphertext"]),
            nonce=bytes(row["nonce"]), salt=bytes(row["salt"]),
            created_at=self._ts_py(row["created_at"]),
            last_used_at=self._ts_py(last) if last is not None else None,
        )  # fmt: skip

    async def add_credential(self, rec: CredentialRecord) -> None:
        """Store a sealed credential."""
        await self._query(
            "add_credential",
            _insert("credentials", _CRED_COLS),
            (rec.id, rec.tenant_id, rec.type, rec.label, rec.base_url, rec.ciphertext,
             rec.nonce, rec.salt, self._ts_db(rec.created_at), None),
        )  # fmt: skip

    async def list_credentials(self, tenant: str) -> list[CredentialRecord]:
        """The tenant's credentials, oldest first."""
        found = await self._query(
            "list_credentials",
            "SELECT * FROM credentials WHERE tenant_id = ? ORDER BY created_at, id",
            (tenant,),
        )
        return valid.parse_each("credential", found, self._credential)

    async def use_credential(self, credential_id: str, tenant: str) -> CredentialRecord | None:
        """The tenant's credential with ``last_used_at`` set to now, or None."""
        found = await self._query(
            "use_credential",
            "UPDATE credentials SET last_used_at = ? WHERE id = ? AND tenant_id = ? RETURNING *",
            (self._ts_db(utcnow()), credential_id, tenant),
        )
        return valid.parse_one("credential", credential_id, found[0], self._credential) if (
            found
        ) else None

    async def delete_credential(self, credential_id: str, tenant: str) -> bool:
        """Remove one of the tenant's credentials; False when it has none with this id."""
        found = await self._query(
            "delete_credential",
            "DELETE FROM credentials WHERE id = ? AND tenant_id = ? RETURNING id",
            (credential_id, tenant),
        )
        return bool(found)
