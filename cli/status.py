"""`status`: is the desk working? The last successful fetch, send and tick, the outbox, logins, alarms.

It reads the heartbeat file the daemon (or `once`) writes after every cycle, and the store; it never
connects anywhere, so it also answers while the servers are away.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from workflows.calendar import format_duration
from workflows.health import Health, report

from .context import Context


def add_parser(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("status", help="is it working: last fetch, send and tick, outbox depth, stuck mail, "
                                       "logins, alarms (from the heartbeat file and the store)")
    st.add_argument("--json", action="store_true", help="print JSON (the same facts) instead of text")
    st.set_defaults(run=run)


def _ago(value: str | None, now: datetime) -> str:
    if not value:
        return "never"
    at = datetime.fromisoformat(value)
    local = at.astimezone(now.tzinfo).isoformat(timespec="seconds")
    return f"{local} ({format_duration(max(now - at, now - now))} ago)"


def _link(d: dict[str, Any], now: datetime, ok_words: str) -> str:
    if d["state"] == "ok":
        return ok_words
    if d["state"] == "failing":
        return f"FAILING since {_ago(d['since'], now)}: {d['error']}"
    return "not tried yet"


def run(args: argparse.Namespace, ctx: Context) -> int:
    now = ctx.clock.now().astimezone(ctx.settings.calendar.tz())  # printed in the program's time zone
    store = ctx.store()
    hb = ctx.heartbeat()
    data = hb.read()
    r = report(Health.from_dict(data) if data else None, store.outbox(), now, ctx.settings.health,
               daemon_pid=store.daemon_pid())
    r["heartbeat_file"] = str(getattr(hb, "path", ""))
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    d = r["daemon"]
    print(f"partnerdesk status at {now.isoformat(timespec='seconds')}: {'healthy' if r['healthy'] else 'PROBLEMS'}")
    print(f"  daemon       {'running, pid ' + str(d['pid']) if d['running'] else 'not running'}")
    print(f"  last cycle   {_ago(r['last_cycle'], now)}")
    print(f"  last fetch   {_ago(r['last_fetch'], now)}")
    print(f"  last send    {_ago(r['last_send'], now)}")
    print(f"  last tick    {_ago(r['last_tick'], now)}")
    print(f"  intake       {_link(r['intake'], now, 'ok')}")
    print(f"  sending      {_link(r['sending'], now, 'ok')}")
    o = r["outbox"]
    oldest = o["oldest_pending"]
    print(f"  outbox       {o['pending']} pending, {o['stuck']} stuck"
          + (f"; oldest {oldest['key']} queued {_ago(oldest['queued_at'], now)}, {oldest['tries']} tries"
             + (f", last error: {oldest['last_error']}" if oldest["last_error"] else "") if oldest else ""))
    if r["alert"]["outage_since"]:
        print(f"  alarm        staff told that no mail has been taken in since {r['alert']['outage_since']}")
    print(f"  heartbeat    {r['heartbeat_file']}")
    for p in r["problems"]:
        print(f"problem: {p}")
    return 0
