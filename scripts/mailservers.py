"""Run the test mail servers by hand: python scripts/mailservers.py --root DIR

Prints host and ports as one JSON line, then serves until Ctrl-C (or SIGTERM).
Log in to IMAP with a --user address and password "pw".
"""

import argparse
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.mailservers import MailServers  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="directory for config, logs and mail (default: new dir in /tmp)")
    parser.add_argument("--user", action="append", default=[],
                        help="mailbox to create (repeatable); default support@example.test")
    parser.add_argument("--domain", action="append", default=[],
                        help="local domain delivered to Dovecot (repeatable); default example.test")
    args = parser.parse_args()

    # Stop cleanly on SIGTERM too, and on SIGINT even when started with `&` from
    # a script (non-interactive shells start background jobs ignoring SIGINT).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with MailServers(args.root, local_domains=tuple(args.domain) or ("example.test",)) as ms:
        for user in args.user or ["support@example.test"]:
            ms.add_user(user)
        print(json.dumps({"host": ms.host, "imap_port": ms.imap_port, "smtp_port": ms.smtp_port,
                          "lmtp_port": ms.lmtp_port, "root": str(ms.root),
                          "users": args.user or ["support@example.test"]}), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
