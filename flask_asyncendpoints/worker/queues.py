"""The order in which a worker asks for its queues on each claim turn.

A strict plan (``"high,default"``) asks in the order given, every turn: ``default`` runs only when
``high`` has nothing due. A weighted plan (``"high:5,default:1"``) draws the order anew each turn,
a queue coming first with a chance in proportion to its weight (weighted sampling without
replacement), so every queue is first now and then and none is starved.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..config import QueuePlan


class QueueOrder:
    """The queues a worker serves, ordered for each claim turn.

    :param plan: the queues, with weights or in strict order; or a function that returns them,
        asked again on each turn (so queues of handlers registered after the worker was made count).
    :param rand: a random number in ``[0, 1)``; tests pass their own.
    """

    def __init__(self, plan: QueuePlan | Callable[[], QueuePlan], rand: Callable[[], float] = random.random) -> None:
        self._source = plan if callable(plan) else (lambda: plan)
        self._rand = rand

    @property
    def plan(self) -> QueuePlan:
        """The plan as it stands now."""
        return self._source()

    @property
    def names(self) -> tuple[str, ...]:
        """Every queue served, in the plan's order (for waiting on work, and the worker registry)."""
        return self.plan.names

    def next_turn(self) -> tuple[str, ...]:
        """The queues in the order this claim turn asks for them."""
        plan = self._source()
        if plan.weights is None or len(plan.names) == 1:
            return plan.names
        # Efraimidis and Spirakis: sorting by u ** (1 / w) draws without replacement, each next
        # queue in proportion to its weight among those left.
        keys = [(self._rand() ** (1.0 / weight), index) for index, weight in enumerate(plan.weights)]
        keys.sort(reverse=True)
        return tuple(plan.names[index] for _, index in keys)
