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
from datetime import datetime, timezone
from typing import Any, Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from workflows.errors import ConfigError, Transient
from workflows.ports import RawMail
from workflows.settings import ImapSettings

log = logging.getLogger("partnerdesk.imap")
BATCH = 200  # messages per FETCH: big enough to be fast, small enough for a 50 MB mail or two


def tls_context(settings: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()
    if not settings.verify_tls:
        # Only when the config says so explicitly (verify_tls = false).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ImapSource:
    def __init__(self, settings: ImapSettings, password: str | None) -> None:
        self.s = settings
        self.password = password
        self.client: IMAPClient | None = None
        self.uidvalidity: int | None = None

    # -- connection -----------------------------------------------------------------
    def connect(self) -> None:
        s = self.s
        try:
            client = IMAPClient(s.host, port=s.port, ssl=s.security == "tls",
                                ssl_context=tls_context(s) if s.security != "none" else None, timeout=s.timeout)
            if s.security == "starttls":
                client.starttls(tls_context(s))
            client.normalise_times = False  # keep INTERNALDATE's own offset: aware datetimes
            if s.username:
                client.login(s.username, self.password or "")
        except LoginError as e:
            raise ConfigError(f"IMAP login as {s.username!r} on {s.host}:{s.port} was refused ({e}); "
                              f"check [imap] username and password") from e
        except ssl.SSLCertVerificationError as e:
            raise ConfigError(f"IMAP server {s.host}:{s.port} has a certificate we cannot verify ({e}); fix the "
                              f"server, set [imap] ca_file, or (only if you must) verify_tls = false") from e
        except (OSError, IMAPClientError) as e:
            raise Transient(f"cannot reach IMAP server {s.host}:{s.port}: {e}") from e
        self.client = client
        self._select()

    def _select(self) -> None:
        assert self.client is not None
        try:
            info = self.client.select_folder(self.s.folder)
        except IMAPClientError as e:
            raise ConfigError(f"IMAP folder {self.s.folder!r} cannot be opened ({e}); check [imap] folder") from e
        self.uidvalidity = int(info[b"UIDVALIDITY"])

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:
                pass
            self.client = None

    def _c(self) -> IMAPClient:
        if self.client is None:
            self.connect()
        assert self.client is not None
        return self.client

    # -- reading ------------------------------------------------------------------------
    def fetch_new(self, store: Any) -> Iterator[RawMail]:
        """Messages above the cursor, oldest first. A changed UIDVALIDITY means a rescan from UID 1."""
        c = self._c()
        try:
            self._select()  # refresh: the server may have new mail or a new UIDVALIDITY
            cur = store.cursor(self.s.folder)
            last = 0
            if cur is not None and cur["uidvalidity"] == self.uidvalidity:
                last = int(cur["last_uid"])
            elif cur is not None:
                log.warning("UIDVALIDITY of %s changed (%s -> %s): rescanning; duplicates are recognised by "
                            "Message-ID and content", self.s.folder, cur["uidvalidity"], self.uidvalidity)
            # "N:*" always matches the highest UID even when it is below N; filter.
            uids = sorted(u for u in c.search(["UID", f"{last + 1}:*"]) if u > last)
            for i in range(0, len(uids), BATCH):
                batch = uids[i:i + BATCH]
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
        except (OSError, socket.timeout, IMAPClientError) as e:
            self.close()
            raise Transient(f"IMAP connection to {self.s.host}:{self.s.port} failed while reading: {e}") from e

    # -- marking ------------------------------------------------------------------------
    def _same_folder(self, raw: RawMail) -> bool:
        return raw.uidvalidity == self.uidvalidity and raw.folder == self.s.folder and raw.uid is not None

    def _move(self, uid: int, folder: str) -> None:
        c = self._c()
        if not c.folder_exists(folder):
            c.create_folder(folder)
        if c.has_capability("MOVE"):
            c.move([uid], folder)
        else:
            c.copy([uid], folder)
            c.delete_messages([uid])
            if c.has_capability("UIDPLUS"):
                c.uid_expunge([uid])
            else:
                c.expunge()

    def mark_done(self, raw: RawMail) -> None:
        if not self._same_folder(raw):
            return
        c = self._c()
        c.add_flags([raw.uid], [self.s.done_keyword.encode()], silent=True)
        if self.s.done_folder:
            self._move(raw.uid, self.s.done_folder)  # type: ignore[arg-type]

    def quarantine(self, raw: RawMail, reason: str) -> None:
        if self._same_folder(raw):
            self._move(raw.uid, self.s.quarantine_folder)  # type: ignore[arg-type]

    # -- waiting ------------------------------------------------------------------------
    def wait_for_mail(self, timeout: float) -> bool:
        """Block until the server reports new mail (IDLE) or ``timeout`` passes (polling fallback).

        Returns True if the server said something. IDLE is renewed by the caller's
        loop well within the 29 minutes RFC 2177 allows.
        """
        c = self._c()
        if not (self.s.idle and c.has_capability("IDLE")):
            return False  # caller sleeps poll_seconds
        try:
            c.idle()
            try:
                responses = c.idle_check(timeout=timeout)
            finally:
                c.idle_done()
        except (OSError, socket.timeout, IMAPClientError) as e:
            self.close()
            raise Transient(f"IMAP IDLE on {self.s.host}:{self.s.port} failed: {e}") from e
        return bool(responses)
