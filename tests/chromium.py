"""A real headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, for tests.

    with Chromium() as browser:
        page = browser.page(width=1280, height=900)
        page.open(Path("report.html").as_uri())
        assert not page.errors          # console errors, uncaught exceptions, failed loads
        page.evaluate("document.title")
        page.screenshot(tmp / "report.png")

Chromium starts with a fresh profile in a temporary folder, listens for DevTools on 127.0.0.1 (a free
port it picks itself) and is killed when the block ends, also when a test fails. The protocol is spoken
through websocket-client (one blocking socket; events are kept while a command waits for its answer).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import websocket

BINARY = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0")
START_TIMEOUT = 60.0  # seconds for Chromium to say where DevTools listens (a cold start on a busy 2-core box)
COMMAND_TIMEOUT = 60.0


def available() -> bool:
    return Path(BINARY).exists()


needs_chromium = pytest.mark.skipif(not available(), reason="chromium is not installed (scripts/setup.sh installs it)")


class Chromium:
    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="partnerdesk-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: websocket.WebSocket | None = None
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        log = open(self.profile / "stderr.log", "wb")  # noqa: SIM115 - closed with the process
        env = {k: v for k, v in os.environ.items() if k not in ("http_proxy", "https_proxy", "HTTP_PROXY",
                                                               "HTTPS_PROXY")}
        self.proc = subprocess.Popen([BINARY, *FLAGS, f"--user-data-dir={self.profile / 'profile'}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        url = None
        while url is None:
            text = (self.profile / "stderr.log").read_text(errors="replace")
            m = re.search(r"DevTools listening on (ws://\S+)", text)
            if m:
                url = m.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"chromium did not start:\n{text[-3000:]}")
            else:
                time.sleep(0.1)
        assert url.startswith("ws://127.0.0.1:"), url
        self.ws = websocket.create_connection(url, timeout=COMMAND_TIMEOUT, suppress_origin=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the renderers go too
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- the protocol ---------------------------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        assert self.ws is not None
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """The first event ``method`` of ``session`` not yet consumed (earlier events are kept)."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method and e.get("sessionId") == session:
                    return self.events.pop(i)["params"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(json.loads(self.ws.recv()))

    def page(self, *, width: int = 1280, height: int = 900, mobile: bool = False) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable", session=session)
        page.resize(width, height, mobile=mobile)
        return page


class Page:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def resize(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def emulate(self, *, media: str = "", dark: bool = False, auto_dark: bool = False) -> None:
        """``media`` "print" or "screen"; ``dark``: prefers-color-scheme dark; ``auto_dark``: Chromium's forced
        dark mode, the way mail apps darken a mail that has its own colours."""
        self.send("Emulation.setEmulatedMedia", {"media": media, "features": [
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
        self.send("Emulation.setAutoDarkModeOverride", {"enabled": auto_dark} if auto_dark else {})

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event; what went wrong is in ``errors``, every request in ``requests``."""
        self.browser.events = [e for e in self.browser.events if e.get("sessionId") != self.session]
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {result['errorText']}")
        self.browser.wait_for("Page.loadEventFired", self.session)
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True)

    def _events(self, method: str) -> list[dict[str, Any]]:
        self.send("Runtime.evaluate", {"expression": "1"})  # a round trip: events sent before it are in
        return [e["params"] for e in self.browser.events
                if e.get("sessionId") == self.session and e.get("method") == method]

    @property
    def requests(self) -> list[str]:
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    @property
    def errors(self) -> list[str]:
        out = [f"console.{e['type']}: {' '.join(str(a.get('value', a.get('description', ''))) for a in e['args'])}"
               for e in self._events("Runtime.consoleAPICalled") if e["type"] in ("error", "warning", "assert")]
        out += [f"exception: {e['exceptionDetails'].get('exception', {}).get('description') or e['exceptionDetails']}"
                for e in self._events("Runtime.exceptionThrown")]
        out += [f"log {e['entry']['level']}: {e['entry']['text']} {e['entry'].get('url', '')}"
                for e in self._events("Log.entryAdded") if e["entry"]["level"] in ("error", "warning")]
        out += [f"load failed: {e.get('errorText')} ({e.get('type')})" for e in self._events("Network.loadingFailed")]
        return out

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": await_promise})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            w, h = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": min(h, 16000), "scale": 1}
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))
        return path

    def pdf(self, path: Path) -> Path:
        data = self.send("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
