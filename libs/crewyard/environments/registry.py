"""The operator's package registry settings, and nothing else of the host, for build sandboxes.

A build runs with an empty environment except for what reaching the package registries needs:
index URLs, proxies and CA bundles (``SSL_CERT_FILE``, ``PIP_CERT``, ``REQUESTS_CA_BUNDLE``,
``NODE_EXTRA_CA_CERTS`` …), plus pip's configuration files and the local things they point to
(find-links folders, ``file://`` indexes, constraint files, the CA bundle), bound read-only.
Behind a corporate proxy or a private mirror registry TLS fails without them.

uv does not read ``pip.conf``, so pip's settings are also translated into uv's flags; with extra
indexes uv is told to pick the best version across all of them, as pip does.

npm's settings, for JavaScript crews: its user and global ``npmrc`` files (``~/.npmrc`` or
``NPM_CONFIG_USERCONFIG``; ``<node prefix>/etc/npmrc`` or ``NPM_CONFIG_GLOBALCONFIG``) are bound
read-only at fixed places and named by ``NPM_CONFIG_USERCONFIG``/``NPM_CONFIG_GLOBALCONFIG``, with
the files they point to (``cafile``); ``NPM_CONFIG_*`` registry, CA and proxy variables pass too.
Like pip's, these files may hold the operator's registry credentials, which a build then sees.
"""

from __future__ import annotations

import configparser
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

import msgspec

#: Variables passed through unchanged when the host has them.
PASS_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
    "PIP_TRUSTED_HOST", "PIP_CONSTRAINT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY", "UV_INDEX_URL",
    "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_INDEX_STRATEGY",
    "UV_NATIVE_TLS", "UV_INSECURE_HOST", "UV_HTTP_TIMEOUT", "NPM_CONFIG_REGISTRY", "npm_config_registry",
    "NPM_CONFIG_CAFILE", "npm_config_cafile", "NPM_CONFIG_STRICT_SSL", "npm_config_strict_ssl",
    "NPM_CONFIG_PROXY", "npm_config_proxy", "NPM_CONFIG_HTTPS_PROXY", "npm_config_https_proxy",
    "NPM_CONFIG_NOPROXY", "npm_config_noproxy",
)  # fmt: skip
#: Where npm's configuration files are put inside a sandbox or build container.
NPM_USERCONFIG = "/run/crewyard/npm/npmrc"
NPM_GLOBALCONFIG = "/run/crewyard/npm/npmrc-global"
#: Where pip's user configuration is put inside a sandbox (``XDG_CONFIG_HOME``).
CONFIG_HOME = "/run/crewyard/config"
_PIP_KEYS = ("index-url", "extra-index-url", "find-links", "constraint", "cert", "trusted-host", "proxy")
_URL_VARS = ("INDEX", "FIND_LINKS", "PROXY", "REGISTRY")
_CA_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


class Registry(msgspec.Struct, kw_only=True):
    env: dict[str, str]  # set inside the sandbox
    binds: dict[str, str]  # host path → path inside (read-only)
    uv_args: list[str]  # registry flags for ``uv pip install``

    npm_settings: list[str] = msgspec.field(default_factory=list)  # registry lines of npm's files
    npm_proxies: list[str] = msgspec.field(default_factory=list)  # proxy lines of npm's files

    def hosts(self) -> list[str]:
        """The host names of every registry, mirror and proxy these settings name: what a build
        must reach over the network (:mod:`.sandbox` lets it reach them even on a private range)."""
        values = [*self.uv_args, *self.npm_proxies]
        values += [v.partition("=")[2] for v in self.npm_settings]
        values += [v for k, v in self.env.items() if any(w in k.upper() for w in _URL_VARS)]
        found: list[str] = []
        for value in values:
            for word in value.split():
                url = urlparse(word.rpartition("=")[2] if "://" in word.rpartition("=")[2] else word)
                host = url.hostname if url.scheme not in ("", "file") else None
                if host and host not in found:
                    found.append(host)
        return found

    def digest_parts(self) -> list[str]:
        """What changes which packages a build resolves (indexes, links, constraints)."""
        return [*self.uv_args, *(f"{k}={v}" for k, v in sorted(self.env.items()) if "INDEX" in k)]

    def npm_digest_parts(self) -> list[str]:
        """What changes which packages an npm build resolves (registries, scopes)."""
        env = [f"{k.lower()}={v}" for k, v in sorted(self.env.items()) if k.lower() == "npm_config_registry"]
        return [*env, *self.npm_settings]


def _pip_config_files(environ: Mapping[str, str], home: Path) -> list[tuple[Path, str]]:
    """pip's configuration files in its own order, each with where it goes inside a sandbox."""
    dirs = environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    found = [(Path(d) / "pip" / "pip.conf", str(Path(d) / "pip" / "pip.conf")) for d in dirs if d]
    found.append((Path("/etc/pip.conf"), "/etc/pip.conf"))
    user_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    inside = f"{CONFIG_HOME}/pip/pip.conf"
    found += [(home / ".pip" / "pip.conf", inside), (user_home / "pip" / "pip.conf", inside)]
    if environ.get("PIP_CONFIG_FILE"):
        found.append((Path(environ["PIP_CONFIG_FILE"]), "/run/crewyard/pip-extra.conf"))
    return [(path, where) for path, where in found if path.is_file()]


def _local_path(location: str) -> Path | None:
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def _npmrc_settings(path: Path) -> dict[str, str]:
    """``key=value`` lines of an npmrc file (ini without sections, as npm reads it)."""
    found: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith((";", "#")):
            found[key.strip()] = value.strip().strip('"')
    return found


def _npm_config(environ: Mapping[str, str], home: Path, node_prefix: str | None) -> Registry:
    env: dict[str, str] = {}
    binds: dict[str, str] = {}
    settings: list[str] = []
    proxies: list[str] = []
    user = environ.get("NPM_CONFIG_USERCONFIG") or environ.get("npm_config_userconfig")
    user = user or str(home / ".npmrc")
    default_global = f"{node_prefix}/etc/npmrc" if node_prefix else ""
    glob = environ.get("NPM_CONFIG_GLOBALCONFIG") or environ.get("npm_config_globalconfig") or default_global
    for host, inside, var in ((user, NPM_USERCONFIG, "NPM_CONFIG_USERCONFIG"),
                              (glob, NPM_GLOBALCONFIG, "NPM_CONFIG_GLOBALCONFIG")):  # fmt: skip
        if not host or not Path(host).is_file():
            continue
        binds[host] = inside
        env[var] = inside
        for key, value in _npmrc_settings(Path(host)).items():
            if key == "registry" or key.endswith(":registry"):
                settings.append(f"{key}={value}")
            if key in ("proxy", "https-proxy", "http-proxy"):
                proxies.append(value)
            if key == "cafile" and Path(value).is_file():
                binds.setdefault(value, value)
    for name in ("NPM_CONFIG_CAFILE", "npm_config_cafile"):
        cafile = environ.get(name)
        if cafile and Path(cafile).is_file():
            binds.setdefault(cafile, cafile)
    return Registry(env=env, binds=binds, uv_args=[], npm_settings=settings, npm_proxies=proxies)


def from_host(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Registry:
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    env = {k: environ[k] for k in PASS_ENV if environ.get(k)}
    binds: dict[str, str] = {}
    settings: dict[str, str] = {}
    for path, inside in _pip_config_files(environ, home):
        binds[str(path)] = inside
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, UnicodeDecodeError):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                settings.update({k: v for k, v in parser.items(section) if k in _PIP_KEYS})
    for key in _PIP_KEYS:  # environment variables win over files, as in pip
        value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            settings[key] = value
    if any(p.startswith(CONFIG_HOME) for p in binds.values()):
        env["XDG_CONFIG_HOME"] = CONFIG_HOME
    uv: list[str] = []
    locations: list[str] = []
    if settings.get("index-url") and not environ.get("UV_INDEX_URL") and not environ.get("UV_DEFAULT_INDEX"):
        uv += ["--index-url", settings["index-url"]]
        locations.append(settings["index-url"])
    for url in shlex.split(settings.get("extra-index-url", "")):
        uv += ["--extra-index-url", url]
        locations.append(url)
    if settings.get("extra-index-url") and not environ.get("UV_INDEX_STRATEGY"):
        uv += ["--index-strategy", "unsafe-best-match"]  # pip's behaviour across indexes
    for link in shlex.split(settings.get("find-links", "")):
        uv += ["--find-links", link]
        locations.append(link)
    for constraint in shlex.split(settings.get("constraint", "")):
        uv += ["--constraint", constraint]
        locations.append(constraint)
    for host in shlex.split(settings.get("trusted-host", "")):
        uv += ["--allow-insecure-host", host]
    if settings.get("cert") and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = settings["cert"]
    if settings.get("proxy"):
        env.setdefault("HTTPS_PROXY", settings["proxy"])
        env.setdefault("HTTP_PROXY", settings["proxy"])
    for location in locations:
        local = _local_path(location)
        if local is not None and local.exists():
            # A file:// simple index links to its files with relative URLs: bind its parent too.
            target = local.parent if local.name == "simple" else local
            binds.setdefault(str(target), str(target))
    for name in (*_CA_VARS, "PIP_CERT"):
        value = env.get(name)
        if value and Path(value).exists():
            binds.setdefault(value, value)
    if settings.get("cert") and Path(settings["cert"]).exists():
        binds.setdefault(settings["cert"], settings["cert"])
    from .nodejs import installed  # here: the Node of this machine decides where its npmrc is

    node = installed()
    npm = _npm_config(environ, home, node.prefix if node else None)
    for host, inside in npm.binds.items():
        binds.setdefault(host, inside)
    return Registry(
        env={**env, **npm.env},
        binds=binds,
        uv_args=uv,
        npm_settings=npm.npm_settings,
        npm_proxies=npm.npm_proxies,
    )
