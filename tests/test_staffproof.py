"""The staff-proof decision, table by table: what each proof says, and what the verdict is."""

import pytest

from workflows.replykeys import KeyCheck
from workflows.staffproof import AuthResult, AuthResultsReading, DkimSignature, aligned, judge

YOUNG = "young@devseed.example"
STAFF = frozenset({YOUNG, "eric@devseed.example"})
MX = "mx.openatrium.example"


def ar(method, result, **props):
    return AuthResult(authserv_id=MX, method=method, result=result,
                      properties=tuple((k.replace("_", "."), v) for k, v in props.items()))


def reading(*results, notes=()):
    return AuthResultsReading(results=tuple(results), notes=tuple(notes))


@pytest.mark.parametrize("d, f, ok", [
    ("devseed.example", "devseed.example", True),
    ("DEVSEED.example.", "devseed.example", True),
    ("devseed.example", "mail.devseed.example", True),  # parent signs for a subdomain
    ("mail.devseed.example", "devseed.example", True),  # relaxed alignment
    ("evil.example", "devseed.example", False),
    ("evildevseed.example", "devseed.example", False),  # a suffix of letters is not a parent domain
    ("example", "devseed.example", False),  # a bare TLD never aligns
    ("", "devseed.example", False),
])
def test_aligned(d, f, ok):
    assert aligned(d, f) is ok


@pytest.mark.parametrize("case, results, proven, how", [
    ("dmarc pass for the From domain", [ar("dmarc", "pass", header_from="devseed.example")], True,
     f"Authentication-Results from {MX} (dmarc=pass)"),
    ("dmarc pass for another domain", [ar("dmarc", "pass", header_from="evil.example")], False, ""),
    ("dmarc pass naming no domain", [ar("dmarc", "pass")], False, ""),
    ("dkim pass aligned", [ar("dkim", "pass", header_d="devseed.example")], True, "dkim=pass d=devseed.example"),
    ("dkim pass aligned by header.i", [ar("dkim", "pass", header_i="@devseed.example")], True, "dkim=pass"),
    ("dkim pass for an unaligned domain", [ar("dkim", "pass", header_d="evil.example")], False, ""),
    ("dkim fail aligned", [ar("dkim", "fail", header_d="devseed.example")], False, ""),
    ("auth pass by that user", [ar("auth", "pass", smtp_auth=YOUNG)], True, f"auth=pass by {YOUNG}"),
    ("auth pass by someone else", [ar("auth", "pass", smtp_auth="mallory@devseed.example")], False, ""),
    ("spf pass alone says nothing about From", [ar("spf", "pass", smtp_mailfrom=YOUNG)], False, ""),
    ("dmarc fail outweighs an aligned dkim pass",
     [ar("dkim", "pass", header_d="devseed.example"), ar("dmarc", "fail", header_from="devseed.example")],
     False, ""),
    ("nothing", [], False, ""),
])
def test_authentication_results(case, results, proven, how):
    verdict = judge(from_addr=YOUNG, staff=STAFF, authresults=reading(*results))
    assert verdict.proven is proven, (case, verdict)
    if proven:
        assert verdict.method == "authentication-results" and how in verdict.how
    else:
        assert verdict.reasons and not verdict.how


@pytest.mark.parametrize("case, sigs, proven, temporary", [
    ("valid and aligned", [DkimSignature(domain="devseed.example", valid=True)], True, False),
    ("valid but unaligned", [DkimSignature(domain="evil.example", valid=True)], False, False),
    ("aligned but broken", [DkimSignature(domain="devseed.example", reason="body hash mismatch")], False, False),
    ("aligned, DNS down", [DkimSignature(domain="devseed.example", reason="timeout", temporary=True)], False, True),
    ("unaligned, DNS down: waiting would not help",
     [DkimSignature(domain="evil.example", reason="timeout", temporary=True)], False, False),
    ("a valid aligned one among others", [DkimSignature(domain="evil.example", valid=True),
                                          DkimSignature(domain="devseed.example", valid=True)], True, False),
    ("unsigned", [], False, False),
])
def test_dkim(case, sigs, proven, temporary):
    verdict = judge(from_addr=YOUNG, staff=STAFF, dkim=tuple(sigs))
    assert verdict.proven is proven, (case, verdict)
    assert verdict.temporary is temporary
    if proven:
        assert verdict.how == "DKIM d=devseed.example"


def test_order_and_reasons():
    key_ok = KeyCheck(proven=True, where="To", token="12k…")
    key_bad = KeyCheck(proven=False, reason="no reply key")
    good_ar = reading(ar("dmarc", "pass", header_from="devseed.example"))
    good_dkim = (DkimSignature(domain="devseed.example", valid=True),)
    assert judge(from_addr=YOUNG, staff=STAFF, key=key_ok, authresults=good_ar, dkim=good_dkim).how == \
        "reply key (To)"
    assert judge(from_addr=YOUNG, staff=STAFF, key=key_bad, authresults=good_ar).method == "authentication-results"
    assert judge(from_addr=YOUNG, staff=STAFF, key=key_bad, authresults=reading(), dkim=good_dkim).method == "dkim"
    unproven = judge(from_addr=YOUNG, staff=STAFF, key=key_bad, authresults=reading(notes=["nothing trusted"]),
                     dkim=())
    assert not unproven.proven and not unproven.method
    assert unproven.reasons == ("no reply key", "Authentication-Results: nothing trusted", "no DKIM signature")
    assert judge(from_addr=YOUNG, staff=STAFF).reasons == ("no proof is switched on",)


@pytest.mark.parametrize("sender", ["gone@devseed.example", "", "YOUNG@devseed.example.evil"])
def test_only_a_staff_address_can_be_proven(sender):
    # Every proof says yes, but the address is not (or no longer) on the staff list.
    verdict = judge(from_addr=sender, staff=STAFF, key=KeyCheck(proven=True, where="To"),
                    authresults=reading(ar("auth", "pass", smtp_auth=sender)),
                    dkim=(DkimSignature(domain="devseed.example", valid=True),))
    assert not verdict.proven and "is not staff" in verdict.reasons[0]


def test_upper_case_from_is_the_same_staff_member():
    assert judge(from_addr=YOUNG.upper(), staff=STAFF, key=KeyCheck(proven=True, where="To")).proven


def test_to_dict_for_the_timeline():
    d = judge(from_addr=YOUNG, staff=STAFF, key=KeyCheck(proven=True, where="Cc")).to_dict()
    assert d == {"proven": True, "address": YOUNG, "method": "reply-key", "how": "reply key (Cc)",
                 "reasons": [], "temporary": False}
