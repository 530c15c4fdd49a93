"""The documented API of Royal Render's ``libpyRR*_datafiles`` module, as a checklist for ``rr-probe``.

Documented means: in the vendor's Python reference for the module, whose
classes and members docs/royalrender.md lists.
Anything else the exporter may use is *optional*: RR 9 additions, and
``_ClientGroupList``, which the reference names without members (the
members listed are those the vendor's own scripts call). A missing optional
member is reported as such, never as lacking.

Every member is read on a fresh, unloaded instance, as a risky step: a
member that raises is reported with its error, and one that crashes the
worker is reported as such and skipped when the check is run again.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from exporter.royalrender.vendor.calls import Calls, VendorError, describe

MODULE_FUNCTIONS: Tuple[str, ...] = (
    "getRRModuleVersion", "getRRFolder_cfgGlobal", "getRRFolder_cfgUser", "getRRFolder_stats", "getRRFolder_bin",
)

#: class -> its members in the reference (methods and attributes)
DOCUMENTED: Dict[str, Tuple[str, ...]] = {
    "_rrGlobalStatsLS": ("loadFromFile", "getError", "day", "dayMax", "month", "monthMax", "year", "yearMax",
                         "currentLocalTime", "lastSaveDay", "lastSaveMonth", "lastSaveYear"),
    "_dailyStats_data": ("loadFromFile", "getError", "getJobsByType", "jobTypeCount"),
    "_rrClientStats_data": ("loadFromFile", "getError", "days", "daysMax", "StructureID"),
    "_server_clientInfo": ("loadFromFile", "getError", "info", "count"),
    "_StatsRenderTime": ("loadFile", "saveFile", "getError", "getProject", "count", "settingsFileDate"),
    "_AppLicenses_v8": ("loadFromFile", "saveToFile", "getCount", "getLicense"),
    "_frameStatJob": ("loadFromFile", "getError", "frame", "frameCount"),
}

#: class -> members the exporter may use that the reference does not give that class
OPTIONAL: Dict[str, Tuple[str, ...]] = {
    "_dailyStats_data": ("getJobsByTypeAndName",),
    "_dailyStats_timeline": ("initFileList", "period_day", "period_day_hasData", "currentUnixDayLocal"),
    "_ClientGroupList": ("loadFromFile", "getError", "count", "clientGroup", "clientGroupsMax"),
}


def _member(c: Calls, class_name: str, instance: Any, member: str) -> str:
    step = "%s.%s" % (class_name, member)
    if c.avoided(step):
        return "crashed or hung the worker when read; skipped"
    try:
        with c.step(step):
            getattr(instance, member)
    except AttributeError:
        return "missing"
    except VendorError as exc:  # report whatever the extension raises
        return "raised " + describe(exc)
    return "present"


def _check_class(c: Calls, name: str) -> Dict[str, Any]:
    documented, optional = DOCUMENTED.get(name, ()), OPTIONAL.get(name, ())
    report: Dict[str, Any] = {"documented": name in DOCUMENTED, "present": False, "members": {}, "optional": {}}
    cls = getattr(c.rr, name, None)
    if cls is None:
        return report
    report["present"] = True
    if c.avoided("%s()" % name):
        report["error"] = "creating an instance crashed or hung the worker; skipped"
        return report
    try:
        with c.step("%s()" % name):
            instance = cls()
    except VendorError as exc:
        report["error"] = "cannot create an instance: " + describe(exc)
        return report
    report["members"] = {m: _member(c, name, instance, m) for m in documented}
    report["optional"] = {m: _member(c, name, instance, m) for m in optional if m not in documented}
    return report


def check(c: Calls) -> Dict[str, Any]:
    """Which documented (and optional) functions, classes and members the loaded module has."""
    functions = {name: "present" if hasattr(c.rr, name) else "missing" for name in MODULE_FUNCTIONS}
    classes = {name: _check_class(c, name) for name in list(DOCUMENTED) + [n for n in OPTIONAL if n not in DOCUMENTED]}
    return {"functions": functions, "classes": classes}
