"""``clientIPstats82.db`` through ``_server_clientInfo``: last contact and Wake-on-LAN per client."""

from __future__ import annotations

from typing import Any, Dict, Optional

from exporter.royalrender.vendor.calls import Calls, count, flag, text

CLASS = "_server_clientInfo"


def _last_wol(c: Calls, info: Any) -> Dict[str, Any]:
    """The latest Wake-on-LAN command's outcome; nothing when none was ever sent."""
    if not c.guarded(c.call, info, "maxWOLCount", expect=count):
        return {"last_wol_success": None, "last_wol_boot_seconds": None}
    wol = c.guarded(c.call, info, "lastWOLs", 0)
    sent = wol is not None and (c.value(wol, "dateTime") or 0) > 0
    success = c.value(wol, "success", expect=flag) if sent else None
    return {"last_wol_success": None if success is None else int(success),
            "last_wol_boot_seconds": c.value(wol, "bootTime") if success else None}


def _client(c: Calls, info: Any) -> Optional[Dict[str, Any]]:
    name = c.value(info, "saveNameCopy", expect=text)
    if not name:
        return None
    return dict({
        "name": name,
        "version": c.value(info, "saveVersionCopy", expect=text) or "",
        "last_connect_time": c.value(info, "lastConnect") or None,
        "last_wol_try_time": c.value(info, "lastWOLTry") or None,
        "wol_failed_tries": c.value(info, "WOLTryCount"),
    }, **_last_wol(c, info))


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    table = c.load(CLASS, path)
    entries = c.guarded(c.call, table, "count", expect=count, default=0)
    clients: Dict[str, Dict[str, Any]] = {}
    for idx in range(entries):
        client = c.guarded(lambda i: _client(c, c.call(table, "info", i)), idx)
        if client is None:
            continue
        previous = clients.get(client["name"])
        if previous is None or (client["last_connect_time"] or 0) >= (previous["last_connect_time"] or 0):
            clients[client["name"]] = client  # a client listed twice: the entry it last reported with wins
    return {"clients": sorted(clients.values(), key=lambda c: c["name"]), "sizes": {"count": entries}}
