"""Wire schemas of session files, workspace bundles, attachments and logs (Ash's shapes)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _In(BaseModel):
    # Ash's clients may send fields we do not use (``mimeType`` of a file): ignore them.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class FileUpload(_In):
    path: str = Field(min_length=1, max_length=4096, description="Path under targetPath.")
    content: str = Field(description="The file's bytes, base64.")
    mime_type: str | None = None


class FilesUpload(_In):
    files: list[FileUpload] = Field(min_length=1, max_length=500)
    target_path: str = Field(".", max_length=4096, description="Workspace folder to write in.")


class WorkspaceUpload(_In):
    bundle: str = Field(description="A tar.gz of the workspace, base64.")


class AttachmentCreate(_In):
    filename: str = Field(min_length=1, max_length=1024)
    content: str = Field(description="The file's bytes, base64.")
    mime_type: str = Field("application/octet-stream", max_length=255)
    message_id: UUID | None = None


# ---------------------------------------------------------------- replies


class FileOut(BaseModel):
    path: str
    size: int
    modifiedAt: str


class FileList(BaseModel):
    files: list[FileOut]
    source: Literal["sandbox", "snapshot"]


class FileContent(BaseModel):
    path: str
    content: str
    size: int
    source: Literal["sandbox", "snapshot"]


class FileWritten(BaseModel):
    path: str
    written: bool
    size: int | None = None
    error: str | None = None


class FilesWritten(BaseModel):
    files: list[FileWritten]
    source: Literal["sandbox", "snapshot"]


class FileDeleted(BaseModel):
    path: str
    deleted: bool
    source: Literal["sandbox", "snapshot"]


class WorkspaceRestored(BaseModel):
    ok: bool
    message: str
    entries: int
    source: Literal["sandbox", "snapshot"]


class AttachmentOut(BaseModel):
    id: str
    sessionId: str
    messageId: str
    filename: str
    mimeType: str
    size: int
    createdAt: str


class AttachmentReply(BaseModel):
    attachment: AttachmentOut


class AttachmentList(BaseModel):
    attachments: list[AttachmentOut]


class LogLineOut(BaseModel):
    index: int
    level: Literal["stdout", "stderr", "system"]
    text: str
    ts: str


class LogList(BaseModel):
    logs: list[LogLineOut]
    source: str = "sandbox"
