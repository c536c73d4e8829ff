"""Where recordings live: ``<root>/<tenant>/<id>.ogg`` and ``<id>.json``, private to the worker.

A recording is named by an id the worker makes (``20261123T041500-3f9c0a1b2c4d``), never by
anything a caller sends: the tenant comes from its verified token, the id must match
:data:`ID_PATTERN`, so no request can name a path, and a tenant's listing reads its own
folder only. Folders are created 0700 and files 0600 (call audio is personal data).
Retention: whenever a recording starts, the tenant's recordings older than
``RECORDING_RETENTION_DAYS`` are deleted.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.log import logger

ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{12}$")
AUDIO_SUFFIX = ".ogg"
TRANSCRIPT_SUFFIX = ".json"


@dataclass(frozen=True, slots=True)
class RecordingFiles:
    id: str
    audio: Path
    transcript: Path


class RecordingStore:
    def __init__(self, root: Path, *, retention_s: float = 0.0) -> None:
        self.root = root
        self.retention_s = retention_s

    def _tenant_dir(self, tenant: str) -> Path:
        from auth.tokens import valid_tenant_name

        # never a path: "/" is not in a tenant name, and "." / ".." are refused here
        if not valid_tenant_name(tenant) or tenant in (".", ".."):
            raise ValueError("not a tenant name")
        return self.root / tenant

    def create(self, tenant: str) -> RecordingFiles:
        """A new recording's files, created empty with private modes."""
        folder = self._tenant_dir(tenant)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        rid = f"{stamp}-{secrets.token_hex(6)}"
        files = RecordingFiles(
            rid, folder / (rid + AUDIO_SUFFIX), folder / (rid + TRANSCRIPT_SUFFIX)
        )
        for path in (files.audio, files.transcript):
            # created here with 0600, so the encoder's later open for writing keeps the mode
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        return files

    def find(self, tenant: str, rid: str) -> RecordingFiles | None:
        """The tenant's recording ``rid``, or None (another tenant's id is simply absent)."""
        if not ID_PATTERN.match(rid):
            return None
        folder = self._tenant_dir(tenant)
        files = RecordingFiles(
            rid, folder / (rid + AUDIO_SUFFIX), folder / (rid + TRANSCRIPT_SUFFIX)
        )
        return files if files.transcript.exists() or files.audio.exists() else None

    def list(self, tenant: str) -> list[RecordingFiles]:
        folder = self._tenant_dir(tenant)
        if not folder.is_dir():
            return []
        ids = sorted({p.stem for p in folder.iterdir() if ID_PATTERN.match(p.stem)}, reverse=True)
        return [f for rid in ids if (f := self.find(tenant, rid)) is not None]

    def delete(self, tenant: str, rid: str) -> bool:
        files = self.find(tenant, rid)
        if files is None:
            return False
        for path in (files.audio, files.transcript):
            path.unlink(missing_ok=True)
        return True

    def sweep(self, tenant: str, now: float | None = None) -> int:
        """Delete the tenant's recordings older than the retention; how many went."""
        if self.retention_s <= 0:
            return 0
        cutoff = (now if now is not None else time.time()) - self.retention_s
        gone = 0
        for files in self.list(tenant):
            newest = max(
                (p.stat().st_mtime for p in (files.audio, files.transcript) if p.exists()),
                default=0.0,
            )
            if newest < cutoff and self.delete(tenant, files.id):
                gone += 1
        if gone:
            logger.info("expired recordings deleted", extra={"count": gone, "tenant": tenant})
        return gone


def summary(files: RecordingFiles) -> dict[str, Any]:
    """One line of a listing: the id and what the transcript says of the session."""
    try:
        doc = json.loads(files.transcript.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    audio = files.audio.stat().st_size if files.audio.exists() else 0
    return {
        "id": files.id,
        "participant": doc.get("participant"),
        "started_at": doc.get("started_at"),
        "duration_s": doc.get("duration_s"),
        "complete": doc.get("complete", False),
        "turns": len(doc.get("turns", [])),
        "audio_bytes": audio,
    }
