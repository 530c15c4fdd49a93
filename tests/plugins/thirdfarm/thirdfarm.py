"""A minimal third source, written against the exporter's public API only
(``exporter.plugin``): one JSON file per queue, rewritten whole.

    {"queue": "gpu", "jobs": {"waiting": 4, "rendering": 2}, "history": [[1795000000, 3], ...]}

``history`` holds (Unix time, jobs waiting) pairs for ``backfill``.
"""

import json
from dataclasses import dataclass
from typing import Tuple

from prometheus_client.core import GaugeMetricFamily

from exporter.plugin import Field, ListOf, ReadFailed, Source, String, Struct, WholeFileReader

KIND = "thirdfarm_queue"


@dataclass(frozen=True)
class ThirdFarmConfig:
    paths: Tuple[str, ...]


SCHEMA = Struct({"paths": Field(ListOf(String()), default=(), doc="queue statistics files or globs")},
                build=lambda paths: ThirdFarmConfig(tuple(paths)))


def parse(path):
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
        return {"queue": str(content["queue"]), "jobs": {str(k): float(v) for k, v in content["jobs"].items()},
                "history": [(float(t), float(v)) for t, v in content.get("history", [])]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReadFailed("not a queue statistics file: %s" % exc) from None


def jobs_family(rows):
    family = GaugeMetricFamily("thirdfarm_jobs", "Jobs in each queue by state (from the queue's file)",
                               labels=["queue", "state"])
    for (queue, state), value in sorted(rows.items()):
        family.add_metric([queue, state], value)
    return family


def families(data):
    yield jobs_family({(d["queue"], state): value for d in data.values() for state, value in d["jobs"].items()})


def readers(section):
    return [WholeFileReader(KIND, section.paths, parse, families)] if section is not None and section.paths else []


def history(section, sink):
    problems = []
    for reader in readers(section):
        for path in sorted(reader.selected()):
            try:
                data = parse(path)
            except ReadFailed as exc:
                problems.append("%s: %s" % (path, exc))
                continue
            for when, waiting in data["history"]:
                sink.add(when, [jobs_family({(data["queue"], "waiting"): waiting})])
    sink.note("thirdfarm: %d problems" % len(problems))
    return problems


SOURCE = Source(name="thirdfarm", schema=SCHEMA, readers=readers, doc="Test plugin: queue statistics",
                history=history)
