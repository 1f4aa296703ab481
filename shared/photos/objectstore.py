"""The media store in an S3-compatible object store, for sites on more than one host:

    BANTIN_MEDIA_URL=s3://bucket/prefix

The same content-addressed names as the filesystem store (shared/photos/store.py), as object keys:

    <prefix>/originals/ab/<sha256>          photos as submitted (never served)
    <prefix>/public/ab/<sha256>.<ext>       renditions, served at /media/ab/<sha256>.<ext>

What stays on the local disk (BANTIN_MEDIA_DIR) is only scratch: uploads in progress (tmp/,
moved into the store by one PUT when complete) and a cache of the originals a worker renders
(cache/; a name is the hash of the bytes, so a cached file is never stale). Readers get the
renditions from the proxy, which passes /media/ on to the bucket (deploy/nginx-s3.conf), or
straight from the store's own URLs; the bucket's public/ prefix must then be readable by
anyone, and nothing else in it.

Endpoint and credentials come from the environment, under the names every S3 client reads:
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (default: Amazon S3), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, and AWS_REGION or AWS_DEFAULT_REGION.

The client is MinIO's Python SDK (`minio`, the `s3` extra): maintained, made for any
S3-compatible server, synchronous like the MediaStore interface (ingest calls the store in a
thread, workers are synchronous), and a tenth of the size of botocore.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.photos.store import EXTENSIONS, URL_PREFIX, MediaStore
from shared.settings import SettingsError

CONTENT_TYPES = {
    ext: f"image/{'jpeg' if fmt == 'jpeg' else fmt}" for fmt, ext in EXTENSIONS.items()
}
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


def parse_media_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix without slashes at either end)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"BANTIN_MEDIA_URL: {url!r} is not s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


def client_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """A MinIO client for the endpoint and credentials of the environment (AWS_* names)."""
    from minio import Minio

    env = os.environ if environ is None else environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
    parts = urlsplit(endpoint or "https://s3.amazonaws.com")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise SettingsError(f"AWS_ENDPOINT_URL_S3: {endpoint!r} is not http(s)://host[:port]")
    return Minio(
        parts.netloc,
        access_key=env.get("AWS_ACCESS_KEY_ID") or None,
        secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        session_token=env.get("AWS_SESSION_TOKEN") or None,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        secure=parts.scheme == "https",
    )


@dataclass(frozen=True, slots=True)
class S3MediaStore(MediaStore):
    """MediaStore's interface over a bucket; `root` is the local scratch folder."""

    bucket: str = ""
    prefix: str = ""
    client: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_url(
        cls, url: str, scratch: Path, environ: Mapping[str, str] | None = None
    ) -> S3MediaStore:
        bucket, prefix = parse_media_url(url)
        return cls(scratch, bucket, prefix, client_from_env(environ))

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def ensure(self) -> None:
        for folder in (self.tmp, self.cache):
            folder.mkdir(parents=True, exist_ok=True)
        if not self.client.bucket_exists(self.bucket):
            raise SettingsError(f"BANTIN_MEDIA_URL: no bucket {self.bucket!r} at the endpoint")

    def _exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def adopt_original(self, temp: Path, sha256: str) -> bool:
        """Upload a finished upload (then removed here); False when the store had it."""
        key = self.key(f"originals/{sha256[:2]}/{sha256}")
        try:
            if self._exists(key):
                return False
            self.client.fput_object(self.bucket, key, str(temp))
            return True
        finally:
            temp.unlink(missing_ok=True)

    def original(self, sha256: str) -> Path:
        """The original, as a local file (downloaded once into the cache)."""
        cached = self.cache / "originals" / sha256[:2] / sha256
        if not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            temp = self.new_temp()
            try:
                self.client.fget_object(
                    self.bucket, self.key(f"originals/{sha256[:2]}/{sha256}"), str(temp)
                )
                os.replace(temp, cached)
            finally:
                temp.unlink(missing_ok=True)
        return cached

    def put_public(self, data: bytes, fmt: str) -> str:
        """Store a rendition (one PUT: readers never see half an object); its URL path."""
        digest = hashlib.sha256(data).hexdigest()
        ext = EXTENSIONS[fmt]
        name = f"{digest[:2]}/{digest}.{ext}"
        key = self.key(f"public/{name}")
        if not self._exists(key):
            self.client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=CONTENT_TYPES[ext],
                metadata=IMMUTABLE,
            )
        return URL_PREFIX + name

    def public_object(self, url_path: str) -> str:
        """The object key of a rendition's URL path (/media/ab/<sha>.<ext>)."""
        if not url_path.startswith(URL_PREFIX):
            raise ValueError(f"not a media URL: {url_path!r}")
        return self.key("public/" + url_path.removeprefix(URL_PREFIX))
