"""The sandbox's SML zone as DNS: a dnslib server on a loopback UDP port.

It answers from the model's *DNS-visible* SMP of each participant (``SandboxModel.dns_smp``),
so the propagation delay applies: after a Migrate, the old SMP is still served until the
delay has passed on the model's clock.

- ``<sha256-b32>.iso6523-actorid-upis.<zone>`` NAPTR ``100 10 "U" "Meta:SMP"
  "!^.*$!<smp url>!" .``, where the SMP URL is the sandbox's own HTTP SMP of that provider,
  ``http://127.0.0.1:<port>/smp/<smp id>`` (every SMP of the sandbox lives on one loopback
  host; the path tells them apart, so ``verify.econnect_smp_host`` is that URL's
  ``host:port/smp/econnect``);
- ``B-<md5>.iso6523-actorid-upis.<zone>`` CNAME ``<smp id>.smp.sandbox.``, the legacy scheme.
  That host does not resolve: the CNAME shows which SMP the SML points at, but its SMP cannot be
  read through it (the NAPTR's URL can).

A participant the SML does not know (or whose DNS record is gone) is NXDOMAIN; a name
outside the zone is REFUSED. Parties are indexed by their names as they appear, so a
query costs a dictionary lookup, not a hash of every participant.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from dnslib import CNAME, NAPTR, QTYPE, RCODE, RR, DNSLabel, DNSRecord
from dnslib.server import DNSServer

from migration_engine.peppol.sml import SCHEME, cname_name, naptr_name
from migration_engine.sandbox.model import SandboxModel

log = logging.getLogger(__name__)
TTL = 60
CNAME_DOMAIN = "smp.sandbox"


class _QuietLogger:
    """dnslib logs every packet to stdout by default; errors go to our log instead."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name == "log_error":
            return lambda handler, exc: log.warning("sandbox DNS: %s", exc)
        return lambda *args: None


class SmlZone:
    """The dnslib resolver: NAPTR and CNAME answers from the model."""

    def __init__(
        self, model: SandboxModel, smp_url: Callable[[str], str], *, naptr: bool = True, cname: bool = True
    ) -> None:
        self.model = model
        self.smp_url = smp_url
        self.zone = model.config.sml_zone.strip().rstrip(".").lower()
        self.naptr = naptr
        self.cname = cname
        self._names: dict[str, str] = {}  # first label (lowercase) -> party
        self._indexed: set[str] = set()
        self._lock = threading.Lock()

    def _party(self, label: str) -> str | None:
        with self._lock:
            if label not in self._names:
                with self.model.lock:
                    fresh = [p for p in self.model.sml.entries if p not in self._indexed]
                for party in fresh:
                    self._names[naptr_name(party, self.zone).split(".", 1)[0]] = party
                    self._names[cname_name(party, self.zone).split(".", 1)[0].lower()] = party
                    self._indexed.add(party)
            return self._names.get(label)

    def answer(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        label, _, rest = qname.partition(".")
        if rest != f"{SCHEME}.{self.zone}":
            reply.header.rcode = RCODE.REFUSED
            return reply
        is_cname = label.startswith("b-")
        party = self._party(label) if (self.cname if is_cname else self.naptr) else None
        smp = self.model.dns_smp(party) if party is not None else None
        if smp is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        qtype = QTYPE[request.q.qtype]
        if is_cname:  # a CNAME answers every type of query for its name
            target = DNSLabel(f"{smp}.{CNAME_DOMAIN}.")
            reply.add_answer(RR(request.q.qname, QTYPE.CNAME, rdata=CNAME(target), ttl=TTL))
        elif qtype in ("NAPTR", "ANY"):
            regexp = f"!^.*$!{self.smp_url(smp)}!".encode()
            record = NAPTR(100, 10, b"U", b"Meta:SMP", regexp, DNSLabel("."))
            reply.add_answer(RR(request.q.qname, QTYPE.NAPTR, rdata=record, ttl=TTL))
        return reply  # other types of an existing name: no data

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        try:
            return self.answer(request)
        except Exception:  # a sandbox bug: SERVFAIL, and the traceback in the log
            log.exception("sandbox DNS: failed to answer %s", request.q.qname)
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return reply


class SandboxDns:
    """The zone served over UDP on ``host`` and a port (0 = a free one), in a daemon thread."""

    def __init__(
        self,
        model: SandboxModel,
        smp_url: Callable[[str], str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        naptr: bool = True,
        cname: bool = True,
    ) -> None:
        self.zone = SmlZone(model, smp_url, naptr=naptr, cname=cname)
        self._server = DNSServer(self.zone, address=host, port=port, logger=_QuietLogger())
        self.host = host
        self.port: int = self._server.server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port``, the form ``verify.dns_server`` takes."""
        return f"{self.host}:{self.port}"

    def start(self) -> SandboxDns:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.server.serve_forever,
                kwargs={"poll_interval": 0.01},  # how soon stop() is noticed
                name=f"sandbox-dns:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.server.shutdown()
            self._thread.join(2)
            self._thread = None
        self._server.server.server_close()
