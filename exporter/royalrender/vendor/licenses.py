"""Render license settings through ``_AppLicenses_v8`` (rrConfig's "Render Lic" tab)."""

from __future__ import annotations

from typing import Any, Dict, List

from exporter.royalrender.vendor.calls import Calls, count, flag, number, text

CLASS = "_AppLicenses_v8"
REGIONS = ("default", "workstation", "render_farm", "cloud")


def _rows(c: Calls, item: Any) -> List[Dict[str, Any]]:
    """One row per region that is set (Default always: RR uses it for the regions that are not)."""
    names = {"render_app": c.call(item, "getRenderAppName", expect=text),
             "plugin": c.call(item, "getPluginName", expect=text),
             "version": str(c.call(item, "getVersion", expect=number))}
    rows = []
    for region, region_name in enumerate(REGIONS):
        if region and not c.guarded(c.call, item, "getIsTypeSet", region, expect=flag):
            continue
        rows.append(dict(names, region=region_name,
                         count=c.guarded(c.call, item, "getLicCount", region, expect=number),
                         unlimited=c.guarded(lambda r: int(c.call(item, "getIsUnlimited", r, expect=flag)), region),
                         cost=c.guarded(c.call, item, "getCost", region, expect=number)))
    return rows


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    config = c.load(CLASS, path)
    items = c.guarded(c.call, config, "getCount", expect=count, default=0)
    rows: List[Dict[str, Any]] = []
    for idx in range(items):
        rows += c.guarded(lambda i: _rows(c, c.call(config, "getLicense", i)), idx, default=[])
    return {"licenses": rows, "sizes": {"getCount": items}}
