"""Threads by the whole reference graph (JWZ, notmuch): which thread a message belongs to. Pure.

Every Message-ID a message names in In-Reply-To or References is one of its ancestors, whether we
received that message or not. An ancestor we never received is a *ghost*: the store remembers which
thread named it (service/intake.py keeps that index). Messages that share an ancestor, received or
not, are one conversation, so they belong to one thread: a partner writes to a staff member
directly, a colleague answers all and copies support, someone else answers the original too; the
original never reached support, yet all the answers name it.

The service resolves each ancestor to a ``Link`` (which thread, and how it is known); ``route`` picks
the thread, and the threads to merge into it, under the safety rules:

- a link through a message of the thread (received, or sent by us with our signed Message-ID) joins
  anyone's mail, as before;
- a link through a ghost (or through this very message, which the thread's mail named before it
  arrived) joins only mail from the thread's people: staff, a contact of the thread's partner, or
  whoever opened it. Quoting a Message-ID is easy; being named by a partner's reply is not proof of
  belonging to their conversation;
- mailing-list mail (List-Id) never enters a partner's thread through a ghost and never merges
  threads; through a message of the thread only when its sender belongs there;
- two open threads are merged when one message links to both, its sender belongs to both, and they
  are the same partner's (or, without a partner, the same requester's): never two partners' threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .lifecycle import OPEN
from .model import FROZEN, InboundMail, Sender, Thread

MAX_ANCESTORS = 40  # ids of one message used for threading: its parents, References' root and nearest ones


class Via(StrEnum):
    MESSAGE = "message"  # a message of the thread, received or sent by us
    OURS = "ours"  # one of our signed Message-IDs naming the thread (even if not recorded)
    GHOST = "ghost"  # an id the thread's mail names that we never received
    DESCENDANT = "descendant"  # this message itself: the thread's mail named it before it arrived

    @property
    def proven(self) -> bool:
        """Whether the link is by a message we hold (or signed), not by an id someone wrote."""
        return self in (Via.MESSAGE, Via.OURS)


@dataclass(**FROZEN)
class Link:
    ref: str  # the Message-ID that links
    thread: Thread
    via: Via


@dataclass(**FROZEN)
class Route:
    thread: Thread | None  # where the message goes; None: no trusted link (the tag or a new thread decide)
    merge: tuple[Thread, ...] = ()  # open threads that are the same conversation: merged into ``thread``
    why: str = ""
    refused: str = ""  # a link that was not trusted, and why (for the timeline and the log)


def ancestors(mail: InboundMail, limit: int = MAX_ANCESTORS) -> tuple[str, ...]:
    """The ids ``mail`` names, nearest first (In-Reply-To, then References from the end), bounded.

    A message naming itself (some clients put their own id in References) is not its own ancestor.
    References' first id is the conversation's root, and clients that shorten a long References keep
    it: it is kept here too, after the nearest ``limit - 1``.
    """
    own = mail.message_id
    seen: list[str] = []
    for mid in mail.in_reply_to + tuple(reversed(mail.references)):
        if mid != own and mid not in seen:
            seen.append(mid)
    if len(seen) <= limit:
        return tuple(seen)
    root = mail.references[0] if mail.references and mail.references[0] != own else None
    near = [m for m in seen if m != root][: limit - (1 if root else 0)]
    return tuple(near + ([root] if root else []))


def belongs(sender: Sender, thread: Thread) -> bool:
    """Whether the sender is one of the thread's people: staff, its partner's contact, or who opened it."""
    if sender.kind == "staff":
        return True
    if sender.partner_id is not None and sender.partner_id == thread.partner_id:
        return True
    return bool(sender.address) and sender.address == thread.requester


def same_party(a: Thread, b: Thread) -> bool:
    """Two threads that may become one: the same partner's, or (without a partner) the same requester's."""
    if a.partner_id or b.partner_id:
        return a.partner_id == b.partner_id
    return bool(a.requester) and a.requester == b.requester


def _trusted(link: Link, sender: Sender, mail: InboundMail) -> str:
    """"" when ``link`` may file ``mail`` in its thread, else why not."""
    t = link.thread
    listed = bool(mail.list_id)
    if link.via.proven:
        if listed and t.partner_id and not belongs(sender, t):
            return f"mailing-list mail names a message of {t.id}, a partner's thread; the sender does not belong to it"
        return ""
    if listed and t.partner_id:
        return f"mailing-list mail shares an ancestor with {t.id}, a partner's thread: never merged into it"
    if not belongs(sender, t):
        return (f"shares an ancestor ({link.ref}) with {t.id}, but the sender is not staff, not its partner's "
                f"and did not open it")
    return ""


def route(mail: InboundMail, sender: Sender, links: tuple[Link, ...], *, automatic: bool = False) -> Route:
    """The thread the links give ``mail``, and the open threads that it shows to be the same conversation.

    ``links``: nearest ancestor first. Of the trusted threads, the nearest open one is chosen (a reply
    to an old message of a closed thread, while the conversation goes on in an open one, goes there);
    if none is open, the nearest. ``automatic`` mail (out-of-office, bounces) never merges threads.
    """
    trusted: dict[str, tuple[Thread, Link]] = {}
    refused = ""
    for link in links:
        problem = _trusted(link, sender, mail)
        if problem:
            refused = refused or problem
        elif link.thread.id not in trusted:
            trusted[link.thread.id] = (link.thread, link)
    if not trusted:
        return Route(thread=None, refused=refused,
                     why=f"{refused}: new thread" if refused else "no reference to a known thread")
    threads = [t for t, _ in trusted.values()]
    chosen = next((t for t in threads if t.state in OPEN), threads[0])
    how = trusted[chosen.id][1]
    why = ("references a message of the thread" if how.via.proven else
           f"shares an ancestor it never received ({how.ref}) with the thread" if how.via is Via.GHOST else
           "the thread's mail answers this very message")
    if automatic or mail.list_id or chosen.state not in OPEN:
        return Route(thread=chosen, why=why, refused=refused)
    same = [t for t in threads if t.id != chosen.id and t.state in OPEN and same_party(t, chosen)
            and belongs(sender, t) and belongs(sender, chosen)]
    if not same:
        return Route(thread=chosen, why=why, refused=refused)
    survivor = min([chosen, *same], key=lambda t: (t.created_at, t.number))
    merge = tuple(sorted((t for t in [chosen, *same] if t.id != survivor.id), key=lambda t: t.number))
    return Route(thread=survivor, merge=merge, refused=refused,
                 why=f"{why}; it also belongs to {', '.join(t.id for t in merge)}: one conversation, merged")
