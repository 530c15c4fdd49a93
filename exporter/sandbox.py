"""Which folders the installed systemd unit hides from the service, so a check in a shell can warn about them.

The unit's ``PrivateTmp=yes`` gives the service its own empty ``/tmp`` and
``/var/tmp``; ``ProtectHome=yes`` (or ``tmpfs``) makes ``/home``, ``/root``
and ``/run/user`` empty. A path there exists in an administrator's shell and
not for the service, whose page then blames an unmounted share. The settings
are read from the unit file and its drop-ins (``NAME.service.d/*.conf``, in
name order, the last assignment winning, as systemd does), so a drop-in that
relaxes them (``ProtectHome=read-only``) silences the warning. Without an
installed unit nothing is hidden (a container, a daemon started by hand).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

#: Where ``scripts/install`` puts the unit; ``--systemd.unit`` names another.
UNIT_FILE = "/etc/systemd/system/renderfarm-exporter.service"
#: The settings that hide folders, the values that hide them, and the folders.
_HIDING = {
    "PrivateTmp": (("yes", "true", "on", "1", "disconnected"), ("/tmp", "/var/tmp")),
    "ProtectHome": (("yes", "true", "on", "1", "tmpfs"), ("/home", "/root", "/run/user")),
}
#: What a runbook reader opens to move the files or relax the setting.
DOC = "docs/installation.md#the-sandbox-what-the-service-cannot-see"


@dataclass(frozen=True)
class Sandbox:
    """The folders a unit hides, each with the setting that hides it (``PrivateTmp=yes``)."""

    unit: str = ""
    hidden: Tuple[Tuple[str, str], ...] = ()

    def hides(self, path: str) -> Optional[str]:
        """Why the service cannot see ``path`` (a file, folder or pattern), or None."""
        absolute = os.path.normpath(os.path.abspath(path))
        for folder, setting in self.hidden:
            if absolute == folder or absolute.startswith(folder + "/"):
                return ("%s lies under %s, which the unit %s hides from the service (%s): the service sees an empty "
                        "folder there; move it, or relax the setting with systemctl edit (%s)"
                        % (path, folder, self.unit, setting, DOC))
        return None


NONE = Sandbox()


def _settings(paths) -> Dict[str, str]:
    """The last value of each hiding setting in ``paths`` (unit, then drop-ins); an empty value resets it."""
    found: Dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() in _HIDING:
                found[key.strip()] = value.strip().lower()
    return found


def read(unit: str = UNIT_FILE) -> Sandbox:
    """The sandbox of the unit at ``unit`` with its drop-ins; ``NONE`` when there is no such unit ("" or missing)."""
    if not unit or not os.path.isfile(unit):
        return NONE
    settings = _settings([unit] + sorted(glob.glob(glob.escape(unit) + ".d/*.conf"), key=os.path.basename))
    hidden = tuple((folder, "%s=%s" % (key, settings[key])) for key, (hiding, folders) in _HIDING.items()
                   if settings.get(key) in hiding for folder in folders)
    return Sandbox(os.path.basename(unit), hidden)
