"""A browser-less operator of the console: signs in, reads CSRF tokens, posts forms."""
from __future__ import annotations

import re

import requests

from tests.conftest import Client, make_key

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class ConsoleClient(Client):
    """A signed-in session; `form()` posts with the session's CSRF token."""

    def __init__(self, base_url: str, key: str):
        super().__init__(base_url)
        token = TOKEN.search(self.get("/login").text).group(1)
        signed_in = self.post("/login", data={"api_key": key, "csrf_token": token},
                              allow_redirects=False)
        assert signed_in.status_code == 302, signed_in.text
        self.token = TOKEN.search(self.get("/").text).group(1)

    def form(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        return self.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)


def console(app, server, *, read_only: bool = False) -> ConsoleClient:
    return ConsoleClient(server.url, make_key(app, "reader" if read_only else "operator",
                                              read_only=read_only))
