"""The pipe between the emulator's HTTP process and its connector process (see connector.py).

Both ends hold a `Channel` over one end of a socketpair, framed and pickled by multiprocessing's
`Connection`. A message is a tuple `(kind, ...)`: `notify` sends one and expects nothing back; `call`
sends `("call", id, name, *args)` and waits for the other end's `("reply", id, ok, value)`. One reader
thread per end receives everything: replies wake their caller, the rest goes to the end's handler.
"""
from __future__ import annotations

import itertools
import threading
from multiprocessing.connection import Connection


class ChannelClosed(Exception):
    """The other process is gone (or the channel was closed): no answer will come."""


class Channel:
    def __init__(self, fd: int, handle, on_close=None):
        """`handle(message)` runs on the reader thread for every message that is not a reply; a call's
        handler must answer it with `reply`. `on_close()` runs once when the other end goes away."""
        self.connection = Connection(fd)
        self.handle, self.on_close = handle, on_close
        self.send_lock = threading.Lock()
        self.waiting: dict[int, list] = {}  # call id -> [event, ok, value]
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.closed = False
        self.reader = threading.Thread(target=self._read, name="channel-reader", daemon=True)

    def start(self) -> None:
        self.reader.start()

    def notify(self, *message) -> None:
        with self.send_lock:
            if self.closed:
                raise ChannelClosed("the connector process is gone")
            try:
                self.connection.send(message)
            except OSError as e:
                raise ChannelClosed(f"the connector process is gone: {e}")

    def call(self, name: str, *args, timeout: float = 120.0):
        """Runs `name(*args)` in the other process and returns its value; its exception comes back as
        a RuntimeError carrying the message."""
        call_id = next(self.ids)
        slot = [threading.Event(), False, None]
        with self.lock:
            if self.closed:
                raise ChannelClosed("the connector process is gone")
            self.waiting[call_id] = slot
        try:
            self.notify("call", call_id, name, *args)
            if not slot[0].wait(timeout):
                raise TimeoutError(f"no answer to {name} in {timeout:g} s")
        finally:
            with self.lock:
                self.waiting.pop(call_id, None)
        if not slot[1]:
            raise slot[2] if isinstance(slot[2], ChannelClosed) else RuntimeError(slot[2])
        return slot[2]

    def reply(self, call_id: int, ok: bool, value) -> None:
        try:
            self.notify("reply", call_id, ok, value)
        except ChannelClosed:
            pass  # the caller is gone; nobody is waiting

    def close(self) -> None:
        with self.send_lock:
            self.closed = True
            self.connection.close()

    def _read(self) -> None:
        try:
            while True:
                message = self.connection.recv()
                if message[0] == "reply":
                    _, call_id, ok, value = message
                    with self.lock:
                        slot = self.waiting.get(call_id)
                    if slot is not None:
                        slot[1], slot[2] = ok, value
                        slot[0].set()
                else:
                    self.handle(message)
        except (EOFError, OSError):
            pass
        with self.lock:
            self.closed = True
            waiting = list(self.waiting.values())
        for slot in waiting:
            slot[1], slot[2] = False, ChannelClosed("the connector process is gone")
            slot[0].set()
        if self.on_close is not None:
            self.on_close()
