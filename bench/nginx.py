"""nginx serving a file, as a second baseline where nginx is installed.

    with with_nginx(body, content_type="text/html; charset=utf-8") as url:   # or None
        ...   # GET url answers `body`

One worker process (bantin's publisher and the bare aiohttp server are one process each), in
the foreground (`daemon off`), on a free 127.0.0.1 port; its configuration, pid file, logs and
temporary folders all live in a temporary folder that is removed afterwards. Keep-alive
connections are not closed after 1000 requests (nginx's default), as aiohttp does not close
them either. The access log is written, buffered, to the temporary folder.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.net import free_port, require_loopback
from bench.support import stop

CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/access.log combined buffer=256k flush=1s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /page {{
            default_type "{content_type}";
            try_files /page.bin =404;
        }}
    }}
}}
"""


def nginx_path() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def nginx_version() -> str | None:
    path = nginx_path()
    if path is None:
        return None
    done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ") or None


@contextlib.contextmanager
def with_nginx(body: bytes, content_type: str, timeout: float = 20.0) -> Iterator[str | None]:
    """Yield the URL where nginx serves `body` (None when nginx is not installed)."""
    path = nginx_path()
    if path is None:
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="bantin-bench-nginx-"))
    try:
        (tmp / "www").mkdir()
        (tmp / "www" / "page.bin").write_bytes(body)
        # nginx's worker runs as an unprivileged user when started as root: let it read.
        for p in (tmp, tmp / "www"):
            p.chmod(0o755)
        (tmp / "www" / "page.bin").chmod(0o644)
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(CONF.format(tmp=tmp, port=port, content_type=content_type))
        argv = [path, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
        log = (tmp / "stderr.log").open("wb")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        try:
            url = require_loopback(f"http://127.0.0.1:{port}/page")
            _wait(url, proc, tmp, timeout)
            yield url
        finally:
            stop(proc)
            log.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wait(url: str, proc: subprocess.Popen[bytes], tmp: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            errors = ""
            for name in ("stderr.log", "error.log"):
                with contextlib.suppress(OSError):
                    errors += (tmp / name).read_text(errors="replace")
            raise RuntimeError(f"nginx exited ({proc.returncode}): {errors[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].split("/")[0]))
            conn.request("GET", "/page")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.1)
