"""Safety checks in front of every route: Host and Origin (DNS rebinding, cross-site requests),
the request body size, and bearer tokens compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_MAX_BODY = 8 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(netloc: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def send_json(send: Send, status: int, body: dict[str, object]) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class GuardMiddleware:
    """Reject a request whose Host is a name we do not serve (DNS rebinding), whose Origin is
    another site, or whose body is larger than ``max_body`` bytes, before any route runs.

    A Host that is an IP address cannot be rebound and is accepted; a name must be a loopback
    name or one of ``allowed_hosts``. An Origin, when sent, must be the Host itself.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = (), max_body: int = DEFAULT_MAX_BODY,
                 read_token: str | None = None) -> None:
        self.app = app
        self.read_token = read_token  # when set, every route but /health needs it
        self.allowed = LOOPBACK_NAMES | {h.lower() for h in allowed_hosts}
        self.max_body = max_body

    def host_allowed(self, host: str) -> bool:
        name = _hostname(host)
        return bool(name) and (name in self.allowed or _is_ip(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.host_allowed(host):
            await send_json(send, 403, {"error": f"host {host!r} is not served here (DNS rebinding guard; see --allowed-host)"})
            return
        origin = headers.get("origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
            await send_json(send, 403, {"error": f"cross-origin request from {origin!r} refused"})
            return
        if self.read_token and scope["path"] != "/health" and not token_matches(bearer(headers), self.read_token):
            await send_json(send, 401, {"error": "this server needs a bearer token (Authorization: Bearer ...)"})
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await send_json(send, 413, {"error": f"request body larger than {self.max_body} bytes"})
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await send_json(send, 413, {"error": f"request body larger than {self.max_body} bytes"})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
