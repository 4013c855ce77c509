"""Which API the CLI talks to, and with which key.

The API: ``--api`` / ``CREWYARD_API``, else the one ``crewyard login`` stored, else
``http://127.0.0.1:8080``. The key, the first found of:

1. ``CREWYARD_API_KEY``;
2. the key ``crewyard login`` stored for that API, in the user's config file
   (``$CREWYARD_CONFIG``, else ``$XDG_CONFIG_HOME/crewyard/config.json``, else
   ``~/.config/crewyard/config.json``; readable by its owner only);
3. the first admin key of a platform started on this machine (``crewyard up`` writes it to
   ``<data dir>/admin.key``, 0600) — only when the API is on loopback and is the one that data
   dir's platform serves (``<data dir>/api.url``, same port), so that key never goes elsewhere.
   The data dir is ``CREWYARD_DATA_DIR``, else ``./.crewyard``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import tempfile
from pathlib import Path

import httpx
import msgspec

from crewyard.client import DEFAULT_API
from crewyard.core.access import well_formed
from crewyard.errors import CrewyardError


class ConfigError(CrewyardError):
    """The config file cannot be read for a change, or cannot be written."""


class Config(msgspec.Struct, kw_only=True, omit_defaults=True):
    #: The API ``crewyard login`` last stored (used when no --api / CREWYARD_API is given).
    api: str | None = None
    #: API base URL → its key.
    keys: dict[str, str] = msgspec.field(default_factory=dict)


def config_path() -> Path:
    explicit = os.environ.get("CREWYARD_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "crewyard" / "config.json"


def load_config() -> Config:
    """The stored config; an unreadable or damaged one counts as empty."""
    try:
        return msgspec.json.decode(config_path().read_bytes(), type=Config)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return Config()


def config_to_change() -> Config:
    """The stored config, to change and save again. A damaged or unreadable one is an error:
    saving over it would lose the keys of every other API it holds."""
    path = config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    if not data.strip():  # an empty file (``CREWYARD_CONFIG=$(mktemp)``) holds no keys to lose
        return Config()
    try:
        return msgspec.json.decode(data, type=Config)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(
            f"the config file {path} is damaged ({exc}); it was left as it is: "
            "repair it, or move it away to start a new one"
        ) from None


def save_config(config: Config) -> Path:
    """Write the config readable by its owner only (replacing it at once, never half-written)."""
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write the config file {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.format(msgspec.json.encode(config)) + b"\n")
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write the config file {path}: {exc.strerror or exc}") from None
        raise
    return path


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize(url: str) -> str:
    return url.strip().rstrip("/")


def default_api() -> str:
    return load_config().api or DEFAULT_API


def _same_local_platform(served: str, api_url: str) -> bool:
    try:
        a, b = httpx.URL(normalize(served)), httpx.URL(normalize(api_url))
    except (httpx.InvalidURL, TypeError):
        return False
    if not is_loopback(b.host) or a.port != b.port or a.scheme != b.scheme:
        return False
    return is_loopback(a.host) or a.host in ("0.0.0.0", "::")


def local_admin_key(api_url: str) -> str | None:
    """The first admin key of the platform this machine's data dir serves at ``api_url``."""
    data_dir = Path(os.environ.get("CREWYARD_DATA_DIR") or ".crewyard").expanduser()
    try:
        served = (data_dir / "api.url").read_text().strip()
        if not _same_local_platform(served, api_url):
            return None
        token = (data_dir / "admin.key").read_text().strip()
    except OSError:
        return None
    return token if well_formed(token) else None


def api_key_for(api_url: str) -> str | None:
    """The key to send to ``api_url`` (see the module's docstring), or None."""
    given = os.environ.get("CREWYARD_API_KEY")
    if given and given.strip():  # (set to blanks is not set: the stored key is used)
        return given
    stored = load_config().keys.get(normalize(api_url))
    return stored or local_admin_key(api_url)
