"""The documented API of Royal Render's ``libpyRR*_datafiles`` module, as a checklist.

``rr-probe`` compares the installed module against it, so a user's first bug
report says which documented classes and members their RR version has.
Source: ``shared/spec/royalrender-libpyRR2_datafiles.txt`` (and, for
``_ClientGroupList``, the vendor's Node.js binding documentation).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

MODULE_FUNCTIONS: Tuple[str, ...] = (
    "getRRModuleVersion", "getRRFolder_cfgGlobal", "getRRFolder_cfgUser", "getRRFolder_stats", "getRRFolder_bin",
)

#: class -> members to find on an instance (methods and attributes)
CLASSES: Dict[str, Tuple[str, ...]] = {
    "_rrGlobalStatsLS": ("loadFromFile", "getError", "day", "dayMax", "month", "monthMax", "year", "yearMax",
                         "currentLocalTime", "lastSaveDay", "lastSaveMonth", "lastSaveYear"),
    "_dailyStats_data": ("loadFromFile", "getError", "getJobsByType", "jobTypeCount"),
    "_rrClientStats_data": ("loadFromFile", "getError", "days", "daysMax", "StructureID"),
    "_server_clientInfo": ("loadFromFile", "getError", "info", "count"),
    "_StatsRenderTime": ("loadFile", "saveFile", "getError", "getProject", "count", "settingsFileDate"),
    "_AppLicenses_v8": ("loadFromFile", "saveToFile", "getCount", "getLicense"),
    "_frameStatJob": ("loadFromFile", "getError", "frame", "frameCount"),
    "_ClientGroupList": ("loadFromFile", "getError", "clientGroup", "clientGroupsMax", "count", "settingsFileDate"),
}


def check(rr) -> Dict[str, object]:
    """Which documented functions, classes and members ``rr`` has (runs in the worker)."""
    classes: Dict[str, Dict[str, object]] = {}
    for name, members in CLASSES.items():
        cls = getattr(rr, name, None)
        if cls is None:
            classes[name] = {"present": False, "missing": list(members)}
            continue
        try:
            instance = cls()
        except Exception as exc:  # noqa: BLE001 - report whatever the extension raises
            classes[name] = {"present": True, "missing": list(members), "error": "cannot instantiate: %s" % exc}
            continue
        missing: List[str] = [m for m in members if not hasattr(instance, m) or getattr(instance, m) is None]
        classes[name] = {"present": True, "missing": missing}
    functions = {name: hasattr(rr, name) for name in MODULE_FUNCTIONS}
    return {"functions": functions, "classes": classes}
