"""Recordings kept in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …) instead of on disk.

A recording is written locally while the call runs (the encoder needs a file) and uploaded
when it ends, under ``<RECORDING_S3_PREFIX><tenant>/<id>.ogg`` and ``.json``; the local copy
is deleted once both objects are stored, and kept (logged, counted) when the upload fails,
so nothing is lost to a bucket that is down. The HTTP API then lists, serves and deletes
from the bucket, by the same rule as on disk: the tenant from the token, the id checked
against the id pattern, never a key a caller writes. Retention in a bucket is the bucket's
own lifecycle rule (expiration), which S3 applies without this worker.

boto3, with its calls run in a thread: uploads happen once per call, off the audio path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.log import logger
from agent.obs.metrics import RECORDINGS
from agent.recording.store import AUDIO_SUFFIX, ID_PATTERN, TRANSCRIPT_SUFFIX, RecordingFiles


@dataclass(frozen=True, slots=True)
class S3Options:
    bucket: str
    endpoint_url: str = ""  # empty: AWS
    region: str = ""
    prefix: str = "recordings/"
    access_key_id: str = ""  # empty: boto3's own chain (environment, instance role, …)
    secret_access_key: str = ""


class S3Archive:
    def __init__(self, options: S3Options) -> None:
        import boto3
        from botocore.config import Config

        self.options = options
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=options.endpoint_url or None,
            region_name=options.region or None,
            aws_access_key_id=options.access_key_id or None,
            aws_secret_access_key=options.secret_access_key or None,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
        )

    def _key(self, tenant: str, rid: str, suffix: str) -> str:
        return f"{self.options.prefix}{tenant}/{rid}{suffix}"

    def upload(self, tenant: str, files: RecordingFiles) -> bool:
        """Store both files, then delete the local copies; False (and the copies kept) when
        the bucket cannot take them."""
        try:
            for path, suffix, kind in (
                (files.audio, AUDIO_SUFFIX, "audio/ogg"),
                (files.transcript, TRANSCRIPT_SUFFIX, "application/json"),
            ):
                if path.exists():
                    self._client.upload_file(
                        str(path),
                        self.options.bucket,
                        self._key(tenant, files.id, suffix),
                        ExtraArgs={"ContentType": kind},
                    )
        except Exception as e:  # boto3 and botocore errors, connection errors
            RECORDINGS.labels("upload_failed").inc()
            logger.error(
                "recording upload failed: kept on disk",
                extra={"recording": files.id, "error": f"{type(e).__name__}: {e}"[:300]},
            )
            return False
        files.audio.unlink(missing_ok=True)
        files.transcript.unlink(missing_ok=True)
        RECORDINGS.labels("uploaded").inc()
        return True

    async def upload_async(self, tenant: str, files: RecordingFiles) -> bool:
        return await asyncio.to_thread(self.upload, tenant, files)

    def ids(self, tenant: str) -> list[str]:
        """The tenant's recording ids, newest first."""
        found: set[str] = set()
        paginator = self._client.get_paginator("list_objects_v2")
        prefix = f"{self.options.prefix}{tenant}/"
        for page in paginator.paginate(Bucket=self.options.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                stem = name.rsplit(".", 1)[0]
                if ID_PATTERN.match(stem):
                    found.add(stem)
        return sorted(found, reverse=True)

    def transcript(self, tenant: str, rid: str) -> bytes | None:
        return (
            self._get(self._key(tenant, rid, TRANSCRIPT_SUFFIX)) if ID_PATTERN.match(rid) else None
        )

    def audio(self, tenant: str, rid: str) -> Iterator[bytes] | None:
        """The audio in chunks, or None when there is none."""
        if not ID_PATTERN.match(rid):
            return None
        try:
            body = self._client.get_object(
                Bucket=self.options.bucket, Key=self._key(tenant, rid, AUDIO_SUFFIX)
            )["Body"]
        except self._client.exceptions.NoSuchKey:
            return None
        return iter(lambda: body.read(64 * 1024), b"")

    def delete(self, tenant: str, rid: str) -> bool:
        if not ID_PATTERN.match(rid) or self.transcript(tenant, rid) is None:
            return False
        self._client.delete_objects(
            Bucket=self.options.bucket,
            Delete={
                "Objects": [
                    {"Key": self._key(tenant, rid, AUDIO_SUFFIX)},
                    {"Key": self._key(tenant, rid, TRANSCRIPT_SUFFIX)},
                ]
            },
        )
        return True

    def _get(self, key: str) -> bytes | None:
        try:
            data: bytes = self._client.get_object(Bucket=self.options.bucket, Key=key)[
                "Body"
            ].read()
        except self._client.exceptions.NoSuchKey:
            return None
        return data
