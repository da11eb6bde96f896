"""The exit codes (README "Exit codes") and the one place an error becomes one, with its message.

2 is "fix what you gave me" (the config, an argument, an input file); 75 is EX_TEMPFAIL, "run again
later"; 77 EX_NOPERM, an OAuth2 login lapsed (a person runs `auth login`); 141 = 128 + SIGPIPE, as for
any tool whose reader went away (`... | head`).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

EXIT_ERROR, EXIT_BAD_INPUT, EXIT_RUNNING, EXIT_TEMPFAIL, EXIT_LOGIN, EXIT_PIPE = 1, 2, 3, 75, 77, 141
EXIT_CONFIG = EXIT_BAD_INPUT


def run_verb(go: Callable[[], int], config_file: Callable[[], str | None]) -> int:
    """``go()``'s exit code, or the code of the error it raised (the message on stderr, no traceback for
    errors that are not ours). ``config_file``: the config file, once known, to name in config errors."""
    try:
        code = _mapped(go, config_file)
        sys.stdout.flush()  # a closed pipe shows here at the latest, not in the interpreter's shutdown
        return code
    except BrokenPipeError:
        # `... | head`: the reader has what it wanted. No traceback, and nothing more to print.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


def _mapped(go: Callable[[], int], config_file: Callable[[], str | None]) -> int:
    from workflows.errors import AlreadyRunning, BadInput, ConfigError, LoginRequired, PartnerdeskError, Transient

    try:
        return go()
    except BadInput as e:  # an argument or an input file: the message names it
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as e:
        message, source = str(e), config_file()
        if source is not None and not message.startswith(source):
            message = f"{source}: {message}"  # adapters do not know the file; say which one
        print(f"config error: {message}", file=sys.stderr)
        return EXIT_CONFIG
    except AlreadyRunning as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUNNING
    except LoginRequired as e:
        print(f"login required: {e}", file=sys.stderr)
        return EXIT_LOGIN
    except Transient as e:
        print(f"temporary failure: {e}; nothing was lost, run again later", file=sys.stderr)
        return EXIT_TEMPFAIL
    except PartnerdeskError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
