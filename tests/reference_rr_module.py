# ruff: noqa: N801, N802, N803, N815, A002  -- the vendor's class, method and argument names are the API
"""REFERENCE FAKE of Royal Render's ``libpyRR*_datafiles`` module -- NOT Royal Render's module.

Besides the reference's behaviours, a data file may ask for what a stranger's attack needed: a per-entry
``count`` (``timeSlotCount``), and ``id_behaviour`` {"1": "raise"|"none"|"int"|"tuple"} for ids 1 and 2.

Written from the vendor's reference (``royalrender-libpyRR2_datafiles.txt``)
and ``royalrender-facts.md`` alone, independently of the exporter's stand-in
and of ``tests/fake_rr_module.py``. It cannot read RR's binary files: it
loads files in its own JSON format (``{"magic": "RR-REFERENCE-FAKE", "class":
..., ...}``), written by ``tests/test_royalrender_rr9_contract.py``.

It behaves the way a compiled module would: every field is a read-only
property, every accessor returns a fresh object, indexes outside
``0..Max()-1`` raise ``IndexError``, and a bad file makes ``loadFromFile``
return False with ``getError()`` saying why.

What one data file can choose (so one module covers RR 8 and RR 9 shapes):

``_dailyStats_data`` files::

    {"magic": MAGIC, "class": "_dailyStats_data",
     "id_base": 0 | 1,          # getJobsByType ids: 0..2 (RR 8) or 1..3 (RR 9)
     "type_base": 0 | 1,        # the entries' ``type``: 0..2 or 1..3
     "id0": "list" | "raise" | "exit" | "abort" | "segv" | "none" | "int" | "empty",
                                # what getJobsByType(0) does when id_base is 1
     "id0_list": [entry, ...],  # the entries "list" returns (typed as stored)
     "slots": 96 | 288,         # timeSlotCount()
     "users": [entry, ...], "projects": [...], "render_apps": [...]}
    entry = {"name": "anna", "type": <optional override>, "slots": {"40": {"slotSet": 1, ...}}}

``_rrGlobalStatsLS`` files::

    {"magic": MAGIC, "class": "_rrGlobalStatsLS", "dayMax": 1440 | 960,
     "last_save_local": <local wall-clock seconds since 1970, as if UTC>,
     "last_save_divisor": "slot" | 90,   # lastSaveDay = local // (86400/dayMax) or local // 90
     "day": {"870": {"slot_used": 1, ...}}}

``_rrClientStats_data`` files::

    {"magic": MAGIC, "class": "_rrClientStats_data", "daysMax": 180, "dataMax": 2880 | 4320,
     "days": {"179": {"day": 20777, "daySet": 1,
                      "data": {"1700": {"hasData": 1, "cpuTotal": 0.25, ..., "threads": [{...}]}},
                      "hourly": {"14": [{"framesDone": 3, ...}]}}}}

Module-wide (import-time) behaviour comes from an optional file next to the
module, ``<module name>.features.json``: ``{"timeline": true}`` adds RR 9's
``_dailyStats_timeline`` class.
"""

import json
import os
import signal
import time

MAGIC = "RR-REFERENCE-FAKE"
VERSION = "9.1.99-reference-fake"


def _features():
    here = os.path.abspath(__file__)
    path = os.path.splitext(here)[0] + ".features.json"
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


_FEATURES = _features()


# -- module functions ----------------------------------------------------------

def getRRModuleVersion():
    return VERSION


def _rr_root():
    root = os.environ.get("RR_ROOT", "")
    if not root:
        return ""
    return os.path.join(root, "")


def getRRFolder_cfgGlobal():
    root = _rr_root()
    return os.path.join(root, "sub", "cfg_global", "") if root else ""


def getRRFolder_cfgUser():
    root = _rr_root()
    return os.path.join(root, "sub", "cfg_user", "") if root else ""


def getRRFolder_stats():
    root = _rr_root()
    return os.path.join(root, "sub", "stats", "") if root else ""


def getRRFolder_bin():
    root = _rr_root()
    return os.path.join(root, "bin", "lx64", "") if root else ""


# -- helpers -------------------------------------------------------------------

def _read_only(name, default):
    """A read-only property reading ``name`` from the object's private field dict."""
    def get(self):
        return self._fields.get(name, default)
    return property(get)


def _check_index(idx, size):
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise TypeError("an integer index is required")
    if idx < 0 or idx >= size:
        raise IndexError("index %d out of range 0..%d" % (idx, size - 1))


class _Loader:
    """Shared loadFromFile/getError: reads the JSON file and checks magic and class."""

    _class = None

    def __init__(self):
        self._error = ""
        self._data = None

    def _load(self, path):
        self._data = None
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            self._error = "Unable to open file %s: %s" % (path, exc)
            return False
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self._error = "File %s: wrong file format (not a stats file)" % path
            return False
        if not isinstance(data, dict) or data.get("magic") != MAGIC:
            self._error = "File %s: wrong magic id" % path
            return False
        if data.get("class") != self._class:
            self._error = "File %s: wrong structure id (%s, expected %s)" % (path, data.get("class"), self._class)
            return False
        self._data = data
        self._error = ""
        return True

    def getError(self):
        return self._error

    def _loaded(self):
        return self._data if self._data is not None else {}


# -- daily stats -----------------------------------------------------------------

_JOBSTAT_FIELDS = {
    "slotSet": False, "avPSUsage": 0.0, "maxPSUsage": 0.0, "PSneeded": 0.0, "renderLicNeeded": 0.0,
    "jobsWaiting": 0, "jobsDisabled": 0, "jobsIdle": 0, "jobsRendering": 0, "jobsDone": 0,
    "timesSended": 0, "timesFinished": 0, "avMemUsageMB": 0, "maxMemUsageMB": 0, "avFrameTime": 0,
    "maxFrameTime": 0, "framesRendered": 0, "framesLeft": 0,
}


class _jobStat:
    __slots__ = ("_fields",)

    def __init__(self, fields):
        fields = dict(fields)
        if "slotSet" in fields:
            fields["slotSet"] = bool(fields["slotSet"])
        self._fields = fields


for _name, _default in _JOBSTAT_FIELDS.items():
    setattr(_jobStat, _name, _read_only(_name, _default))


class _jobStatDay:
    __slots__ = ("_name", "_type", "_slots", "_count")

    def __init__(self, name, kind, slots, count):
        self._name = name
        self._type = kind
        self._slots = slots
        self._count = count

    name = property(lambda self: self._name)
    type = property(lambda self: self._type)

    def timeSlotCount(self):
        return self._count

    def getTimeSlot(self, idx):
        _check_index(idx, self._count)
        return _jobStat(self._slots.get(str(idx), {}))


class _dailyStats_data(_Loader):
    _class = "_dailyStats_data"
    _DIMENSIONS = ("users", "projects", "render_apps")

    def loadFromFile(self, filename, failifnofile=True):
        if not failifnofile and not os.path.exists(filename):
            self._data = {}
            self._error = ""
            return True
        return self._load(filename)

    def jobTypeCount(self):
        return 3

    def _entries(self, stored, dimension):
        data = self._loaded()
        count = int(data.get("slots", 96))
        type_base = int(data.get("type_base", data.get("id_base", 0)))
        result = []
        for entry in stored:
            kind = entry.get("type", dimension + type_base)
            size = int(entry.get("count", count))
            result.append(_jobStatDay(entry["name"], kind, dict(entry.get("slots", {})), size))
        return result

    def getJobsByType(self, id):
        data = self._loaded()
        id_base = int(data.get("id_base", 0))
        if not isinstance(id, int) or isinstance(id, bool):
            raise TypeError("an integer id is required")
        if id_base == 1 and id == 0:
            behaviour = data.get("id0", "raise")
            if behaviour == "raise":
                raise IndexError("job type id 0 out of range 1..3")
            if behaviour == "exit":
                os._exit(139)  # what a segfaulting extension looks like to its parent
            if behaviour == "abort":
                os.abort()
            if behaviour == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
                time.sleep(5)
            if behaviour == "none":
                return None
            if behaviour == "int":
                return 7
            if behaviour == "empty":
                return []
            if behaviour == "list":
                return self._entries(data.get("id0_list", []), 0)
            raise RuntimeError("reference fake: unknown id0 behaviour %r" % behaviour)
        special = data.get("id_behaviour", {}).get(str(id))
        if special == "raise":
            raise RuntimeError("attack fake: id %d raises" % id)
        if special == "none":
            return None
        if special == "int":
            return 7
        dimension = id - id_base
        if special == "tuple":
            return tuple(self._entries(data.get(self._DIMENSIONS[dimension], []), dimension))
        if dimension < 0 or dimension > 2:
            raise IndexError("job type id %d out of range %d..%d" % (id, id_base, id_base + 2))
        return self._entries(data.get(self._DIMENSIONS[dimension], []), dimension)


if _FEATURES.get("timeline"):
    class _dailyStats_timeline:
        """RR 9's class; the facts name its members only, so it does the least that fits them."""

        def __init__(self):
            self._folder = ""

        def initFileList(self, folder):
            self._folder = folder
            return os.path.isdir(folder)

        def currentUnixDayLocal(self):
            return int((time.time() - time.timezone) // 86400)

        def period_day_hasData(self, unixDay):
            return False

        def period_day(self, unixDay):
            raise IndexError("no data for day %r" % (unixDay,))


# -- server stats ----------------------------------------------------------------

_GLOBAL_ITEM_FIELDS = {
    "slot_used": False, "clients_needed": 0.0, "framesPerMin": 0.0, "framesPerMin_3D": 0,
    "framesPerMin_Comp": 0, "framesPerMin_Archive": 0, "clients_free": 0, "clients_rendering": 0,
    "clients_disabled": 0, "CpuProcess": 0, "CpuMachine": 0, "serverTemperature": 0,
    "clients_avTemperature": 0, "jobs_unfinished": 0, "jobs_rendering": 0, "jobs_total": 0,
    "serverMemUsage_Machine": 0, "serverMemUsage_Process": 0, "serverMemUsage_TCPSocket": 0,
    "serverMemUsage_TCPData": 0, "serverMemUsage_JobBuffer": 0, "serverMemUsage_TCPDataCompressed": 0,
    "frameTime": 0, "framesLeft": 0,
}


class _rrGlobalStats_item:
    __slots__ = ("_fields",)

    def __init__(self, fields):
        fields = dict(fields)
        if "slot_used" in fields:
            fields["slot_used"] = bool(fields["slot_used"])
        self._fields = fields


for _name, _default in _GLOBAL_ITEM_FIELDS.items():
    setattr(_rrGlobalStats_item, _name, _read_only(_name, _default))


class _rrGlobalStatsLS(_Loader):
    _class = "_rrGlobalStatsLS"

    def loadFromFile(self, FileName):
        return self._load(FileName)

    def _day_max(self):
        return int(self._loaded().get("dayMax", 1440))

    @property
    def lastSaveDay(self):
        data = self._loaded()
        local = int(data.get("last_save_local", 0))
        divisor = data.get("last_save_divisor", "slot")
        # the reference's two readings: local time / slot length (86400/dayMax), or local time / 90
        step = 86400 // self._day_max() if divisor == "slot" else int(divisor)
        return local // step

    @property
    def lastSaveMonth(self):
        return int(self._loaded().get("last_save_local", 0)) // 1800

    @property
    def lastSaveYear(self):
        return int(self._loaded().get("last_save_local", 0)) // 21600

    def currentLocalTime(self):
        return int(time.time() - time.timezone)

    def dayMax(self):
        return self._day_max()

    def day(self, idx):
        _check_index(idx, self._day_max())
        return _rrGlobalStats_item(self._loaded().get("day", {}).get(str(idx), {}))

    def monthMax(self):
        return int(self._loaded().get("monthMax", self._day_max()))

    def month(self, idx):
        _check_index(idx, self.monthMax())
        return _rrGlobalStats_item(self._loaded().get("month", {}).get(str(idx), {}))

    def yearMax(self):
        return int(self._loaded().get("yearMax", self._day_max()))

    def year(self, idx):
        _check_index(idx, self.yearMax())
        return _rrGlobalStats_item(self._loaded().get("year", {}).get(str(idx), {}))


# -- client stats ----------------------------------------------------------------

class _rrClientStats_day_data_jobthread:
    __slots__ = ("_fields",)

    def __init__(self, fields):
        self._fields = dict(fields)

    def jobIDShortStr(self):
        return "{%08X}" % int(self._fields.get("jobIDShort", 0))


for _name, _default in {"status": 0, "cpuRender": 0.0, "memRender10MB": 0, "jobIDShort": 0}.items():
    setattr(_rrClientStats_day_data_jobthread, _name, _read_only(_name, _default))


class _rrClientStats_day_data:
    __slots__ = ("_fields",)

    def __init__(self, fields):
        self._fields = dict(fields)

    def hasData(self):
        return bool(self._fields.get("hasData", False))

    def jobThreadCount(self):
        return len(self._fields.get("threads", []))

    def jobThread(self, idx):
        threads = self._fields.get("threads", [])
        _check_index(idx, len(threads))
        return _rrClientStats_day_data_jobthread(threads[idx])


for _name, _default in {"userLoggedIn": False, "cpuTotal": 0.0, "gpuTotal": 0.0, "memTotal10MB": 0,
                        "networkInMB": -1, "networkOutMB": -1, "networkInSpeedMaxMB": 0}.items():
    setattr(_rrClientStats_day_data, _name, _read_only(_name, _default))


class _rrClientStats_day_data_hourly_jobthread:
    __slots__ = ("_fields",)

    def __init__(self, fields):
        self._fields = dict(fields)


for _name in ("framesDone", "jobCrashed", "jobAborted", "jobSuccessful"):
    setattr(_rrClientStats_day_data_hourly_jobthread, _name, _read_only(_name, 0))


class _rrClientStats_day_data_hourly:
    __slots__ = ("_threads",)

    def __init__(self, threads):
        self._threads = list(threads)

    def jobThreadCount(self):
        return len(self._threads)

    def jobThread(self, idx):
        _check_index(idx, len(self._threads))
        return _rrClientStats_day_data_hourly_jobthread(self._threads[idx])


class _rrClientStats_day:
    __slots__ = ("_fields", "_data_max")

    def __init__(self, fields, data_max):
        self._fields = dict(fields)
        self._data_max = data_max

    daySet = property(lambda self: bool(self._fields.get("daySet", False)))
    day = property(lambda self: int(self._fields.get("day", 0)))

    def dataMax(self):
        return self._data_max

    def data(self, idx):
        _check_index(idx, self._data_max)
        return _rrClientStats_day_data(self._fields.get("data", {}).get(str(idx), {}))

    def dataHourlyMax(self):
        return 24

    def dataHourly(self, idx):
        _check_index(idx, 24)
        return _rrClientStats_day_data_hourly(self._fields.get("hourly", {}).get(str(idx), []))


class _rrClientStats_data(_Loader):
    _class = "_rrClientStats_data"

    def loadFromFile(self, FileName):
        return self._load(FileName)

    @property
    def StructureID(self):
        return int(self._loaded().get("StructureID", 0xA101))

    def daysMax(self):
        return int(self._loaded().get("daysMax", 180))

    def days(self, idx):
        _check_index(idx, self.daysMax())
        data = self._loaded()
        return _rrClientStats_day(data.get("days", {}).get(str(idx), {}), int(data.get("dataMax", 2880)))
