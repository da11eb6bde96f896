"""Error types shared by every layer.

Three families, because the daemon reacts to each differently:

* ``BadInput``   - their mail or file is wrong: record it, quarantine it, go on.
* ``Transient``  - the network or a server hiccuped: leave the work queued, retry later.
* ``ConfigError``- the operator's settings are wrong: stop before touching any mailbox.
* ``LoginRequired`` - an OAuth2 login lapsed: a person must log in again; the daemon goes on
  deciding meanwhile and the mail it cannot send waits in the outbox.

Anything else that escapes is *our* bug: ``service`` logs it with a traceback and
quarantines the message that triggered it so one bad message never blocks the rest.
"""


class PartnerdeskError(Exception):
    """Base class; ``str(err)`` is written for the person who has to act on it."""


class ConfigError(PartnerdeskError):
    """The config file (or a CLI argument) is wrong; the message names file and key."""


class BadInput(PartnerdeskError):
    """Input from outside (a mail, a CSV row) that we cannot accept as it is."""


class Transient(PartnerdeskError, ConnectionError):
    """A temporary failure talking to a server; the operation can be retried.

    Subclasses ConnectionError, as aiosmtplib's errors do, so callers can catch
    every retryable failure in one place.
    """


class AlreadyRunning(PartnerdeskError):
    """Another partnerdesk process holds the daemon lock on the same store."""


class LoginRequired(PartnerdeskError):
    """An OAuth2 mail login cannot succeed until a person logs in again.

    The refresh token expired or was revoked, consent was withdrawn, or there is no
    login yet. Retrying cannot help (unlike Transient), and the config is not wrong
    (unlike ConfigError): the daemon keeps deciding and warns every cycle, mail to send
    stays queued, and the message names provider, account and the command to run.
    """

    def __init__(self, message: str, *, provider: str = "", account: str = "", command: str = "",
                 reason: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.account = account
        self.command = command
        self.reason = reason  # the provider's answer alone, without the advice around it
