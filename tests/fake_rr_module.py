"""An independent fake of Royal Render's ``libpyRR*_datafiles``, written from the vendor's reference alone.

It shares nothing with ``exporter/simulation/standin.py``: its own file
format (``FAKE-RR`` JSON, see ``write``), and the behaviours of a compiled
module that the stand-in does not have:

- it prints to stdout at import and on every load, from Python and through
  file descriptor 1 directly, as C++ code would;
- fields are read-only properties, and every accessor returns a fresh object;
- ``IndexError`` outside the documented ranges;
- ``getJobsByType`` refuses ids outside 0..2 (the reference's) with an
  exception, or crashes the process when the file asks for it;
- one member raises when read (``_rrGlobalStats_item.serverTemperature``),
  one documented member is missing (``_rrGlobalStats_item.clients_avTemperature``),
  and ``_rrGlobalStatsLS.lastSaveMonth`` raises on an instance with nothing loaded;
- a file may ask it to scribble a line onto every open descriptor from 3
  up to a number, as a module with stray writes would.

Tests copy this file into ``[RR]/bin/lx64/lib`` under the vendor's module
name for the worker's Python, so ``module: auto`` finds it.
"""

import json
import os
import sys

print("FAKE-RR libpyRR datafiles loaded (licence: test only)")
sys.stdout.flush()
os.write(1, b"FAKE-RR native banner written to fd 1\n")
print("FAKE-RR env LD_LIBRARY_PATH=%s" % os.environ.get("LD_LIBRARY_PATH", ""))
sys.stdout.flush()

MAGIC = "FAKE-RR"


def write(path, class_name, **data):
    """Writes a file this fake loads (tests call it; the format is this fake's own)."""
    with open(path, "w") as handle:
        json.dump({"magic": MAGIC, "class": class_name, "data": data}, handle)


def getRRModuleVersion():  # noqa: N802
    return "9.1.fake"


def _folder(sub):
    root = os.environ.get("RR_ROOT", "")
    return os.path.join(root, "sub", sub) + os.sep if root else ""


def getRRFolder_cfgGlobal():  # noqa: N802
    return _folder("cfg_global")


def getRRFolder_cfgUser():  # noqa: N802
    return _folder("cfg_user")


def getRRFolder_stats():  # noqa: N802
    return _folder("stats")


def getRRFolder_bin():  # noqa: N802
    root = os.environ.get("RR_ROOT", "")
    return os.path.join(root, "bin", "lx64") + os.sep if root else ""


class _Record:
    """Read-only fields from a dict; a field absent from the dict reads as 0."""

    _fields = ()

    def __init__(self, values):
        self._values = dict(values)

    def __getattr__(self, name):
        if name in type(self)._fields:
            return self._values.get(name, 0)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            raise AttributeError("read-only property %s" % name)


def _check_index(idx, size):
    if not isinstance(idx, int) or not 0 <= idx < size:
        raise IndexError("index %r out of range 0..%d" % (idx, size - 1))


class _File:
    """loadFromFile / getError."""

    _class_name = ""

    def __init__(self):
        object.__setattr__(self, "_data", None)
        object.__setattr__(self, "_error", "")

    def loadFromFile(self, filename, failIfNoFile=True):  # noqa: N802,N803
        print("FAKE-RR loading %s" % filename)
        sys.stdout.flush()
        try:
            with open(filename) as handle:
                content = json.load(handle)
        except (OSError, ValueError) as exc:
            object.__setattr__(self, "_error", "cannot load %s: %s" % (filename, exc))
            return False
        if content.get("magic") != MAGIC or content.get("class") != self._class_name:
            object.__setattr__(self, "_error", "%s is not a %s file" % (filename, self._class_name))
            return False
        data = content["data"]
        if data.get("scribble_below"):
            for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
                if 3 <= fd < int(data["scribble_below"]):
                    try:
                        os.write(fd, b"FAKE-RR stray write\n")
                    except OSError:
                        pass
        if data.get("crash_on_load"):
            os._exit(139)
        if data.get("allocate_mib"):
            bytearray(data["allocate_mib"] << 20)
        object.__setattr__(self, "_data", data)
        return True

    def getError(self):  # noqa: N802
        return self._error

    def __setattr__(self, name, value):
        raise AttributeError("read-only property %s" % name)


# -- _rrGlobalStatsLS ---------------------------------------------------------------------

class _rrGlobalStats_item(_Record):  # noqa: N801
    _fields = ("slot_used", "clients_needed", "framesPerMin", "framesPerMin_3D", "framesPerMin_Comp",
               "framesPerMin_Archive", "clients_free", "clients_rendering", "clients_disabled", "CpuProcess",
               "CpuMachine", "jobs_unfinished", "jobs_rendering", "jobs_total", "serverMemUsage_Machine",
               "serverMemUsage_Process", "serverMemUsage_TCPSocket", "serverMemUsage_TCPData",
               "serverMemUsage_JobBuffer", "serverMemUsage_TCPDataCompressed", "frameTime", "framesLeft")
    # clients_avTemperature: documented, missing in this build

    @property
    def serverTemperature(self):  # noqa: N802
        raise RuntimeError("HDD sensor not readable")


class _rrGlobalStatsLS(_File):  # noqa: N801
    _class_name = "_rrGlobalStatsLS"
    SLOTS = 1440

    def _need(self):
        if self._data is None:
            raise RuntimeError("no file loaded")
        return self._data

    @property
    def lastSaveDay(self):  # noqa: N802
        return self._data["lastSaveDay"] if self._data else 0

    @property
    def lastSaveMonth(self):  # noqa: N802
        return self._need()["lastSaveMonth"]

    @property
    def lastSaveYear(self):  # noqa: N802
        return self._data.get("lastSaveYear", 0) if self._data else 0

    def currentLocalTime(self):  # noqa: N802
        return 0

    def _item(self, array, idx):
        _check_index(idx, self.SLOTS)
        return _rrGlobalStats_item((self._data or {}).get(array, {}).get(str(idx), {}))

    def day(self, idx):
        return self._item("day", idx)

    def month(self, idx):
        return self._item("month", idx)

    def year(self, idx):
        return self._item("year", idx)

    def dayMax(self):  # noqa: N802
        return self.SLOTS

    def monthMax(self):  # noqa: N802
        return self.SLOTS

    def yearMax(self):  # noqa: N802
        return self.SLOTS


# -- _dailyStats_data ---------------------------------------------------------------------

class _jobStat(_Record):  # noqa: N801
    _fields = ("slotSet", "avPSUsage", "maxPSUsage", "PSneeded", "renderLicNeeded", "jobsWaiting", "jobsDisabled",
               "jobsIdle", "jobsRendering", "jobsDone", "timesSended", "timesFinished", "avMemUsageMB",
               "maxMemUsageMB", "avFrameTime", "maxFrameTime", "framesRendered", "framesLeft")


class _jobStatDay(_Record):  # noqa: N801
    _fields = ("name", "type")

    def getTimeSlot(self, idx):  # noqa: N802
        _check_index(idx, 96)
        if self._values.get("crash_in_slots"):
            os._exit(139)
        return _jobStat(self._values.get("slots", {}).get(str(idx), {}))

    def timeSlotCount(self):  # noqa: N802
        return 96


class _dailyStats_data(_File):  # noqa: N801
    _class_name = "_dailyStats_data"

    def getJobsByType(self, id):  # noqa: N802,A002
        data = self._data or {}
        if str(id) in data.get("crash_on_type_ids", []):
            os._exit(139)
        if id not in (0, 1, 2):
            raise ValueError("getJobsByType: unknown type id %r" % (id,))
        return [_jobStatDay(entry) for entry in data.get("entries", []) if entry["listed_under"] == id]

    def jobTypeCount(self):  # noqa: N802
        return 3


# -- _server_clientInfo -------------------------------------------------------------------

class _Client_WOLInfo(_Record):  # noqa: N801
    _fields = ("success", "bootTime", "dateTime")


class _Client_Info_save(_Record):  # noqa: N801
    _fields = ("lastConnect", "lastWOLTry", "WOLTryCount", "saveNameCopy", "saveVersionCopy")

    def maxWOLCount(self):  # noqa: N802
        return 4

    def maxIPCount(self):  # noqa: N802
        return 4

    def lastWOLs(self, idx):  # noqa: N802
        _check_index(idx, 4)
        wols = self._values.get("wols", [])
        return _Client_WOLInfo(wols[idx] if idx < len(wols) else {})

    def lastIPs(self, idx):  # noqa: N802
        _check_index(idx, 4)
        return "0.0.0.0"

    def lastIPDate(self, idx):  # noqa: N802
        _check_index(idx, 4)
        return 0


class _server_clientInfo(_File):  # noqa: N801
    _class_name = "_server_clientInfo"

    def count(self):
        return len((self._data or {}).get("clients", []))

    def info(self, idx):
        _check_index(idx, self.count())
        return _Client_Info_save(self._data["clients"][idx])


# -- classes this fake knows but cannot load ----------------------------------------------

class _Unsupported(_File):
    def loadFromFile(self, filename, failIfNoFile=True):  # noqa: N802,N803
        object.__setattr__(self, "_error", "the fake does not load %s files" % self._class_name)
        return False


class _rrClientStats_data(_Unsupported):  # noqa: N801
    _class_name = "_rrClientStats_data"
    StructureID = 0xA101

    def days(self, idx):
        raise IndexError(idx)

    def daysMax(self):  # noqa: N802
        return 180


class _StatsRenderTime(_Unsupported):
    _class_name = "_StatsRenderTime"
    settingsFileDate = 0  # noqa: N815 - the vendor's name
    count = 0

    def loadFile(self, filename):  # noqa: N802
        return self.loadFromFile(filename)

    def saveFile(self, filename):  # noqa: N802
        return False

    def getProject(self, idx):  # noqa: N802
        raise IndexError(idx)


class _AppLicenses_v8(_Unsupported):  # noqa: N801
    _class_name = "_AppLicenses_v8"

    def saveToFile(self, filename):  # noqa: N802
        return False

    def getCount(self):  # noqa: N802
        return 0

    def getLicense(self, idx):  # noqa: N802
        raise IndexError(idx)


class _frameStatJob(_Unsupported):  # noqa: N801
    _class_name = "_frameStatJob"

    def frame(self, idx):
        raise IndexError(idx)

    def frameCount(self):  # noqa: N802
        return 0
