"""The support inbox over IMAP (imapclient).

Reads by UID above a remembered cursor (folder, UIDVALIDITY, last UID), never by
the \\Seen flag: a person reading the mailbox must not hide mail from us.
BODY.PEEK leaves \\Seen alone. Taken-in mail gets a keyword (and is optionally
moved); mail we cannot take in is moved to a quarantine folder, never deleted.

imapclient is not thread-safe: one ImapSource per thread.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from config.servers import ImapSettings
from service.ports import RawMail
from workflows.errors import ConfigError, PartnerdeskError, Transient

log = logging.getLogger("partnerdesk.imap")
BATCH = 200  # messages per body FETCH: big enough to be fast
BATCH_BYTES = 25 * 1024 * 1024  # ... and at most this much mail per body FETCH (one bigger mail goes alone)
SIZE_BATCH = 1000  # UIDs per RFC822.SIZE FETCH: keeps the command line short
# The connection itself broke (server restart, `doveadm kick`, BYE, timeout): always worth a retry.
# IMAPClientAbortError is imaplib's abort, a subclass of IMAPClientError, so it is caught first.
DROPPED = (IMAPClientAbortError, OSError, socket.timeout)


def _same_name(a: str, b: str) -> bool:
    # INBOX is case-insensitive in IMAP (RFC 3501 5.1); other names are not.
    return a == b or (a.upper() == "INBOX" and b.upper() == "INBOX")


def tls_context(settings: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()
    if not settings.verify_tls:
        # Only when the config says so explicitly (verify_tls = false).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImapSource:
    def __init__(self, settings: ImapSettings, password: str | None,
                 authenticator: Callable[[IMAPClient], Any] | None = None) -> None:
        self.s = settings
        self.password = password
        # Logs a fresh connection in instead of LOGIN with the password (OAuth2: mailbox/oauth2_sasl.py).
        self.authenticator = authenticator
        self.client: IMAPClient | None = None
        self.uidvalidity: int | None = None
        # Once login and SELECT have worked, a later refusal is the server restarting (its
        # auth backend or storage not back yet), not a wrong config: retry instead of exiting.
        self.logged_in_once = False
        self.expected: int | None = None  # messages the running fetch_new will yield (for a progress bar)
        # The highest UID fetch_new has handed out on this connection: poll_new asks for anything above it
        # (None: unknown, before a fetch_new has finished on this connection; then there may be mail).
        self.handed_out: int | None = None
        self.selected_once = False
        self._warned_no_uidplus = False
        self.readonly = False  # True: EXAMINE instead of SELECT (dry runs change nothing on the server)
        self.keeps_keyword = False  # the folder's PERMANENTFLAGS allow our done keyword
        for key in ("done_folder", "quarantine_folder", "automatic_folder"):
            other = getattr(settings, key)
            if other and _same_name(other, settings.folder):
                raise ConfigError(f"[imap] {key} = {other!r} is the folder partnerdesk reads ([imap] folder = "
                                  f"{settings.folder!r}); choose a different folder for {key}")

    # -- connection -----------------------------------------------------------------
    def connect(self) -> None:
        s = self.s
        prepare = getattr(self.authenticator, "prepare", None)
        if prepare is not None:
            prepare()  # OAuth2: a lapsed login (LoginRequired) is known before connecting anywhere
        try:
            client = IMAPClient(s.host, port=s.port, ssl=s.security == "tls",
                                ssl_context=tls_context(s) if s.security != "none" else None, timeout=s.timeout)
            if s.security == "starttls":
                client.starttls(tls_context(s))
            client.normalise_times = False  # keep INTERNALDATE's own offset: aware datetimes
            if self.authenticator is not None:
                self.authenticator(client)
            elif s.username:
                client.login(s.username, self.password or "")
        except PartnerdeskError:
            # The authenticator's own verdict (LoginRequired, a token endpoint outage): already in words.
            try:
                client.shutdown()
            except OSError:
                pass
            raise
        except LoginError as e:
            # imapclient turns every failure during LOGIN into LoginError, a dropped connection
            # (BYE while the server shuts down) included; RFC 5530 [UNAVAILABLE] says "try later".
            dropped = isinstance(e.__context__, DROPPED) or "UNAVAILABLE" in str(e).upper()
            if dropped or self.logged_in_once:
                raise Transient(f"IMAP login as {s.username!r} on {s.host}:{s.port} failed ({e}); it worked "
                                f"before, so the server is probably restarting: retrying") from e
            if self.authenticator is not None:  # its message says what to check
                raise ConfigError(f"IMAP login as {s.username!r} on {s.host}:{s.port} by OAuth2 was refused: {e}") \
                    from e
            raise ConfigError(f"IMAP login as {s.username!r} on {s.host}:{s.port} was refused ({e}); "
                              f"check [imap] username and password") from e
        except ssl.SSLCertVerificationError as e:
            raise ConfigError(f"IMAP server {s.host}:{s.port} has a certificate we cannot verify ({e}); fix the "
                              f"server, set [imap] ca_file, or (only if you must) verify_tls = false") from e
        except (OSError, IMAPClientError) as e:
            raise Transient(f"cannot reach IMAP server {s.host}:{s.port}: {e}") from e
        if s.username or self.authenticator is not None:
            self.logged_in_once = True
        self.client = client
        self._select()

    def _select(self) -> None:
        """SELECT the folder. A refusal at the very first connect is a config error; anything else is Transient."""
        assert self.client is not None
        s = self.s
        try:
            info = self.client.select_folder(s.folder, readonly=self.readonly)
        except DROPPED as e:
            self.close()
            raise Transient(f"IMAP connection to {s.host}:{s.port} was dropped ({e}); will reconnect") from e
        except IMAPClientError as e:  # a tagged NO or BAD to SELECT
            self.close()
            if self.selected_once:
                raise Transient(f"IMAP folder {s.folder!r} on {s.host}:{s.port} cannot be opened right now ({e}); "
                                f"it could before, retrying. If it was renamed, fix [imap] folder") from e
            raise ConfigError(f"IMAP folder {s.folder!r} cannot be opened ({e}); check [imap] folder") from e
        self.selected_once = True
        self._announced()  # SELECT's own EXISTS is the state now, not news; what comes after it is
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        permanent = info.get(b"PERMANENTFLAGS") or ()
        self.keeps_keyword = b"\\*" in permanent or self.s.done_keyword.encode() in permanent

    def close(self) -> None:
        self.handed_out = None
        if self.client is not None:
            client, self.client = self.client, None
            try:
                client.logout()
            except Exception:  # the connection is already gone: drop the socket
                try:
                    client.shutdown()
                except Exception:
                    pass

    def _c(self) -> IMAPClient:
        if self.client is None:
            self.connect()
        assert self.client is not None
        return self.client

    # -- reading ------------------------------------------------------------------------
    def _ready(self) -> IMAPClient:
        """A connection with the folder freshly selected (new mail, maybe a new UIDVALIDITY).

        A connection kept from the last cycle may have been dropped by the server since
        (restart, idle timeout, `doveadm kick`): then reconnect once, right away.
        """
        if self.client is None:
            return self._c()  # connect() selects
        try:
            self._select()
        except Transient as e:
            log.info("IMAP connection was dropped (%s); reconnecting", e)
            return self._c()
        return self.client

    def fetch_new(self, store: Any) -> Iterator[RawMail]:
        """Messages above the cursor, oldest first. A changed UIDVALIDITY means a rescan from UID 1."""
        c = self._ready()
        try:
            cur = store.cursor(self.s.folder)
            last = 0
            if cur is not None and cur["uidvalidity"] == self.uidvalidity:
                last = int(cur["last_uid"])
            elif cur is not None:
                log.warning("UIDVALIDITY of %s changed (%s -> %s): rescanning; duplicates are recognised by "
                            "Message-ID and content", self.s.folder, cur["uidvalidity"], self.uidvalidity)
            # "N:*" always matches the highest UID even when it is below N; filter.
            uids = self._not_marked(c, last) + sorted(u for u in c.search(["UID", f"{last + 1}:*"]) if u > last)
            self.expected = len(uids)
            # Known only once every one of them was taken: an intake stopped half-way by an error leaves
            # poll_new unsure, so the next wait fetches again instead of idling past what is left.
            self.handed_out = None
            for batch in self._batches(c, uids):
                data = c.fetch(batch, ["BODY.PEEK[]", "INTERNALDATE"])
                for uid in batch:
                    item = data.get(uid)
                    if item is None:  # expunged between SEARCH and FETCH
                        continue
                    when = item.get(b"INTERNALDATE")
                    if isinstance(when, datetime) and when.tzinfo is None:
                        when = when.replace(tzinfo=timezone.utc)
                    yield RawMail(
                        source_key=f"imap:{self.s.folder}:{self.uidvalidity}:{uid}",
                        data=item.get(b"BODY[]") or b"",
                        received_at=when if isinstance(when, datetime) else datetime.now(timezone.utc),
                        folder=self.s.folder,
                        uidvalidity=self.uidvalidity,
                        uid=uid,
                    )
            self.handed_out = max([last, *uids])
        except (OSError, socket.timeout, IMAPClientError) as e:
            self.close()
            raise Transient(f"IMAP connection to {self.s.host}:{self.s.port} failed while reading: {e}") from e

    def _not_marked(self, c: IMAPClient, last: int) -> list[int]:
        """Mail at or below the cursor that was taken in but never marked done (the process died between
        the store write and the marking): fetched again, the intake knows it (a duplicate) and marks it."""
        if last == 0 or self.readonly:
            return []
        if self.s.done_folder:  # taken-in mail is moved away: whatever is still here was not
            criteria = ["UID", f"1:{last}", "UNDELETED"]
        elif self.keeps_keyword:
            criteria = ["UID", f"1:{last}", "UNDELETED", "UNKEYWORD", self.s.done_keyword]
        else:  # a server that cannot keep our keyword would hand us every message again, every time
            return []
        return sorted(u for u in c.search(criteria) if u <= last)

    @staticmethod
    def _batches(c: IMAPClient, uids: list[int]) -> Iterator[list[int]]:
        """UIDs in batches of at most BATCH messages and BATCH_BYTES bytes, so memory stays bounded.

        Sizes come from RFC822.SIZE first; a message expunged in the meantime has none and is left out.
        """
        if len(uids) == 1:  # one message goes alone anyway: no size look-up first (a round trip saved)
            yield uids
            return
        sizes: dict[int, int] = {}
        for i in range(0, len(uids), SIZE_BATCH):
            chunk = uids[i:i + SIZE_BATCH]
            for uid, item in c.fetch(chunk, ["RFC822.SIZE"]).items():
                sizes[uid] = int(item.get(b"RFC822.SIZE") or 0)
        batch: list[int] = []
        total = 0
        for uid in uids:
            if uid not in sizes:
                continue
            size = sizes[uid]
            if batch and (len(batch) >= BATCH or total + size > BATCH_BYTES):
                yield batch
                batch, total = [], 0
            batch.append(uid)
            total += size
        if batch:
            yield batch

    # -- marking ------------------------------------------------------------------------
    def _same_folder(self, raw: RawMail) -> bool:
        return raw.uidvalidity == self.uidvalidity and raw.folder == self.s.folder and raw.uid is not None

    def _move(self, uid: int | list[int], folder: str) -> None:
        uids = uid if isinstance(uid, list) else [uid]
        c = self._c()
        if not c.folder_exists(folder):
            c.create_folder(folder)
        if c.has_capability("MOVE"):
            c.move(uids, folder)
            return
        c.copy(uids, folder)
        c.delete_messages(uids)
        if c.has_capability("UIDPLUS"):
            c.uid_expunge(uids)  # removes only these messages
            return
        # A plain EXPUNGE would also remove every message a person flagged \Deleted and meant
        # to keep until they expunge themselves. Never destroy someone else's deletion: leave
        # our copy flagged \Deleted; the person's client (or the server) expunges it later.
        if not self._warned_no_uidplus:
            self._warned_no_uidplus = True
            log.warning("IMAP server %s has neither MOVE nor UIDPLUS: moved mail is copied and left flagged "
                        "\\Deleted in %s, not expunged (expunging would remove other people's deleted mail too)",
                        self.s.host, self.s.folder)
        log.info("copied UID %s to %s; the original stays flagged \\Deleted in %s", uid, folder, self.s.folder)

    def _marking(self, what: str, raw: RawMail, act: Any) -> None:
        try:
            act()
        except DROPPED as e:
            self.close()  # the next call reconnects
            raise Transient(f"IMAP connection to {self.s.host}:{self.s.port} dropped while {what} "
                            f"{raw.source_key}: {e}") from e

    def mark_done(self, raw: RawMail) -> None:
        if not self._same_folder(raw):
            return

        def act() -> None:
            c = self._c()
            c.add_flags([raw.uid], [self.s.done_keyword.encode()], silent=True)
            if self.s.done_folder:
                self._move(raw.uid, self.s.done_folder)  # type: ignore[arg-type]

        self._marking("marking done", raw, act)

    def mark_done_many(self, raws: list[RawMail]) -> None:
        """The keyword (and the move to done_folder) for a whole batch: one command each, not one per mail."""
        uids = [r.uid for r in raws if self._same_folder(r)]
        if not uids:
            return

        def act() -> None:
            c = self._c()
            c.add_flags(uids, [self.s.done_keyword.encode()], silent=True)
            if self.s.done_folder:
                self._move(uids, self.s.done_folder)

        self._marking("marking done", raws[0], act)

    def file_automatic(self, raw: RawMail) -> None:
        """Automatic mail, recorded: flagged done and moved to [imap] automatic_folder (if one is set)."""
        if not self._same_folder(raw):
            return

        def act() -> None:
            c = self._c()
            c.add_flags([raw.uid], [self.s.done_keyword.encode()], silent=True)
            folder = self.s.automatic_folder or self.s.done_folder
            if folder:
                self._move(raw.uid, folder)

        self._marking("filing automatic mail", raw, act)

    def quarantine(self, raw: RawMail, reason: str) -> None:
        if self._same_folder(raw):
            self._marking("quarantining", raw,
                          lambda: self._move(raw.uid, self.s.quarantine_folder))  # type: ignore[arg-type]

    # -- waiting ------------------------------------------------------------------------
    def idle_supported(self) -> bool:
        """Whether wait_for_mail can wait on the server (IDLE), or the caller must poll."""
        try:
            return bool(self.s.idle and self._c().has_capability("IDLE"))
        except Transient:
            return False

    def poll_new(self) -> bool:
        """Whether mail arrived above what fetch_new last handed out (one UID SEARCH; cheap). True when unsure.

        Not a NOOP's EXISTS: the server announces new mail once, in the answer to whatever command is
        running when it arrives, and during a FETCH or a STORE of the intake imapclient keeps only that
        command's answer. Mail delivered during a burst's intake was then never announced again, and
        waited for the next poll (benchmarks/reaction.py, a burst of 50 requests)."""
        if self.client is None or self.handed_out is None:
            return True
        high = self.handed_out
        try:
            uids = self.client.search(["UID", f"{high + 1}:*"])  # "N:*" always matches the highest UID
        except (IMAPClientError, *DROPPED):
            self.close()
            return True
        # Mail appended while the SEARCH ran is not in its answer, but announced with it (an EXISTS that
        # imapclient leaves with imaplib, by name). Taken from there, as Delta Chat drains its
        # unsolicited responses before IDLE for the same race with Dovecot (chatmail/core#4926).
        return any(u > high for u in uids) | self._announced()

    def _announced(self) -> bool:
        """Whether the server announced new mail in an answer to an earlier command (and forget it)."""
        pending = getattr(getattr(self.client, "_imap", None), "untagged_responses", None)
        if not isinstance(pending, dict):
            return False
        return bool(pending.pop("EXISTS", None)) | bool(pending.pop("RECENT", None))

    def wait_for_mail(self, timeout: float, should_stop: Callable[[], bool] | None = None) -> bool:
        """Block until the server reports new mail (IDLE) or ``timeout`` passes (polling fallback).

        Returns True if the server said something. IDLE is renewed by the caller's
        loop well within the 29 minutes RFC 2177 allows. ``should_stop`` is asked
        every second, so a SIGTERM does not wait for the whole poll interval.
        """
        c = self._c()
        if not (self.s.idle and c.has_capability("IDLE")):
            return False  # caller sleeps poll_seconds
        # Mail that came while we were busy (a cycle, folding send results in) may have been announced
        # already, to a command that dropped the news (see poll_new), and IDLE does not say it again.
        if self.poll_new():
            return True
        try:
            c.idle()
            deadline = time.monotonic() + timeout
            responses: list[Any] = []
            while not responses:
                left = deadline - time.monotonic()
                if left <= 0 or (should_stop is not None and should_stop()):
                    break
                responses = c.idle_check(timeout=min(1.0, left))
            if any(r and r[0] == b"BYE" for r in responses):
                # The server is going away (restart, kick): no DONE on a closing connection.
                # Returning True makes the caller fetch at once, which reconnects (or raises
                # Transient while the server is still down, and the caller backs off).
                log.info("IMAP server %s:%s said BYE during IDLE; reconnecting", self.s.host, self.s.port)
                self.close()
                return True
            # What the server said between the last check and DONE (an EXISTS, say) comes back with
            # DONE's answer: dropping it would lose the wake-up, and the mail would wait for the next poll.
            _, late = c.idle_done()
            responses = [*responses, *(r for r in late or () if isinstance(r, tuple) and r)]
        except DROPPED as e:
            log.info("IMAP IDLE on %s:%s was interrupted (%s); reconnecting", self.s.host, self.s.port, e)
            self.close()
            return True
        except IMAPClientError as e:
            self.close()
            raise Transient(f"IMAP IDLE on {self.s.host}:{self.s.port} failed: {e}") from e
        if responses:
            log.debug("IDLE: the server says %s", responses[:3])
        return bool(responses)
