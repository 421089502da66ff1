"""The one settings object. Built once (CLI or ingress) and passed down, never global."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ash_ray.errors import ConfigError

ENV_PREFIX = "ASH_"


class Settings(BaseSettings):
    """Every knob of ash-ray, read from ``ASH_*`` variables (plus ``ANTHROPIC_*``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )

    # -- HTTP
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(4100, ge=1, le=65535, description="HTTP port.")
    api_key: SecretStr | None = Field(
        None, description="Bearer key required on /api/*. Empty: no auth (local dev only)."
    )
    credential_key: SecretStr | None = Field(
        None,
        description="Secret that encrypts stored credentials (AES-256-GCM) and keys the "
        "HMAC of stored API keys. Empty: credentials are refused, API keys are plain "
        "SHA-256 (warned).",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest accepted request body."
    )
    message_body_max_mb: int = Field(
        32, ge=1, le=1024,
        description="Largest request body of POST /api/sessions/{id}/messages, in MiB "
        "(images and PDFs travel in it as base64; every other route keeps max_body_bytes).",
    )
    sse_heartbeat_s: float = Field(15.0, gt=0, le=300, description="SSE comment interval.")
    # -- session files, workspace bundles, attachments, logs (limits as in Ash)
    max_file_read_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest workspace file served raw."
    )
    max_upload_file_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest decoded file of POST .../files."
    )
    max_upload_batch_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest decoded batch of POST .../files."
    )
    max_bundle_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="Largest workspace bundle (tar.gz), both ways."
    )
    max_attachment_size: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest attachment (ASH_MAX_ATTACHMENT_SIZE)."
    )
    session_log_lines: int = Field(
        1000, ge=10, le=1_000_000, description="Tool log lines kept per session (ring buffer)."
    )
    serve_replicas: int = Field(1, ge=1, le=64, description="Ingress replicas per app.")
    direct_ingress: bool = Field(
        True,
        description="Ingress replicas answer ASH_PORT themselves (Serve direct ingress); "
        "false: through the Serve proxy.",
    )
    proxy_port: int = Field(
        0, ge=0, le=65535,
        description="Serve proxy port with direct ingress on; 0 = ASH_PORT + 1.",
    )
    max_ongoing_requests: int = Field(
        1000, ge=1, description="Concurrent requests per replica; each SSE stream holds one."
    )
    drain_timeout_s: float = Field(
        25.0, ge=0, le=3600, description="Grace period to pause sessions on shutdown."
    )

    # -- storage
    data_dir: Path = Field(
        Path.home() / ".ash-ray", description="Workspaces, snapshots and the SQLite file."
    )
    database_url: str = Field(
        "",
        description="postgresql://... for Postgres/CockroachDB; empty: SQLite in data_dir; "
        "sqlite:////abs/path.db or sqlite:/abs/path.db, sqlite:///rel.db (under data_dir).",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "NORMAL",
        description="NORMAL: commits survive a process crash (WAL); FULL: also power loss.",
    )
    snapshot_url: str = Field(
        "", description="Where workspace snapshots go; empty: <data_dir>/snapshots."
    )
    agent_max_file_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="Largest file of a deployed agent."
    )
    agent_max_bytes: int = Field(
        200 * 1024 * 1024, ge=1024,
        description="Largest agent (all its files); the whole archive is held in memory.",
    )
    agent_max_files: int = Field(
        10_000, ge=1, le=1_000_000, description="Most files one agent may have."
    )
    store_flush_ms: float = Field(
        0.0, ge=0, le=10_000,
        description="Extra wait before a registry write; 0 = group commit of what queued.",
    )

    # -- Ray
    namespace: str = Field("ash", min_length=1, description="Ray namespace of all actors.")
    ray_address: str = Field(
        "", description="Ray cluster to join; empty: start a local one on loopback."
    )
    dashboard: bool = Field(True, description="Start the Ray dashboard with a local cluster.")
    ray_role: Literal["auto", "head", "worker"] = Field(
        "auto", description="serve: head runs Ray+Serve, worker joins; auto: pod ordinal 0 is head."
    )
    ray_head_address: str = Field(
        "", description="host:port of the Ray head (GCS) that worker pods join."
    )
    pod_name: str = Field(
        "", description="This pod's name (StatefulSet ordinal decides the head in auto role)."
    )

    # -- sessions
    max_sandboxes: int = Field(
        0, ge=0, le=100_000,
        description="Live session limit; 0: as many as the cluster's memory holds (Ray's "
        "memory resource / ASH_SESSION_MEMORY_MB, or 200 MiB a session when that is 0).",
    )
    idle_timeout_ms: int = Field(
        30 * 60 * 1000, ge=1000, description="Idle sessions go cold after this long."
    )
    sweep_interval_s: float = Field(10.0, gt=0, le=3600, description="Idle sweep period.")
    cold_ttl_s: float = Field(
        7 * 24 * 3600, ge=0, description="Workspaces of cold sessions are removed after this."
    )
    warm_pool_size: int = Field(2, ge=0, le=1000, description="Pre-started session workers.")
    warm_pool_max: int = Field(
        8, ge=0, le=1000,
        description="Most pre-started workers when the create rate asks for more than "
        "ASH_WARM_POOL_SIZE (rate x worker start time).",
    )
    worker_reuse: int = Field(
        1000, ge=0, le=100_000,
        description="Sessions one session worker process serves, one after another, before "
        "it is retired. A released worker (stopped, ended, paused, evicted, swept) goes "
        "back to the warm pool with its sandbox, workspace and session state gone, and "
        "calls through an old handle are refused there. 0: a new process per session.",
    )
    worker_max_rss_mb: int = Field(
        512, ge=0,
        description="A released worker whose resident memory is above this is retired, "
        "not reused (a session that loaded more, e.g. the mcp SDK, or a big conversation "
        "whose memory Python keeps). 0: no limit.",
    )
    session_num_cpus: float = Field(
        0.01, ge=0, le=64,
        description="CPUs a session reserves in Ray. Small: an idle session uses no CPU, "
        "memory is what limits live sessions.",
    )
    session_memory_mb: int = Field(
        0, ge=0, description="Memory a session reserves in Ray (0: none reserved)."
    )
    session_slot_resource: str = Field(
        "ash_session_slot", description="Custom Ray resource a session takes when declared."
    )
    capacity_wait_s: float = Field(
        0.0, ge=0, le=600, description="How long a create waits for a free slot before 503."
    )
    evict_grace_s: float = Field(
        10.0, ge=0, le=3600,
        description="For this long after its worker is up (create or cold resume), unless a "
        "turn of it ran, a session is evicted last: only when no other idle one is left and "
        "the create's ASH_CAPACITY_WAIT_S is over (its first message is on its way).",
    )
    default_model: str = Field("claude-sonnet-4-6", description="Model when none is given.")
    max_turns: int = Field(50, ge=1, le=10_000, description="Default agent loop turn limit.")
    turn_recovery: Literal["continue", "interrupt"] = Field(
        "continue",
        description="A turn whose worker or node is lost: `continue` on a new worker from "
        "its last persisted step, or `interrupt` (end it with an error event).",
    )
    max_tokens: int = Field(8192, ge=1, description="max_tokens of each model request.")
    context_window_tokens: int = Field(
        200_000, ge=1000, description="The model's context window, for automatic compaction."
    )
    compact_threshold: float = Field(
        0.8, gt=0, le=1,
        description="Compact when a call's input would pass this share of the context window.",
    )
    compact_keep_turns: int = Field(
        2, ge=0, le=100, description="Recent turns a compaction keeps verbatim (if they fit)."
    )

    # -- queue and evals (ash_ray.jobs)
    queue_concurrency: int = Field(
        2, ge=0, le=1000, description="Queue items run at once per cluster; 0: no queue worker."
    )
    queue_poll_s: float = Field(
        1.0, gt=0, le=60, description="How often an idle queue worker looks for due items."
    )
    queue_lease_s: float = Field(
        60.0, ge=2, le=3600,
        description="A claimed item's lease; renewed while it runs, re-claimable once expired.",
    )
    queue_retry_base_s: float = Field(
        5.0, ge=0, le=3600, description="First retry delay; doubles on each retry."
    )
    queue_retry_max_s: float = Field(300.0, ge=0, le=86_400, description="Longest retry delay.")
    eval_concurrency: int = Field(2, ge=1, le=100, description="Eval cases run at once.")
    eval_llm_judge: bool = Field(
        False, description="Also grade eval answers 1-5 by the model (llmJudgeScore)."
    )

    # -- sandbox
    sandbox_isolation: Literal["auto", "bwrap", "none"] = Field(
        "auto", description="bwrap: require bubblewrap; auto: use it when installed."
    )
    sandbox_limits: Literal["auto", "cgroup2", "cgroup1", "rlimit"] = Field(
        "auto", description="How limits are enforced; auto picks the strongest available."
    )
    sandbox_memory_mb: int = Field(2048, ge=16, description="Memory per tool process tree.")
    sandbox_cpu_s: int = Field(600, ge=1, description="CPU seconds per tool process.")
    sandbox_max_procs: int = Field(256, ge=4, description="Processes per sandbox.")
    sandbox_file_size_mb: int = Field(1024, ge=1, description="Largest file a tool may write.")
    sandbox_open_files: int = Field(1024, ge=16, description="Open files per tool process.")
    sandbox_timeout_s: float = Field(120.0, gt=0, le=86_400, description="Wall time per tool.")
    sandbox_network: bool = Field(
        True,
        description="Egress from sandboxes (through slirp4netns, never to the node's own "
        "addresses); false: loopback only.",
    )
    sandbox_egress_deny: list[str] = Field(
        ["169.254.0.0/16"],
        max_length=256,
        description="IPv4 networks sandboxes may never reach, besides the node's own "
        "addresses (always refused). JSON list; default: link-local (cloud metadata).",
    )
    sandbox_extra_ro_paths: list[str] = Field(
        [],
        max_length=64,
        description="Absolute host paths shown read-only in sandboxes besides the system "
        "dirs (/usr, /bin, /lib*, /sbin, /etc), e.g. /opt/conda. JSON list.",
    )

    # -- agent tools (MCP, web, hooks)
    webfetch_allow_private: bool = Field(
        False,
        description="WebFetch may reach loopback, private and link-local addresses "
        "(development and tests only: the model chooses the URL).",
    )
    web_search: bool = Field(
        True,
        description="Offer Anthropic's server-side web search as WebSearch (turn off for "
        "gateways that do not support it).",
    )
    mcp_startup_timeout_s: float = Field(
        30.0, gt=0, le=600, description="How long an MCP server may take to start and list tools."
    )
    mcp_call_timeout_s: float = Field(
        120.0, gt=0, le=86_400, description="How long one MCP tool call may take."
    )
    hook_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Default time limit of a hook command."
    )

    # -- logging
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("INFO", description="Python log level name.")

    # -- model endpoint (standard Anthropic variables, no ASH_ prefix)
    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key")
    )
    anthropic_base_url: str | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "anthropic_base_url")
    )

    @field_validator("api_key", "credential_key", "anthropic_api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("sandbox_egress_deny")
    @classmethod
    def _ipv4_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            if ipaddress.ip_network(item, strict=False).version != 4:
                raise ValueError(f"{item!r} is not an IPv4 network")
        return value

    @field_validator("sandbox_extra_ro_paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.startswith("/") or len(item) > 4096 or "\x00" in item:
                raise ValueError(f"{item!r} is not an absolute path")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://", "sqlite:")):
            raise ValueError("must start with postgresql:// (or be empty for SQLite)")
        if value.startswith("sqlite://") and not value.startswith("sqlite:///"):
            raise ValueError("sqlite URLs have no host: sqlite:////abs/path.db or sqlite:///rel.db")
        return value

    @field_validator("proxy_port")
    @classmethod
    def _proxy_port_free(cls, value: int, info: ValidationInfo) -> int:
        if value and value == info.data.get("port"):
            raise ValueError("must differ from ASH_PORT (the ingress replica listens there)")
        return value

    @property
    def serve_proxy_port(self) -> int:
        """Where the Serve proxy listens when the replicas take ASH_PORT."""
        return self.proxy_port or (self.port + 1 if self.port < 65535 else self.port - 1)

    @property
    def store_kind(self) -> str:
        return "postgres" if self.database_url.startswith("postgres") else "sqlite"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file. As in SQLAlchemy, ``sqlite:///`` is followed by the path, so
        ``sqlite:////tmp/x.db`` is absolute; a relative path is under ``data_dir`` (a Ray
        worker's working directory is no place for a database)."""
        if not self.database_url.startswith("sqlite:"):
            return self.data_dir / "ash.db"
        path = self.database_url.removeprefix("sqlite:")
        path = path[3:] if path.startswith("///") else path
        return self.data_dir / (path or "ash.db")  # an absolute path replaces data_dir

    @property
    def snapshot_dir(self) -> Path:
        url = self.snapshot_url.removeprefix("file://")
        return Path(url) if url else self.data_dir / "snapshots"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "sessions"

    @property
    def agents_dir(self) -> Path:
        return self.data_dir / "agents"

    @property
    def agent_cache_dir(self) -> Path:
        """Agent versions unpacked on this node, one folder per archive."""
        return self.data_dir / "agent-cache"

    @property
    def auth_enabled(self) -> bool:
        return self.api_key is not None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            var = field if field.isupper() else ENV_PREFIX + field.upper()
            problems.append(f"{var}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
