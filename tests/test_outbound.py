"""tasks/core/outbound.py against real local servers: the address rules, the pinned address,
redirects, the one deadline, the byte cap, TLS to a name over a checked address; Retry-After
read in one place and retries kept under the visibility timeout; the settings behind them.

Every request goes to 127.0.0.1, opened for the test by the allowlist or by a resolver that
the test controls (no name is looked up outside this machine).
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from settings import Settings, load_settings
from settings.errors import ConfigError
from tasks.core import outbound
from tasks.core.addresses import Allowlist, refusal_reason
from tasks.core.delivery import MAX_RETRY_AFTER, RateLimited, retry_after_seconds
from tasks.core.outbound import OutboundPolicy
from tasks.errors import OutboundRefused, OutboundTimeout, OutboundTooLarge, OutboundUnreachable
from tasks.worker.celery_app import retry_countdown
from tests.fakes.outbound_target import outbound_target

LOCAL = ("127.0.0.1",)

ADDRESSES = [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("::1", "a loopback address"),
    ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped IPv6
    ("::ffff:7f00:1", "a loopback address"),
    ("2002:7f00:1::1", "a loopback address"),  # 6to4 around 127.0.0.1
    ("64:ff9b::7f00:1", "a loopback address"),  # NAT64 around 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 around 169.254.169.254
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("192.168.1.1", "a private address"),
    ("::ffff:192.168.1.1", "a private address"),
    ("fc00::1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("169.254.169.254", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),
    ("0.1.2.3", "an unspecified address"),
    ("::", "an unspecified address"),
    ("100.64.0.1", "a shared (carrier-grade NAT) address"),
    ("240.0.0.1", "a private address"),  # reserved 240/4 is also in Python's private list
    ("255.255.255.255", "a private address"),
    ("192.0.2.1", "a private address"),  # documentation range
    ("2001:db8::1", "a private address"),
    ("::127.0.0.1", "a reserved address"),  # deprecated IPv4-compatible form
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),  # NAT64 to a public address is public
]


@pytest.mark.parametrize(("address", "reason"), ADDRESSES)
def test_address_rules(address: str, reason: str | None) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


def test_allowlist_opens_names_and_networks_only() -> None:
    allow = Allowlist.parse(["127.0.0.1", "10.0.0.0/8", "Hooks.Internal.", "fd00::/8"])
    loopback, private = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.9.9.9")
    assert allow.allows("x", loopback) and allow.allows("x", private)
    assert not allow.allows("x", ipaddress.ip_address("127.0.0.2"))
    assert allow.allows("hooks.internal", ipaddress.ip_address("192.168.0.1"))
    assert allow.allows("fd00::5", ipaddress.ip_address("fd00::5"))
    assert not allow.allows("x", ipaddress.ip_address("::ffff:10.0.0.1"))  # as written only


@pytest.mark.parametrize(("url", "words"), [
    ("http://127.0.0.1:6379/", "webhook address 127.0.0.1 is a loopback address; only public "
     "addresses are allowed (an operator can allow it with IMAGINE_OUTBOUND_ALLOW)"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[::1]:8080/", "address ::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
    ("http://0.0.0.0:8080/", "an unspecified address"),
    ("http://localhost:9/", "127.0.0.1 (what localhost resolves to) is a loopback address"),
    ("ftp://example.com/x", "webhook URL must start with http:// or https://"),
    ("file:///etc/passwd", "must start with http:// or https://"),
    ("http://user:secret@example.com/", "must not contain a user name or password"),
    ("http://exa mple.com/", "spaces or control characters"),
    ("http://example.com:99999/", "not a valid URL"),
    ("http:///path", "has no host name"),
])
def test_refused_before_anything_is_sent(url: str, words: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        outbound.check_url(url, OutboundPolicy(), what="webhook")
    assert words in refused.value.message
    assert not refused.value.retryable


def resolver(answers: dict[str, Sequence[str]], calls: list[str]
             ) -> Callable[[str, int], Sequence[str]]:
    """A DNS the test controls; `answers[name]` is popped per lookup when it is a list of
    lists (a rebinding server), else the same every time."""
    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        answer = answers[host]
        if answer and isinstance(answer[0], list):
            return answer.pop(0)  # type: ignore[return-value, attr-defined]
        return answer
    return resolve


def test_connects_to_the_address_it_checked_with_the_name_in_host() -> None:
    """A rebinding DNS answers an allowed address first and the metadata service after: one
    lookup, and the connection goes where the check said."""
    calls: list[str] = []
    answers = {"hooks.test": [["127.0.0.1"], ["169.254.169.254"]]}
    policy = OutboundPolicy(allow=LOCAL, resolver=resolver(answers, calls))  # type: ignore[arg-type]
    with outbound_target() as target:
        response = outbound.request("POST", f"http://hooks.test:{target.port}/ok?a=1",
                                    policy=policy, body=b"{}", headers={"X-A": "b"})
        assert response.status == 200 and response.body == b'{"ok": true}'
        assert calls == ["hooks.test"]
        [hit] = target.hits
        assert hit.headers["Host"] == f"hooks.test:{target.port}" and hit.path == "/ok?a=1"
        assert hit.method == "POST" and hit.body == b"{}" and hit.headers["X-A"] == "b"
        # Next request, next lookup: the rebinding answer is refused, nothing is sent.
        with pytest.raises(OutboundRefused, match="169.254.169.254 .what hooks.test resolves"):
            outbound.request("GET", f"http://hooks.test:{target.port}/ok", policy=policy)
        assert len(target.hits) == 1


def test_only_allowed_addresses_of_a_name_are_used() -> None:
    calls: list[str] = []
    policy = OutboundPolicy(allow=LOCAL, resolver=resolver(
        {"mixed.test": ["10.0.0.7", "127.0.0.1"]}, calls))
    with outbound_target() as target:
        assert outbound.check_url(f"http://mixed.test:{target.port}/", policy).addresses == LOCAL
        assert outbound.request("GET", f"http://mixed.test:{target.port}/ok",
                                policy=policy).status == 200
    allowed_by_name = OutboundPolicy(allow=("mixed.test",), resolver=policy.resolver)
    assert outbound.check_url("http://mixed.test/", allowed_by_name).addresses == (
        "10.0.0.7", "127.0.0.1")


def test_names_that_do_not_resolve_are_retryable() -> None:
    def broken(host: str, port: int) -> Sequence[str]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(OutboundUnreachable, match="webhook host nowhere.test does not resolve") \
            as caught:
        outbound.check_url("http://nowhere.test/", OutboundPolicy(resolver=broken), "webhook")
    assert caught.value.retryable


def test_redirects_are_checked_hop_by_hop_and_capped() -> None:
    policy = OutboundPolicy(allow=LOCAL)
    with outbound_target() as target:
        base = target.url
        hop = f"{base}/redirect?to={base}/ok"
        assert outbound.request("GET", hop, policy=policy, follow_redirects=True).status == 200
        # POSTs are not redirected, and neither is anything by default.
        assert outbound.request("POST", hop, policy=policy, body=b"x",
                                follow_redirects=True).status == 302
        assert outbound.request("GET", hop, policy=policy).status == 302
        inward = f"{base}/redirect?to=http://169.254.169.254/latest/meta-data/"
        with pytest.raises(OutboundRefused, match="image redirect address 169.254.169.254"):
            outbound.request("GET", inward, policy=policy, what="image", follow_redirects=True)
        loop = f"{base}/redirect?to={base}/redirect?to={base}/redirect?to={base}/redirect"
        target.hits.clear()
        with pytest.raises(OutboundRefused, match="redirected more than 3 times"):
            outbound.request("GET", loop + "%3Fto%3D/ok", policy=policy, follow_redirects=True)
        assert len(target.hits) == 4


@pytest.mark.parametrize("path", ["/trickle-headers", "/trickle-body"])
def test_one_deadline_for_the_whole_exchange(path: str) -> None:
    """A byte every 0.2 s keeps each socket read short; the exchange still ends at 1 s."""
    policy = OutboundPolicy(allow=LOCAL, timeout=1.0)
    with outbound_target() as target:
        started = time.monotonic()
        with pytest.raises(OutboundTimeout, match="did not answer within 1 s") as caught:
            outbound.request("GET", target.url + path, policy=policy, what="webhook")
        assert 0.9 < time.monotonic() - started < 2.0
        assert caught.value.retryable


@pytest.mark.parametrize("path", ["/huge", "/huge-declared"])
def test_a_reply_is_read_up_to_the_cap(path: str) -> None:
    with outbound_target() as target:
        with pytest.raises(OutboundTooLarge, match="more than 1048576 bytes") as caught:
            outbound.request("GET", target.url + path, policy=OutboundPolicy(allow=LOCAL))
        assert caught.value.status == 200 and not caught.value.retryable
        assert target.sent < 32 * 1024 * 1024  # stopped long before 200 MiB
        with pytest.raises(OutboundTooLarge, match="more than 2048 bytes"):
            outbound.request("GET", target.url + path, policy=OutboundPolicy(allow=LOCAL),
                             max_bytes=2048)


def test_connection_refused_is_retryable() -> None:
    with outbound_target() as target:
        port = target.port
    with pytest.raises(OutboundUnreachable, match=f"127.0.0.1:{port} is unreachable") as caught:
        outbound.request("GET", f"http://127.0.0.1:{port}/", policy=OutboundPolicy(allow=LOCAL))
    assert caught.value.retryable


def _tls_pair(folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for `tls.test` signed by a fresh CA, and a client trusting that CA."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagine test CA")])

    def build(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(hours=1))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False))

    ca = build(ca_name, ca_key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), True).sign(ca_key, hashes.SHA256())
    leaf = (build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.test")]),
                  key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls.test")]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "leaf.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return server, ssl.create_default_context(cafile=str(folder / "ca.pem"))


def test_https_to_a_checked_address_verifies_the_name(tmp_path: Path) -> None:
    server, client = _tls_pair(tmp_path)
    calls: list[str] = []
    lookup = resolver({"tls.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}, calls)
    policy = OutboundPolicy(allow=LOCAL, resolver=lookup, ssl_context=client)
    with outbound_target(tls=server) as target:
        response = outbound.request("GET", f"https://tls.test:{target.port}/ok", policy=policy)
        assert response.status == 200 and target.sni == ["tls.test"]
        assert target.hits[0].headers["Host"] == f"tls.test:{target.port}"
        with pytest.raises(OutboundUnreachable, match="does not verify") as caught:
            outbound.request("GET", f"https://other.test:{target.port}/ok", policy=policy)
        assert not caught.value.retryable and len(target.hits) == 1


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def test_retry_after_is_read_in_one_place() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 2.5 ") == 2.5
    assert retry_after_seconds(None) == 5.0 and retry_after_seconds("", default=1) == 1
    assert 100 < retry_after_seconds(http_date(120)) <= 120
    assert retry_after_seconds(http_date(-60)) == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    for garbage in ("soon", "Wed, 99 Foo 2015", "nan", "inf", "-inf", "1e400"):
        assert retry_after_seconds(garbage, default=7) == 7, garbage
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("86400") == MAX_RETRY_AFTER == 900
    assert retry_after_seconds(http_date(7200)) == MAX_RETRY_AFTER
    assert RateLimited(10**9).retry_after == MAX_RETRY_AFTER
    assert RateLimited(float("nan")).retry_after == MAX_RETRY_AFTER
    assert RateLimited(-3).retry_after == 0.0


def test_retries_wait_less_than_the_visibility_timeout() -> None:
    """A countdown past it would have Redis hand the message to a second worker."""
    short = Settings(_env_file=None, visibility_timeout=3)  # type: ignore[call-arg]
    assert retry_countdown(short, 900) == 2 and retry_countdown(short, 1.5) == 1.5
    default = Settings(_env_file=None)  # type: ignore[call-arg]
    assert default.visibility_timeout is None  # job_timeout 600 + 60
    assert retry_countdown(default, MAX_RETRY_AFTER) == 600
    assert retry_countdown(default, 30) == 30 and retry_countdown(default, -1) == 0


def test_settings_of_the_outbound_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_OUTBOUND_ALLOW", " 127.0.0.1, Hooks.Internal. ,10.0.0.0/8,,::1")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.outbound_allow == ("127.0.0.1", "hooks.internal", "10.0.0.0/8", "::1")
    assert (settings.outbound_timeout, settings.outbound_max_bytes) == (10.0, 1024 * 1024)
    assert settings.webhook_secret is None and settings.webhook_concurrency == 4
    policy = OutboundPolicy.from_settings(settings)
    assert policy.timeout == 10.0 and policy.allowlist.hosts == {"hooks.internal"}
    for name, value, words in (
            ("IMAGINE_OUTBOUND_ALLOW", "http://x/", "neither a host name nor an IP network"),
            ("IMAGINE_WEBHOOK_SECRET", "", "IMAGINE_WEBHOOK_SECRET='' is invalid"),
            ("IMAGINE_WEBHOOK_SECRET", "  ", "is empty"),
            ("IMAGINE_OUTBOUND_TIMEOUT", "0", "IMAGINE_OUTBOUND_TIMEOUT"),
            ("IMAGINE_WEBHOOK_CONCURRENCY", "0", "IMAGINE_WEBHOOK_CONCURRENCY")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
            load_settings(_env_file=None)
        monkeypatch.delenv(name)
