"""Builds metric families from a snapshot's plain mappings.

Snapshots hold ``{label values: value}`` mappings; these helpers turn one
into a family, sorted so that the exposition is stable between renders.
Every HELP of data read from files says that it is a cached value.

The families are prometheus-client's counter and gauge families, but they
are also ``RowFamily``: they keep their rows (label values, value) and build
Sample objects only when someone asks for ``samples``. The section renderer
tells them apart with ``isinstance`` and reads the rows directly: comparing
a family's rows with its previous render's is one C-level tuple comparison,
so an unchanged family (most of them after one appended Rush line) costs no
formatting at all.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple, TypeVar, Union, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.samples import Sample

LabelValues = Union[str, Tuple[str, ...]]
Row = Tuple[Tuple[str, ...], float]
# Mapping is invariant in its keys: a TypeVar lets callers pass {(str, str): int} or {str: float}.
Key = TypeVar("Key", bound=LabelValues)


class RowFamily:
    """Mixin over a prometheus-client family: ``rows`` first, ``samples`` made from them on demand.

    ``rows`` are sorted by label values, one per sample named ``sample_name``
    with labels ``label_names``: what the renderer needs to format and to
    compare a family without building a Sample per row.
    """

    rows: Tuple[Row, ...] = ()
    label_names: Tuple[str, ...] = ()
    sample_name: str = ""
    _samples: Optional[List[Sample]] = None

    def _set_rows(self, labels: Sequence[str], samples: Mapping[Key, float], sample_name: str) -> None:
        self.label_names = tuple(labels)
        self.sample_name = sample_name
        keys = sorted(samples)
        values = map(samples.__getitem__, keys)
        label_values: Sequence[Tuple[str, ...]]
        if keys and not isinstance(keys[0], tuple):
            label_values = [(cast(str, key),) for key in keys]
        else:
            # Every key of one mapping has the first one's shape.
            label_values = cast(List[Tuple[str, ...]], keys)
        self.rows = tuple(zip(label_values, values))

    @property
    def samples(self) -> List[Sample]:
        if self._samples is None:
            self._samples = [Sample(self.sample_name, dict(zip(self.label_names, values)), value, None)
                             for values, value in self.rows]
        return self._samples

    @samples.setter
    def samples(self, value: List[Sample]) -> None:
        # prometheus-client's constructor sets [] first; rows then stand for the samples.
        self._samples = value or None


class RowCounter(RowFamily, CounterMetricFamily):
    pass


class RowGauge(RowFamily, GaugeMetricFamily):
    pass


def counter(name: str, doc: str, labels: Sequence[str], samples: Mapping[Key, float]) -> RowCounter:
    family = RowCounter(name, doc, labels=labels)
    family._set_rows(labels, samples, family.name + "_total")
    return family


def gauge(name: str, doc: str, labels: Sequence[str], samples: Mapping[Key, float]) -> RowGauge:
    family = RowGauge(name, doc, labels=labels)
    family._set_rows(labels, samples, family.name)
    return family
