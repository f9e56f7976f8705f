"""Every URL the tool accepts, parsed once: what is checked is exactly what is connected to.

The API endpoint, the state backend's endpoint and a proxy (from a flag, the environment, a
manifest or a saved plan) all go through ``_parse``. ``Endpoint.url`` is rebuilt from the
parsed parts alone, so requests, urllib3 and botocore never see the text as given and cannot
read another host out of it than the one checked here.

The grammar is narrower than RFC 3986 on purpose: whatever two parsers could read differently
is refused with a ``UsageError`` naming where the URL came from, before any connection. That
is a backslash, userinfo (``user@``), whitespace, control or non-ASCII characters,
percent-encoding, a query or fragment, an empty host, a port that is not 1-65535 in plain
digits, and IPv4 shorthand that resolvers expand (``127.1``, ``0x7f.1``, ``2130706433``,
``0177.0.0.1``). Plain ``http://`` is accepted only for loopback hosts (127.0.0.0/8, ::1,
localhost): every request carries a signature, state or a private key.

``redirect_note`` names where a 3xx answer pointed (its ``Location`` host, escaped): no
redirect is ever followed, since the request carries a signature and the answer is trusted.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.textsafe``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from reconciler.errors import UsageError
from reconciler.model import Secret
from reconciler.textsafe import printable

MAX_LENGTH = 2048
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DOTTED = re.compile(r"[0-9.]+")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_IPV6 = re.compile(r"[0-9a-fA-F:.]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})+")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_FORM = "scheme://host[:port][/path], e.g. https://ecs.cn-north-4.myhuaweicloud.com"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also as ::ffff:127.x.x.x) and localhost."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A URL reduced to the parts that decide where bytes go; ``url`` is built from them only."""

    scheme: str  # "http" | "https"
    host: str  # a lower-case DNS name, a dotted quad, or an IPv6 address (no brackets)
    port: int | None = None  # as given; None: the scheme's default
    path: str = ""  # "" or "/prefix" without a trailing slash

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if self.scheme == "https" else 80

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy URL; its user and password (if any) stay a ``Secret`` and are never shown."""

    endpoint: Endpoint
    userinfo: Secret | None = None

    @property
    def shown(self) -> str:
        """scheme://host:port, for messages and the debug log."""
        e = self.endpoint
        host = f"[{e.host}]" if ":" in e.host else e.host
        return f"{e.scheme}://{host}:{e.effective_port}"

    def connect_url(self) -> str:
        """The URL handed to the HTTP library, credentials included (never log it)."""
        e = self.endpoint
        auth = f"{self.userinfo.reveal()}@" if self.userinfo is not None else ""
        return f"{e.scheme}://{auth}{e.authority}"


def redirect_note(status: int, location: str | None) -> str:
    """"HTTP 307, a redirect to HOST (not followed)" for a 3xx answer, the host escaped."""
    if not location:
        where = "without a Location"
    else:
        try:
            host = urlsplit(location.strip()).hostname
        except ValueError:
            host = None
        where = (f"to host {printable(host)[:100]}" if host
                 else "to a path on the same host" if location.startswith("/")
                 else f"to {printable(location)[:100]}")
    return f"HTTP {status}, a redirect {where} (never followed)"


def parse_endpoint(text: str, *, what: str) -> Endpoint:
    """An API or object store endpoint; no scheme means https (as the SDK does).

    ``what`` says where the text came from (``--endpoint``, ``RECONCILER_ENDPOINT``,
    ``provider.endpoint in FILE:LINE:COL``...) for the error message.
    """
    endpoint, _ = _parse(text, what=what, default_scheme="https", userinfo=False)
    if endpoint.scheme == "http" and not endpoint.loopback:
        raise UsageError(
            f"{what}: refusing plain http:// for host {endpoint.host!r}: the requests would "
            "carry signed credentials and state in the clear; use https:// (http:// is "
            "accepted only for loopback hosts: 127.0.0.0/8, ::1, localhost)."
        )
    return endpoint


def parse_proxy(text: str, *, what: str) -> Proxy:
    """A proxy from ``HTTPS_PROXY`` and the like; no scheme means http, as curl reads it."""
    endpoint, userinfo = _parse(text, what=what, default_scheme="http", userinfo=True)
    if endpoint.path:
        _refuse(what, text, "a proxy URL has no path")
    return Proxy(endpoint=endpoint, userinfo=userinfo)


def _shown(text: str) -> str:
    """The text for a message: escaped (no terminal control), and never a password."""
    if "@" in text:
        return "(the URL is not shown: it has an '@', so it may hold a password)"
    clipped = text if len(text) <= 200 else text[:200] + "..."
    return ascii(clipped)


def _refuse(what: str, text: str, reason: str) -> NoReturn:
    raise UsageError(f"{what}: {_shown(text)} is not a URL reconciler can use unambiguously: "
                     f"{reason}. Give {_FORM}.")


def _parse(text: str, *, what: str, default_scheme: str,
           userinfo: bool) -> tuple[Endpoint, Secret | None]:
    """The one parser: characters, scheme, authority, path, in that order."""
    if not text:
        _refuse(what, text, "it is empty")
    if len(text) > MAX_LENGTH:
        _refuse(what, text, f"it is longer than {MAX_LENGTH} characters")
    _check_characters(text, what=what)
    match = _SCHEME.match(text)
    if match:
        scheme, rest = match.group(1).lower(), text[match.end():]
    elif "://" in text:
        _refuse(what, text, "the part before '://' is not a scheme")
    else:
        scheme, rest = default_scheme, text
    if scheme not in ("http", "https"):
        _refuse(what, text, f"the scheme {scheme}:// is not http:// or https://")
    authority, slash, path = rest.partition("/")
    secret: Secret | None = None
    if "@" in authority:
        if not userinfo:
            _refuse(what, text, "it has a user name or password before '@'; an endpoint takes "
                                "no credentials (they come from the environment)")
        info, _, authority = authority.rpartition("@")
        if not _USERINFO.fullmatch(info):
            _refuse(what, text, "the user:password before '@' must be percent-encoded")
        secret = Secret(info)
    host, port = _host_and_port(authority, what=what, text=text)
    return Endpoint(scheme=scheme, host=host, port=port,
                    path=_path(slash + path, what=what, text=text)), secret


def _check_characters(text: str, *, what: str) -> None:
    for char in text:
        code = ord(char)
        if char == "\\":
            _refuse(what, text, "it has a backslash, which some clients read as '/' and "
                                "others as part of the host")
        if code > 0x7E:
            _refuse(what, text, f"it has a non-ASCII or control character (U+{code:04X}); "
                                "write an internationalised host name in its xn-- form")
        if code <= 0x20:
            _refuse(what, text, f"it has whitespace or a control character (U+{code:04X})")
        if char in "?#":
            _refuse(what, text, "it has a query or fragment ('?' or '#'), which an endpoint "
                                "cannot have")


def _host_and_port(authority: str, *, what: str, text: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        inner, closed, after = authority[1:].partition("]")
        if not closed or not _IPV6.fullmatch(inner):
            _refuse(what, text, "an IPv6 host goes in brackets, e.g. http://[::1]:8080")
        try:
            host = ipaddress.IPv6Address(inner).compressed
        except ValueError:
            _refuse(what, text, f"[{inner}] is not an IPv6 address")
        if after and not after.startswith(":"):
            _refuse(what, text, "only ':PORT' may follow the ']' of an IPv6 host")
        return host, _port(after[1:], what=what, text=text) if after else None
    name, colon, port_text = authority.partition(":")
    if ":" in port_text:
        _refuse(what, text, "it has more than one ':' (an IPv6 host goes in brackets: [::1])")
    return _host(name, what=what, text=text), (
        _port(port_text, what=what, text=text) if colon else None)


def _port(text_port: str, *, what: str, text: str) -> int:
    if not _PORT.fullmatch(text_port) or int(text_port) > 65535:
        _refuse(what, text, f"the port {text_port!r} is not a number from 1 to 65535 "
                            "(plain digits, no sign or leading zero)")
    return int(text_port)


def _host(name: str, *, what: str, text: str) -> str:
    if not name:
        _refuse(what, text, "it has no host")
    lowered = name.lower()
    if _DOTTED.fullmatch(lowered):
        parts = lowered.split(".")
        if len(parts) != 4 or any(not p or (len(p) > 1 and p[0] == "0") or int(p) > 255
                                  for p in parts):
            _refuse(what, text, f"{name!r} is not an IPv4 address written as four decimal "
                                "numbers 0-255 without leading zeros, e.g. 127.0.0.1")
        return lowered
    labels = lowered.removesuffix(".").split(".")
    if len(lowered) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        _refuse(what, text, f"the host {name!r} is not a DNS name (letters, digits and '-' in "
                            "dot-separated labels), an IPv4 address or a bracketed IPv6 address")
    if not labels[-1][0].isalpha():
        _refuse(what, text, f"the host {name!r} ends in a label that does not start with a "
                            "letter; spell an IPv4 address in full (127.0.0.1, not 127.1 "
                            "or 0x7f.1)")
    return lowered


def _path(path: str, *, what: str, text: str) -> str:
    trimmed = path.rstrip("/")
    if not trimmed:
        return ""
    for segment in trimmed[1:].split("/"):
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            _refuse(what, text, "the path may hold only letters, digits and '-._~' between "
                                "single slashes (no '..', '%', '@' or '//')")
    return trimmed
