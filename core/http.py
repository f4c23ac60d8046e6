"""The portal's outgoing HTTP: one pooled session, redirects followed by hand, config-driven requests.

The HTTP probe, the `http` recovery action and the tunnel watchdog's ready and public checks all go
through `session()` (connections are reused) and `request()` (configured headers never cross origins).
"""

from __future__ import annotations

import os
import threading
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from core.spec import expand_env, expand_header, url_secrets

_session: requests.Session | None = None
_session_lock = threading.Lock()
MAX_REDIRECTS = 10
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENV_KNOBS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle"}


def session() -> requests.Session:
    """One pooled Session for every HTTP probe of the process (connections are reused)."""
    global _session
    with _session_lock:
        if _session is None:
            s = requests.Session()
            size = max(10, settings.PROBE_CONCURRENCY)
            adapter = HTTPAdapter(pool_connections=size, pool_maxsize=size, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.max_redirects = MAX_REDIRECTS  # redirects are followed by request() below, never by requests
            s.headers["User-Agent"] = "opsportal-probe"
            # The Session is shared by every service: a cookie one target sets must not reach the next probe.
            s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            # requests scans the whole environment for proxy settings on every request: a third
            # of a probe's CPU. Keep that only when proxies or a CA bundle are configured.
            s.trust_env = any(k.lower() in _ENV_KNOBS for k in os.environ)
            _session = s
        return _session


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what "same origin" compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    return origin(a) == origin(b)


def redirect_refusal(current: str, target: str, follow: bool | str) -> str | None:
    """Why a redirect from `current` to `target` is not followed; None when it is."""
    if urlsplit(current).scheme.lower() == "https" and urlsplit(target).scheme.lower() == "http":
        return "refused a redirect from https to http"
    if follow == "same-origin" and not same_origin(current, target):
        scheme, host, port = origin(target)
        return f"refused a redirect to another origin ({scheme}://{host}:{port}); follow_redirects is same-origin"
    return None


class RedirectRefused(Exception):
    pass


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    follow: bool | str,
    timeout: float,
    verify: bool = True,
    stream: bool = False,
) -> requests.Response:
    """One request on the pooled session, following redirects by hand.

    requests re-sends custom headers (an API key, a Cookie) to wherever a redirect points; here the
    configured headers go only to the origin they were configured for, a redirect from https to http
    is never followed, and with follow = "same-origin" a redirect to another origin is refused.
    Raises RedirectRefused, requests.TooManyRedirects or what requests raises.
    """
    s = session()
    first = url
    for _ in range(MAX_REDIRECTS + 1):
        response = s.request(
            method,
            url,
            headers=headers if same_origin(url, first) else {},
            data=body,
            timeout=(timeout, timeout),
            verify=verify,
            allow_redirects=False,
            stream=stream,
        )
        target = s.get_redirect_target(response) if follow else None
        if not target:
            return response
        response.close()
        target = requests.compat.urljoin(url, target)
        refusal = redirect_refusal(url, target, follow)
        if refusal:
            raise RedirectRefused(refusal)
        # As browsers and requests do: 303 (and 301/302 after a POST) becomes a GET without a body.
        code = response.status_code
        if (code == 303 and method != "HEAD") or (code in (301, 302) and method == "POST"):
            method, body = "GET", None
        url = target
    raise requests.exceptions.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


def expand_headers(headers: dict[str, str], found: list[str]) -> dict[str, str]:
    """The configured headers with ${VAR} expanded; a line break in a value is refused (ConfigError)."""
    return {k: expand_header(k, v, found, "settings.headers") for k, v in headers.items()}


def check_headers(headers: Any, where: str) -> None:
    """Import-time check of header values: no line break, also not in a variable set here."""
    if isinstance(headers, dict):
        for name, value in headers.items():
            if isinstance(value, str):
                expand_header(name, value, None, f"{where}.headers", missing_ok=True)


def request_from_cfg(
    cfg: dict[str, Any], secrets: list[str], *, timeout: float, verify: bool = True, stream: bool = False
) -> requests.Response:
    """The request a validated config asks for (`url`, `method`, `headers`, `body`, `follow_redirects`):
    `${VAR}`s expanded, and every secret met (also credentials in the URL) added to `secrets` before any
    call can fail, so an error quoting the URL is scrubbed. Raises ConfigError, RedirectRefused, or what
    requests raises."""
    url = expand_env(cfg["url"], secrets)
    secrets.extend(url_secrets(url))
    headers = expand_headers(cfg["headers"], secrets)
    return request(
        cfg["method"],
        url,
        headers=headers,
        body=cfg["body"].encode() if cfg["body"] else None,
        follow=cfg["follow_redirects"],
        timeout=timeout,
        verify=verify,
        stream=stream,
    )
