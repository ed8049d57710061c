"""Authentication for every route on the OTLP ports (4318 HTTP, 4317 gRPC).

One aiohttp middleware checks every request on the OTLP/HTTP app before its handler runs
(and before its body is read), so a route added later is authenticated without asking:
by default with ``receiver.bearer_token``, or with the credential a route declares
instead (Kinesis Data Firehose cannot send ``Authorization``; it sends its access key in
``X-Amz-Firehose-Access-Key``). The gRPC receiver uses the same comparison.

Secrets are compared as digests of their bytes: constant time whatever the content or
the length, and header values that are not UTF-8 (aiohttp hands them over with
surrogate escapes) compare as unequal instead of raising.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Renderer = Callable[[web.Request, "Refused"], web.StreamResponse]


class Refused(Exception):
    """A request refused with an HTTP status; ``message`` goes to the client, ``reason``
    labels the metric."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def _digest(value: str | bytes) -> bytes:
    if isinstance(value, str):
        # surrogatepass: a header with non-UTF-8 bytes arrives with lone surrogates; it
        # must compare unequal, never raise.
        value = value.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(value, digest_size=32).digest()


def secret_matches(given: str | bytes | None, expected: str | bytes) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of both."""
    if given is None:
        return False
    return hmac.compare_digest(_digest(given), _digest(expected))


@dataclass(frozen=True)
class Credential:
    """A header whose value must equal a secret (the secret is kept only as a digest)."""

    header: str
    description: str
    expected: bytes = field(repr=False)
    """The secret's digest (:func:`_digest`)."""

    @classmethod
    def bearer(cls, token: str) -> Credential:
        return cls("Authorization", "bearer token", _digest(f"Bearer {token}"))

    @classmethod
    def header_secret(cls, header: str, secret: str, description: str) -> Credential:
        return cls(header, description, _digest(secret))

    def accepts(self, request: web.Request) -> bool:
        given = request.headers.get(self.header)
        return given is not None and hmac.compare_digest(_digest(given), self.expected)


def json_refusal(request: web.Request, refused: Refused) -> web.Response:
    """The default answer: ``{"error": message}`` with the refusal's status."""
    return web.json_response({"error": refused.message}, status=refused.status)


class PortGuard:
    """The authentication of one aiohttp application, as a middleware.

    Every route needs ``default`` (the bearer token) unless :meth:`use` gave it another
    credential; with no bearer token configured, routes without their own credential
    are open (the receiver then listens on loopback by default). A :class:`Refused`
    raised by a handler is answered here too, in the route's format (``render``).
    """

    def __init__(self, bearer_token: str | None) -> None:
        self._default = Credential.bearer(bearer_token) if bearer_token else None
        self._credentials: dict[str, Credential] = {}
        self._renderers: dict[str, Renderer] = {}

    def use(self, path: str, credential: Credential) -> None:
        """Authenticate ``path`` with ``credential`` instead of the bearer token."""
        self._credentials[path] = credential

    def render(self, path: str, renderer: Renderer) -> None:
        """Answer refusals on ``path`` with ``renderer`` instead of :func:`json_refusal`."""
        self._renderers[path] = renderer

    def _path(self, request: web.Request) -> str:
        route = request.match_info.route
        resource = route.resource if route is not None else None
        return resource.canonical if resource is not None else request.path

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = self._path(request)
        credential = self._credentials.get(path, self._default)
        try:
            if credential is not None and not credential.accepts(request):
                raise Refused(401, f"missing or invalid {credential.description}", "unauthenticated")
            return await handler(request)
        except Refused as refused:
            return self._renderers.get(path, json_refusal)(request, refused)
