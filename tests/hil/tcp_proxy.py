"""A loopback TCP proxy for fault tests: pass, delay or drop the traffic of an OPC UA link.

Runs its own asyncio loop on a thread. Modes (switchable at any time):

* ``pass``  — forward both directions;
* ``delay`` — forward, each chunk held back ``delay_s`` (order kept, per direction);
* ``drop``  — keep every socket open and silently discard what arrives (a black-holed link:
  the peer sees no error, only silence);
* ``cut``   — close every open connection (both ends see a reset/EOF); new connections are
  accepted and forwarded according to the mode that follows.
"""

from __future__ import annotations

import asyncio
import threading
import time


class TcpProxy:
    def __init__(self, listen_port: int, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.listen_port = listen_port
        self.target_port = target_port
        self.mode = "pass"
        self.delay_s = 0.0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()

    # ------------------------------------------------------------------ control
    def start(self) -> TcpProxy:
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("proxy did not start")
        return self

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        if mode not in ("pass", "delay", "drop", "cut"):
            raise ValueError(mode)
        self.delay_s = delay_s if mode == "delay" else 0.0
        if mode == "cut":
            fut = asyncio.run_coroutine_threadsafe(self._cut(), self._loop)
            fut.result(5.0)
            mode = "pass"
        self.mode = mode

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            await self._cut()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, self.host, self.listen_port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _cut(self) -> None:
        for w in list(self._writers):
            try:
                w.transport.abort()
            except Exception:  # noqa: BLE001
                pass
        self._writers.clear()

    async def _client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            cwriter.transport.abort()
            return
        self.connections += 1
        self._writers.update((cwriter, swriter))
        await asyncio.gather(
            self._pump(creader, swriter), self._pump(sreader, cwriter), return_exceptions=True
        )
        for w in (cwriter, swriter):
            self._writers.discard(w)
            try:
                w.transport.abort()
            except Exception:  # noqa: BLE001
                pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def sender() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.create_task(sender())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.mode == "drop":
                    continue
                await queue.put((time.monotonic() + self.delay_s, data))
        finally:
            await queue.put(None)
            try:
                await asyncio.wait_for(task, timeout=max(1.0, self.delay_s + 1.0))
            except Exception:  # noqa: BLE001
                task.cancel()
            writer.transport.abort()
