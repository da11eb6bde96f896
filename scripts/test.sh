#!/bin/sh
# The whole test suite on a fresh Debian machine (as root): installs Dovecot and the
# Python packages, then runs every test, real mail servers included. The servers are
# started and stopped by the tests themselves (tests/mailservers.py) on 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
exec python3 -m pytest "$@"
