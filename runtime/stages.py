"""The one driver of an image's three stages, whoever asks: `Predictor.predict` and `predict_batch` (the API and
the server's model), `mnet run` one image at a time or pipelined, and `mnet run --server`.

`Stages` is what the driver runs: `prepare` (decode, preprocess: any thread), `run_network` (the network for a
group of images, with whatever runs beside it: the calling thread, in order) and `explain` (everything after
the network: any thread). Each stage reads and fills an `Item`; an item whose `result` is set (an error, or an
answer found without running the stages) passes the later stages untouched."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterator, Protocol

from runtime.options import ImageOptions


@dataclass
class Item:
    """One image on its way through the stages."""

    image: Any  # a path, encoded bytes or an RGB array
    name: str | None = None
    options: ImageOptions = ImageOptions()
    requested: int | None = None  # the class to explain, resolved
    prepared: Any = None
    outputs: Any = None
    measured: Any = None
    result: Any = None  # the answer (a Result, or a server's Rendered) or the MnetError this image raised


class Stages(Protocol):
    def prepare(self, item: Item) -> Item: ...

    def run_network(self, items: list[Item]) -> None: ...

    def explain(self, item: Item) -> Item: ...


def drive(stages: Stages, items: list[Item], pool: Executor | None = None, ahead: int = 1,
          together: int = 1) -> Iterator[Item]:
    """Each item through `prepare`, `run_network` (`together` at a time, in order, on this thread) and `explain`,
    yielded in order once explained. With a `pool`, up to `ahead` items are prepared while the network runs and
    the items after it are explained on the pool's threads; the outputs are those of running one at a time."""
    if pool is None:
        for start in range(0, len(items), together):
            group = [stages.prepare(item) for item in items[start:start + together]]
            stages.run_network(group)
            yield from (stages.explain(item) for item in group)
        return
    pending = iter(items)
    preparing: deque[Future] = deque(pool.submit(stages.prepare, item) for item in islice(pending, ahead))
    explaining: deque[Future] = deque()
    while preparing:
        group = [preparing.popleft().result()]
        while len(group) < together and preparing:
            group.append(preparing.popleft().result())
        preparing.extend(pool.submit(stages.prepare, item) for item in islice(pending, ahead - len(preparing)))
        stages.run_network(group)
        explaining.extend(pool.submit(stages.explain, item) for item in group)
        while explaining and (len(explaining) > ahead or explaining[0].done()):
            yield explaining.popleft().result()
    while explaining:
        yield explaining.popleft().result()
