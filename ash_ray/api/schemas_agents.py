"""Response schemas of the agent config, files and versions routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ash_ray.api.schemas import Out


class AgentConfigReply(BaseModel):
    config: dict[str, Any]


class AgentFileOut(Out):
    path: str
    size: int
    modified_at: str = Field(alias="modifiedAt")


class AgentFileList(BaseModel):
    files: list[AgentFileOut]


class AgentFileContent(Out):
    path: str
    content: str = Field(description="UTF-8 text; base64 when `encoding` says so.")
    size: int
    encoding: str | None = None


class AgentFilesWritten(BaseModel):
    written: int
    version: int = Field(description="The agent version the change made.")


class AgentFileDeleted(BaseModel):
    deleted: bool
    version: int


class AgentVersionOut(Out):
    id: str
    agent_name: str = Field(alias="agentName")
    version_number: int = Field(alias="versionNumber")
    name: str
    system_prompt: str | None = Field(None, alias="systemPrompt")
    release_notes: str | None = Field(None, alias="releaseNotes")
    knowledge_files: list[str] | None = Field(None, alias="knowledgeFiles")
    is_active: bool = Field(alias="isActive")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")


class AgentVersionReply(BaseModel):
    version: AgentVersionOut


class AgentVersionList(BaseModel):
    versions: list[AgentVersionOut]


class AgentVersionActivated(BaseModel):
    activated: bool
    version_number: int = Field(alias="versionNumber")
