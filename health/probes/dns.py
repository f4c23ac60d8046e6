"""A DNS lookup (dnspython): the answer must hold the expected values, or the name must not exist."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdata import Rdata

from core.spec import ConfigError, Key
from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "SRV", "PTR", "CAA")
RCODES = ("NOERROR", "NXDOMAIN")
# How many answers a detail lists before "and N more": a detail is cut at 500 characters anyway.
SHOWN = 10


def check_settings(cfg: dict[str, Any], where: str) -> None:
    """Cross-key rules (import time and run time)."""
    server = cfg.get("server")
    if server:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(f"{where}.server", "must be an IP address (a resolver's, not a name)") from None
    if cfg.get("expect") and cfg.get("expect_rcode", "NOERROR") != "NOERROR":
        raise ConfigError(f"{where}.expect", "has no use with expect_rcode = NXDOMAIN (a name that must not exist)")
    if cfg.get("query"):
        try:
            dns.name.from_text(cfg["query"])
        except dns.exception.DNSException as exc:
            raise ConfigError(f"{where}.query", f"is not a valid DNS name ({exc})") from None


def _name(value: str) -> str:
    return value.rstrip(".").lower()


def forms(rdata: Rdata) -> set[str]:
    """The ways an `expect` entry may name this record: its text, and the short form a person writes."""
    text = rdata.to_text()
    found = {_name(text)}
    rtype = rdata.rdtype
    if rtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        found.add(str(ipaddress.ip_address(text)))
    elif rtype == dns.rdatatype.MX:
        found.add(_name(rdata.exchange.to_text()))
    elif rtype == dns.rdatatype.SRV:
        found.add(_name(rdata.target.to_text()))
    elif rtype == dns.rdatatype.TXT:
        found.add(b"".join(rdata.strings).decode("utf-8", errors="replace"))
    elif rtype == dns.rdatatype.CAA:
        found.add(rdata.value.decode("utf-8", errors="replace"))
    return found


def normalise(expected: str) -> str:
    value = expected.strip()
    try:
        return str(ipaddress.ip_address(value))  # 2001:DB8::0001 is 2001:db8::1
    except ValueError:
        return _name(value)


class DnsProbe(Probe):
    """Asks the system resolver (or `server`) for `query`'s `record_type` records."""

    keys = {
        "query": Key("str", required=True, help="the name to look up; for PTR an IP address works too"),
        "record_type": Key("str", default="A", choices=RECORD_TYPES),
        "server": Key("str", help="a resolver's IP address; default: the system's (/etc/resolv.conf)"),
        "port": Key("int", default=53, minimum=1, maximum=65535),
        "expect": Key("list[str]", help="values that must all be in the answer"),
        "expect_rcode": Key("str", default="NOERROR", choices=RCODES, help="NXDOMAIN: the name must not exist"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_settings(cleaned, where)
        return cleaned

    def _resolver(self) -> dns.resolver.Resolver:
        cfg = self.cfg
        if cfg["server"]:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [cfg["server"]]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise ProbeConfigError(
                    "config error: settings.server: this machine has no system resolver; name one"
                ) from None
        resolver.port = cfg["port"]
        resolver.lifetime = self.timeout  # the whole lookup, retries and servers included
        resolver.timeout = self.timeout
        return resolver

    def _qname(self) -> dns.name.Name:
        query = self.cfg["query"]
        if self.cfg["record_type"] == "PTR":
            try:
                return dns.reversename.from_address(query)
            except (ValueError, dns.exception.SyntaxError):
                pass
        return dns.name.from_text(query)

    def run(self) -> ProbeOutcome:
        cfg = self.cfg
        try:
            check_settings(cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        qname, rtype = self._qname(), cfg["record_type"]
        shown = qname.to_text(omit_final_dot=True)
        via = f" via {cfg['server']}:{cfg['port']}" if cfg["server"] else ""
        start = time.perf_counter()
        try:
            answer = self._resolver().resolve(qname, rtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            latency = (time.perf_counter() - start) * 1000
            if cfg["expect_rcode"] == "NXDOMAIN":
                return ProbeOutcome(UP, latency, f"{shown} does not exist (NXDOMAIN), as expected")
            raise ProbeError(f"{shown} does not exist (NXDOMAIN){via}") from None
        except dns.exception.Timeout:
            raise ProbeTimeout(f"no DNS answer for {shown}{via} within {self.timeout:g} s") from None
        except dns.resolver.NoNameservers as exc:
            raise ProbeError(f"no server answered {rtype} {shown}{via}: {_rcodes(exc)}") from None
        except dns.exception.DNSException as exc:
            raise ProbeError(f"DNS lookup of {rtype} {shown}{via} failed: {exc}") from None
        latency = (time.perf_counter() - start) * 1000
        records = list(answer.rrset) if answer.rrset is not None else []
        listed = _listing(records)
        if cfg["expect_rcode"] == "NXDOMAIN":
            raise ProbeError(f"{shown} exists ({rtype}: {listed or 'no records'}), expected NXDOMAIN")
        if not records:
            raise ProbeError(f"no {rtype} records for {shown} (NOERROR, empty answer){via}")
        have = set().union(*(forms(r) for r in records))
        missing = [e for e in cfg["expect"] or [] if normalise(e) not in have]
        if missing:
            raise ProbeError(f"{rtype} {shown}: {listed}; missing {', '.join(missing)}")
        return ProbeOutcome(UP, latency, f"{rtype} {shown}: {listed}")


def _listing(records: list[Rdata]) -> str:
    texts = sorted(r.to_text() for r in records)
    more = len(texts) - SHOWN
    return ", ".join(texts[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def _rcodes(exc: dns.resolver.NoNameservers) -> str:
    # Each server's answer: "127.0.0.1:5353 SERVFAIL". dnspython keeps them as (server, tcp, port, error, answer),
    # the server spelled "Do53:127.0.0.1@5353".
    parts = []
    for error in exc.kwargs.get("errors", []):
        server, _tcp, _port, problem, response = (list(error) + [None] * 5)[:5]
        what = dns.rcode.to_text(response.rcode()) if response is not None else str(problem)
        where = str(server).removeprefix("Do53:").replace("@", ":")
        parts.append(f"{where} {what}")
    return "; ".join(dict.fromkeys(parts)) or "no answer"
