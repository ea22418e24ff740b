"""The ``--web.config.file`` of Prometheus's exporter-toolkit: TLS, basic auth, extra headers.

The same YAML that node_exporter and other Go exporters read, so operators can
reuse their files. Unknown keys are errors, as there. Keys the toolkit knows
but this daemon cannot honour in Python's ssl module (Go cipher and curve
names, client-auth modes that request a certificate without verifying it,
SAN allow-lists, the rate limiter) are refused with a clear message rather
than silently ignored. Relative paths are relative to the file, as there.
"""

from __future__ import annotations

import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from exporter.config import ConfigError, build_dataclass, read_yaml

TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# The toolkit's allow-list: the only headers it lets an operator add, some with fixed values.
_EXTRA_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT_HASH = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    """``tls_server_config``: the server certificate and client certificate policy."""

    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = None
    key: str | None = None
    client_auth_type: str | None = None
    client_ca_file: str | None = None
    client_ca: str | None = None
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any TLS setting is given (the toolkit's rule for turning TLS on)."""
        return any(
            (
                self.cert_file,
                self.key_file,
                self.cert,
                self.key,
                self.client_auth_type,
                self.client_ca_file,
                self.client_ca,
            )
        )


@dataclass(frozen=True, slots=True)
class HTTPServerConfig:
    """``http_server_config``: HTTP/2 (served as HTTP/1.1 here) and extra response headers."""

    http2: bool = True
    headers: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class WebToolkitConfig:
    """The whole web config file."""

    tls_server_config: TLSServerConfig = field(default_factory=TLSServerConfig)
    http_server_config: HTTPServerConfig = field(default_factory=HTTPServerConfig)
    basic_auth_users: Mapping[str, str] = field(default_factory=_empty)
    rate_limit: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WebSecurity:
    """A validated web config ready to serve: its SSL context (or None) and its rules."""

    source: str
    tls: ssl.SSLContext | None
    users: Mapping[str, bytes]
    headers: Mapping[str, str]
    tls_config: TLSServerConfig
    base: Path

    def client_ca_data(self) -> bytes:
        """The trusted client CA certificates as configured (empty without client auth)."""
        tls = self.tls_config
        if tls.client_ca_file:
            return (self.base / tls.client_ca_file).read_bytes()
        return (tls.client_ca or "").encode()

    def apply_to(self, context: ssl.SSLContext) -> None:
        """Apply this config's certificate, versions and client auth to a live context.

        New connections use them; a context cannot forget a trusted CA, so a
        changed client CA must be refused before this is called.
        """
        _configure(context, self.tls_config, self.base)


def load_web_config(path: str | Path) -> WebSecurity:
    """Read, validate and prepare the web config at ``path``; raise ConfigError on any fault."""
    path = Path(path)
    data = read_yaml(path)
    config = build_dataclass(WebToolkitConfig, {} if data is None else data, source=str(path))
    problems = [f"{path}: {p}" for p in _problems(config)]
    if problems:
        raise ConfigError(problems)
    tls = config.tls_server_config
    try:
        context = tls_context(tls, path.parent) if tls.enabled else None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError([f"{path}: tls_server_config: {exc}"]) from None
    users = {user: hashed.encode() for user, hashed in config.basic_auth_users.items()}
    return WebSecurity(
        str(path), context, users, config.http_server_config.headers, tls, path.parent
    )


def _problems(config: WebToolkitConfig) -> list[str]:
    problems = []
    tls = config.tls_server_config
    if config.rate_limit is not None:
        problems.append("rate_limit: not supported by status-exporter (use web.max_connections)")
    if tls.cipher_suites or tls.curve_preferences:
        problems.append(
            "tls_server_config: cipher_suites and curve_preferences are not supported "
            "(Go names; Python's ssl picks OpenSSL's secure defaults)"
        )
    if tls.client_allowed_sans:
        problems.append("tls_server_config.client_allowed_sans: not supported by status-exporter")
    if tls.enabled:
        if not (tls.cert_file or tls.cert):
            problems.append("tls_server_config: missing one of cert or cert_file")
        if not (tls.key_file or tls.key):
            problems.append("tls_server_config: missing one of key or key_file")
        auth = tls.client_auth_type or "NoClientCert"
        if auth not in _CLIENT_AUTH:
            problems.append(
                f"tls_server_config.client_auth_type: {auth!r} is not supported; use one of "
                + ", ".join(_CLIENT_AUTH)
            )
        has_ca = bool(tls.client_ca_file or tls.client_ca)
        if has_ca and auth == "NoClientCert":
            problems.append(
                "tls_server_config: client CA's have been configured without a Client Auth Policy"
            )
        if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not has_ca:
            problems.append(f"tls_server_config: client_auth_type {auth} needs client_ca_file")
        if _TLS_VERSIONS[tls.min_version] > _TLS_VERSIONS[tls.max_version]:
            problems.append("tls_server_config: min_version is above max_version")
    for name, value in config.http_server_config.headers.items():
        if name not in _EXTRA_HEADERS:
            problems.append(
                f"http_server_config.headers: HTTP header {name!r} can not be configured"
            )
        elif _EXTRA_HEADERS[name] and value not in _EXTRA_HEADERS[name]:
            allowed = ", ".join(_EXTRA_HEADERS[name])
            problems.append(f"http_server_config.headers.{name}: expected one of {allowed}")
    for user, hashed in config.basic_auth_users.items():
        if not _BCRYPT_HASH.match(hashed):
            problems.append(
                f"basic_auth_users.{user}: not a bcrypt hash (htpasswd -nBC 10 makes one)"
            )
    return problems


def tls_context(tls: TLSServerConfig, base: Path) -> ssl.SSLContext:
    """A server SSLContext from ``tls``; relative paths are taken relative to ``base``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(context, tls, base)
    if tls.client_ca_file:
        context.load_verify_locations(cafile=str(base / tls.client_ca_file))
    elif tls.client_ca:
        context.load_verify_locations(cadata=tls.client_ca)
    return context


def _configure(context: ssl.SSLContext, tls: TLSServerConfig, base: Path) -> None:
    """Set everything of ``tls`` that a context can take again: versions, cipher preference,
    certificate and key, client auth. Used at start and, on a live context, on reload."""
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    with (
        _pem_file(tls.cert, tls.cert_file, base) as cert,
        _pem_file(tls.key, tls.key_file, base) as key,
    ):
        context.load_cert_chain(cert, key)
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type or "NoClientCert"]


class _pem_file:
    """A path to PEM data: the file itself, or inline PEM written to a private temporary file."""

    def __init__(self, inline: str | None, path: str | None, base: Path) -> None:
        self._inline, self._path, self._base = inline, path, base
        self._temporary: Any = None

    def __enter__(self) -> str:
        if self._path:
            return str(self._base / self._path)
        self._temporary = tempfile.NamedTemporaryFile("w", suffix=".pem")
        self._temporary.write(self._inline or "")
        self._temporary.flush()
        return str(self._temporary.name)

    def __exit__(self, *exc: object) -> None:
        if self._temporary is not None:
            self._temporary.close()
