"""What Gradio's routes leave open, closed: the app's private upload and download folders, and
an ASGI guard on request sizes, the file route and the login.

Gradio's default upload folder, /tmp/gradio, is shared by every Gradio app on the host
and served by each; here uploads go to a folder of this process's own, which no route
serves, and are removed once read.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# An upload never added to the index is removed after this long (checked every 10 minutes, and at each
# upload), and the whole folder when the app stops.
UPLOAD_MAX_AGE_S = 3600
# A request's JSON body: the largest valid /ask (2,000 characters of question and 50 of history,
# each character escaped as \uXXXX\uXXXX) is 1.2 MB. Bigger bodies are refused before they are
# parsed, as parsing holds up the server's event loop (8 MB took 0.4 s). Files go to /upload.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
# Gradio's routes under /gradio_api/ that must answer before a login: the login page's own, and
# startup-events, which launch() calls itself (it only runs the app's start-up events, once).
OPEN_ROUTES = frozenset({"login", "logout", "login_check", "token", "user", "app_id", "theme.css", "startup-events"})


@functools.lru_cache(maxsize=1)
def upload_folder() -> Path:
    """This process's private upload folder, made on first use and removed at exit.

    Gradio's default, /tmp/gradio, is shared by every Gradio app on the host, and each
    serves any file in it at /gradio_api/file=...: an upload to a login-protected app
    was readable, without login, through another. Gradio reads GRADIO_TEMP_DIR when it
    creates components and its server, so this is set before ``build_app`` makes any.
    """
    folder = Path(tempfile.mkdtemp(prefix="qa-uploads-")).resolve()  # mode 0700
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    threading.Thread(target=_sweep_regularly, name="sweep-uploads", daemon=True).start()
    return folder


def _sweep_regularly() -> None:
    while True:
        time.sleep(UPLOAD_MAX_AGE_S / 6)
        try:
            sweep_uploads()
        except OSError:  # a file removed meanwhile; the next sweep takes the rest
            logger.debug("sweeping the upload folder failed", exc_info=True)


def _in_uploads(path: str | os.PathLike) -> bool:
    try:
        Path(os.path.realpath(os.path.abspath(path))).relative_to(upload_folder())
    except (ValueError, OSError):
        return False
    return True


def discard_uploads(paths: list[Path]) -> None:
    """Remove uploaded files (and their folders, once empty); nothing outside the upload folder."""
    root = upload_folder()
    for path in paths:
        if not _in_uploads(path):
            continue
        Path(path).unlink(missing_ok=True)
        parent = Path(os.path.realpath(Path(path).parent))
        while parent != root and _in_uploads(parent):
            try:
                parent.rmdir()
            except OSError:  # not empty: another upload of the same content is in it
                break
            parent = parent.parent


def sweep_uploads(max_age_s: float = UPLOAD_MAX_AGE_S) -> None:
    """Remove uploads older than ``max_age_s`` that were never added (a page upload left in the box)."""
    cutoff = time.time() - max_age_s
    old = [p for p in upload_folder().rglob("*") if p.is_file() and p.lstat().st_mtime < cutoff]
    discard_uploads(old)


@functools.lru_cache(maxsize=1)
def export_folder() -> Path:
    """This process's folder of conversation downloads, served as it is (not through Gradio's
    cache, which is the upload folder the file route never serves); removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="qa-exports-")).resolve()  # mode 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    import gradio as gr  # the app has imported it, after qa.offline turned its analytics off

    gr.set_static_paths([folder])
    return folder


def sweep_exports(max_age_s: float = UPLOAD_MAX_AGE_S) -> None:
    """Remove downloads older than ``max_age_s``: a conversation's download is remade after every answer."""
    cutoff = time.time() - max_age_s
    for folder in export_folder().iterdir():
        if folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


class RequestGuard:
    """ASGI middleware for what Gradio's routes leave open.

    - The file route never serves the upload folder, to anyone.
    - A request body over MAX_REQUEST_BYTES is refused unread (413), but for uploads.
    - With a login, every route under /gradio_api/ asks for it except the login's own
      (Gradio 6 leaves /gradio_api/reset, /cancel, /stream/... and /heartbeat/... open).
      The session is looked up as Gradio's own login check does (its cookie, its tokens).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                from starlette.responses import JSONResponse

                await JSONResponse({"detail": refusal[1]}, status_code=refusal[0])(scope, receive, send)
                return
            if scope.get("method") == "POST" and "/gradio_api/upload" not in scope.get("path", ""):
                receive = _bounded(receive)
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope) -> tuple[int, str] | None:
        path = scope.get("path", "")
        prefix = f"{scope.get('root_path', '').rstrip('/')}/gradio_api/"
        if not path.startswith(prefix):
            return None
        route = path[len(prefix):]
        if scope.get("method") == "POST" and not route.startswith("upload"):
            length = dict(scope.get("headers") or []).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
                return 413, f"the request is over the {MAX_REQUEST_BYTES // (1024 * 1024)} MB limit"
        for file_route in ("file=", "file/"):
            if route.startswith(file_route) and _in_uploads(route[len(file_route):]):
                return 403, "File not allowed."
        server = scope.get("app")
        if getattr(server, "auth", None) is None or route.rstrip("/") in OPEN_ROUTES:
            return None
        from starlette.requests import HTTPConnection

        cookies = HTTPConnection(scope).cookies
        token = cookies.get(f"access-token-{server.cookie_id}") or cookies.get(
            f"access-token-unsecure-{server.cookie_id}")
        if server.tokens.get(token) is None:
            return 401, "Not authenticated"
        return None


def _bounded(receive):
    """``receive`` for a body sent without a length: past MAX_REQUEST_BYTES the client is taken as gone."""
    seen = 0

    async def bounded():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] == "http.request" and seen > MAX_REQUEST_BYTES:
            return {"type": "http.disconnect"}
        return message

    return bounded
