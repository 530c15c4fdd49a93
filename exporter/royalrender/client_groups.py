"""Client groups through ``_ClientGroupList`` (``[RR]/sub/cfg_user/clientgroups.ini``).

Exported as info series, one per group and member, for joins such as
``royalrender_client_cpu_ratio * on(client) group_left(group)
royalrender_client_group_info``. The Python reference names this class
only; the methods called are those the vendor documents for the same class
in its Node.js binding.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.families import gauge
from exporter.royalrender.contract import Kind

_NOTE = " (from clientgroups.ini; cached between changes of the file)"


def families(data: Mapping[str, Dict[str, Any]], options: Mapping[str, Any]) -> Iterable[Metric]:
    for groups in data.values():  # select="newest": one file
        info = InfoMetricFamily("royalrender_client_group", "Membership of a client in a client group" + _NOTE,
                                labels=["group", "client"])
        for group, clients in sorted(groups["groups"].items()):
            for client in clients:
                info.add_metric([group, client], {})
        yield info
        yield gauge("royalrender_client_group_clients", "Clients in each client group" + _NOTE, ["group"],
                    {group: len(clients) for group, clients in groups["groups"].items()})


KIND = Kind(
    name="client_groups",
    vendor_class="_ClientGroupList",
    default_path="sub/cfg_user/clientgroups.ini",
    select="newest",
    families=families,
)
