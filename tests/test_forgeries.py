"""The forgery corpus through the rules alone (no servers): nothing forged passes as staff.

tests/test_staffproof_integration.py sends the same corpus through real SMTP, Dovecot
and IMAP APPEND, with the SMTP server stamping Authentication-Results.
"""

import pytest

from tests.forgeries import World, forgeries, genuine, verdict

WORLD = World()


@pytest.mark.parametrize("scenario", forgeries(WORLD), ids=lambda s: s.name)
def test_no_forgery_is_proven(scenario):
    # As written by the forger, before any server: no trace of ours, so Authentication-Results count for nothing.
    result = verdict(WORLD, scenario.raw)
    assert not result.proven, result
    assert result.reasons


@pytest.mark.parametrize("scenario", [s for s in genuine(WORLD) if s.proven_by != "authentication-results"],
                         ids=lambda s: s.name)
def test_genuine_staff_mail_is_proven(scenario):
    result = verdict(WORLD, scenario.raw)
    assert result.proven and result.method == scenario.proven_by, result


def test_the_removed_member_was_proven_while_on_staff():
    # The same key that proves nothing now proved its owner before they left: the list decides.
    [s] = [s for s in forgeries(WORLD) if "removed from staff" in s.name]
    assert verdict(WORLD, s.raw, staff=WORLD.staff | {WORLD.removed}).proven


def test_reasons_say_what_was_wrong():
    by_name = {s.name: verdict(WORLD, s.raw) for s in forgeries(WORLD)}
    assert "is for OA-7, not OA-12" in by_name["a reply key for another thread"].reasons[0]
    assert "not young@staff.example.test's" in by_name["another staff member's reply key"].reasons[0]
    assert "is not staff" in by_name["the key of someone removed from staff"].reasons[0]
    assert "not aligned" in by_name["dkim=pass for an unaligned domain (the forger's own)"].reasons[-1]
    assert "unsigned" in by_name["a genuine signed staff mail re-filed with an unsigned In-Reply-To on top"].reasons[-1]
    assert "body hash" in by_name["a genuine signed staff mail with a line added to its body"].reasons[-1]
