from __future__ import annotations

import json
import ssl
import time
from typing import Any

import requests
import urllib3
from django.conf import settings

from core.http import MAX_REDIRECTS, RedirectRefused, check_headers, request_from_cfg
from core.spec import ConfigError, Key, scrub
from health.probes.base import DOWN, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout
from health.probes.tls import CERT_KEYS, ca_file_error, check_cert_keys, judge, read_cert

_MISSING = object()


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
        # An https:// answer's certificate: days left judged by these; ca_file trusted instead of certifi's bundle.
        **CERT_KEYS,
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_headers(cleaned.get("headers"), where)
        check_cert_keys(cleaned, where)
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
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        try:
            check_cert_keys(cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        problem = ca_file_error(cfg["ca_file"])
        if problem:
            raise ProbeConfigError(problem)
        verify = cfg["ca_file"] if cfg["verify_tls"] and cfg["ca_file"] else cfg["verify_tls"]
        try:
            with request_from_cfg(cfg, self.secrets, timeout=self.timeout, verify=verify, stream=True) as response:
                # Read before the body: once it is read the connection goes back to the pool.
                der = _peer_cert(response)
                body = b"" if cfg["method"] == "HEAD" else self._read_body(response, deadline)
                status = response.status_code
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
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
        if der is None:
            return ProbeOutcome(UP, latency, f"HTTP {status}")
        cert = read_cert(der)
        cert_status, text = judge(cert, cfg["cert_warn_days"], cfg["cert_down_days"])
        if cert_status == DOWN:
            raise ProbeError(f"HTTP {status}; {text}", cert_expires_at=cert.not_after)
        return ProbeOutcome(cert_status, latency, f"HTTP {status}; {text}", cert_expires_at=cert.not_after)


def _peer_cert(response: requests.Response) -> bytes | None:
    """The DER certificate of the connection an https:// answer came on (after redirects: the last one)."""
    if not response.url.lower().startswith("https://"):
        return None
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None  # e.g. through a TLS-in-TLS proxy tunnel: the certificate is not ours to read
    return sock.getpeercert(binary_form=True) or None


def _reason(exc: Exception, secrets: list[str]) -> str:
    # requests nests the root cause; its last line is the readable part.
    # Scrubbed whole before any split or cut: a secret across one would leave a piece behind, unmatched.
    text = scrub(str(exc.args[0] if exc.args else exc), secrets)
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ")[:200]
