"""``clientIPstats82.db`` through ``_server_clientInfo``: last contact and Wake-on-LAN per client."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.access import field, load

NAME = "client_info"
VENDOR_CLASS = "_server_clientInfo"
DEFAULT_PATH = "sub/stats/clientIPstats82.db"
SELECT = "newest"
EXTRA_OPTIONS: Dict[str, Any] = {}

_NOTE = " (from clientIPstats82.db; cached between changes of the file)"


def _client(info) -> Dict[str, Any]:
    last_wol = info.lastWOLs(0) if info.maxWOLCount() > 0 else None
    wol_known = last_wol is not None and (field(last_wol, "dateTime") or 0) > 0
    return {
        "name": str(field(info, "saveNameCopy") or ""),
        "version": str(field(info, "saveVersionCopy") or ""),
        "last_connect_time": field(info, "lastConnect") or None,
        "last_wol_try_time": field(info, "lastWOLTry") or None,
        "wol_failed_tries": field(info, "WOLTryCount"),
        "last_wol_success": int(bool(last_wol.success)) if wol_known else None,
        "last_wol_boot_seconds": field(last_wol, "bootTime") if wol_known and last_wol.success else None,
    }


def extract(rr, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    table = load(rr, VENDOR_CLASS, path)
    clients: Dict[str, Dict[str, Any]] = {}
    for idx in range(table.count()):
        client = _client(table.info(idx))
        name = client["name"]
        if not name:
            continue
        previous = clients.get(name)
        if previous is None or (client["last_connect_time"] or 0) >= (previous["last_connect_time"] or 0):
            clients[name] = client  # a client listed twice: the entry it last reported with wins
    return {"clients": sorted(clients.values(), key=lambda c: c["name"]), "sizes": {"count": table.count()}}


def _by_client(clients, key: str) -> Dict[str, Any]:
    return {c["name"]: c[key] for c in clients if c[key] is not None}


def families(data: Mapping[str, Dict[str, Any]], options: Dict[str, Any]) -> Iterable[Metric]:
    for table in data.values():  # SELECT = newest: one file
        clients = table["clients"]
        info = InfoMetricFamily("royalrender_client", "Last known rrClient version" + _NOTE,
                                labels=["client", "version"])
        for c in clients:
            info.add_metric([c["name"], c["version"]], {})
        yield info
        yield gauge("royalrender_client_last_connect_timestamp_seconds", "When the rrClient last reported" + _NOTE,
                    ["client"], _by_client(clients, "last_connect_time"))
        yield gauge("royalrender_client_wol_last_try_timestamp_seconds", "When Wake-on-LAN was last sent" + _NOTE,
                    ["client"], _by_client(clients, "last_wol_try_time"))
        yield gauge("royalrender_client_wol_failed_tries", "Wake-on-LAN commands sent without success" + _NOTE,
                    ["client"], _by_client(clients, "wol_failed_tries"))
        yield gauge("royalrender_client_wol_last_success", "1 if the latest Wake-on-LAN woke the client" + _NOTE,
                    ["client"], _by_client(clients, "last_wol_success"))
        yield gauge("royalrender_client_wol_last_boot_seconds", "Seconds from the latest successful Wake-on-LAN "
                    "to the rrClient being online" + _NOTE, ["client"], _by_client(clients, "last_wol_boot_seconds"))
