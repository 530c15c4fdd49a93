"""``clientIPstats82.db`` through ``_server_clientInfo``: last contact and Wake-on-LAN per client."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind

_NOTE = " (from clientIPstats82.db; cached between changes of the file)"


def _by_client(clients, key: str) -> Dict[str, Any]:
    return {c["name"]: c[key] for c in clients if c[key] is not None}


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    for table in data.values():  # select="newest": one file
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


KIND = Kind(
    name="client_info",
    vendor_class="_server_clientInfo",
    default_path="sub/stats/clientIPstats82.db",
    select="newest",
    families=families,
)
