#!/bin/sh
# Prepare a fresh Debian machine (as root) for the integration tests:
# Dovecot IMAP + LMTP (+ Sieve), and the Python requirements. Safe to run again.
set -eu
cd "$(dirname "$0")/.."

# dovecot-sieve: Pigeonhole, the Sieve vacation responder the loop tests answer to.
PACKAGES="dovecot-imapd dovecot-lmtpd dovecot-sieve"
if ! dpkg -s $PACKAGES >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends $PACKAGES
fi

# Headless Chromium opens the status report and the HTML mail in the tests (tests/chromium.py);
# fonts-dejavu-core so that its screenshots have readable text.
if ! command -v chromium >/dev/null 2>&1 || ! [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi

# A real mail client for the tests (tests/mutt.py): mutt driven in tmux.
if ! command -v mutt >/dev/null 2>&1 || ! command -v tmux >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends mutt tmux
fi
# notmuch: the threading benchmark (benchmarks/thread_grouping.py) and its test compare with it.
if ! command -v notmuch >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends notmuch
fi

# The tests run their own private Dovecots; a system one the package may have
# started would only hold ports 143/993 and confuse `pgrep dovecot`.
if [ -s /run/dovecot/master.pid ]; then
    doveadm stop 2>/dev/null || kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi

python3 -m pip install --disable-pip-version-check -q -r requirements-test.txt
