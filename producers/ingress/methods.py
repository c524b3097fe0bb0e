"""Methods as HTTP says (RFC 9110): what no route takes is answered here, before any auth.

A path some route's pattern matches is known; asked with a method none of its routes has,
it is `405` with `Allow` (every method the path's routes have, and OPTIONS), and `OPTIONS`
is `204` with the same `Allow`. An unknown path is left to `not_found` (for example `404
unknown-command-type` for a POST), then to the router's own 404. The methods of a path are
no secret, so neither needs credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from starlette.types import Receive, Scope, Send

    from producers.ingress.problems import ProblemError

    # The problem for a request no route knows the path of, or None for a plain 404.
    NotFound = Callable[[Scope], ProblemError | None]

_RANK = {m: i for i, m in enumerate(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))}
_ALLOWED = "hisho.allowed_methods"  # scope key: what `matches` found, for `handle`


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method the routes whose path matches `scope` have, plus OPTIONS; [] if none."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, MethodFallback):
            continue
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if not methods:
        return []
    methods.add("OPTIONS")
    return sorted(methods, key=lambda method: (_RANK.get(method, len(_RANK)), method))


class MethodFallback(BaseRoute):
    """The router's last route: 405 and OPTIONS for known paths, `not_found` for the rest."""

    def __init__(self, routes: Sequence[BaseRoute], *, not_found: NotFound) -> None:
        self._routes = routes  # the router's own list: routes added later count too
        self._not_found = not_found

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Take any request to a known path, or one `not_found` answers; leave the rest."""
        if scope["type"] != "http":
            return Match.NONE, {}
        allowed = allowed_methods(self._routes, scope)
        if allowed or self._not_found(scope) is not None:
            return Match.FULL, {_ALLOWED: allowed}
        return Match.NONE, {}  # the router's slash redirect, then its 404

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer OPTIONS, 405 or the not-found problem (raised to the problem handlers)."""
        allowed: list[str] = scope[_ALLOWED]
        if not allowed:
            problem = self._not_found(scope)
            assert problem is not None  # `matches` took the request for it
            raise problem
        allow = ", ".join(allowed)
        if scope["method"] == "OPTIONS":
            await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
            return
        detail = f"{scope['method']} is not supported here; allowed: {allow}"
        raise HTTPException(405, detail, headers={"Allow": allow})
