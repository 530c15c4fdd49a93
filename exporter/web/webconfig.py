"""``--web.config.file``: TLS, basic auth and response headers, in exporter-toolkit's format.

The same YAML that Go exporters read (``tls_server_config``,
``basic_auth_users``, ``http_server_config``), so one file and one habit
serve every exporter on the machine. Keys that Python's ssl module cannot
honour are rejected with the reason rather than silently ignored: a
security setting that is quietly dropped is worse than a refused start.

The file, and the certificate, key and CA files it names, are checked for
changes once a second (by the daemon's reload thread, never on a request's
path); a change is loaded for the next connection (a renewed certificate
needs no restart). A broken change, or one that would weaken the security
the daemon started with (TLS removed, client certificates no longer
required or checked, basic auth removed), keeps the previous settings and
is logged and counted: only a restart can turn TLS or authentication off.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional, Tuple

from exporter.boundedfile import read_regular, stuck_reads
from exporter.config import READ_TIMEOUT, ConfigError, read_text
from exporter.logs import fields
from exporter.schema import Boolean, Errors, Field, MapOf, OneOf, Problem, Scalar, String, Struct, load_document
from exporter.status import ReloadStatus
from exporter.web.basicauth import MAX_COST, MIN_COST, BasicAuth, cost, is_bcrypt_hash

log = logging.getLogger(__name__)

#: How often the daemon's reload thread looks for a changed web config file.
CHECK_INTERVAL = 1.0
#: Longest a reload waits for a look at the web config file already in progress.
LOCK_WAIT = 10.0
#: A bigger web config file is refused (a real one is well under 1 KiB).
MAX_WEB_CONFIG_BYTES = 64 << 10
#: A bigger certificate, key or CA file is refused (a long chain or a CA bundle is a few hundred KiB).
MAX_PEM_BYTES = 1 << 20

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
#: Go's modes that accept a certificate without verifying it; Python's ssl cannot.
UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
#: exporter-toolkit allows only these response headers.
ALLOWED_HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "X-XSS-Protection",
                   "Content-Security-Policy")


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: Optional[str] = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebSettings:
    """What the HTTP server applies to each connection and request."""

    ssl_context: Optional[ssl.SSLContext] = None
    auth: Optional[BasicAuth] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    files: Tuple[str, ...] = ()  # the web config file and the files it names, watched for changes

    def weakened_by(self, new: WebSettings) -> Tuple[str, ...]:
        """What ``new`` would give up of this one's protection; empty when it keeps all of it.

        Users and certificates may change freely; what counts is whether a
        client could get in with less than before.
        """
        losses = []
        if self.ssl_context is not None and new.ssl_context is None:
            losses.append("TLS")
        elif (self.ssl_context is not None and new.ssl_context is not None
              and new.ssl_context.verify_mode < self.ssl_context.verify_mode):
            losses.append("client certificate checks")
        if self.auth is not None and new.auth is None:
            losses.append("basic auth")
        return tuple(losses)


def _bcrypt_hash(value):
    if not isinstance(value, str) or not is_bcrypt_hash(value):
        raise ValueError("make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
    if not MIN_COST <= cost(value) <= MAX_COST:
        raise ValueError("bcrypt cost %d is outside %d..%d: above %d one check takes seconds (cost 19: half a "
                         "minute) and holds the request that pays it; make one with: htpasswd -nBC 10 \"\" | "
                         "tr -d ':\\n'" % (cost(value), MIN_COST, MAX_COST, MAX_COST))
    return value


def _header_value(value):
    if not isinstance(value, str) or not value or "\r" in value or "\n" in value:
        raise ValueError("must be one line of text")
    return value


_SCHEMA = Struct({
    "tls_server_config": Field(Struct({
        "cert_file": Field(String(), required=True, doc="server certificate (PEM), chain included"),
        "key_file": Field(String(), required=True, doc="its private key (PEM)"),
        "client_auth_type": Field(OneOf(*CLIENT_AUTH, *UNSUPPORTED_CLIENT_AUTH), default="NoClientCert"),
        "client_ca_file": Field(String(), doc="CA that signs client certificates"),
        "min_version": Field(OneOf(*TLS_VERSIONS), default="TLS12"),
        "max_version": Field(OneOf(*TLS_VERSIONS), default="TLS13"),
    }, build=TlsSettings)),
    "basic_auth_users": Field(MapOf(Scalar("a bcrypt hash", _bcrypt_hash)), default={}),
    "http_server_config": Field(Struct({
        "headers": Field(MapOf(Scalar("a header value", _header_value)), default={}),
        "http2": Field(Boolean(), default=True, doc="accepted for compatibility; this server speaks HTTP/1.1"),
    }), default={"headers": {}}),
})


def load(path: str) -> WebSettings:
    """Reads and checks the file; raises ConfigError listing every problem with its key path."""
    text = read_text(path, MAX_WEB_CONFIG_BYTES)
    errors = Errors()
    document = load_document(text, _SCHEMA, errors)
    if errors.problems:
        raise ConfigError(path, errors.problems)
    document = document or _SCHEMA.defaults()
    base = os.path.dirname(os.path.abspath(path))
    problems: List[Problem] = []
    tls = document["tls_server_config"]
    context = None
    named: Tuple[str, ...] = ()
    if tls is not None:
        tls = _resolved(tls, base)
        named = tuple(p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p)
        context = _ssl_context(tls, problems)
    headers = _canonical_headers(document["http_server_config"]["headers"], problems)
    if problems:
        raise ConfigError(path, problems)
    users = document["basic_auth_users"]
    return WebSettings(context, BasicAuth(users) if users else None, headers, (path,) + named)


def _resolved(tls: TlsSettings, base: str) -> TlsSettings:
    """Relative paths are relative to the web config file, as in exporter-toolkit."""
    def resolve(p: str) -> str:
        return os.path.join(base, p)

    ca = tls.client_ca_file
    return TlsSettings(resolve(tls.cert_file), resolve(tls.key_file), tls.client_auth_type,
                       None if ca is None else resolve(ca), tls.min_version, tls.max_version)


def _ssl_context(tls: TlsSettings, problems) -> Optional[ssl.SSLContext]:
    where = "tls_server_config."
    if tls.client_auth_type in UNSUPPORTED_CLIENT_AUTH:
        problems.append(Problem(where + "client_auth_type", None,
                                "%s is not supported: Python's ssl module cannot accept a client certificate "
                                "without verifying it; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                                % tls.client_auth_type))
        return None
    if tls.client_auth_type != "NoClientCert" and not tls.client_ca_file:
        problems.append(Problem(where + "client_ca_file", None, "required when client_auth_type is %s"
                                % tls.client_auth_type))
        return None
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        problems.append(Problem(where + "min_version", None, "is above max_version"))
        return None
    unreadable = [(key, problem) for key, problem in ((key, _unreadable(getattr(tls, key))) for key in
                  ("cert_file", "key_file", "client_ca_file") if getattr(tls, key)) if problem]
    if unreadable:
        problems.extend(Problem(where + key, None, problem) for key, problem in unreadable)
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        problems.append(Problem(where + "cert_file", None, "cannot load certificate %s with key %s: %s"
                                % (tls.cert_file, tls.key_file, exc)))
        return None
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            problems.append(Problem(where + "client_ca_file", None, "cannot load %s: %s" % (tls.client_ca_file, exc)))
            return None
    return context


def _unreadable(path: str) -> Optional[str]:
    """Why the certificate, key or CA file at ``path`` cannot be loaded safely, or None.

    Read first as the config is (regular file, ``MAX_PEM_BYTES``, ``READ_TIMEOUT``), because the ssl module
    opens it with a plain blocking ``open()``: a FIFO there, or a hung share, would hang the reload for good."""
    try:
        read_regular(path, MAX_PEM_BYTES, timeout=READ_TIMEOUT)
    except OSError as exc:
        return "cannot read %s: %s" % (path, exc.strerror or exc)
    return None


def _canonical_headers(headers: Mapping[str, str], problems) -> Mapping[str, str]:
    allowed = {name.lower(): name for name in ALLOWED_HEADERS}
    result = {}
    for name, value in headers.items():
        canonical = allowed.get(name.lower())
        if canonical is None:
            problems.append(Problem("http_server_config.headers." + name, None,
                                    "not an allowed header (allowed: %s)" % ", ".join(ALLOWED_HEADERS)))
        else:
            result[canonical] = value
    return result


def _identity(paths: Tuple[str, ...]):
    """What changes when any of the files is rewritten, replaced or removed."""
    marks: List[Optional[Tuple[int, int, int]]] = []
    for path in paths:
        try:
            st = os.stat(path)
            marks.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            marks.append(None)
    return tuple(marks)


class WebConfigFile:
    """The current settings of a web config file, reloaded by ``refresh`` when it or a file it names changes.

    Without a path it serves plain HTTP with no authentication. ``current``
    never touches the disk, so serving a request never waits for a reload.
    ``status`` counts the changes noticed and the ones refused.
    """

    def __init__(self, path: Optional[str]):
        self.path = path
        self._settings = load(path) if path else WebSettings()
        self._identity = _identity(self._settings.files)
        self._lock = threading.Lock()
        self.status = ReloadStatus(last_success_time=time.time())
        self.on_change: Callable[[], None] = lambda: None  # called after each change tried (the daemon re-renders)

    def current(self) -> WebSettings:
        return self._settings

    def refresh(self, wait: float = LOCK_WAIT) -> None:
        """Loads the file again if it (or a certificate it names) changed since the last look.

        Waits at most ``wait`` seconds for a look already in progress (one stuck on a hung share is reported by
        the daemon's reloader, see ``abandoned``). While a read of one of the files, abandoned at its deadline,
        has not returned, nothing is looked at: the change is tried again once it has."""
        if not self.path or not self._lock.acquire(timeout=wait):
            return
        try:
            if self.stuck_reads():
                return
            identity = _identity(self._settings.files)
            if identity == self._identity:
                return
            self._identity = identity
            problem = self._replace()
            if self.stuck_reads():
                self._identity = ()  # the change is tried again once the abandoned read returns
            self._record(problem)
        finally:
            self._lock.release()

    def stuck_reads(self) -> List[Tuple[str, float]]:
        """(path, seconds) of the reads of the web config file or the files it names abandoned at their deadline
        (a hung share) that have not returned yet."""
        return stuck_reads(tuple(self._settings.files) + ((self.path,) if self.path else ()))

    def abandoned(self, reason: str) -> None:
        """A look at the file did not finish within the reloader's deadline: counted as refused, said loudly."""
        self._record("%s; the settings in force stay until the file can be read again (a user removed from "
                     "basic_auth_users since is still let in)" % reason)

    def _replace(self) -> Optional[str]:
        """Swaps in the file's new settings; None on success, else why the previous ones stay."""
        assert self.path  # refresh() returns early when there is no file
        try:
            settings = load(self.path)
        except ConfigError as exc:
            return "invalid: %s" % exc
        losses = self._settings.weakened_by(settings)
        if losses:
            return "it would turn off %s; only a restart can do that" % " and ".join(losses)
        self._settings = settings
        self._identity = _identity(settings.files)
        log.info("web config file reloaded", extra=fields(file=self.path, tls=settings.ssl_context is not None,
                                                          basic_auth=settings.auth is not None))
        return None

    def _record(self, problem: Optional[str]) -> None:
        if problem is None:
            self.status = self.status.succeeded(time.time())
        else:
            log.error("web config change REFUSED; keeping the previous settings",
                      extra=fields(file=self.path, reason=problem, tls=self._settings.ssl_context is not None,
                                   basic_auth=self._settings.auth is not None))
            self.status = self.status.failed(time.time(), problem)
        self.on_change()
