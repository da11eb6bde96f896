"""How long an OAuth2 mail login keeps working, and when to warn about it.

Pure: facts about a login and ``now`` in, an outlook out. Helpdesks that built OAuth2
were bitten by refresh tokens that lapsed silently (fetching stopped, nobody was told);
the providers' known limits are data here (see config/oauth2.py for the presets), so the
daemon can warn days ahead and ``auth status`` can say when a login stops working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .model import FROZEN

IDLE = "idle"  # lapses `days` after the last refresh (sliding: every refresh restarts it)
AGE = "age"  # lapses `days` after the person logged in, however often it is refreshed


@dataclass(**FROZEN)
class Limit:
    kind: str  # IDLE | AGE
    days: int
    warn_days: int  # warn this many days before it lapses
    why: str  # for people: "Microsoft refresh tokens lapse after 90 days unused"


@dataclass(**FROZEN)
class LoginFacts:
    logged_in_at: datetime  # when a person last ran the interactive login (kept across refreshes)
    last_refresh_at: datetime | None = None
    # When the provider itself said the refresh token ends (refresh_token_expires_in, Keycloak's
    # refresh_expires_in): better than any guess from the limits.
    refresh_token_expires_at: datetime | None = None


@dataclass(**FROZEN)
class LoginOutlook:
    stops_at: datetime | None  # None: no known end
    cause: str  # why it stops then ("" when stops_at is None)
    warn: bool  # within the warning window (or already past)
    lapsed: bool  # past stops_at: the next refresh will be refused


# A declared expiry gets at most this much warning, and at most half the token's own lifetime
# (a refresh token that lives one hour must not be "about to lapse" from its first minute).
DECLARED_WARN = timedelta(days=3)


def outlook(facts: LoginFacts, limits: tuple[Limit, ...], now: datetime) -> LoginOutlook:
    """The earliest known end of the login, and whether to warn about it now."""
    candidates: list[tuple[datetime, timedelta, str]] = []
    last_use = facts.last_refresh_at or facts.logged_in_at
    for limit in limits:
        start = last_use if limit.kind == IDLE else facts.logged_in_at
        candidates.append((start + timedelta(days=limit.days), timedelta(days=limit.warn_days), limit.why))
    if facts.refresh_token_expires_at is not None:
        lifetime = facts.refresh_token_expires_at - last_use
        window = min(DECLARED_WARN, max(lifetime, timedelta(0)) / 2)
        candidates.append((facts.refresh_token_expires_at, window, "the provider said the refresh token ends then"))
    if not candidates:
        return LoginOutlook(stops_at=None, cause="", warn=False, lapsed=False)
    stops_at, window, cause = min(candidates, key=lambda c: c[0])
    return LoginOutlook(stops_at=stops_at, cause=cause, warn=now >= stops_at - window, lapsed=now >= stops_at)
