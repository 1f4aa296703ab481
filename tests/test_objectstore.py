"""The S3 media store (shared/photos/objectstore.py) against an S3 server over HTTP on loopback.

No real S3-compatible server (MinIO, Garage, SeaweedFS, versitygw) can be installed from the
registries this project reaches, so the server is moto's (`moto[s3]`, its standalone server
mode): the S3 REST protocol over HTTP, with SigV4-signed requests from the real client, real
buckets, keys, metadata and error codes. Its limits: it keeps objects in memory, and it does not
check signatures against the credentials by default, nor enforce bucket policies; a wrong
endpoint, a missing bucket or a missing key fail as they would on a real server.

The worker's path is run for real: a photo adopted by the store, rendered by workers/images.py
from the store's original, its renditions read back from the bucket.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bantin.embedded import free_port
from shared.photos.objectstore import S3MediaStore, client_from_env, parse_media_url
from shared.photos.render import render
from shared.photos.store import MediaStore, media_store
from shared.settings import Settings, SettingsError
from tests.photos import jpeg

BUCKET = "bantin-media"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "bantin-test",
        "AWS_SECRET_ACCESS_KEY": "bantin-test-secret",
        "AWS_REGION": "us-east-1",
    }


@pytest.fixture
def store(s3_env: dict[str, str], tmp_path: Path) -> S3MediaStore:
    client = client_from_env(s3_env)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    made = S3MediaStore.from_url(f"s3://{BUCKET}/site-a/", tmp_path / "scratch", s3_env)
    made.ensure()
    return made


def upload(store: MediaStore, data: bytes) -> tuple[Path, str]:
    temp = store.new_temp(".upload")
    temp.write_bytes(data)
    return temp, hashlib.sha256(data).hexdigest()


def test_settings_choose_the_store(s3_env: dict[str, str], tmp_path: Path) -> None:
    env = {"BANTIN_HOME": str(tmp_path), **s3_env}
    assert type(media_store(Settings.from_env(env))) is MediaStore
    chosen = media_store(Settings.from_env({**env, "BANTIN_MEDIA_URL": "s3://b/p/q"}))
    assert isinstance(chosen, S3MediaStore)
    assert (chosen.bucket, chosen.prefix, chosen.root) == ("b", "p/q", tmp_path / "media")
    with pytest.raises(SettingsError, match="BANTIN_MEDIA_URL"):
        Settings.from_env({**env, "BANTIN_MEDIA_URL": "https://b/p"})
    with pytest.raises(SettingsError, match="BANTIN_MEDIA_URL"):
        parse_media_url("s3:///no-bucket")
    with pytest.raises(SettingsError, match="AWS_ENDPOINT_URL_S3"):
        client_from_env({"AWS_ENDPOINT_URL_S3": "ftp://host"})


def test_originals_go_to_the_bucket_once(store: S3MediaStore) -> None:
    data = jpeg(320, 240)
    temp, sha = upload(store, data)
    assert store.adopt_original(temp, sha) is True
    assert not temp.exists(), "the local upload is removed once stored"
    again, _ = upload(store, data)
    assert store.adopt_original(again, sha) is False and not again.exists()
    key = f"site-a/originals/{sha[:2]}/{sha}"
    assert store.client.get_object(BUCKET, key).read() == data
    # A worker on another host reads it through its own cache.
    other = S3MediaStore(store.root.parent / "other-host", store.bucket, store.prefix, store.client)
    other.ensure()
    local = other.original(sha)
    assert local.read_bytes() == data and local.is_relative_to(other.root)


def test_renditions_are_public_objects_with_their_type(store: S3MediaStore) -> None:
    data = b"\x89PNG\r\n\x1a\n not really"
    path = store.put_public(data, "png")
    digest = hashlib.sha256(data).hexdigest()
    assert path == f"/media/{digest[:2]}/{digest}.png"
    key = store.public_object(path)
    assert key == f"site-a/public/{digest[:2]}/{digest}.png"
    stat = store.client.stat_object(BUCKET, key)
    assert stat.content_type == "image/png"
    assert stat.metadata.get("Cache-Control") == "public, max-age=31536000, immutable"
    assert store.put_public(data, "png") == path  # content-addressed: written once


def test_a_worker_renders_from_the_bucket(store: S3MediaStore, endpoint: str) -> None:
    temp, sha = upload(store, jpeg(1200, 800, gps=True))
    store.adopt_original(temp, sha)
    rendered = render(store.original(sha), store, max_pixels=50_000_000)
    assert rendered.renditions
    for rendition in rendered.renditions:
        body = store.client.get_object(BUCKET, store.public_object(rendition.path)).read()
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (rendition.width, rendition.height)
            assert not image.getexif().get(0x8825), "no GPS in what readers get"
    # Readers reach a rendition at the store's own URL (path-style: endpoint/bucket/key),
    # once the bucket lets anyone read public/.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{BUCKET}/site-a/public/*"],
            }
        ],
    }
    store.client.set_bucket_policy(BUCKET, json.dumps(policy))
    first = rendered.renditions[0]
    url = f"{endpoint}/{BUCKET}/{store.public_object(first.path)}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        assert response.status == 200 and response.read()[:2] in (b"\xff\xd8", b"RI", b"\x00\x00")


def test_a_missing_bucket_or_object_is_said(s3_env: dict[str, str], tmp_path: Path) -> None:
    missing = S3MediaStore.from_url("s3://no-such-bucket/x", tmp_path, s3_env)
    with pytest.raises(SettingsError, match="no bucket 'no-such-bucket'"):
        missing.ensure()
    client: Any = client_from_env(s3_env)
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    store = S3MediaStore.from_url(f"s3://{BUCKET}", tmp_path, s3_env)
    store.ensure()
    from minio.error import S3Error

    with pytest.raises(S3Error):
        store.original("0" * 64)
    assert not (store.cache / "originals" / "00" / ("0" * 64)).exists()
    assert list(store.tmp.iterdir()) == [], "nothing left half-downloaded"
