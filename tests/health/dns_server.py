"""A loopback DNS server for tests, built from dnspython's message parsing: a zone in a dict, over UDP.

Names in `records` answer their records (NOERROR with an empty answer for a type they lack); other names
are NXDOMAIN; names in `servfail` answer SERVFAIL; with `silent = True` queries are read and never answered.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        # {("web.test.", "A"): ["192.0.2.10", ...]}: names absolute, types by name, values in zone-file text.
        self.records = {(dns.name.from_text(n), t): v for (n, t), v in records.items()}
        self.servfail: set[dns.name.Name] = set()
        self.silent = False
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name, rtype = question.name, dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name.to_text(), rtype))
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif (name, rtype) in self.records:
            rrset = dns.rrset.from_text_list(name, 300, dns.rdataclass.IN, rtype, self.records[(name, rtype)])
            response.answer.append(rrset)
        return response

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            if self.silent:
                continue
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            self.sock.sendto(self._answer(query).to_wire(), peer)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
