"""Render license settings through ``_AppLicenses_v8`` (rrConfig's "Render Lic" tab).

Per render app, plugin and version, for each region that is set (Default
always): the license count, whether it is unlimited, and its cost. Where
the file lives is not public: configure its path.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind

_NOTE = " (from the render license config; cached between changes of the file)"


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    labels = ["render_app", "plugin", "version", "region"]
    for config in data.values():  # select="newest": one file
        rows = {tuple(r[label] for label in labels): r for r in config["licenses"]}
        yield gauge("royalrender_render_licenses", "Render licenses configured (ignored when unlimited)" + _NOTE,
                    labels, _known(rows, "count"))
        yield gauge("royalrender_render_licenses_unlimited", "1 if the licenses are unlimited" + _NOTE,
                    labels, _known(rows, "unlimited"))
        yield gauge("royalrender_render_license_cost", "Cost RR uses to compute the cost of a job" + _NOTE,
                    labels, _known(rows, "cost"))


def _known(rows: Dict[tuple, Dict[str, Any]], key: str) -> Dict[tuple, Any]:
    return {labels: row[key] for labels, row in rows.items() if row[key] is not None}


KIND = Kind(
    name="licenses",
    vendor_class="_AppLicenses_v8",
    default_path=None,
    select="newest",
    families=families,
)
