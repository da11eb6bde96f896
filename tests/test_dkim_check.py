"""partnerdesk's own DKIM check: signed with a local key, keys served by a dict or a real DNS server."""

from __future__ import annotations


import dns.resolver
import pytest

from mailbox.dkim_check import MAX_SIGNATURES, DnsTemporaryError, dns_lookup, verify
from tests.forgeries import DkimKey, World, message
from tests.loopdns import LoopbackDns

WORLD = World()
KEY = WORLD.staff_dkim


def signed(**kwargs) -> bytes:
    return KEY.sign(message(WORLD, sender=WORLD.young, text="Fixed.", in_reply_to=WORLD.ack_id, **kwargs))


def one(raw, dnsfunc=WORLD.dns):
    [sig] = verify(raw, dnsfunc=dnsfunc)
    return sig


def test_a_good_signature():
    sig = one(signed())
    assert (sig.valid, sig.domain, sig.selector, sig.reason) == (True, "staff.example.test", "s1", "")


def temporary(name, timeout=5):
    raise DnsTemporaryError("resolver timed out")


@pytest.mark.parametrize("case, raw, dnsfunc, reason, temp", [
    ("body changed", signed().replace(b"Fixed.", b"Fixed!"), WORLD.dns, "body hash mismatch", False),
    ("an unsigned In-Reply-To on top", b"In-Reply-To: <oa-7.ack.x@example.test>\r\n" + signed(), WORLD.dns,
     "leaves 1 of 2 In-Reply-To header(s) unsigned", False),
    ("a second Subject on top", b"Subject: [OA-7] other\r\n" + signed(), WORLD.dns,
     "leaves 1 of 2 Subject header(s) unsigned", False),
    ("signed without References though it has one",
     KEY.sign(message(WORLD, sender=WORLD.young, text="x", in_reply_to=WORLD.ack_id),
              headers=("from", "subject", "in-reply-to")), WORLD.dns, "References", False),
    ("no key published", signed(), lambda name, timeout=5: None, "missing public key", False),
    ("DNS down", signed(), temporary, "could not be looked up for now", True),
    ("signed by another key for the same name", DkimKey("staff.example.test").sign(message(
        WORLD, sender=WORLD.young, text="x")), WORLD.dns, "does not verify", False),
])
def test_what_does_not_count(case, raw, dnsfunc, reason, temp):
    sig = one(raw, dnsfunc)
    assert not sig.valid, case
    assert reason in sig.reason, (case, sig.reason)
    assert sig.temporary is temp
    assert sig.domain == "staff.example.test"


def test_partial_body_signature_is_refused():
    import dkim

    raw = message(WORLD, sender=WORLD.young, text="Fixed.")
    sig = dkim.sign(raw, b"s1", b"staff.example.test", KEY.private_pem, length=True,
                    include_headers=[b"from", b"subject"])
    assert "l= tag" in one(sig + raw + b"Log in at http://evil.example.test/\r\n").reason


def test_unsigned_and_unreadable():
    assert verify(message(WORLD, sender=WORLD.young, text="x"), dnsfunc=WORLD.dns) == ()
    sig = one(b"DKIM-Signature: this is no tag list\r\n" + message(WORLD, sender=WORLD.young, text="x"))
    assert not sig.valid and sig.domain == ""


def test_each_signature_is_reported_and_at_most_a_few_are_tried():
    raw = WORLD.evil_dkim.sign(signed())
    assert [(s.domain, s.valid) for s in verify(raw, dnsfunc=WORLD.dns)] == [
        ("evil.example.test", True), ("staff.example.test", True)]
    lookups = []
    many = message(WORLD, sender=WORLD.young, text="x")
    for _ in range(MAX_SIGNATURES + 3):
        many = KEY.sign(many)
    assert len(verify(many, dnsfunc=lambda n, timeout=5: lookups.append(n) or KEY.record)) == MAX_SIGNATURES
    assert len(lookups) == MAX_SIGNATURES


def test_the_default_lookup_against_a_real_dns_server():
    other = DkimKey("other.example.test")
    down = DkimKey("down.example.test")
    silent = DkimKey("silent.example.test")
    with LoopbackDns({KEY.dns_name.decode(): KEY.record}, servfail=[down.dns_name.decode()],
                     silent=[silent.dns_name.decode()]) as server:
        lookup = dns_lookup(server.resolver())
        assert lookup(KEY.dns_name) == KEY.record
        assert one(signed(), lookup).valid
        assert lookup(other.dns_name) is None  # NXDOMAIN: no key, a plain failure
        assert not one(other.sign(message(WORLD, sender=WORLD.young, text="x")), lookup).temporary
        with pytest.raises(DnsTemporaryError):
            lookup(down.dns_name)  # SERVFAIL: try again later
        assert one(down.sign(message(WORLD, sender=WORLD.young, text="x")), lookup).temporary
        with pytest.raises(DnsTemporaryError):
            lookup(silent.dns_name, timeout=0.5)  # no answer at all
