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
    def __init__(self, checks: list[list], done: list) -> None:
        self.checks, self.done = checks, done

    def has_capability(self, name: str) -> bool:
        return name == "IDLE"

    def idle(self) -> None:
        pass

    def idle_check(self, timeout: float) -> list:
        return self.checks.pop(0) if self.checks else []

    def idle_done(self) -> tuple[bytes, list]:
        return b"Idle completed", self.done


def source(client: Client) -> ImapSource:
    src = ImapSource(ImapSettings(host="127.0.0.1", port=143, security="none", idle=True), "pw")
    src.client = client  # type: ignore[assignment]
    return src


def test_an_exists_that_came_with_done_wakes_the_caller():
    src = source(Client(checks=[], done=[(7, b"EXISTS")]))
    assert src.wait_for_mail(5, should_stop=lambda: True) is True


def test_nothing_said_is_no_wake_up():
    assert source(Client(checks=[], done=[])).wait_for_mail(5, should_stop=lambda: True) is False


def test_an_exists_seen_while_idling_wakes_the_caller():
    assert source(Client(checks=[[(3, b"EXISTS")]], done=[])).wait_for_mail(5) is True
