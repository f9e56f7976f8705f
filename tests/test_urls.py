"""The one URL parser (``reconciler.urls``) and the proxy choice (``reconciler.proxies``).

The property that matters: whatever the text, either a ``UsageError``, or an ``Endpoint`` whose
``url`` every parser downstream (urllib3, which requests and botocore use, and the standard
library's ``urlsplit``) reads as the same scheme, host and port, with plain http only to a
loopback host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from reconciler.errors import UsageError
from reconciler.model import Secret
from reconciler.proxies import bypass_entry, choose_proxy
from reconciler.urls import Endpoint, is_loopback, parse_endpoint, parse_proxy

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that confuse one parser or another, and pieces of ordinary URLs around them.
TOKENS = [
    "http://", "https://", "HTTP://", "ftp://", "//", "://", "http:", "127.0.0.1", "127.0.0.2",
    "127.1", "0x7f.1", "2130706433", "0177.0.0.1", "localhost", "LOCALHOST.", "evil.example",
    "ecs.cn-north-4.myhuaweicloud.com", "[::1]", "[::ffff:127.0.0.1]", "[2001:db8::1]", "[",
    "]", "::1", ":", ":8080", ":0", ":65536", ":+80", ":080", ":1", ":443", "@", "user:pw@",
    "\\", "\\@", "/", "/v3", "/..", "/.", "%", "%2e", "%40", "%00", "?", "#", "#@", " ",
    "\t", "\n", "\r", "\x00", "\x7f", "\x1b[31m", "\u00e9", "\u0430", "\u2024", "\uff0e",
    "\u202e", "a", "-", ".", "_", "~", "1", "x--y", "xn--80ak6aa92e.com",
]
URLISH = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=10).map("".join)
ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
HOSTS = ["127.0.0.1", "127.0.0.2", "localhost", "[::1]", "evil.example", "10.0.0.1", "Obs",
         "ecs.cn-north-4.myhuaweicloud.com", "[2001:db8::1]", "xn--80ak6aa92e.com"]


@st.composite
def _well_formed_with_one_twist(draw: st.DrawFn) -> str:
    """A URL that would be accepted, with (most of the time) one token pushed into it."""
    scheme = draw(st.sampled_from(["", "http://", "https://", "HTTPS://"]))
    host = draw(st.sampled_from(HOSTS))
    port = draw(st.sampled_from(["", ":1", ":443", ":8080", ":65535"]))
    path = draw(st.sampled_from(["", "/", "/v3", "/a/b/", "/a-b_c.d~e"]))
    url = scheme + host + port + path
    if draw(st.booleans()):
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.sampled_from(TOKENS)) + url[at:]
    return url


STRUCTURED = _well_formed_with_one_twist()


def _urllib3_host(url: str) -> tuple[str | None, str | None, int | None]:
    parsed = parse_url(url)
    host = parsed.host.strip("[]").lower() if parsed.host else None
    return parsed.scheme, host, parsed.port


def _agrees(endpoint: Endpoint) -> None:
    """urllib3, urlsplit and requests' own preparation all read the parsed parts back."""
    url = endpoint.url
    assert _urllib3_host(url) == (endpoint.scheme, endpoint.host, endpoint.port), url
    split = urlsplit(url)
    assert (split.scheme, split.hostname, split.port) == (
        endpoint.scheme, endpoint.host, endpoint.port), url
    assert split.username is None and split.password is None and not split.query
    prepared = requests.Request("GET", url + "/v3/p/keypairs").prepare().url
    assert prepared is not None and _urllib3_host(prepared)[1:] == (endpoint.host, endpoint.port)
    assert parse_endpoint(url, what="again") == endpoint  # a fixed point
    assert url.isascii() and url.isprintable() and not any(c in url for c in "\\@%?# ")
    if endpoint.scheme == "http":
        assert is_loopback(endpoint.host), url


@SETTINGS
@given(st.one_of(URLISH, STRUCTURED, ANY_TEXT))
def test_every_text_is_refused_or_parsed_as_every_client_reads_it(text: str) -> None:
    try:
        endpoint = parse_endpoint(text, what="--endpoint")
    except UsageError as exc:
        message = str(exc)
        assert message.startswith("--endpoint: "), message
        assert message.isprintable() and message.isascii(), message  # nothing for a terminal
        return
    _agrees(endpoint)


@SETTINGS
@given(st.one_of(URLISH, STRUCTURED, ANY_TEXT))
def test_every_proxy_text_is_refused_or_parsed_and_its_password_never_shown(text: str) -> None:
    try:
        proxy = parse_proxy(text, what="HTTPS_PROXY")
    except UsageError as exc:
        assert "@" not in str(exc) or "'@'" in str(exc), str(exc)
        return
    e = proxy.endpoint
    assert _urllib3_host(proxy.connect_url()) == (e.scheme, e.host, e.port)
    assert "@" not in proxy.shown and "@" not in repr(proxy)


ACCEPTED = [
    ("https://ecs.cn-north-4.myhuaweicloud.com", "https://ecs.cn-north-4.myhuaweicloud.com"),
    ("ECS.cn-north-4.MyHuaweiCloud.com", "https://ecs.cn-north-4.myhuaweicloud.com"),
    ("HTTPS://Example.COM:8443/", "https://example.com:8443"),
    ("https://gw.example.com/huawei/api//", "https://gw.example.com/huawei/api"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://127.255.0.9", "http://127.255.0.9"),
    ("http://localhost:1", "http://localhost:1"),
    ("http://localhost.:65535", "http://localhost.:65535"),
    ("http://[::1]:9", "http://[::1]:9"),
    ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
    ("http://[::ffff:127.0.0.1]:80", "http://[::ffff:7f00:1]:80"),
    ("https://[2001:DB8::1]", "https://[2001:db8::1]"),
    ("https://10.0.0.1", "https://10.0.0.1"),
    ("https://obs", "https://obs"),
    ("https://xn--80ak6aa92e.com", "https://xn--80ak6aa92e.com"),
]


@pytest.mark.parametrize(("text", "url"), ACCEPTED)
def test_ordinary_endpoints_are_accepted_and_normalised(text: str, url: str) -> None:
    endpoint = parse_endpoint(text, what="--endpoint")
    assert endpoint.url == url
    _agrees(endpoint)


REFUSED = [
    # the examples: a second host hidden after a backslash, an '@' or a '#'
    ("http://127.0.0.1:1\\@127.0.0.2:2/", "backslash"),
    ("http://127.0.0.1\\evil.example/", "backslash"),
    ("http://127.0.0.2:2#@127.0.0.1:1", "query or fragment"),
    ("http://127.0.0.1:1?@evil.example", "query or fragment"),
    ("http://evil.example@127.0.0.1:1", "before '@'"),
    ("http://user:pw@127.0.0.1:1", "before '@'"),
    ("https://127.0.0.1:1/@evil.example", "the path may hold only"),
    # whitespace, control and non-ASCII characters
    (" https://example.com", "whitespace"),
    ("https://example.com\n", "whitespace"),
    ("https://exa\tmple.com", "whitespace"),
    ("https://example.com\x00.evil", "control character"),
    ("https://example.com\x7f", "non-ASCII or control"),
    ("https://ex\u0430mple.com", "non-ASCII"),
    ("https://example\uff0ecom", "non-ASCII"),
    ("https://\x1b[31mred", "control character"),
    # percent-encoding, paths that normalise away
    ("https://example%2ecom", "not a DNS name"),
    ("https://example.com/%2e%2e/x", "the path may hold only"),
    ("https://example.com/a/../b", "the path may hold only"),
    ("https://example.com//evil.example", "the path may hold only"),
    # empty or odd hosts
    ("", "empty"),
    ("https://", "no host"),
    ("https://:443", "no host"),
    ("https:///path", "no host"),
    ("https://exa_mple.com", "not a DNS name"),
    ("https://-example.com", "not a DNS name"),
    ("https://example..com", "not a DNS name"),
    ("https://" + "a" * 64 + ".com", "not a DNS name"),
    ("http://127.1", "IPv4"),
    ("http://2130706433", "IPv4"),
    ("http://0177.0.0.1", "IPv4"),
    ("http://127.0.0.01", "IPv4"),
    ("http://127.0.0.256", "IPv4"),
    ("http://127.0.0.1.", "IPv4"),
    ("http://0x7f.1", "does not start with a letter"),
    ("http://0x7f000001", "does not start with a letter"),
    ("http://1.0x7f", "does not start with a letter"),
    ("http://::1", "more than one ':'"),
    ("http://[::1", "brackets"),
    ("http://[::1%25eth0]", "brackets"),
    ("http://[fe80::1%eth0]", "brackets"),
    ("http://[::1]x", "only ':PORT'"),
    ("http://[127.0.0.1]", "not an IPv6 address"),
    # odd ports
    ("https://example.com:", "the port ''"),
    ("https://example.com:0", "the port '0'"),
    ("https://example.com:65536", "the port '65536'"),
    ("https://example.com:+443", "the port '+443'"),
    ("https://example.com:0443", "the port '0443'"),
    ("https://example.com:44a", "the port '44a'"),
    ("https://example.com:1:2", "more than one ':'"),
    # schemes
    ("ftp://example.com", "the scheme ftp://"),
    ("file:///etc/passwd", "the scheme file://"),
    ("1http://example.com", "not a scheme"),
    # plain http to anything but loopback
    ("http://example.com", "refusing plain http://"),
    ("http://localhost.example.com", "refusing plain http://"),
    ("http://192.0.2.10:8080", "refusing plain http://"),
    ("http://[2001:db8::1]", "refusing plain http://"),
    ("http://[::ffff:192.0.2.1]", "refusing plain http://"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_ambiguous_or_unsafe_endpoints_are_usage_errors_naming_their_source(
    text: str, reason: str
) -> None:
    with pytest.raises(UsageError) as caught:
        parse_endpoint(text, what="RECONCILER_ENDPOINT")
    message = str(caught.value)
    assert message.startswith("RECONCILER_ENDPOINT: "), message
    assert reason in message, message
    assert "https://" in message  # says what to write instead
    assert "\x1b" not in message and "\n" not in message and "\x00" not in message


def test_a_refused_url_with_an_at_sign_is_not_echoed() -> None:
    with pytest.raises(UsageError) as caught:
        parse_endpoint("https://admin:hunter2@example.com", what="--endpoint")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        parse_proxy("http://me:hunter2@proxy.example:3128/path", what="HTTPS_PROXY")
    assert "hunter2" not in str(caught.value)


def test_a_proxy_keeps_its_password_secret() -> None:
    proxy = parse_proxy("me:s%40cret@Proxy.Example:3128", what="HTTPS_PROXY")
    assert proxy.endpoint == Endpoint("http", "proxy.example", 3128)
    assert proxy.userinfo == Secret("me:s%40cret")
    assert proxy.connect_url() == "http://me:s%40cret@proxy.example:3128"
    assert proxy.shown == "http://proxy.example:3128"
    assert "cret" not in repr(proxy) and "cret" not in str(proxy)
    assert parse_proxy("https://[::1]", what="ALL_PROXY").shown == "https://[::1]:443"
    for bad in ("socks5://proxy.example:1080", "http://a@b@proxy.example", "http://pr oxy"):
        with pytest.raises(UsageError, match=r"^HTTPS_PROXY: "):
            parse_proxy(bad, what="HTTPS_PROXY")


REMOTE = parse_endpoint("https://ecs.cn-north-4.myhuaweicloud.com", what="t")


@pytest.mark.parametrize(("no_proxy", "entry"), [
    ("*", "*"),
    ("myhuaweicloud.com", "myhuaweicloud.com"),
    ("localhost, .myhuaweicloud.com", ".myhuaweicloud.com"),
    ("*.cn-north-4.myhuaweicloud.com", "*.cn-north-4.myhuaweicloud.com"),
    ("ECS.CN-NORTH-4.MYHUAWEICLOUD.COM:443", "ecs.cn-north-4.myhuaweicloud.com:443"),
    ("huaweicloud.com", None),  # not a label boundary: myhuaweicloud.com is another name
    ("ecs.cn-north-4.myhuaweicloud.com:8443", None),
    ("example.com,,", None),
    ("", None),
])
def test_no_proxy_matches_names_on_label_boundaries(no_proxy: str, entry: str | None) -> None:
    assert bypass_entry(REMOTE, no_proxy) == entry


def test_no_proxy_matches_addresses_and_ranges() -> None:
    v4 = parse_endpoint("https://10.1.2.3:8443", what="t")
    v6 = parse_endpoint("https://[2001:db8::5]", what="t")
    assert bypass_entry(v4, "10.0.0.0/8") == "10.0.0.0/8"
    assert bypass_entry(v4, "10.1.2.3:8443") == "10.1.2.3:8443"
    assert bypass_entry(v4, "10.1.2.3:443, 11.0.0.0/8, 10.1.2") is None
    assert bypass_entry(v6, "2001:db8::/32") == "2001:db8::/32"
    assert bypass_entry(v6, "[2001:db8::5]:443") == "[2001:db8::5]:443"
    assert bypass_entry(v6, "2001:db8::6") is None


def test_the_proxy_comes_from_the_injected_environment() -> None:
    environ = {"HTTPS_PROXY": "http://upper.example:1", "https_proxy": "lower.example:2",
               "ALL_PROXY": "http://all.example:3"}
    choice = choose_proxy(REMOTE, environ)
    assert choice.proxy is not None and choice.proxy.shown == "http://lower.example:2"
    assert choice.because == "https_proxy"
    assert choice.proxies() == {"https": "http://lower.example:2"}
    assert "through the proxy http://lower.example:2 (from https_proxy)" in choice.describe()
    only_all = choose_proxy(REMOTE, {"ALL_PROXY": "http://u:pw@all.example:3"})
    assert only_all.proxies() == {"https": "http://u:pw@all.example:3"}
    assert "pw" not in only_all.describe() and "all.example:3" in only_all.describe()
    assert choose_proxy(REMOTE, {}).proxies() == {}
    assert "not set" in choose_proxy(REMOTE, {"HTTPS_PROXY": "  "}).describe()
    bypassed = choose_proxy(REMOTE, {**environ, "NO_PROXY": ".myhuaweicloud.com"})
    assert bypassed.proxy is None and "NO_PROXY has '.myhuaweicloud.com'" in bypassed.describe()
    with pytest.raises(UsageError, match=r"^HTTPS_PROXY: .*backslash"):
        choose_proxy(REMOTE, {"HTTPS_PROXY": "http://127.0.0.1:1\\@evil.example:2"})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.9.9.9"])
def test_a_loopback_endpoint_is_never_proxied(host: str) -> None:
    endpoint = parse_endpoint(f"http://{host}:8080", what="t")
    choice = choose_proxy(endpoint, {"HTTP_PROXY": "http://proxy.example:3128",
                                     "HTTPS_PROXY": "http://proxy.example:3128",
                                     "ALL_PROXY": "http://proxy.example:3128"})
    assert choice.proxy is None and choice.proxies() == {}
    assert "loopback" in choice.describe()
