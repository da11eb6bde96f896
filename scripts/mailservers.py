"""Run the test mail servers by hand: python scripts/mailservers.py --root DIR

Prints host and ports as one JSON line, then serves until Ctrl-C (or SIGTERM).
Log in to IMAP with a --user address and password "pw".

--oauth2 also runs the test OAuth2 provider (tests/oauth_provider.py) with a public
client "partnerdesk"; IMAP and SMTP then accept its tokens too (XOAUTH2, OAUTHBEARER).
Its logins are the first --user's: the authorization endpoint logs that user in at once,
and a device code is approved by opening the verification URL with ?user_code=CODE.
"""

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.mailservers import MailServers  # noqa: E402
from tests.oauth_provider import OAuthProvider  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="directory for config, logs and mail (default: new dir in /tmp)")
    parser.add_argument("--user", action="append", default=[],
                        help="mailbox to create (repeatable); default support@example.test")
    parser.add_argument("--domain", action="append", default=[],
                        help="local domain delivered to Dovecot (repeatable); default example.test")
    parser.add_argument("--oauth2", action="store_true", help="also run a local OAuth2 provider")
    args = parser.parse_args()
    users = args.user or ["support@example.test"]

    # Stop cleanly on SIGTERM too, and on SIGINT even when started with `&` from
    # a script (non-interactive shells start background jobs ignoring SIGINT).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        op = stack.enter_context(OAuthProvider()) if args.oauth2 else None
        ms = stack.enter_context(MailServers(args.root, local_domains=tuple(args.domain) or ("example.test",),
                                             oauth2_introspection_url=op.introspect_url if op else None))
        for user in users:
            ms.add_user(user)
        info = {"host": ms.host, "imap_port": ms.imap_port, "smtp_port": ms.smtp_port,
                "lmtp_port": ms.lmtp_port, "root": str(ms.root), "users": users}
        if op is not None:
            op.add_client("partnerdesk")
            op.authorizing_user = users[0]
            info["oauth2"] = {"client_id": "partnerdesk", "token_url": op.token_url, "device_url": op.device_url,
                              "authorize_url": op.authorize_url}
        print(json.dumps(info), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
