"""The Store on AWS: one private bucket, same keys as the local store.

boto3 is imported when a store is made, never when this module is, so importing the agent
stays cheap. Every call is retried by botocore (standard mode) with backoff, which covers
throttling and the brief outages a long run will meet.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gridctl.agent.core.store import Listed, Sent

MAX_ATTEMPTS = 8
_DELETE_BATCH = 1000
"""The most keys one DeleteObjects call takes."""
_MISSING = ("404", "NoSuchKey", "NotFound")
_DENIED = ("403", "AccessDenied", "Forbidden")
_NO_BUCKET = "NoSuchBucket"
_CHANGED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", *_MISSING)
"""A conditional write lost: the object changed, is being changed, or is gone."""


class BucketMissing(Exception):
    """The bucket itself is gone (its environment was destroyed), as opposed to a key.

    Raised wherever S3 says so (``NoSuchBucket``); a HEAD's bare 404 cannot tell a missing
    bucket from a missing key, so ``exists`` and ``get_file`` see a missing key there, and
    ``check_bucket`` is the precise question.
    """

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} does not exist")
        self.bucket = bucket


def check_key(key: str) -> str:
    """The same rule as LocalStore: a relative POSIX path with no empty, . or .. part."""
    if key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid store key: {key!r}")
    return key


MAX_POOL_CONNECTIONS = 64


def boto_config(endpoint_url: str | None) -> Any:
    """Standard retries for any client; path-style S3 addressing when talking to an
    emulator (moto, LocalStack), whose endpoint has no bucket subdomains."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        s3={"addressing_style": "path"} if endpoint_url else None,
        # Parallel artifact uploads, each possibly multipart, share one client.
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )


class S3Store:
    def __init__(self, bucket: str, region: str, endpoint_url: str | None = None) -> None:
        """``endpoint_url`` defaults to ``AWS_ENDPOINT_URL``; credentials come from boto3's
        default chain (environment, profile, instance role)."""
        import boto3

        self.bucket = bucket
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        # A session of its own: clients are thread-safe, the default session is not.
        self.client = boto3.session.Session().client(
            "s3",
            region_name=region,
            endpoint_url=self.endpoint_url,
            config=boto_config(self.endpoint_url),
        )

    def check_bucket(self) -> None:
        """Raises BucketMissing when the bucket does not exist; other failures (network,
        access denied) propagate as they are."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError as exc:
            if _missing(exc) or _code(exc) == _NO_BUCKET:
                raise BucketMissing(self.bucket) from exc
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except self.client.exceptions.ClientError as exc:
            if self._absent(exc, key):
                return False
            raise
        return True

    def usage(self) -> tuple[int, int]:
        """How many objects the bucket holds and their bytes."""
        objects = size = 0
        with self._bucket_errors():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for item in page.get("Contents", ()):
                    objects += 1
                    size += item["Size"]
        return objects, size

    def put_file(self, key: str, path: Path, sent: Sent | None = None) -> None:
        from boto3.exceptions import S3UploadFailedError

        try:
            self.client.upload_file(str(path), self.bucket, check_key(key), Callback=sent)
        except S3UploadFailedError as exc:
            # The transfer manager wraps the ClientError it failed with.
            if _code(exc.__context__) == _NO_BUCKET:
                raise BucketMissing(self.bucket) from exc
            raise

    def get_file(self, key: str, dest: Path) -> None:
        """Written under a temporary name then renamed: ``dest`` is never half a file."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            self.client.download_file(self.bucket, check_key(key), str(partial))
            os.replace(partial, dest)
        except self.client.exceptions.ClientError as exc:
            if self._absent(exc, key):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from exc
            raise
        finally:
            partial.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._bucket_errors():
            self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """S3's conditional create (``If-None-Match: *``): False when the key exists or
        another create of it is in flight."""
        try:
            with self._bucket_errors():
                self.client.put_object(
                    Bucket=self.bucket, Key=check_key(key), Body=data, IfNoneMatch="*"
                )
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in _CHANGED:
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        """Raises FileNotFoundError for a missing key, like LocalStore."""
        return self._read(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object and its ETag, for a later ``put_if_unchanged``; FileNotFoundError
        for a missing key."""
        return self._read(key)

    def _read(self, key: str) -> tuple[bytes, str]:
        try:
            with self._bucket_errors():
                response = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        except self.client.exceptions.ClientError as exc:
            if self._absent(exc, key):
                raise FileNotFoundError(f"s3://{self.bucket}/{key}") from exc
            raise
        with response["Body"] as body:
            return body.read(), response["ETag"]

    def put_if_unchanged(self, key: str, data: bytes, etag: str) -> bool:
        """Write only over the version with ``etag`` (S3 conditional write): False when
        someone else wrote the key in between."""
        try:
            with self._bucket_errors():
                self.client.put_object(
                    Bucket=self.bucket, Key=check_key(key), Body=data, IfMatch=etag
                )
        except self.client.exceptions.ClientError as exc:
            if _code(exc) in _CHANGED:
                return False
            raise
        return True

    def list(self, prefix: str) -> Iterator[str]:
        """Keys below the folder ``prefix`` (not keys that merely start with its text)."""
        for item in self._objects(prefix):
            yield item["Key"]

    def listing(self, prefix: str) -> dict[str, Listed]:
        """The tag is the ETag, from the listing itself (no request per key)."""
        return {
            item["Key"]: Listed(int(item["Size"]), str(item["ETag"]))
            for item in self._objects(prefix)
        }

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The listing's entries for the keys below the folder ``prefix``, page by page."""
        folder = prefix.strip("/")
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=f"{folder}/" if folder else "")
        with self._bucket_errors():
            for page in pages:
                yield from page.get("Contents", ())

    def local_path(self, key: str) -> None:
        """Nothing in a bucket is on this machine: readers download."""
        return None

    def delete_prefix(self, prefix: str) -> None:
        """The folder ``prefix`` and everything below it, or the single key ``prefix``."""
        folder = check_key(prefix.rstrip("/"))
        keys = [*self.list(folder), *([folder] if self.exists(folder) else [])]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[start : start + _DELETE_BATCH]]
            with self._bucket_errors():
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            if response.get("Errors"):
                first = response["Errors"][0]
                where = f"s3://{self.bucket}/{first['Key']}"
                raise OSError(f"cannot delete {where}: {first['Message']}")

    def _absent(self, exc: Exception, key: str) -> bool:
        """Whether a failed read means the key does not exist. S3 answers 403 instead of 404
        for a missing key when the caller may not list the bucket, which can include one that
        may list only some prefixes (the node role): a listing of the key itself then tells
        missing from denied, where that listing is allowed."""
        if _missing(exc):
            return True
        if _code(exc) not in _DENIED:
            return False
        try:
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except self.client.exceptions.ClientError:
            return False  # cannot tell: the denial stands
        return not any(item["Key"] == key for item in found.get("Contents", ()))

    @contextlib.contextmanager
    def _bucket_errors(self) -> Iterator[None]:
        try:
            yield
        except self.client.exceptions.ClientError as exc:
            if _code(exc) == _NO_BUCKET:
                raise BucketMissing(self.bucket) from exc
            raise


def _code(exc: BaseException | None) -> str:
    """The S3 error code of a botocore ClientError, else ''."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in _MISSING
