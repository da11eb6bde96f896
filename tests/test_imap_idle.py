"""IMAP IDLE never loses a wake-up: what the server says between the last check and DONE counts.

The daemon leaves IDLE early whenever send results are waiting to be folded in (during a mailing, many
times a second); an EXISTS that arrives in that window comes back with DONE's answer, not from a later
check. Dropping it left a request unacknowledged until the next poll (found by benchmarks/reaction.py
during a mailing of 2,000). A stand-in client, because the window cannot be hit on purpose on a real
server.
"""

from __future__ import annotations

from config.servers import ImapSettings
from mailbox.imap import ImapSource


class Client:
    def __init__(self, checks: list[list], done: list, above: list[int] | None = None) -> None:
        self.checks, self.done = checks, done
        self.above = above or []  # UIDs above what was handed out, found by the SEARCH before IDLE
        self.idled = False

    def has_capability(self, name: str) -> bool:
        return name == "IDLE"

    def search(self, criteria: list[str]) -> list[int]:
        assert criteria == ["UID", "6:*"]
        return self.above or [5]  # "6:*" matches the highest UID (5) when there is nothing above

    def idle(self) -> None:
        self.idled = True

    def idle_check(self, timeout: float) -> list:
        return self.checks.pop(0) if self.checks else []

    def idle_done(self) -> tuple[bytes, list]:
        return b"Idle completed", self.done


def source(client: Client) -> ImapSource:
    src = ImapSource(ImapSettings(host="127.0.0.1", port=143, security="none", idle=True), "pw")
    src.client = client  # type: ignore[assignment]
    src.handed_out = 5  # fetch_new handed out UIDs up to 5
    return src


def test_an_exists_that_came_with_done_wakes_the_caller():
    src = source(Client(checks=[], done=[(7, b"EXISTS")]))
    assert src.wait_for_mail(5, should_stop=lambda: True) is True


def test_nothing_said_is_no_wake_up():
    assert source(Client(checks=[], done=[])).wait_for_mail(5, should_stop=lambda: True) is False


def test_an_exists_seen_while_idling_wakes_the_caller():
    assert source(Client(checks=[[(3, b"EXISTS")]], done=[])).wait_for_mail(5) is True


def test_mail_that_came_while_busy_wakes_the_caller_before_idle():
    """The server announced it during the intake's FETCH or STORE, whose answer keeps no EXISTS, and IDLE
    does not announce it again: the SEARCH before IDLE finds it."""
    client = Client(checks=[], done=[], above=[6, 7])
    assert source(client).wait_for_mail(5, should_stop=lambda: True) is True
    assert client.idled is False


def test_after_a_reconnect_there_may_be_mail():
    src = source(Client(checks=[], done=[]))
    src.handed_out = None
    assert src.poll_new() is True


def test_mail_announced_while_the_search_ran_wakes_the_caller():
    """Appended while the SEARCH ran: not in its answer, but announced with it, and kept by imaplib."""
    client = Client(checks=[], done=[])
    client._imap = type("Imaplib", (), {})()
    client._imap.untagged_responses = {"EXISTS": [b"7"], "RECENT": [b"1"], "FLAGS": [b"()"]}
    src = source(client)
    assert src.poll_new() is True
    assert client._imap.untagged_responses == {"FLAGS": [b"()"]}  # heard once: the next poll asks afresh
    assert src.poll_new() is False
