"""Which proxy, if any, carries the traffic to an endpoint, decided from the injected environment.

The HTTP libraries would read ``os.environ`` themselves; reconciler decides here instead, from
the ``Env`` it was given, and hands them the answer (requests with ``trust_env`` off, botocore
with explicit ``proxies``), so the decision is testable and ``--debug`` can name it.

The rules are the ones Go (and so Terraform) follows:

* ``https_proxy`` / ``HTTPS_PROXY``, else ``all_proxy`` / ``ALL_PROXY`` (lower case first);
  a value without a scheme is ``http://``. The proxy URL is parsed by ``reconciler.urls``
  like every other URL; its user and password are sent to the proxy and never shown.
* ``no_proxy`` / ``NO_PROXY``: comma-separated ``*``, host names (``example.com`` and
  ``.example.com`` both match the name and its subdomains), IP addresses or CIDR ranges,
  each optionally with ``:PORT``.
* A loopback endpoint is never proxied. Plain http is accepted only for loopback, so no
  plain-http request ever goes through a proxy either.

May import: the standard library, ``reconciler.urls``, ``reconciler.errors``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.urls import Endpoint, Proxy, parse_proxy

_PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
_NO_PROXY_VARS = ("no_proxy", "NO_PROXY")


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    """The proxy for one endpoint (None: connect directly), and why, for ``--debug``."""

    endpoint: Endpoint
    proxy: Proxy | None
    because: str  # the variable the proxy came from, or why there is none

    def describe(self) -> str:
        if self.proxy is None:
            return f"{self.endpoint.url}: no proxy ({self.because})"
        return f"{self.endpoint.url}: through the proxy {self.proxy.shown} (from {self.because})"

    def proxies(self) -> dict[str, str]:
        """The mapping requests and botocore take; empty for a direct connection."""
        if self.proxy is None:
            return {}
        return {self.endpoint.scheme: self.proxy.connect_url()}


def choose_proxy(endpoint: Endpoint, environ: Mapping[str, str]) -> ProxyChoice:
    """The proxy ``environ`` configures for ``endpoint``; a ``UsageError`` for a bad proxy URL."""
    if endpoint.loopback:
        return ProxyChoice(endpoint, None, "a loopback host is never reached through a proxy")
    if endpoint.scheme != "https":  # cannot happen: parse_endpoint allows http only for loopback
        return ProxyChoice(endpoint, None, "plain http is never sent through a proxy")
    found = next(((n, environ[n].strip()) for n in _PROXY_VARS if environ.get(n, "").strip()),
                 None)
    if found is None:
        return ProxyChoice(endpoint, None, "HTTPS_PROXY and ALL_PROXY are not set")
    name, value = found
    no_proxy_name, no_proxy = next(
        ((n, environ[n]) for n in _NO_PROXY_VARS if environ.get(n, "").strip()), ("", ""))
    entry = bypass_entry(endpoint, no_proxy)
    if entry is not None:
        return ProxyChoice(endpoint, None, f"{no_proxy_name} has {entry!r}")
    return ProxyChoice(endpoint, parse_proxy(value, what=name), name)


def bypass_entry(endpoint: Endpoint, no_proxy: str) -> str | None:
    """The first ``NO_PROXY`` entry that matches the endpoint, if any."""
    host = endpoint.host.removesuffix(".")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry and _matches(entry, host=host, port=endpoint.effective_port):
            return entry
    return None


def _matches(entry: str, *, host: str, port: int) -> bool:
    if entry == "*":
        return True
    entry, wanted_port = _split_port(entry)
    if wanted_port is not None and wanted_port != port:
        return False
    entry = entry.removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    name = entry.removeprefix("*").removeprefix(".").removesuffix(".")
    return bool(name) and (host == name or host.endswith("." + name))


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port`` or ``1.2.3.4:port``; a bare IPv6 address has no port."""
    if entry.startswith("["):
        inner, _, after = entry.partition("]")
        port = after.removeprefix(":")
        return inner + "]", int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None
