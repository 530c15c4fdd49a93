"""Render license settings through ``_AppLicenses_v8`` (rrConfig's "Render Lic" tab).

Per render app, plugin and version, for each region that is set (Default
always): the license count, whether it is unlimited, and its cost. Where
the file lives is not public: configure its path.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.access import load

NAME = "licenses"
VENDOR_CLASS = "_AppLicenses_v8"
DEFAULT_PATH = None
SELECT = "newest"
EXTRA_OPTIONS: Dict[str, Any] = {}
REGIONS = ("default", "workstation", "render_farm", "cloud")

_NOTE = " (from the render license config; cached between changes of the file)"


def extract(rr, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    config = load(rr, VENDOR_CLASS, path)
    rows = []
    for idx in range(config.getCount()):
        item = config.getLicense(idx)
        for region, region_name in enumerate(REGIONS):
            if region and not item.getIsTypeSet(region):
                continue  # RR uses the Default region's settings for it
            rows.append({
                "render_app": str(item.getRenderAppName()), "plugin": str(item.getPluginName()),
                "version": str(item.getVersion()), "region": region_name, "count": item.getLicCount(region),
                "unlimited": int(bool(item.getIsUnlimited(region))), "cost": item.getCost(region),
            })
    return {"licenses": rows, "sizes": {"getCount": config.getCount()}}


def families(data: Mapping[str, Dict[str, Any]], options: Dict[str, Any]) -> Iterable[Metric]:
    labels = ["render_app", "plugin", "version", "region"]
    for config in data.values():  # SELECT = newest: one file
        rows = {tuple(r[label] for label in labels): r for r in config["licenses"]}
        yield gauge("royalrender_render_licenses", "Render licenses configured (ignored when unlimited)" + _NOTE,
                    labels, {key: r["count"] for key, r in rows.items()})
        yield gauge("royalrender_render_licenses_unlimited", "1 if the licenses are unlimited" + _NOTE,
                    labels, {key: r["unlimited"] for key, r in rows.items()})
        yield gauge("royalrender_render_license_cost", "Cost RR uses to compute the cost of a job" + _NOTE,
                    labels, {key: r["cost"] for key, r in rows.items()})
