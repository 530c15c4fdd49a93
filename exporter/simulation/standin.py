"""Stand-in for Royal Render's ``libpyRR*_datafiles`` module. NOT the vendor's module.

It has the classes, methods, parameters and index semantics of the vendor's
reference, as summed up in docs/royalrender.md ("The stand-in module"),
and reads files that the farm simulator writes in its own JSON format
(``simformat``). It exists so that the tests, the demo and
``royalrender.module: simulated`` run the exporter's real path: worker
process -> module -> documented classes -> adapter. Production loads the
vendor's module from the RR installation and reads RR's own files.

Files can be shaped like RR 8 (older field names, 960 slots of 90 s, 4320
client items of 20 s, job type ids 0..2) or RR 9 (1440 slots, 2880 items,
ids 1..3). A file may also ask the module to misbehave the way a C++
extension does on a corrupt file (``"fault": "crash"`` or ``"hang"``).
"""

from __future__ import annotations

import calendar
import os
import time
from typing import Any, Dict, List

from exporter.simulation import simformat

MODULE_VERSION = "stand-in 1.0 (renderfarm-exporter; not Royal Render)"


def _local_now() -> int:
    now = time.time()
    return int(calendar.timegm(time.localtime(now)))


def getRRModuleVersion() -> str:  # noqa: N802 - vendor API names
    return MODULE_VERSION


def _rr_folder(*parts: str) -> str:
    root = os.environ.get("RR_ROOT", "")
    return os.path.join(root, *parts) if root else ""


def getRRFolder_cfgGlobal() -> str:  # noqa: N802
    return _rr_folder("sub", "cfg_global")


def getRRFolder_cfgUser() -> str:  # noqa: N802
    return _rr_folder("sub", "cfg_user")


def getRRFolder_stats() -> str:  # noqa: N802
    return _rr_folder("sub", "stats")


def getRRFolder_bin() -> str:  # noqa: N802
    return _rr_folder("bin", "lx64")


class _Fields:
    """A record whose attributes are the documented fields; unset fields read as 0."""

    _names: tuple = ()

    def __init__(self, values: Dict[str, Any]):
        for name in self._names:
            setattr(self, name, 0)
        for name, value in values.items():
            setattr(self, name, value)


class _Loadable:
    """``loadFromFile`` / ``getError`` as the vendor's classes have them."""

    _class_name = ""

    def __init__(self) -> None:
        self._error = ""
        self._data: Dict[str, Any] = {}

    def loadFromFile(self, FileName: str, failIfNoFile: bool = True) -> bool:  # noqa: N802,N803
        try:
            data = simformat.read(FileName, self._class_name)
        except simformat.SimFormatError as exc:
            self._error = str(exc)
            return False
        _fault(data)
        self._error = ""
        self._data = data
        self._loaded(data)
        return True

    def getError(self) -> str:  # noqa: N802
        return self._error

    def _loaded(self, data: Dict[str, Any]) -> None:
        raise NotImplementedError


def _save(loadable: _Loadable, path: str) -> bool:
    """The documented save methods write the stand-in's own format, never RR's."""
    try:
        simformat.write(path, loadable._class_name, loadable._data)
    except OSError as exc:
        loadable._error = str(exc)
        return False
    return True


def _fault(data: Dict[str, Any]) -> None:
    """Misbehave like a C++ extension on a corrupt file, when the file asks for it."""
    fault = data.get("fault")
    if fault == "crash":
        os._exit(139)
    if fault == "hang":
        marker = data.get("hang_marker")
        if marker:  # tells a test that the module now hangs (simulator.wait_until_hung)
            with open(marker, "w"):
                pass
        while True:
            time.sleep(3600)


# -- _rrGlobalStatsLS: server_stats.db -------------------------------------------------

RR9_GLOBAL_FIELDS = (
    "clients_needed", "framesPerMin", "framesPerMin_3D", "framesPerMin_Comp", "framesPerMin_Archive",
    "clients_free", "clients_rendering", "clients_disabled", "CpuProcess", "CpuMachine", "serverTemperature",
    "clients_avTemperature", "jobs_unfinished", "jobs_rendering", "jobs_total", "serverMemUsage_Machine",
    "serverMemUsage_Process", "serverMemUsage_TCPSocket", "serverMemUsage_TCPData", "serverMemUsage_JobBuffer",
    "serverMemUsage_TCPDataCompressed", "frameTime", "framesLeft",
)
#: RR 8 names as seen in the vendor's older binding (the aliases in docs/royalrender.md).
RR8_NAMES = {
    "framesPerMin": "framesPer90s", "clients_rendering": "client_rendering",
    "clients_avTemperature": "avclientTemperature", "serverMemUsage_Machine": "MemUsageMachine",
    "serverMemUsage_Process": "MemUsageProcess", "serverMemUsage_TCPSocket": "TCPMemUsageSocket",
    "serverMemUsage_TCPData": "TCPMemUsageData", "serverMemUsage_JobBuffer": "JobBufferMemUsageJobs",
    "serverMemUsage_TCPDataCompressed": "TCPMemUsageDataCompressed", "frameTime": "av_frame_time",
    "framesLeft": "frames_to_do",
}
RR8_GLOBAL_FIELDS = tuple(RR8_NAMES.get(name, name) for name in RR9_GLOBAL_FIELDS)


class _rrGlobalStats_item(_Fields):  # noqa: N801
    def __init__(self, values: Dict[str, Any], names: tuple):
        self._names = names
        super().__init__(values)
        self.slot_used = bool(values.get("slot_used", False))


class _rrGlobalStatsLS(_Loadable):  # noqa: N801
    """Loads ``[RR]/sub/stats/server_stats.db``: day, month and year arrays."""

    _class_name = "_rrGlobalStatsLS"

    def __init__(self) -> None:
        super().__init__()
        self.lastSaveDay = 0
        self.lastSaveMonth = 0
        self.lastSaveYear = 0

    def _loaded(self, data):
        self.lastSaveDay = data["lastSaveDay"]
        self.lastSaveMonth = data["lastSaveMonth"]
        self.lastSaveYear = data["lastSaveYear"]
        self._names = RR8_GLOBAL_FIELDS if data.get("shape") == "rr8" else RR9_GLOBAL_FIELDS

    def currentLocalTime(self) -> int:  # noqa: N802
        return _local_now()

    def _item(self, array: str, idx: int) -> _rrGlobalStats_item:
        if not 0 <= idx < self._data[array + "Max"]:
            raise IndexError("%s index %d out of range" % (array, idx))
        return _rrGlobalStats_item(self._data[array].get(str(idx), {}), self._names)

    def day(self, idx: int) -> _rrGlobalStats_item:
        """Index 0 is the first slot after midnight (local time)."""
        return self._item("day", idx)

    def dayMax(self) -> int:  # noqa: N802
        return self._data["dayMax"]

    def month(self, idx: int) -> _rrGlobalStats_item:
        """Pushed down: ``monthMax()-1`` is the last completed 30 minutes."""
        return self._item("month", idx)

    def monthMax(self) -> int:  # noqa: N802
        return self._data["monthMax"]

    def year(self, idx: int) -> _rrGlobalStats_item:
        """Pushed down: ``yearMax()-1`` is the last completed 6 hours."""
        return self._item("year", idx)

    def yearMax(self) -> int:  # noqa: N802
        return self._data["yearMax"]


# -- _dailyStats_data: one file a day in [RR]/sub/stats/server/ -----------------------

JOB_STAT_FIELDS = (
    "avPSUsage", "maxPSUsage", "PSneeded", "renderLicNeeded", "jobsWaiting", "jobsDisabled", "jobsIdle",
    "jobsRendering", "jobsDone", "timesSended", "timesFinished", "avMemUsageMB", "maxMemUsageMB", "avFrameTime",
    "maxFrameTime", "framesRendered", "framesLeft",
)


class _jobStat(_Fields):  # noqa: N801
    _names = JOB_STAT_FIELDS

    def __init__(self, values: Dict[str, Any]):
        super().__init__(values)
        self.slotSet = bool(values.get("slotSet", False))


class _jobStatDay:  # noqa: N801
    def __init__(self, entry: Dict[str, Any]):
        self.name = entry["name"]
        self.type = entry["type"]
        self._slots = entry["slots"]

    def getTimeSlot(self, idx: int) -> _jobStat:  # noqa: N802
        """Slot ``idx`` covers ``idx*15`` to ``(idx+1)*15`` minutes after midnight."""
        if not 0 <= idx < 96:
            raise IndexError("time slot %d out of range" % idx)
        return _jobStat(self._slots.get(str(idx), {}))

    def timeSlotCount(self) -> int:  # noqa: N802
        return 96


class _dailyStats_data(_Loadable):  # noqa: N801
    """Per user, project and render app stats of one day, every 15 minutes."""

    _class_name = "_dailyStats_data"

    def _loaded(self, data):
        self._first_type_id = 0 if data.get("shape") == "rr8" else 1

    def getJobsByType(self, id: int) -> List[_jobStatDay]:  # noqa: N802,A002
        """RR 8: 0 user, 1 project, 2 render app. RR 9 documents 1..3."""
        kind = id - self._first_type_id
        if not 0 <= kind < 3:
            return []
        return [_jobStatDay(e) for e in self._data["stats"] if e["type"] == kind]

    def jobTypeCount(self) -> int:  # noqa: N802
        return 3


# -- _rrClientStats_data: one file per client -------------------------------------------

CLIENT_ITEM_FIELDS = ("userLoggedIn", "cpuTotal", "gpuTotal", "memTotal10MB", "networkInMB", "networkOutMB",
                      "networkInSpeedMaxMB")


class _rrClientStats_day_data_jobthread(_Fields):  # noqa: N801
    _names = ("status", "cpuRender", "memRender10MB", "jobIDShort")
    jobIDShort: int  # noqa: N815 - the vendor's name; set by _Fields, as the other _names

    def jobIDShortStr(self) -> str:  # noqa: N802
        return "{%08X}" % self.jobIDShort


class _rrClientStats_day_data(_Fields):  # noqa: N801
    """One 30 s (RR 9) or 20 s (RR 8) item."""

    _names = CLIENT_ITEM_FIELDS

    def __init__(self, values: Dict[str, Any]):
        super().__init__({k: v for k, v in values.items() if k != "threads"})
        self._set = bool(values)
        self._threads = values.get("threads", [])

    def jobThread(self, idx: int) -> _rrClientStats_day_data_jobthread:  # noqa: N802
        return _rrClientStats_day_data_jobthread(self._threads[idx])

    def jobThreadCount(self) -> int:  # noqa: N802
        return len(self._threads)

    def hasData(self) -> bool:  # noqa: N802
        return self._set


class _rrClientStats_day_data_hourly_jobthread(_Fields):  # noqa: N801
    _names = ("framesDone", "jobCrashed", "jobAborted", "jobSuccessful")


class _rrClientStats_day_data_hourly:  # noqa: N801
    def __init__(self, threads: List[Dict[str, Any]]):
        self._threads = threads

    def jobThread(self, idx: int) -> _rrClientStats_day_data_hourly_jobthread:  # noqa: N802
        return _rrClientStats_day_data_hourly_jobthread(self._threads[idx])

    def jobThreadCount(self) -> int:  # noqa: N802
        return len(self._threads)


class _rrClientStats_day:  # noqa: N801
    def __init__(self, values: Dict[str, Any], data_max: int):
        self.daySet = bool(values.get("daySet", False))
        self.day = values.get("day", 0)
        self._items = values.get("data", {})
        self._hourly = values.get("hourly", {})
        self._data_max = data_max

    def data(self, idx: int) -> _rrClientStats_day_data:
        """Index 0 is the first item after midnight."""
        if not 0 <= idx < self._data_max:
            raise IndexError("data index %d out of range" % idx)
        return _rrClientStats_day_data(self._items.get(str(idx), {}))

    def dataMax(self) -> int:  # noqa: N802
        return self._data_max

    def dataHourly(self, idx: int) -> _rrClientStats_day_data_hourly:  # noqa: N802
        if not 0 <= idx < 24:
            raise IndexError("hour %d out of range" % idx)
        return _rrClientStats_day_data_hourly(self._hourly.get(str(idx), []))

    def dataHourlyMax(self) -> int:  # noqa: N802
        return 24


class _rrClientStats_data(_Loadable):  # noqa: N801
    """One client's stats: ``days(daysMax()-1)`` is the last day written."""

    _class_name = "_rrClientStats_data"

    def __init__(self) -> None:
        super().__init__()
        self.StructureID = 0

    def _loaded(self, data):
        self.StructureID = 0xA101
        self._data_max = 4320 if data.get("shape") == "rr8" else 2880

    def days(self, idx: int) -> _rrClientStats_day:
        if not 0 <= idx < 180:
            raise IndexError("day index %d out of range" % idx)
        return _rrClientStats_day(self._data["days"].get(str(idx), {}), self._data_max)

    def daysMax(self) -> int:  # noqa: N802
        return 180


# -- _server_clientInfo: clientIPstats82.db --------------------------------------------

class _Client_WOLInfo(_Fields):  # noqa: N801
    _names = ("success", "bootTime", "dateTime")


class _Client_Info_save(_Fields):  # noqa: N801
    _names = ("lastConnect", "lastWOLTry", "WOLTryCount", "saveNameCopy", "saveVersionCopy")
    _MAX_IPS = 5
    _MAX_WOLS = 5

    def __init__(self, values: Dict[str, Any]):
        super().__init__({k: v for k, v in values.items() if k not in ("ips", "wols")})
        self._ips = values.get("ips", [])
        self._wols = values.get("wols", [])

    def lastIPs(self, idx: int) -> str:  # noqa: N802
        return self._ips[idx][0] if idx < len(self._ips) else "0.0.0.0"

    def lastIPDate(self, idx: int) -> int:  # noqa: N802
        return self._ips[idx][1] if idx < len(self._ips) else 0

    def lastWOLs(self, idx: int) -> _Client_WOLInfo:  # noqa: N802
        """Index 0 is the latest WOL command."""
        return _Client_WOLInfo(self._wols[idx] if idx < len(self._wols) else {})

    def maxIPCount(self) -> int:  # noqa: N802
        return self._MAX_IPS

    def maxWOLCount(self) -> int:  # noqa: N802
        return self._MAX_WOLS


class _server_clientInfo(_Loadable):  # noqa: N801
    _class_name = "_server_clientInfo"

    def _loaded(self, data):
        pass

    def info(self, idx: int) -> _Client_Info_save:
        return _Client_Info_save(self._data["clients"][idx])

    def count(self) -> int:
        return len(self._data["clients"])


# -- _StatsRenderTime: average frame times of recent jobs per project and layer ----------

class _StatsRenderTime_layer:  # noqa: N801
    def __init__(self, values: Dict[str, Any]):
        self.jobsAdded = values.get("jobsAdded", 0)
        self.name = values.get("name", "")
        self._times = values.get("times", [])

    def getFrameTime(self, idx: int) -> int:  # noqa: N802
        """Frame time in PS*s; the latest job is at index 0."""
        return self._times[idx]

    def timesCount(self) -> int:  # noqa: N802
        return len(self._times)


class _StatsRenderTime_project:  # noqa: N801
    def __init__(self, values: Dict[str, Any]):
        self.lastUsed = values.get("lastUsed", 0)
        self.name = values.get("name", "")
        self._layers = values.get("layers", [])

    def getLayer(self, idx: int) -> _StatsRenderTime_layer:  # noqa: N802
        return _StatsRenderTime_layer(self._layers[idx])

    def layerCount(self) -> int:  # noqa: N802
        return len(self._layers)


class _StatsRenderTime(_Loadable):
    """Note the vendor's names: ``loadFile``/``saveFile`` here, not ``loadFromFile``."""

    _class_name = "_StatsRenderTime"

    def __init__(self) -> None:
        super().__init__()
        self.settingsFileDate = 0
        self.count = 0

    def _loaded(self, data):
        self.settingsFileDate = data.get("settingsFileDate", 0)
        self.count = len(data["projects"])

    def loadFile(self, FileName: str) -> bool:  # noqa: N802,N803
        return _Loadable.loadFromFile(self, FileName)

    def saveFile(self, FileName: str) -> bool:  # noqa: N802,N803
        return _save(self, FileName)

    def getProject(self, idx: int) -> _StatsRenderTime_project:  # noqa: N802
        return _StatsRenderTime_project(self._data["projects"][idx])

    # Not a method of this class in the vendor's module: hiding the inherited one breaks
    # the base class's interface on purpose, which is what the stand-in must mimic.
    loadFromFile = None  # type: ignore[assignment]  # noqa: N815


# -- _AppLicenses_v8: render license counts of rrConfig's "Render Lic" tab -------------

LICENSE_REGIONS = ("default", "workstation", "render_farm", "cloud")


class _AppLicenses_v8_licItem:  # noqa: N801
    """Settings per region: 0 Default, 1 Workstation, 2 Render Farm, 3 Cloud."""

    def __init__(self, values: Dict[str, Any]):
        self._values = values
        self._regions = values.get("regions", [{}] * 4)

    def getRenderAppName(self) -> str:  # noqa: N802
        return self._values.get("app", "")

    def getPluginName(self) -> str:  # noqa: N802
        return self._values.get("plugin", "")

    def getVersion(self) -> int:  # noqa: N802
        return self._values.get("version", 0)

    def getLicCount(self, region: int) -> int:  # noqa: N802
        return self._regions[region].get("count", 0)

    def getIsTypeSet(self, region: int) -> bool:  # noqa: N802
        return bool(self._regions[region].get("set", region == 0))

    def getIsUnlimited(self, region: int) -> bool:  # noqa: N802
        return bool(self._regions[region].get("unlimited", False))

    def getCost(self, region: int) -> float:  # noqa: N802
        return float(self._regions[region].get("cost", 0.0))

    def SetRenderAppName(self, name: str) -> None:  # noqa: N802 - the vendor's capital S
        self._values["app"] = name

    def setPluginName(self, name: str) -> None:  # noqa: N802
        self._values["plugin"] = name

    def setVersion(self, version: int) -> None:  # noqa: N802
        self._values["version"] = version

    def _region(self, region: int) -> Dict[str, Any]:
        self._regions = [dict(r) for r in self._regions]
        self._values["regions"] = self._regions
        return self._regions[region]

    def setLicCount(self, region: int, count: int) -> None:  # noqa: N802
        self._region(region)["count"] = count

    def setIsTypeSet(self, region: int, isSet: bool) -> None:  # noqa: N802,N803
        self._region(region)["set"] = isSet

    def setIsUnlimited(self, region: int, IsUnlimited: bool) -> None:  # noqa: N802,N803
        self._region(region)["unlimited"] = IsUnlimited

    def setCost(self, region: int, cost: float) -> None:  # noqa: N802
        self._region(region)["cost"] = cost


class _AppLicenses_v8(_Loadable):  # noqa: N801
    _class_name = "_AppLicenses_v8"

    def _loaded(self, data):
        pass

    def getCount(self) -> int:  # noqa: N802
        return len(self._data["licenses"])

    def getLicense(self, index: int) -> _AppLicenses_v8_licItem:  # noqa: N802
        return _AppLicenses_v8_licItem(self._data["licenses"][index])

    def saveToFile(self, filename: str) -> bool:  # noqa: N802
        return _save(self, filename)


# -- _frameStatJob: per-frame stats of one job -----------------------------------------

class _frameStat_part(_Fields):  # noqa: N801
    _names = ("jobMemoryMB", "jobCPU", "nonJobCPU", "renderThreads")


class _frameStat(_Fields):  # noqa: N801
    _names = ("logFileStart", "logFileStartFrame", "renderTime5Sec", "frameNrJob", "client", "averageValue")

    def __init__(self, values: Dict[str, Any]):
        super().__init__({k: v for k, v in values.items() if k != "parts"})
        self._parts = values.get("parts", [])

    def part(self, idx: int = 0) -> _frameStat_part:
        """Up to ``partMax()`` samples taken while the frame rendered."""
        return _frameStat_part(self._parts[idx] if idx < len(self._parts) else {})

    def partMax(self) -> int:  # noqa: N802
        return 5


class _frameStatJob(_Loadable):  # noqa: N801
    _class_name = "_frameStatJob"

    def _loaded(self, data):
        pass

    def frame(self, frame: int) -> _frameStat:
        """Index 0 is the job's first frame, not the frame number in the scene."""
        return _frameStat(self._data["frames"][frame])

    def frameCount(self) -> int:  # noqa: N802
        return len(self._data["frames"])


# -- _ClientGroupList: clientgroups.ini -------------------------------------------------
# The Python reference only names this class; its methods here are those the vendor
# documents for the same class in its Node.js binding (libNodeRR2_datafiles).

class _ClientGroup:
    def __init__(self, values: Dict[str, Any]):
        self._name = values.get("name", "")
        self._clients = list(values.get("clients", []))

    def getName(self) -> str:  # noqa: N802
        return self._name

    def count(self) -> int:
        return len(self._clients)

    def getClientName(self, idx: int) -> str:  # noqa: N802
        return self._clients[idx]


class _ClientGroupList(_Loadable):
    _class_name = "_ClientGroupList"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.settingsFileDate = 0

    def _loaded(self, data):
        self.count = len(data["groups"])
        self.settingsFileDate = data.get("settingsFileDate", 0)

    def clientGroup(self, idx: int) -> _ClientGroup:  # noqa: N802
        return _ClientGroup(self._data["groups"][idx])

    def clientGroupsMax(self) -> int:  # noqa: N802
        return 100

    def saveToFile(self, FileName: str) -> bool:  # noqa: N802,N803
        return _save(self, FileName)
