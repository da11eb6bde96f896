"""OAuth2 logins seen from the application: warn ahead of a known lapse, say loudly when one lapsed.

Helpdesks that built OAuth2 were bitten by refresh tokens that lapsed silently: fetching stopped and
nobody was told. So after every cycle ``LoginWatch.check`` looks at the login (the token file, through
the ``Login`` port): a login the provider refused (or none at all) ends the cycle with LoginRequired,
naming provider, account and the command to run, after everything else the cycle could do was done
(the daemon says it and goes on, `once` exits 77); a login within the provider's warning window of a
known lapse (workflows/login_lifetime.py) puts a line in the cycle's problems, every cycle.

Token lifetimes are real time: the watch reads its own clock (the wall clock), not the rules' ``now``,
which `--now` may set years ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from workflows.errors import LoginRequired
from workflows.login_lifetime import Limit, LoginFacts, LoginOutlook, outlook

from .ports import Login, LoginState
from .report import CycleReport


def login_outlook(state: LoginState, limits: tuple[Limit, ...], now: datetime) -> LoginOutlook:
    facts = LoginFacts(logged_in_at=state.logged_in_at, last_refresh_at=state.refreshed_at,
                       refresh_token_expires_at=state.refresh_token_expires_at)
    return outlook(facts, limits, now)


@dataclass
class LoginWatch:
    login: Login
    provider: str
    account: str
    command: str  # what a person runs to log in again
    limits: tuple[Limit, ...]  # the provider's known lapses; () for app-only logins
    clock: Callable[[], datetime]
    needs_file: bool = True  # False for app-only logins: nothing to lose, a token is asked for when needed

    def required(self, why: str) -> LoginRequired:
        return LoginRequired(f"the OAuth2 login of {self.account} at {self.provider} cannot be used: {why}. "
                             f"To log in, run: {self.command}", provider=self.provider, account=self.account,
                             command=self.command, reason=why)

    def check(self, report: CycleReport) -> LoginRequired | None:
        """The LoginRequired when the login is unusable (the caller raises it, once the cycle's work is
        done); otherwise a problem line in ``report`` when its lapse is near, and None."""
        try:
            state = self.login.state()
        except LoginRequired as e:  # a damaged token file, or the login of another account
            return e
        if state is None:
            return self.required("nobody has logged in yet") if self.needs_file else None
        if state.refused:
            at = f" at {state.refused_at.isoformat()}" if state.refused_at else ""
            return self.required(f"{state.refused}{at}")
        ahead = login_outlook(state, self.limits, self.clock())
        if ahead.lapsed and ahead.stops_at is not None:
            report.problems.append(f"the OAuth2 login of {self.account} at {self.provider} has probably lapsed "
                                   f"({ahead.cause}; since {ahead.stops_at.isoformat()}); if mail stops, run: "
                                   f"{self.command}")
        elif ahead.warn and ahead.stops_at is not None:
            report.problems.append(f"the OAuth2 login of {self.account} at {self.provider} stops working around "
                                   f"{ahead.stops_at.isoformat()} ({ahead.cause}); log in again before then: "
                                   f"{self.command}")
        return None
