"""Client groups through ``_ClientGroupList`` (``[RR]/sub/cfg_user/clientgroups.ini``).

The Python reference names no members of this class; those called here are
the ones the vendor's own client-group script and its Node.js binding use.
"""

from __future__ import annotations

from typing import Any, Dict, List

from exporter.royalrender.vendor.calls import Calls, count, text

CLASS = "_ClientGroupList"


def _members(c: Calls, group: Any) -> List[str]:
    return sorted({c.call(group, "getClientName", i, expect=text) for i in range(c.call(group, "count", expect=count))})


def extract(c: Calls, path: str, options: Dict[str, Any]) -> Dict[str, Any]:
    groups = c.load(CLASS, path)
    total = c.value(groups, "count", expect=count) or 0
    result: Dict[str, List[str]] = {}
    for idx in range(total):
        group = c.guarded(c.call, groups, "clientGroup", idx)
        name = c.guarded(c.call, group, "getName", expect=text) if group is not None else None
        members = c.guarded(_members, c, group) if name is not None else None
        if name is not None and members is not None:
            result[name] = members
    return {"groups": result,
            "sizes": {"count": total, "clientGroupsMax": c.guarded(c.call, groups, "clientGroupsMax", expect=count)}}
