from __future__ import annotations

import json
import os
import threading
import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter

from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout
from opsportal.spec import ConfigError, Key, expand_env, expand_header, scrub, url_secrets

_session: requests.Session | None = None
_session_lock = threading.Lock()
_MISSING = object()
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


def json_lookup(document: Any, path: str) -> Any:
    """Follow a dotted path (`data.items.0.status`) into decoded JSON; _MISSING when absent."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


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


class HttpProbe(Probe):
    """Requests a URL and checks the status, optionally a body substring or a JSON field."""

    keys = {
        "url": Key("str", required=True),
        "method": Key("str", default="GET", choices=("GET", "HEAD", "POST", "PUT", "OPTIONS")),
        "headers": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
        "body": Key("text", help="request body, for POST/PUT"),
        "expect_status": Key("list[int]", minimum=100, maximum=599, help="default: any 2xx"),
        "body_contains": Key("str"),
        "json_path": Key("str"),
        "json_equals": Key("scalar"),
        "verify_tls": Key("bool", default=True),
        "follow_redirects": Key(
            "redirects",
            default=True,
            help='true (configured headers dropped on a redirect to another origin), false, or "same-origin"',
        ),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_headers(cleaned.get("headers"), where)
        return cleaned

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        # Stream with a total deadline and a size cap: a trickling or endless body cannot hold us.
        limit = settings.PROBE_MAX_BODY_BYTES
        chunks: list[bytes] = []
        size = 0
        # read1() returns whatever has arrived; iter_content() would block until a whole chunk
        # is in, so a server trickling a byte at a time would never reach the deadline check.
        while True:
            try:
                chunk = response.raw.read1(16384, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                raise ProbeTimeout(f"response body stalled for {self.timeout:g} s") from None
            except urllib3.exceptions.HTTPError as exc:  # truncated body, bad encoding
                raise ProbeError(f"response body unreadable: {type(exc).__name__}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ProbeError(f"response body larger than {limit} bytes")
            if time.monotonic() > deadline:
                raise ProbeTimeout(f"response body not complete within {self.timeout:g} s")
        return b"".join(chunks)

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        try:
            url = expand_env(cfg["url"], self.secrets)
            # Registered before any call can fail: an error may quote the URL with its userinfo.
            self.secrets.extend(url_secrets(url))
            headers = expand_headers(cfg["headers"], self.secrets)
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        try:
            with request(
                cfg["method"],
                url,
                headers=headers,
                body=cfg["body"].encode() if cfg["body"] else None,
                follow=cfg["follow_redirects"],
                timeout=self.timeout,
                verify=cfg["verify_tls"],
                stream=True,
            ) as response:
                body = b"" if cfg["method"] == "HEAD" else self._read_body(response, deadline)
                status = response.status_code
        except RedirectRefused as exc:
            raise ProbeError(str(exc)) from None
        except requests.exceptions.SSLError as exc:
            raise ProbeError(f"TLS error: {_reason(exc, self.secrets)}") from None
        except requests.exceptions.TooManyRedirects:
            raise ProbeError(f"too many redirects (more than {MAX_REDIRECTS})") from None
        except (requests.exceptions.Timeout, TimeoutError):
            raise ProbeTimeout(f"no answer within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise ProbeError(f"connection failed: {_reason(exc, self.secrets)}") from None
        except requests.exceptions.RequestException as exc:
            raise ProbeError(f"request failed: {_reason(exc, self.secrets)}") from None
        latency = (time.perf_counter() - start) * 1000

        expected = cfg["expect_status"]
        if (expected and status not in expected) or (not expected and not 200 <= status < 300):
            want = ", ".join(map(str, expected)) if expected else "2xx"
            raise ProbeError(f"HTTP {status} (expected {want})")
        text = body.decode("utf-8", errors="replace")
        if cfg["body_contains"] and cfg["body_contains"] not in text:
            raise ProbeError(f"HTTP {status}, body does not contain {cfg['body_contains']!r}")
        if cfg["json_path"]:
            try:
                document = json.loads(text)
            except ValueError:
                raise ProbeError(f"HTTP {status}, body is not JSON") from None
            value = json_lookup(document, cfg["json_path"])
            if value is _MISSING:
                raise ProbeError(f"HTTP {status}, JSON has no {cfg['json_path']}")
            if cfg["json_equals"] is not None and value != cfg["json_equals"]:
                raise ProbeError(f"HTTP {status}, {cfg['json_path']} is {value!r}, expected {cfg['json_equals']!r}")
        return ProbeOutcome(UP, latency, f"HTTP {status}")


def _reason(exc: Exception, secrets: list[str]) -> str:
    # requests nests the root cause; its last line is the readable part.
    # Scrubbed whole before any split or cut: a secret across one would leave a piece behind, unmatched.
    text = scrub(str(exc.args[0] if exc.args else exc), secrets)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200]
