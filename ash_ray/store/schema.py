"""Versioned migrations: one logical schema for SQLite and Postgres.

Each migration is a tuple of statements written once with type placeholders
(``{ts}``, ``{json}``, ``{bytes}``, ``{int}``) that :func:`statements` fills in per
dialect. ``open()`` of a store creates ``schema_version`` and applies, in order and
each in its own transaction, every migration whose version is not recorded there.
Append new migrations; never edit one that has shipped.

JSON is TEXT in both dialects on purpose: Postgres ``jsonb`` rejects ``\\u0000``, and
tool output may contain NUL bytes; ``json.dumps`` escapes them, TEXT keeps them.
Snapshots have one table in both dialects: Postgres keeps the archive in ``data``
(so any node can restore it), SQLite keeps a file name in ``location`` and the
archive under the snapshot directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"ts": "TEXT", "json": "TEXT", "bytes": "BLOB", "int": "INTEGER",
               "usage_json": "usage", "real": "REAL"},
    "postgres": {"ts": "TIMESTAMPTZ", "json": "TEXT", "bytes": "BYTEA", "int": "BIGINT",
                 "usage_json": "CAST(usage AS json)", "real": "DOUBLE PRECISION"},
}

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)"""


@dataclass(frozen=True)
class Migration:
    """One schema step, applied once per database in a single transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "agents, sessions, messages, events, usage, snapshots",
        (
            """CREATE TABLE agents (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                version {int} NOT NULL,
                path TEXT NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                agent_name TEXT NOT NULL,
                sandbox_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at {ts} NOT NULL,
                last_active_at {ts} NOT NULL,
                parent_session_id TEXT,
                config {json} NOT NULL,
                usage {json} NOT NULL,
                num_turns {int} NOT NULL,
                last_seq {int} NOT NULL
            )""",
            "CREATE INDEX sessions_created ON sessions (created_at, id)",
            "CREATE INDEX sessions_agent ON sessions (agent_name, created_at)",
            "CREATE INDEX sessions_status ON sessions (status, created_at)",
            """CREATE TABLE messages (
                session_id TEXT NOT NULL,
                sequence {int} NOT NULL,
                id TEXT NOT NULL UNIQUE,
                role TEXT NOT NULL,
                content {json} NOT NULL,
                created_at {ts} NOT NULL,
                PRIMARY KEY (session_id, sequence)
            )""",
            """CREATE TABLE events (
                session_id TEXT NOT NULL,
                seq {int} NOT NULL,
                type TEXT NOT NULL,
                data {json} NOT NULL,
                created_at {ts} NOT NULL,
                PRIMARY KEY (session_id, seq)
            )""",
            # created_at is part of the key so a retried batch is a no-op while
            # several records of one turn (one per model call) still fit.
            """CREATE TABLE usage (
                session_id TEXT NOT NULL,
                turn {int} NOT NULL,
                created_at {ts} NOT NULL,
                agent_name TEXT NOT NULL,
                model TEXT NOT NULL,
                usage {json} NOT NULL,
                PRIMARY KEY (session_id, turn, created_at)
            )""",
            "CREATE INDEX usage_created ON usage (created_at)",
            """CREATE TABLE snapshots (
                session_id TEXT PRIMARY KEY,
                size_bytes {int} NOT NULL,
                sha256 TEXT NOT NULL,
                location TEXT,
                data {bytes},
                created_at {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "agents as data: env, config, archives per version, Ash's agent versions",
        (
            "ALTER TABLE agents ADD COLUMN env {json} NOT NULL DEFAULT '{{}}'",
            "ALTER TABLE agents ADD COLUMN config {json} NOT NULL DEFAULT '{{}}'",
            # One archive (tar.gz of the agent's files) per agent version: Postgres keeps
            # it in ``data``; SQLite keeps it in a file named ``location`` under the
            # snapshot directory (content-addressed by sha256, so versions share files).
            """CREATE TABLE agent_archives (
                agent_name TEXT NOT NULL,
                version {int} NOT NULL,
                size_bytes {int} NOT NULL,
                sha256 TEXT NOT NULL,
                location TEXT,
                data {bytes},
                created_at {ts} NOT NULL,
                PRIMARY KEY (agent_name, version)
            )""",
            # Ash's "agent versions": named prompts with release notes, one active.
            """CREATE TABLE agent_versions (
                id TEXT PRIMARY KEY,
                agent_name TEXT NOT NULL,
                version_number {int} NOT NULL,
                name TEXT NOT NULL,
                system_prompt TEXT,
                release_notes TEXT,
                knowledge_files {json},
                is_active {int} NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL,
                UNIQUE (agent_name, version_number)
            )""",
        ),
    ),
    Migration(
        3,
        "attachments, session logs",
        (
            # Postgres keeps an attachment's bytes in ``data``; SQLite keeps a file name in
            # ``location`` (under the snapshot directory's ``attachments/``), as snapshots do.
            """CREATE TABLE attachments (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                message_id TEXT,
                filename TEXT NOT NULL,
                mime_type TEXT NOT NULL,
                size_bytes {int} NOT NULL,
                sha256 TEXT NOT NULL,
                location TEXT,
                data {bytes},
                created_at {ts} NOT NULL
            )""",
            "CREATE INDEX attachments_session ON attachments (session_id, created_at)",
            # ``ts`` is display text (ISO 8601): lines are ordered by ``idx``, never by time.
            """CREATE TABLE session_logs (
                session_id TEXT NOT NULL,
                idx {int} NOT NULL,
                level TEXT NOT NULL,
                text TEXT NOT NULL,
                ts TEXT NOT NULL,
                PRIMARY KEY (session_id, idx)
            )""",
        ),
    ),
    Migration(
        5,
        "turn queue: messages waiting for their turn, and the turn running",
        (
            """CREATE TABLE turn_queue (
                session_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                position {int} NOT NULL,
                prompt TEXT NOT NULL,
                options {json} NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (session_id, message_id)
            )""",
        ),
    ),
    Migration(
        7,
        "usage counters as columns; queue items; eval cases, runs and results",
        (
            # One column per counter, so that usage figures are SQL sums (exact, indexed
            # filters); the JSON column stays for older readers and is backfilled from.
            *(
                f"ALTER TABLE usage ADD COLUMN {col} {{int}} NOT NULL DEFAULT 0"
                for col in (
                    "input_tokens", "output_tokens", "cache_creation_tokens",
                    "cache_read_tokens", "tool_calls", "messages", "compute_ms",
                )
            ),
            """UPDATE usage SET
                input_tokens = COALESCE(CAST({usage_json} ->> 'input_tokens' AS {int}), 0),
                output_tokens = COALESCE(CAST({usage_json} ->> 'output_tokens' AS {int}), 0),
                cache_creation_tokens =
                    COALESCE(CAST({usage_json} ->> 'cache_creation_input_tokens' AS {int}), 0),
                cache_read_tokens =
                    COALESCE(CAST({usage_json} ->> 'cache_read_input_tokens' AS {int}), 0),
                messages = 1""",
            "CREATE INDEX usage_agent ON usage (agent_name, created_at)",
            """CREATE TABLE queue_items (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL DEFAULT 'default',
                agent_name TEXT NOT NULL,
                prompt TEXT NOT NULL,
                session_id TEXT,
                status TEXT NOT NULL,
                priority {int} NOT NULL,
                retry_count {int} NOT NULL,
                max_retries {int} NOT NULL,
                error TEXT,
                result TEXT,
                turn_base {int},
                lease_owner TEXT,
                lease_expires_at {ts},
                next_attempt_at {ts} NOT NULL,
                created_at {ts} NOT NULL,
                started_at {ts},
                completed_at {ts}
            )""",
            "CREATE INDEX queue_claim ON queue_items (status, priority, created_at)",
            "CREATE INDEX queue_tenant ON queue_items (tenant_id, created_at)",
            """CREATE TABLE eval_cases (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL DEFAULT 'default',
                agent_name TEXT NOT NULL,
                question TEXT NOT NULL,
                expected_topics {json} NOT NULL,
                expected_not_topics {json} NOT NULL,
                reference_answer TEXT,
                category TEXT,
                tags {json} NOT NULL,
                chat_history {json} NOT NULL,
                is_active {int} NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )""",
            "CREATE INDEX eval_cases_agent ON eval_cases (tenant_id, agent_name, created_at)",
            """CREATE TABLE eval_runs (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL DEFAULT 'default',
                agent_name TEXT NOT NULL,
                version_number {int},
                status TEXT NOT NULL,
                filters {json} NOT NULL,
                error TEXT,
                lease_owner TEXT,
                lease_expires_at {ts},
                created_at {ts} NOT NULL,
                started_at {ts},
                completed_at {ts}
            )""",
            "CREATE INDEX eval_runs_agent ON eval_runs (tenant_id, agent_name, created_at)",
            """CREATE TABLE eval_results (
                id TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                case_id TEXT NOT NULL,
                status TEXT NOT NULL,
                session_id TEXT,
                answer TEXT,
                topic_score {real},
                safety_score {real},
                llm_judge_score {real},
                passed {int},
                human_score {int},
                human_notes TEXT,
                error TEXT,
                latency_ms {int},
                created_at {ts} NOT NULL,
                completed_at {ts}
            )""",
            "CREATE INDEX eval_results_run ON eval_results (run_id, created_at)",
        ),
    ),
    Migration(
        8,
        "tenants: tenant columns on agents and sessions; api_keys, credentials",
        (
            # Agent names become unique per tenant. Neither dialect can drop the UNIQUE of
            # `name` in place (SQLite would need a table rebuild that must know every
            # column other migrations add), so the unique column is renamed and holds
            # `<tenant>/<name>` from now on, and a plain `name` column is added beside it.
            "ALTER TABLE agents RENAME COLUMN name TO tenant_name",
            "ALTER TABLE agents ADD COLUMN name TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE agents ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default'",
            "UPDATE agents SET name = tenant_name, tenant_name = 'default/' || tenant_name",
            "CREATE INDEX agents_tenant ON agents (tenant_id, name)",
            # Archives and Ash's agent versions key by the same `<tenant>/<name>`.
            "UPDATE agent_archives SET agent_name = 'default/' || agent_name",
            "UPDATE agent_versions SET agent_name = 'default/' || agent_name",
            "ALTER TABLE sessions ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default'",
            "CREATE INDEX sessions_tenant ON sessions (tenant_id, created_at)",
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                label TEXT,
                key_hash TEXT NOT NULL UNIQUE,
                key_prefix TEXT NOT NULL,
                created_at {ts} NOT NULL
            )""",
            "CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at)",
            """CREATE TABLE credentials (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                type TEXT NOT NULL,
                label TEXT,
                base_url TEXT,
                ciphertext {bytes} NOT NULL,
                nonce {bytes} NOT NULL,
                salt {bytes} NOT NULL,
                created_at {ts} NOT NULL,
                last_used_at {ts}
            )""",
            "CREATE INDEX credentials_tenant ON credentials (tenant_id, created_at)",
        ),
    ),
    Migration(
        9,
        "queue items remember whether the queue opened their session",
        (
            # 1: the worker created the session for the item, and releases it once the
            # item is done; 0: the item named a session (a user's), left as it is.
            "ALTER TABLE queue_items ADD COLUMN own_session {int} NOT NULL DEFAULT 0",
        ),
    ),
)


def statements(migration: Migration, dialect: Dialect) -> list[str]:
    """The migration's SQL with the dialect's column types filled in."""
    types = TYPES[dialect]
    return [stmt.format(**types) for stmt in migration.statements]


def pending(applied: int) -> list[Migration]:
    """Migrations newer than ``applied`` (the highest recorded version), in order."""
    return [m for m in MIGRATIONS if m.version > applied]


LATEST_VERSION = MIGRATIONS[-1].version
