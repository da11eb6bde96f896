"""`auth login` and `auth status`: the OAuth2 login a person runs once, and how it stands.

`auth login` runs the flow the config names ([oauth2] flow: device code, loopback redirect with
PKCE, or app-only), or with ``--refresh-token-stdin`` keeps a refresh token obtained elsewhere;
then it logs in to the OAuth2 servers with the new token to check the account. It needs neither the
store nor the daemon lock: the daemon may run meanwhile, and picks the new login up at its next poll.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from config.servers import CLIENT_CREDENTIALS, LOOPBACK
from service.logins import login_outlook
from service.ports import LoginState

from .common import error
from .context import Context

EXIT_LOGIN = 77  # as run.py: a person must log in (again)


def add_parser(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("auth", help="the OAuth2 login of the mailbox: log in, see how it stands")
    asub = ap.add_subparsers(dest="auth_verb", required=True)
    al = asub.add_parser("login", help="log in once (the flow [oauth2] names), then check it on the servers")
    al.add_argument("--port", type=int, default=0,
                    help="loopback flow: listen on this port (for an SSH tunnel: ssh -L PORT:127.0.0.1:PORT host)")
    al.add_argument("--paste", action="store_true",
                    help="loopback flow: do not listen; paste the address the browser ended on")
    al.add_argument("--refresh-token-stdin", action="store_true",
                    help="keep a refresh token obtained elsewhere (read from standard input; used once to check it)")
    al.set_defaults(run=login)
    ast = asub.add_parser("status", help="account, provider, scopes, expiry, last refresh; exit 77 if unusable")
    ast.add_argument("--json", action="store_true", help="print JSON (the same facts) instead of text")
    ast.set_defaults(run=status)


def _show(text: str) -> None:
    print(text, flush=True)


def login(args: argparse.Namespace, ctx: Context) -> int:
    o = ctx.settings.oauth2
    logins = ctx.logins()  # ConfigError when no server logs in by OAuth2
    assert o is not None
    if (args.port or args.paste) and (o.flow != LOOPBACK or args.refresh_token_stdin):
        error(f"--port and --paste are for the loopback login; {o.source} [oauth2] flow is {o.flow!r}")
        return 2
    if not 0 <= args.port < 65536:
        error(f"--port {args.port} is not a TCP port")
        return 2
    if args.refresh_token_stdin:
        if sys.stdin.isatty():
            print("paste the refresh token, then press Enter and Ctrl-D:", file=sys.stderr, flush=True)
        checks = logins.store_refresh_token(sys.stdin.read())
    else:
        if o.flow == CLIENT_CREDENTIALS:
            _show(f"app-only access: asking {o.provider} for a token with the app's secret")
        pasted = (lambda: input("address the browser ended on: ")) if args.paste else None
        checks = logins.login(show=_show, port=args.port, pasted=pasted)
    state = logins.state()
    assert state is not None
    print(f"logged in: {state.account} at {state.provider}; the login is in {state.token_file}")
    for line in checks:
        print(f"  {line}")
    print("a running daemon uses it from its next poll on; `auth status` shows how it stands")
    return 0


def describe(state: LoginState | None, ctx: Context) -> dict[str, Any]:
    """What `auth status` says, as data (the --json output)."""
    o = ctx.settings.oauth2
    assert o is not None
    app_only = o.flow == CLIENT_CREDENTIALS
    base: dict[str, Any] = {"provider": o.provider, "account": o.account, "flow": o.flow,
                            "token_file": o.token_file, "login_command": o.login_command}
    if state is None:
        usable = app_only  # an app-only login asks for a token when it needs one
        return base | {"logged_in": False, "usable": usable,
                       "problem": "" if usable else "nobody has logged in yet"}
    now = ctx.clock.wall()
    ahead = login_outlook(state, () if app_only else o.limits, now)
    problem = ""
    if state.refused:
        problem = f"the provider refused the login: {state.refused}"
    elif ahead.lapsed:
        problem = f"probably lapsed: {ahead.cause}"
    elif ahead.warn:
        problem = f"lapses soon: {ahead.cause}"
    return base | {
        "logged_in": True,
        "usable": not state.refused,
        "scopes": list(state.scopes),
        "logged_in_at": _iso(state.logged_in_at),
        "last_refresh_at": _iso(state.refreshed_at),
        "access_token_expires_at": _iso(state.access_expires_at),
        "refresh_token_expires_at": _iso(state.refresh_token_expires_at),
        "stops_at": _iso(ahead.stops_at),
        "stops_because": ahead.cause,
        "warn": ahead.warn or bool(state.refused),
        "refused": state.refused,
        "refused_at": _iso(state.refused_at),
        "problem": problem,
    }


def status(args: argparse.Namespace, ctx: Context) -> int:
    info = describe(ctx.logins().state(), ctx)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0 if info["usable"] else EXIT_LOGIN
    print(f"account        {info['account']}")
    print(f"provider       {info['provider']} ({info['flow']} login)")
    print(f"token file     {info['token_file']}")
    if info["logged_in"]:
        print(f"scopes         {' '.join(info['scopes']) or '-'}")
        print(f"logged in      {info['logged_in_at']}")
        print(f"last refresh   {info['last_refresh_at'] or 'never (the access token is from the login)'}")
        print(f"access token   expires {info['access_token_expires_at'] or 'at an unknown time'} "
              f"(refreshed by itself ahead of that)")
        print(f"login ends     {info['stops_at'] + ' (' + info['stops_because'] + ')' if info['stops_at'] else 'no known end'}")
    if info["problem"]:
        print(f"problem        {info['problem']}")
        print(f"to log in      {info['login_command']}")
    else:
        print("state          usable")
    return 0 if info["usable"] else EXIT_LOGIN


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None
