"""A real mail client for tests: mutt in a private tmux, reading IMAP and sending by SMTP.

    with Mutt(tmp_path, servers, "young@staff.example.test", name="Young Staff") as mutt:
        mutt.reply("Thanks, fixed.")       # to the newest message in the INBOX

mutt is driven the way a person drives it: keys typed into a terminal (tmux
send-keys), the screen read back (capture-pane). Replying runs mutt's editor on the
draft mutt wrote, and mutt then sends through the test SMTP server with the user's
login, just as a staff member pressing Reply would. Nothing is set that a person
would not set: mutt's defaults decide In-Reply-To, References and which address a
reply goes to (Reply-To over From).

The editor is a small script that writes the reply above the quote, where a person
would type it. What is under test is mutt (its reply headers, its quoting, its
SMTP); typing into vim through a terminal on a loaded CI machine lost keys now and
then (mutt then says "Aborted unmodified message"), and that was vim timing, not
anything partnerdesk or mutt does.

Needs the Debian packages mutt and tmux (scripts/setup.sh). The tmux server has
a socket of its own under the test directory and is killed on exit, so nothing is
left running and no other tmux is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

# mutt runs "$editor <draft>"; this one puts the prepared reply above mutt's attribution line
# and the quoted message, as a person typing at the top of the draft would.
# mutt tells an edited draft by its modification time, to the second: an editor done within the
# same second as the draft was written (and a file clock a tick behind the system's) looked unedited to
# it ("Aborted unmodified message", one CI run in many). A person takes longer; the script moves the
# time on by a second.
EDITOR = """\
import os, sys, time
draft, reply = sys.argv[2], sys.argv[1]
with open(reply, encoding="utf-8") as f:
    text = f.read()
with open(draft, encoding="utf-8") as f:
    quoted = f.read()
was = os.stat(draft).st_mtime_ns
with open(draft + ".new", "w", encoding="utf-8") as f:
    f.write(text.rstrip("\\n") + "\\n" + quoted)
os.replace(draft + ".new", draft)
later = max(time.time_ns(), was + 1_000_000_000)
os.utime(draft, ns=(later, later))
os.remove(reply)  # what the test checks: the editor ran on this reply
"""


def available() -> bool:
    return bool(shutil.which("mutt") and shutil.which("tmux"))


class MuttError(AssertionError):
    pass


class Mutt:
    def __init__(self, root: str | os.PathLike, servers, address: str, *, password: str = "pw",
                 name: str = "", smtp_login: bool = True) -> None:
        self.root = Path(root) / f"mutt-{address}"
        self.servers, self.address, self.password, self.name = servers, address, password, name
        self.smtp_login = smtp_login
        self.socket = self.root / "tmux.sock"
        self._reply_file = self.root / "reply.txt"
        self._running = False

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Mutt:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for sub in ("home", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "editor.py").write_text(EDITOR)
        (self.root / "muttrc").write_text(self._muttrc())
        env = {"HOME": str(self.root / "home"), "TERM": "xterm", "LANG": "C.UTF-8",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        # A wide window, so no header is cut on screen; -n: no system muttrc.
        self._tmux("new-session", "-d", "-s", "mutt", "-x", "200", "-y", "50",
                   f"mutt -n -F {self.root / 'muttrc'}", env=env)
        self._running = True
        try:
            self.wait_for("Mutt: =INBOX")
        except BaseException:
            self.stop()  # __exit__ never runs when __enter__ fails
            raise

    def stop(self) -> None:
        if self._running:
            self._running = False
            subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=10)

    def _muttrc(self) -> str:
        s = self.servers
        user = quote(self.address, safe="")
        smtp_user = f"{user}@" if self.smtp_login else ""
        return f"""\
# Written by tests/mutt.py: a staff member's mutt, pointed at the test servers.
set folder="imap://{user}@{s.host}:{s.imap_port}/"
set spoolfile="+INBOX"
set imap_pass="{self.password}"
set smtp_url="smtp://{smtp_user}{s.host}:{s.smtp_port}/"
set smtp_pass="{self.password}"
set from="{self.address}"
set realname="{self.name}"
set use_from=yes
set hostname="{self.address.partition('@')[2]}"
# The test servers speak no TLS.
set ssl_starttls=no
set ssl_force_tls=no
set editor="{sys.executable} {self.root / 'editor.py'} {self._reply_file}"
# Skip the questions mutt asks before the editor (To, Subject, quote?) with their default answers.
set fast_reply=yes
set include=yes
set reply_to=yes
# Nothing kept on the side: no Sent folder, caches or postponed drafts to ask about.
set record=""
set copy=no
set move=no
set postpone=no
set header_cache=""
set message_cachedir=""
set tmpdir="{self.root / 'tmp'}"
set charset="utf-8"
set send_charset="utf-8"
set mail_check=1
set mark_old=no
set wait_key=no
"""

    # -- the terminal -----------------------------------------------------------------------------

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True,
                              timeout=10, env=env, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise MuttError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "mutt")

    def keys(self, *keys: str) -> None:
        """Key names as tmux knows them ("Enter", "Escape", "r")."""
        self._tmux("send-keys", "-t", "mutt", *keys)

    def type(self, text: str) -> None:
        """Literal text, one line (-l: no key-name lookup)."""
        self._tmux("send-keys", "-t", "mutt", "-l", text)

    def wait_for(self, text: str, timeout: float = 15) -> str:
        """The screen once it shows ``text`` (a bound on waiting, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise MuttError(f"mutt never showed {text!r}; the screen:\n{screen}")
            time.sleep(0.1)

    def press(self, key: str, *, until: str, still: str, timeout: float = 15) -> str:
        """Press ``key`` until the screen shows ``until``. mutt flushes typeahead when it redraws
        (curses flushinp), so a key sent the instant a screen appeared can be lost: it is pressed
        again only while the screen still shows ``still``, i.e. while nothing has happened."""
        deadline = time.monotonic() + timeout
        self.keys(key)
        pressed_at = time.monotonic()
        while True:
            screen = self.screen()
            if until in screen:
                return screen
            now = time.monotonic()
            if now > deadline:
                raise MuttError(f"mutt never showed {until!r} after {key!r}; the screen:\n{screen}")
            # Pressed again only when nothing is under way: a key mutt did take and is still working on
            # (fetching the message over IMAP on a loaded machine) would be taken twice, and a second
            # "r" on the compose screen is edit-reply-to, a prompt the "y" would then be typed into.
            lines = screen.rstrip("\n").splitlines()
            busy = "Sending" in screen or (lines and "..." in lines[-1])
            if now - pressed_at > 4 and lines and still in lines[0] and not busy:  # blank: the editor runs
                self.keys(key)
                pressed_at = now
            time.sleep(0.1)

    # -- what a person does -------------------------------------------------------------------------

    def reply(self, text: str, *, which: int = 0) -> str:
        """Reply to message number ``which`` + 1 in the INBOX (0: the first listed): press r, write
        ``text`` above the quote, send. Returns the compose screen it confirmed."""
        # (No Escape first: in mutt's index Escape starts a Meta key, and "Escape j" is not "j".)
        self.wait_for("Mutt: =INBOX")
        for _ in range(which):
            self.keys("j")
        self._reply_file.write_text(text, encoding="utf-8")
        self.press("r", until="y:Send", still="r:Reply")
        if self._reply_file.exists():
            raise MuttError(f"mutt showed its compose screen without running the editor:\n{self.screen()}")
        compose = self.wait_for("Subject:")  # the header block drawn to its last line, not just the help bar
        self.press("y", until="Mail sent.", still="y:Send")
        return compose
