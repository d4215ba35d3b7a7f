"""Progress of the kit's long loops (SED training, anchor mining, separator training, tagging), for people.

:func:`progress_bar` is a drop-in for ``tqdm(total=..., desc=..., unit=...)``: in a notebook or a terminal it
draws the usual bar. In addition, when the environment variable ``USSNB_PROGRESS_FILE`` names a file — the
pipeline sets it for every notebook kernel it starts — the bar's state (description, step, total, rate, ETA and
the postfix such as loss or validation SDRi) is written there at most once every ``report_every`` seconds, so
``ussnb pipeline`` can show what a hidden notebook is doing (:class:`StatusMonitor`) without flooding a log.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from .io import atomic_write_text, read_json

ENV_PROGRESS = "USSNB_PROGRESS_FILE"
T = TypeVar("T")


class Progress:
    """A tqdm bar that also reports its state to ``USSNB_PROGRESS_FILE`` (throttled). Same calls as tqdm:
    ``update(n)``, ``set_postfix(**kw)``, ``close()``, ``n``; usable as a context manager."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
                 disable: bool = False, report_every: float = 2.0, **tqdm_kwargs: Any):
        from tqdm.auto import tqdm

        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.postfix: dict[str, Any] = {}
        self._initial, self._start = initial, time.time()
        self._report_every, self._last = report_every, 0.0
        self._path = None if disable else (os.environ.get(ENV_PROGRESS) or None)  # a quiet bar reports nothing
        # in a log file (not a terminal, not a notebook) redraw rarely instead of flooding it
        interactive = "notebook" in tqdm.__module__ or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
        self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                         mininterval=tqdm_kwargs.pop("mininterval", 1.0 if interactive else 30.0), **tqdm_kwargs)
        self._report(force=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._bar.update(n)
        self._report()

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix.update(kwargs)
        self._bar.set_postfix(**kwargs, refresh=False)

    def close(self) -> None:
        self._report(force=True, done=True)
        self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def state(self, done: bool = False) -> dict[str, Any]:
        """Step, total, rate (over the last minute, so a machine that got busier or quieter shows it), ETA."""
        now = time.time()
        elapsed = now - self._start
        self._samples = [(t, n) for t, n in getattr(self, "_samples", []) if now - t <= 60.0] + [(now, self.n)]
        t_old, n_old = self._samples[0] if len(self._samples) > 1 and now - self._samples[0][0] >= 5.0 \
            else (self._start, self._initial)
        rate = (self.n - n_old) / (now - t_old) if now > t_old and self.n > n_old else None
        eta = (self.total - self.n) / rate if rate and self.total else None
        return {"desc": self.desc, "n": self.n, "total": self.total, "unit": self.unit, "elapsed": round(elapsed, 1),
                "rate": round(rate, 3) if rate else None, "eta": round(eta, 1) if eta is not None else None,
                "postfix": {k: str(v) for k, v in self.postfix.items()}, "done": done, "time": time.time()}

    def _report(self, force: bool = False, done: bool = False) -> None:
        if self._path is None:
            return
        now = time.time()
        if not force and now - self._last < self._report_every:
            return
        self._last = now
        try:
            atomic_write_text(self._path, json.dumps(self.state(done)))
        except OSError:  # progress is a courtesy; never fail the work for it
            self._path = None


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
                 disable: bool = False, **kwargs: Any) -> Progress:
    """A :class:`Progress` bar (drop-in for ``tqdm(total=...)``)."""
    return Progress(total=total, desc=desc, unit=unit, initial=initial, disable=disable, **kwargs)


def progress_iter(iterable: Iterable[T], desc: str = "", unit: str = "it", total: int | None = None,
                  disable: bool = False, **kwargs: Any) -> Iterator[T]:
    """Iterate with a :class:`Progress` bar (drop-in for ``tqdm(iterable, ...)``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = Progress(total=total, desc=desc, unit=unit, disable=disable, **kwargs)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def format_loop(state: dict[str, Any] | None) -> str:
    """``training resunet30 (onehot) 1200/3000 step, 2.41 step/s, ETA 12:27, loss=0.031 val_SDRi=7.12``."""
    if not state:
        return ""
    total = f"/{state['total']}" if state.get("total") else ""
    parts = [f"{state.get('desc', '')} {state.get('n', 0)}{total} {state.get('unit', '')}".strip()]
    if state.get("rate"):
        parts.append(f"{state['rate']:.2f} {state.get('unit', 'it')}/s")
    if state.get("eta") is not None and not state.get("done"):
        parts.append(f"ETA {_clock(state['eta'])}")
    postfix = " ".join(f"{k}={v}" for k, v in (state.get("postfix") or {}).items())
    return ", ".join(parts) + (f", {postfix}" if postfix else "")


class StatusMonitor:
    """Prints one status line for a running stage every ``interval`` seconds (rewritten in place on a TTY).

    ``cells()`` returns (cells executed, cells in all) — read from the executed notebook papermill saves after
    every cell; the kernel's loops report through ``progress_file``. ``expected`` is the stage's last recorded
    time (seconds) for an estimate, or None.
    """

    def __init__(self, name: str, progress_file: Path, cells: Callable[[], tuple[int, int]],
                 expected: float | None = None, interval: float | None = None, stream=None):
        self.name, self.progress_file, self.cells, self.expected = name, Path(progress_file), cells, expected
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if interval is not None else (1.0 if self.tty else 30.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.time()
        self._last_line = ""

    def line(self) -> str:
        elapsed = time.time() - self._start
        try:
            done, total = self.cells()
        except Exception:
            done, total = 0, 0
        text = f"[ussnb] {self.name}: cell {done}/{total}, {_clock(elapsed)} elapsed"
        if self.expected:
            left = self.expected - elapsed
            text += f" (last run {_clock(self.expected)}" + (f", ~{_clock(left)} left)" if left > 0 else ")")
        loop = read_json(self.progress_file) if self.progress_file.is_file() else None
        if loop and not loop.get("done") and time.time() - loop.get("time", 0) < 600:
            text += " | " + format_loop(loop)
        return text

    def _emit(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            pad = max(0, len(self._last_line) - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
        elif text != self._last_line or final:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line = text

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def __enter__(self) -> "StatusMonitor":
        self.progress_file.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._loop, name=f"ussnb-status-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.tty and self._last_line:
            self.stream.write("\r" + " " * len(self._last_line) + "\r")
            self.stream.flush()
        self.progress_file.unlink(missing_ok=True)
