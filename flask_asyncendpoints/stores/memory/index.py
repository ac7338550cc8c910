"""An ordered set of keys with O(log n) insert, delete and seek: the memory store's queues and lists.

A heap would do for a queue alone, but the monitoring lists need the same jobs in order from any
position (a cursor), and a cancel takes a job out of the middle. Keys are kept in short sorted lists
of at most ``2 * LOAD`` keys each, with the last key of each list in ``_maxes``: a bisect over
``_maxes`` finds the list, a bisect in the list finds the place, and a list of a few hundred
pointers moves in a few hundred nanoseconds. Keys are tuples that end in a unique sequence number
and the job id, so no two are equal.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Any

#: Keys per list before a list is split in two (at ``2 * LOAD``).
LOAD = 256

Key = tuple[Any, ...]


class SortedIndex:
    """Keys in ascending order."""

    __slots__ = ("_lists", "_maxes", "size")

    def __init__(self) -> None:
        self._lists: list[list[Key]] = []
        self._maxes: list[Key] = []
        #: How many keys it holds: read on the hot path, where ``len()`` would be a call more.
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __repr__(self) -> str:
        return f"<SortedIndex of {self.size} keys>"

    def add(self, key: Key) -> None:
        """Insert ``key``, which must not be present."""
        maxes = self._maxes
        self.size += 1
        if not maxes:
            self._lists.append([key])
            maxes.append(key)
            return
        if key > maxes[-1]:  # the usual case: a new job, or one that started or finished now
            i = len(maxes) - 1
            keys = self._lists[i]
            keys.append(key)
            maxes[i] = key
        else:
            i = bisect_left(maxes, key)
            keys = self._lists[i]
            insort(keys, key)
        if len(keys) > 2 * LOAD:
            self._lists.insert(i + 1, keys[LOAD:])
            del keys[LOAD:]
            maxes.insert(i, keys[-1])

    def remove(self, key: Key) -> None:
        """Take ``key`` out.

        :raises KeyError: when it is not present.
        """
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            raise KeyError(key)
        keys = self._lists[i]
        j = bisect_left(keys, key)
        if keys[j] != key:
            raise KeyError(key)
        del keys[j]
        self.size -= 1
        if not keys:
            del self._lists[i]
            del maxes[i]
        elif j == len(keys):
            maxes[i] = keys[-1]

    def first(self) -> Key:
        """The smallest key.

        :raises IndexError: when empty.
        """
        return self._lists[0][0]

    def pop_first(self) -> Key:
        """Take out and answer the smallest key.

        :raises IndexError: when empty.
        """
        keys = self._lists[0]
        key = keys.pop(0)
        self.size -= 1
        if not keys:
            del self._lists[0]
            del self._maxes[0]
        return key

    def count_below(self, bound: Key) -> int:
        """How many keys are smaller than ``bound``."""
        maxes = self._maxes
        i = bisect_left(maxes, bound)
        if i == len(maxes):
            return self.size
        return sum(len(keys) for keys in self._lists[:i]) + bisect_left(self._lists[i], bound)

    def after(self, key: Key | None, *, reverse: bool = False) -> Iterator[Key]:
        """The keys after ``key`` in ascending order (before it, descending, when ``reverse``),
        from the first (or the last) when ``key`` is ``None``. ``key`` need not be present.

        Do not change the index while iterating.
        """
        lists, maxes = self._lists, self._maxes
        if not reverse:
            i = 0 if key is None else bisect_right(maxes, key)
            if i == len(maxes):
                return
            first = lists[i]
            yield from first[0 if key is None else bisect_right(first, key) :]
            for keys in lists[i + 1 :]:
                yield from keys
            return
        if key is None:
            i, j = len(lists) - 1, None
        else:
            i = bisect_left(maxes, key)
            if i == len(maxes):
                i, j = i - 1, None
            else:
                j = bisect_left(lists[i], key)
        if i < 0:
            return
        yield from reversed(lists[i] if j is None else lists[i][:j])
        for keys in reversed(lists[:i]):
            yield from reversed(keys)
