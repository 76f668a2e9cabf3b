"""Shared helpers for the fake servers: per-recipient mode scripts and polling."""

from __future__ import annotations

import bisect
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from email.utils import getaddresses
from typing import Any


def addr_spec(address: str) -> str:
    """Return the lower-cased bare addr-spec of ``"Name <a@b>"`` / ``"<a@b>"`` / ``"a@b"``."""
    parsed = getaddresses([address])
    if parsed and parsed[0][1]:
        return parsed[0][1].strip().lower()
    return address.strip().strip("<>").lower()


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a currently unused TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def most_in_one_second(times: list[float]) -> int:
    """The largest number of `times` (request arrival times) inside any one-second window."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate()`` until it returns something truthy or ``timeout`` seconds pass.

    Returns the last value of ``predicate()``: truthy on success, falsy on timeout, so
    ``assert fake.wait_for(lambda: len(fake.accepted) == 3)`` reads naturally.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class ModeScripts:
    """Thread-safe per-recipient queues of modes.

    ``next_mode(addr)`` returns, in order of precedence: the global mode if one is set
    (scripts are then *not* consumed), else the next unconsumed scripted mode for the
    recipient, else ``default_mode``.
    """

    def __init__(self, default_mode: str, validate: Callable[[str], str]):
        self._lock = threading.Lock()
        self._validate = validate
        self._scripts: dict[str, list[str]] = {}
        self._initial_default = validate(default_mode)
        self.default_mode = self._initial_default
        self.global_mode: str | None = None

    def script(self, address: str, modes: str | Iterable[str]) -> None:
        if isinstance(modes, str):
            modes = [modes]
        checked = [self._validate(str(m)) for m in modes]
        with self._lock:
            self._scripts[addr_spec(address)] = checked

    def set_global_mode(self, mode: str | None) -> None:
        mode = None if mode is None else self._validate(str(mode))
        with self._lock:
            self.global_mode = mode

    def set_default_mode(self, mode: str) -> None:
        mode = self._validate(str(mode))
        with self._lock:
            self.default_mode = mode

    def remaining(self, address: str) -> list[str]:
        with self._lock:
            return list(self._scripts.get(addr_spec(address), []))

    def next_mode(self, address: str) -> str:
        mode = self.next_scripted(address)
        return self.default_mode if mode is None else mode

    def next_scripted(self, address: str) -> str | None:
        """The global mode, else the next scripted mode for `address` (consumed), else None:
        a fake with rules of its own (a fault mix) applies them only when this is None."""
        key = addr_spec(address)
        with self._lock:
            if self.global_mode is not None:
                return self.global_mode
            queue = self._scripts.get(key)
            if queue:
                return queue.pop(0)
            return None

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.global_mode = None
            self.default_mode = self._initial_default


class Scripted(ABC):
    """The scripting API both fakes share; a fake sets ``_scripts`` and ``_clear_records``."""

    _scripts: ModeScripts

    @abstractmethod
    def _clear_records(self) -> None: ...

    @property
    def default_mode(self) -> str:
        return self._scripts.default_mode

    @default_mode.setter
    def default_mode(self, mode: str) -> None:
        self._scripts.set_default_mode(mode)

    def script(self, address: str, modes: str | Iterable[str]) -> None:
        """Replace the mode script for ``address`` (one mode consumed per message)."""
        self._scripts.script(address, modes)

    def remaining(self, address: str) -> list[str]:
        """Not yet consumed scripted modes for ``address``."""
        return self._scripts.remaining(address)

    def set_global_mode(self, mode: str | None) -> None:
        """Give every message this mode (e.g. an outage); ``None`` clears it."""
        self._scripts.set_global_mode(mode)

    def reset(self) -> None:
        """Forget scripts, global mode, default mode and all records."""
        self._scripts.reset()
        self._clear_records()


def parse_seconds(mode: str, prefix: str) -> float:
    """``parse_seconds("hang:2.5", "hang")`` -> 2.5 (raises ValueError if malformed)."""
    head, _, tail = mode.partition(":")
    if head != prefix or not tail:
        raise ValueError(f"mode {mode!r} must look like '{prefix}:<seconds>'")
    seconds = float(tail)
    if seconds < 0:
        raise ValueError(f"mode {mode!r}: seconds must be >= 0")
    return seconds
