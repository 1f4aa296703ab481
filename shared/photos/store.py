"""The media store: content-addressed files under BANTIN_MEDIA_DIR.

    originals/ab/<sha256>          photos as submitted (never served: they carry EXIF and GPS)
    public/ab/<sha256>.<ext>       renditions, served at /media/ab/<sha256>.<ext>
    tmp/                           uploads in progress (same file system, so moves are renames)

Every name is the SHA-256 of the file's bytes, so a file never changes once written, the same
photo sent twice is stored once, and readers can cache renditions forever.

`media_store(settings)` gives this store, or with BANTIN_MEDIA_URL=s3://bucket/prefix the same
interface over an S3-compatible object store (shared/photos/objectstore.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings

URL_PREFIX = "/media/"
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}


@dataclass(frozen=True, slots=True)
class MediaStore:
    root: Path

    @property
    def originals(self) -> Path:
        return self.root / "originals"

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def ensure(self) -> None:
        for folder in (self.originals, self.public, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def new_temp(self, suffix: str = "") -> Path:
        """A fresh temporary path in the store (nothing is created yet)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"{secrets.token_hex(12)}{suffix}"

    def original(self, sha256: str) -> Path:
        return self.originals / sha256[:2] / sha256

    def adopt_original(self, temp: Path, sha256: str) -> bool:
        """Move a finished upload into place; returns False when the store had it already
        (the temporary file is then removed)."""
        target = self.original(sha256)
        if target.exists():
            temp.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        return True

    def put_public(self, data: bytes, fmt: str) -> str:
        """Store a rendition; returns its URL path (/media/ab/<sha>.<ext>). Written to a
        temporary file and renamed, so a reader never sees half a file."""
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest[:2]}/{digest}.{EXTENSIONS[fmt]}"
        target = self.public / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = self.new_temp()
            temp.write_bytes(data)
            os.replace(temp, target)
        return URL_PREFIX + name

    def public_file(self, url_path: str) -> Path:
        if not url_path.startswith(URL_PREFIX):
            raise ValueError(f"not a media URL: {url_path!r}")
        return self.public / url_path.removeprefix(URL_PREFIX)


def media_store(settings: Settings) -> MediaStore:
    """The store the settings name: BANTIN_MEDIA_URL's object store, else BANTIN_MEDIA_DIR."""
    if settings.media_url:
        from shared.photos.objectstore import S3MediaStore

        return S3MediaStore.from_url(settings.media_url, settings.media_dir)
    return MediaStore(settings.media_dir)
