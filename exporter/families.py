"""Builds prometheus-client metric families from a snapshot's plain mappings.

Snapshots hold ``{label values: value}`` mappings; these helpers turn one
into a family, sorted so that the exposition is stable between renders.
Every HELP of data read from files says that it is a cached value.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Tuple, Union

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LabelValues = Union[str, Tuple[str, ...]]


def _rows(samples: Mapping[LabelValues, float]):
    for key in sorted(samples):
        yield (list(key) if isinstance(key, tuple) else [key]), samples[key]


def counter(name: str, doc: str, labels: Sequence[str], samples: Mapping[LabelValues, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in _rows(samples):
        family.add_metric(values, value)
    return family


def gauge(name: str, doc: str, labels: Sequence[str], samples: Mapping[LabelValues, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in _rows(samples):
        family.add_metric(values, value)
    return family
