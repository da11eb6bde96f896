"""A TCP server on 127.0.0.1, a free port, run by its own event loop in a thread, for tests whose
server must say exactly what the test scripts (a subclass's ``_handle``). ``with Sub() as s: s.port``."""

from __future__ import annotations

import asyncio
import threading


class ScriptedServer:
    port = 0

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def __enter__(self):
        ready = threading.Event()

        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop)
        assert ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)  # in the loop's own thread
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
