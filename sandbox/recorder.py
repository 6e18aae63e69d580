"""The world's event log: every message, request, storage operation, crash and commit.

Each entry is a tuple ``(time, kind, *fields)`` of plain values (str, int, float,
bool, None, tuples of those), appended in the order things happen. The log is
what ``World.fingerprint()`` hashes, so two runs with the same seed produce the
same log entry for entry, in any process and with any ``PYTHONHASHSEED``.

A long run need not keep it all. ``World(seed, keep_events=N)`` keeps the last
``N`` entries only, like a flight recorder that loops over its tape: the entries
it lets go are hashed into the fingerprint on their way out (it is the same value
as with the whole log) and counted by kind (``counts()`` still covers the whole
run), so the log takes as much memory after an hour as after a minute (the
history, which checkers of operations read, is kept whole). Whatever needs the whole log
(the checkers, ``evidence.snapshot``, the pictures of ``sandbox.viz``) then says
so with ``WindowedRunError`` instead of answering from part of it; ``recent()``
gives the entries kept.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

from .errors import InvalidParameterError, WindowedRunError

Entry = tuple[Any, ...]

#: Entries hashed per ``update`` of the digest (their text joined), so that a fold never builds a huge string.
_HASH_BATCH = 4096
_kind_of = itemgetter(1)


def hash_entries(digest: Any, entries: Iterable[Entry]) -> None:
    """Feed ``entries`` to ``digest`` as the fingerprint reads them: ``repr(entry)`` and a newline each."""
    batch: list[str] = []
    for entry in entries:
        batch.append(repr(entry))
        if len(batch) == _HASH_BATCH:
            batch.append("")
            digest.update("\n".join(batch).encode())
            batch.clear()
    if batch:
        batch.append("")
        digest.update("\n".join(batch).encode())


def check_keep(name: str, value: Any, example: int, what: str) -> int | None:
    """``value`` as a window size: None (keep everything) or a whole number >= 0.

    Raises:
        InvalidParameterError: anything else, shown, with an example of a good value.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(
            f"{name}={value!r}: give how many of the last {what} to keep, a whole number >= 0 (e.g. "
            f"{name}={example:_}), or None (the default) to keep them all, as checkers and pictures need"
        )
    return value


def fold_step(keep: int) -> int:
    """How far past ``keep`` a window grows before it lets its oldest go: an eighth more, at least 1,024."""
    return max(1024, keep // 8)


class Recorder:
    """An append-only log of what happened in a world, in virtual-time order.

    ``keep``: None keeps every entry (the default); a number keeps only the last
    ``keep`` (a few more while the world runs: the oldest go in batches), see the
    module docstring.

    Example::

        world.recorder.entries("http.response")[:3]
        # [(0.0031, 'http.response', 'orders-0', 'client-0', 7, 201), ...]
    """

    def __init__(self, keep: int | None = None) -> None:
        self._entries: list[Entry] = []
        #: How many of the last entries this log keeps (None: all of them).
        self.keep = keep
        #: How many entries were let go (hashed and counted, no longer kept); 0 unless ``keep`` is set.
        self.dropped = 0
        self._digest = hashlib.sha256()  # of the entries let go
        self._dropped_kinds: Counter[str] = Counter()
        self._fold_at = None if keep is None else keep + fold_step(keep)
        #: Where the world appends entries (``sink.append(entry)``): the list itself when everything is kept
        #: (nothing to check on the hot path), else this recorder.
        self.sink: Any = self._entries if keep is None else self

    # --- writing ---------------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """Add one entry (with ``keep`` set, letting the oldest go when the window is full)."""
        entries = self._entries
        entries.append(entry)
        if self._fold_at is not None and len(entries) >= self._fold_at:
            self.trim()

    def trim(self) -> None:
        """Let go of every entry but the last ``keep`` (hashed and counted first); nothing without ``keep``."""
        if self.keep is None:
            return
        entries = self._entries
        cut = len(entries) - self.keep
        if cut <= 0:
            return
        gone = entries[:cut]
        hash_entries(self._digest, gone)
        self._dropped_kinds.update(map(_kind_of, gone))
        del entries[:cut]
        self.dropped += cut

    # --- reading ---------------------------------------------------------------------

    @property
    def log(self) -> list[Entry]:
        """The whole log, as a list (the live one: do not change it).

        Raises:
            WindowedRunError: the world kept only its last entries (``keep_events``) and some were let go.
        """
        if self.dropped:
            self._refuse("its whole event log")
        return self._entries

    @log.setter
    def log(self, entries: list[Entry]) -> None:
        self._entries = entries
        if self.keep is None:
            self.sink = entries

    def __len__(self) -> int:
        """How many entries the run recorded, kept or let go."""
        return self.dropped + len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.log)

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every entry, or only those of one kind (``"net.drop"``, ``"node.crash"``...).

        Raises:
            WindowedRunError: some entries were let go (``keep_events``); ``recent(kind)`` gives the kept ones.
        """
        if kind is None:
            return list(self.log)
        return [e for e in self.log if e[1] == kind]

    def recent(self, kind: str | None = None) -> list[Entry]:
        """The entries kept (all of them unless ``keep`` is set), or only those of one kind.

        Example::

            world = sandbox.World(seed=7, keep_events=1_000)
            ...
            world.recorder.recent("net.drop")[-3:]   # the last drops, if among the last 1,000 entries
        """
        if kind is None:
            return list(self._entries)
        return [e for e in self._entries if e[1] == kind]

    def counts(self) -> dict[str, int]:
        """How many entries of each kind over the whole run (those let go too), sorted by kind."""
        counted = Counter(map(_kind_of, self._entries))
        counted.update(self._dropped_kinds)
        return dict(sorted(counted.items()))

    def fingerprint(self, extra: Iterable[str] = ()) -> str:
        """SHA-256 (hex) of the whole log in a canonical text form, then of the ``extra`` lines.

        Entries already let go (``keep``) were hashed on their way out: the value is the one the whole log gives.
        """
        digest = self._digest.copy()
        hash_entries(digest, self._entries)
        for line in extra:
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def _refuse(self, what: str) -> None:
        raise WindowedRunError(
            f"this world keeps only the last {self.keep:,} entries of its event log (World(keep_events="
            f"{self.keep})) and let {self.dropped:,} earlier ones go, so {what} is gone: the checkers, "
            f"evidence.snapshot() and the pictures of sandbox.viz would read part of the run as the whole. "
            f"Build the world without keep_events to check, save or draw it; world.recorder.recent() gives the "
            f"entries kept, world.recorder.counts() counts them all, world.fingerprint() is the whole run's"
        )
