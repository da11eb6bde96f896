"""The command line: every verb and flag. Each noun's module adds its own sub-commands, in this order."""

from __future__ import annotations

import argparse

from . import auth, automatic, daemon, demo, mailings, once, outbox, partners, report, status, threads, trainings

NOUNS = (demo.add_parser, daemon.add_parser, once.add_parser, threads.add_states_parser, partners.add_parser,
         mailings.add_parser, trainings.add_parser, threads.add_parser, outbox.add_parser, auth.add_parser,
         automatic.add_parser, status.add_parser, report.add_parser)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description="partnerdesk: the email side of the Open Atrium "
                                                           "Partners Program.")
    p.add_argument("--config", help="TOML config file (default: built-in demo settings, local spool)")
    p.add_argument("--now", help="the time the rules see, ISO-8601 with offset (default: the wall clock)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say more: debug logging, and for `once` one line per message taken in")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add in NOUNS:
        add(sub)
    return p
