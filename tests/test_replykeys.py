"""Reply keys: minted per mail, recipient and thread; checked by computing them again."""

from datetime import datetime, timezone

import pytest

from workflows import msgids, replykeys
from workflows.model import InboundMail

SECRET = b"s" * 32
SUPPORT = "support@openatrium.example"
YOUNG, ERIC, GONE = "young@devseed.example", "eric@devseed.example", "gone@devseed.example"
STAFF = frozenset({YOUNG, ERIC})
AT = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)


def key(thread=12, address=YOUNG, seed="notify:OA-12:<m@x>"):
    return replykeys.mint(SECRET, thread_number=thread, address=address, seed=seed)


def mail(*, sender=YOUNG, to=(), cc=(), envelope_to=(), in_reply_to=(), references=()):
    return InboundMail(message_id="<r@devseed.example>", raw_sha256="0", received_at=AT, from_addr=sender,
                       to=tuple(to), cc=tuple(cc), envelope_to=tuple(envelope_to), in_reply_to=tuple(in_reply_to),
                       references=tuple(references))


def plus(token):
    return replykeys.reply_address(SUPPORT, token)


def test_key_shape_fits_a_local_part_and_survives_lower_casing():
    k = key()
    assert k == k.lower() and k.isalnum()
    assert len(k) <= replykeys.MAX_KEY_LEN
    assert replykeys.parse(k.upper()) == replykeys.parse(k)
    assert replykeys.is_valid(SECRET, k.upper(), address=YOUNG.upper())
    assert replykeys.parse(k).thread_number == 12
    longest = replykeys.mint(SECRET, thread_number=10**9 - 1, address=YOUNG, seed="x")
    assert len(longest) == replykeys.MAX_KEY_LEN
    assert len(replykeys.reply_address("a" * 29 + "@x.example", longest).partition("@")[0]) == 64


def test_keys_are_deterministic_per_mail_and_differ_between_mails_and_recipients():
    assert key() == key()
    assert key(seed="notify:OA-12:<other@x>") != key()
    assert key(address=ERIC) != key()
    assert replykeys.parse(key(address=ERIC)).nonce != replykeys.parse(key()).nonce


@pytest.mark.parametrize("token, address, secret, valid", [
    (key(), YOUNG, SECRET, True),
    (key(), ERIC, SECRET, False),  # another staff member's key
    (key(), YOUNG, b"t" * 32, False),  # another store's secret (or a rotated one)
    (key()[:-1] + ("a" if key()[-1] != "a" else "b"), YOUNG, SECRET, False),  # one character changed
    ("12k" + "a" * 24, YOUNG, SECRET, False),  # guessed
    ("not-a-key", YOUNG, SECRET, False),
    ("", YOUNG, SECRET, False),
])
def test_is_valid(token, address, secret, valid):
    assert replykeys.is_valid(secret, token, address=address) is valid


@pytest.mark.parametrize("support, delimiter, problem", [
    ("support@openatrium.example", "+", None),
    ("a" * 29 + "@x.example", "+", None),
    ("a" * 30 + "@x.example", "+", "at most 29"),
    ("help-desk@x.example", "-", "contains the delimiter"),
    ("support@x.example", "ab", "one character"),
    ("support@x.example", "@", "one character"),
    ("nobody", "+", "not an address"),
])
def test_address_problem(support, delimiter, problem):
    found = replykeys.address_problem(support, delimiter=delimiter)
    assert (found is None) if problem is None else (problem in found)


def test_reply_address_and_keyed_message_id_round_trip():
    k = key()
    assert plus(k) == f"support+{k}@openatrium.example"
    with pytest.raises(ValueError):
        replykeys.reply_address("a" * 40 + "@x.example", k)
    mid = replykeys.keyed_message_id(SECRET, thread_number=12, kind="notify", key="notify:OA-12:<m@x>",
                                     domain="openatrium.example", token=k)
    # Still one of our Message-IDs, naming its thread, and its last segment is the key.
    assert msgids.thread_of_message_id(SECRET, mid) == "OA-12"
    assert msgids.suffix_of_message_id(mid) == k
    assert msgids.suffix_of_message_id(msgids.make_message_id(SECRET, thread_number=12, kind="ack", key="a",
                                                              domain="x.example")) == ""


def test_found_keys_in_every_place_a_reply_keeps_them():
    k1, k2, k3, k4 = (key(seed=str(i)) for i in range(4))
    mid = replykeys.keyed_message_id(SECRET, thread_number=12, kind="notify", key="n", domain="x", token=k4)
    m = mail(to=[plus(k1), "partner@nuvole.example"], cc=[plus(k2).upper()], envelope_to=[plus(k3)],
             references=["<a@b>", mid])
    found = {f.token: f.where for f in replykeys.found_keys(m, SUPPORT)}
    assert found == {k1: "To", k2: "Cc", k3: "Delivered-To", k4: "In-Reply-To/References"}
    # Only plus-addresses of *our* support address count.
    other = mail(to=[f"support+{k1}@elsewhere.example", f"sales+{k1}@openatrium.example"])
    assert replykeys.found_keys(other, SUPPORT) == ()


def check(m, thread=12, staff=STAFF, refused=frozenset()):
    return replykeys.check(m, secret=SECRET, thread_number=thread, staff=staff, support_address=SUPPORT,
                           refused=refused)


@pytest.mark.parametrize("case, m, thread, staff, proven, reason", [
    ("own key, own thread", mail(to=[plus(key())]), 12, STAFF, True, ""),
    ("key only in the Message-ID it answers",
     mail(in_reply_to=[replykeys.keyed_message_id(SECRET, thread_number=12, kind="notify", key="n",
                                                  domain="openatrium.example", token=key())]), 12, STAFF, True, ""),
    ("no key at all", mail(to=[SUPPORT]), 12, STAFF, False, "no reply key"),
    ("key for another thread", mail(to=[plus(key(thread=7))]), 12, STAFF, False, "is for OA-7, not OA-12"),
    ("another staff member's key", mail(to=[plus(key(address=ERIC))]), 12, STAFF, False, "not young@"),
    ("removed from staff, own key", mail(sender=GONE, to=[plus(key(address=GONE))]), 12, STAFF, False,
     "not on the staff list"),
    ("removed from staff, own key, while still staff", mail(sender=GONE, to=[plus(key(address=GONE))]), 12,
     STAFF | {GONE}, True, ""),
    ("digest key for a new thread", mail(to=[plus(key(thread=0))]), None, STAFF, True, ""),
    ("thread key for a new thread", mail(to=[plus(key())]), None, STAFF, False, "not a new thread"),
    ("a good key beside bad ones", mail(to=[plus(key(address=ERIC)), plus(key())]), 12, STAFF, True, ""),
])
def test_check(case, m, thread, staff, proven, reason):
    result = check(m, thread=thread, staff=staff)
    assert result.proven is proven, (case, result)
    assert reason in result.reason


def test_a_refused_key_no_longer_proves_and_the_others_still_do():
    leaked, fresh = key(seed="leaked"), key(seed="fresh")
    refused = frozenset({replykeys.parse(leaked).nonce})
    assert not check(mail(to=[plus(leaked)]), refused=refused).proven
    assert "no longer accepted" in check(mail(to=[plus(leaked)]), refused=refused).reason
    assert check(mail(to=[plus(fresh)]), refused=refused).proven


def test_exposed_keys():
    k = key()
    nonce = replykeys.parse(k).nonce
    # Among staff and the support address: nothing exposed.
    assert replykeys.exposed_keys(mail(to=[plus(k)], cc=[ERIC]), staff=STAFF, support_address=SUPPORT) == ()
    # The partner copied on the reply now holds the key.
    assert replykeys.exposed_keys(mail(to=[plus(k)], cc=["antonio@nuvole.example"]), staff=STAFF,
                                  support_address=SUPPORT) == (nonce,)
    # A partner quoting a key (answering a staff member's direct mail) holds it too.
    assert replykeys.exposed_keys(mail(sender="antonio@nuvole.example", to=[SUPPORT], references=[
        replykeys.keyed_message_id(SECRET, thread_number=12, kind="notify", key="n", domain="openatrium.example",
                                   token=k)]), staff=STAFF, support_address=SUPPORT) == (nonce,)


def test_copies_one_per_recipient_and_keys_only_for_staff():
    made = replykeys.copies(key="esc:OA-12:c1:breach", recipients=(YOUNG, "Eric@devseed.example", YOUNG,
                                                                   "boss@elsewhere.example"),
                            staff=STAFF, secret=SECRET, thread_number=12, support_address=SUPPORT)
    assert [c.recipient for c in made] == [YOUNG, ERIC, "boss@elsewhere.example"]
    assert [c.outbox_key for c in made] == [f"esc:OA-12:c1:breach#{a}" for a in (YOUNG, ERIC, "boss@elsewhere.example")]
    young, eric, boss = made
    assert young.token != eric.token
    assert replykeys.is_valid(SECRET, young.token, address=YOUNG) and replykeys.parse(young.token).thread_number == 12
    assert young.reply_to == plus(young.token)
    # Someone outside staff gets the mail without a key: a key in their hands would make them staff.
    assert boss.token == "" and boss.reply_to == SUPPORT
    # Deciding the same mail again gives the same keys (the outbox refuses the copies it holds).
    assert replykeys.copies(key="esc:OA-12:c1:breach", recipients=(YOUNG,), staff=STAFF, secret=SECRET,
                            thread_number=12, support_address=SUPPORT)[0] == young


def test_copies_without_plus_addresses_keep_the_key_for_the_message_id():
    [c] = replykeys.copies(key="notify:OA-12:<m@x>", recipients=(YOUNG,), staff=STAFF, secret=SECRET,
                           thread_number=12, support_address=SUPPORT, plus_addresses=False)
    assert c.reply_to == SUPPORT and replykeys.is_valid(SECRET, c.token, address=YOUNG)
