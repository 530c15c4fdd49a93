"""Which folders the installed systemd unit hides from the service, so a check in a shell can warn about them.

The unit's ``PrivateTmp=yes`` gives the service its own empty ``/tmp`` and
``/var/tmp``; ``ProtectHome=yes`` (or ``tmpfs``) makes ``/home``, ``/root``
and ``/run/user`` empty. A path there exists in an administrator's shell and
not for the service, whose page then blames an unmounted share. The settings
are read from the unit file and its drop-ins (``NAME.service.d/*.conf``,
``service.d/`` and the name's prefixes, in every folder systemd reads them from, in
name order, the last assignment winning, as systemd does), so a drop-in that
relaxes them (``ProtectHome=read-only``) silences the warning, as systemd.exec(5)
says: ``DynamicUser=yes`` implies ``PrivateTmp=yes`` and it cannot be turned
off; with ``ProtectHome=tmpfs`` a folder in ``BindPaths=`` or
``BindReadOnlyPaths=`` is visible again (with ``yes`` it is not: systemd drops
mounts below an inaccessible one). A path is judged as written and where its
symlinks lead. Without an installed unit nothing is hidden (a container, a
daemon started by hand); a unit file or drop-in that cannot be read is a
warning of its own, never taken as hiding nothing.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

#: Where ``scripts/install`` puts the unit; ``--systemd.unit`` names another.
UNIT_FILE = "/etc/systemd/system/renderfarm-exporter.service"
#: The folders systemd reads system units' drop-ins from, most important first (systemd.unit(5)): a drop-in in one
#: masks a drop-in of the same file name in a later one (``systemctl edit --runtime`` writes to /run).
UNIT_FOLDERS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
                "/usr/lib/systemd/system", "/lib/systemd/system")
#: The settings that hide folders, the values that hide them, and the folders.
_YES = ("1", "yes", "y", "true", "t", "on")  # systemd's parse_boolean, in any case
_HIDING = {
    "PrivateTmp": (_YES + ("disconnected",), ("/tmp", "/var/tmp")),
    "ProtectHome": (_YES + ("tmpfs",), ("/home", "/root", "/run/user")),
}
#: Settings read besides the hiding ones: what implies PrivateTmp=yes, and the binds that show a folder through a
#: ProtectHome=tmpfs (each a space-separated list of ``[-]SOURCE[:DESTINATION[:OPTIONS]]``, accumulated).
_DYNAMIC_USER = "DynamicUser"
_BINDS = ("BindPaths", "BindReadOnlyPaths")
#: What a runbook reader opens to move the files or relax the setting.
DOC = "docs/installation.md#the-sandbox-what-the-service-cannot-see"


@dataclass(frozen=True)
class Sandbox:
    """The folders a unit hides, each with the setting that hides it (``PrivateTmp=yes``)."""

    unit: str = ""
    hidden: Tuple[Tuple[str, str], ...] = ()
    #: Folders bound into a hidden folder that is a tmpfs (``ProtectHome=tmpfs``): visible, with what is below them.
    bound: Tuple[str, ...] = ()
    #: The unit's files that could not be read (path, why): what they set is not known, so not checked.
    unread: Tuple[Tuple[str, str], ...] = ()

    def unread_notices(self) -> List[str]:
        """One warning per unit file that could not be read: a check that knows nothing must say so."""
        return ["cannot read %s (%s): which folders it hides from the service is not checked; run the check as a "
                "user who can read it (%s)" % (path, why, DOC) for path, why in self.unread]

    def hides(self, path: str) -> Optional[str]:
        """Why the service cannot see ``path`` (a file, folder or pattern), as written or where its symlinks lead,
        or None."""
        absolute = os.path.normpath(os.path.abspath(path))
        folder = self._hiding(absolute)
        if folder is None:
            resolved = os.path.realpath(absolute)
            folder = self._hiding(resolved) if resolved != absolute else None
            if folder is None:
                return None
            path = "%s leads to %s, under" % (path, resolved)
        else:
            path = "%s lies under" % path
        return ("%s %s, which the unit %s hides from the service (%s): the service sees an empty folder there; move "
                "it, or relax the setting with systemctl edit (%s)" % (path, folder[0], self.unit, folder[1], DOC))

    def _hiding(self, absolute: str) -> Optional[Tuple[str, str]]:
        if any(_below(absolute, folder) for folder in self.bound):
            return None
        return next(((folder, setting) for folder, setting in self.hidden if _below(absolute, folder)), None)


def _below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


NONE = Sandbox()


def _settings(paths) -> Tuple[Dict[str, str], List[str], List[Tuple[str, str]]]:
    """The last value of each setting read in ``paths`` (unit, then drop-ins; an empty value resets it), the
    entries of the binds (an empty assignment empties the list), and the files that could not be read."""
    found: Dict[str, str] = {}
    binds: List[str] = []
    unread: List[Tuple[str, str]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError as exc:
            unread.append((path, exc.strerror or str(exc)))
            continue
        for line in lines:
            key, sep, value = (part.strip() for part in line.strip().partition("="))
            if sep and key in _BINDS:
                binds = binds + value.split() if value else []
            elif sep and (key in _HIDING or key == _DYNAMIC_USER):
                found[key] = value.lower()
    return found, binds, unread


def _destinations(binds: List[str]) -> Tuple[str, ...]:
    """Where each bind shows its source in the service's namespace; an optional one (``-``) only if its source is
    there."""
    shown = []
    for entry in binds:
        source, _, rest = entry.partition(":")
        optional = source.startswith("-")
        source = source[1:] if optional else source
        if not optional or os.path.exists(source):
            shown.append(os.path.normpath(rest.partition(":")[0] or source))
    return tuple(shown)


def _drop_ins(unit: str, folders: Tuple[str, ...]) -> List[str]:
    """The unit's drop-ins in the order systemd applies them: ``*.conf`` in ``service.d/``, ``PREFIX-.service.d/``
    (for each dash of the name) and ``NAME.service.d/`` of every folder in ``folders`` (only the unit's own folder
    when it is not one of them), sorted by file name, the first folder's file winning for a name."""
    folder, name = os.path.split(os.path.abspath(unit))
    stem, _, kind = name.rpartition(".")
    subfolders = [kind + ".d"] + [stem[:i + 1] + "." + kind + ".d" for i, c in enumerate(stem) if c == "-"]
    found: Dict[str, str] = {}
    for root in folders if folder in folders else (folder,):
        for subfolder in subfolders + [name + ".d"]:
            for path in glob.glob(os.path.join(glob.escape(root), glob.escape(subfolder), "*.conf")):
                found.setdefault(os.path.basename(path), path)
    return [found[key] for key in sorted(found)]


def read(unit: str = UNIT_FILE, folders: Tuple[str, ...] = UNIT_FOLDERS) -> Sandbox:
    """The sandbox of the unit at ``unit`` with its drop-ins (from ``folders`` when the unit is in one of them);
    ``NONE`` when there is no such unit ("" or missing)."""
    if not unit:
        return NONE
    try:
        os.stat(unit)
    except FileNotFoundError:
        return NONE
    except OSError as exc:  # there may be a unit, hiding what it may: said, not taken as hiding nothing
        return Sandbox(os.path.basename(unit), unread=((unit, exc.strerror or str(exc)),))
    settings, binds, unread = _settings([unit] + _drop_ins(unit, folders))
    if settings.get("PrivateTmp") not in _HIDING["PrivateTmp"][0] and settings.get(_DYNAMIC_USER) in _YES:
        settings["PrivateTmp"] = "yes, implied by DynamicUser=yes"
    hidden = tuple((folder, "%s=%s" % (key, settings[key])) for key, (hiding, folders) in _HIDING.items()
                   if settings.get(key, "").partition(",")[0] in hiding for folder in folders)
    tmpfs = tuple(folder for folder, setting in hidden if setting == "ProtectHome=tmpfs")
    return Sandbox(os.path.basename(unit), hidden,
                   tuple(dest for dest in _destinations(binds) if any(_below(dest, f) for f in tmpfs)), tuple(unread))
