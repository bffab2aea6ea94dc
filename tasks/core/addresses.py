"""Which IP addresses a request to a user's URL may reach: public ones, and whatever the
operator opened with IMAGINE_OUTBOUND_ALLOW (host names or networks). Used by
`tasks.core.outbound` after every lookup."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from settings.i18n import N_

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HINT = N_("an operator can allow it with IMAGINE_OUTBOUND_ALLOW")

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # 0.0.0.0 reaches this host on Linux
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: someone's inside
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped (::ffff:a.b.c.d), 6to4, NAT64."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address ("a loopback address"), or None when it is one.

    An IPv6 address carrying an IPv4 one (::ffff:127.0.0.1, 2002:7f00:1::, 64:ff9b::7f00:1)
    is judged as that IPv4 address: that is where the packets go.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            return refusal_reason(inner)
    checks = (
        (ip.is_unspecified or ip in _THIS_NETWORK, N_("an unspecified address")),
        (ip.is_loopback, N_("a loopback address")),
        (ip.is_link_local, N_("a link-local address")),
        (ip.is_multicast, N_("a multicast address")),
        (ip in _SHARED, N_("a shared (carrier-grade NAT) address")),
        (ip.is_private, N_("a private address")),
        (ip.is_reserved, N_("a reserved address")),
        (not ip.is_global, N_("not a public address")),
    )
    return next((reason for hit, reason in checks if hit), None)


@dataclass(frozen=True)
class Allowlist:
    """IMAGINE_OUTBOUND_ALLOW: host names (exact, any case) and IP networks (CIDR or one
    address) that may be reached although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            entry = entry.strip().lower().rstrip(".")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry:
                    hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, ip: IPAddress) -> bool:
        """`ip`, reached as `host`, is opened by the operator (by name or by network)."""
        if host.lower().rstrip(".") in self.hosts:
            return True
        return any(ip.version == net.version and ip in net for net in self.networks)
