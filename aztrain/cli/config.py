"""Where the CLI connects: flags, then environment, then a config file, then the local stack.

The config file is TOML, at `$AZTRAIN_CONFIG` or `~/.config/aztrain/config.toml`:

    url = "https://my-app.azurewebsites.net"
    function_key = "..."
    storage_connection_string = "..."
    storage_account_url = "https://myaccount.blob.core.windows.net"   # wins over a connection string
    user = "alice"                                        # the dev host's user to act as (docs/teams.md)

An account URL authenticates with `DefaultAzureCredential` (az login, managed identity, ...).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aztrain.cli.client import DEFAULT_URL
from aztrain.domain.errors import ConfigError
from aztrain.service.settings import AZURITE_CONNECTION_STRING

CONFIG_ENV = "AZTRAIN_CONFIG"
DEFAULT_CONFIG = Path("~/.config/aztrain/config.toml")

#: Each setting: its environment variable and its key in the config file.
ENV = {
    "url": "AZTRAIN_URL",
    "function_key": "AZTRAIN_FUNCTION_KEY",
    "storage_connection_string": "AZTRAIN_STORAGE_CONNECTION_STRING",
    "storage_account_url": "AZTRAIN_STORAGE_ACCOUNT_URL",
    "user": "AZTRAIN_USER",
}


@dataclass(frozen=True)
class Connection:
    """The API and storage the CLI talks to, and where each value came from (flag, env, config, default)."""

    url: str
    function_key: str
    storage_connection_string: str
    storage_account_url: str
    user: str  # the dev host's user to act as (`X-Aztrain-User`); Azure signs the caller in instead
    sources: dict[str, str]


def config_path(flag: Path | None = None) -> Path:
    return (flag or Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)).expanduser()


def read_config(path: Path) -> dict[str, Any]:
    """The config file's settings; none if it does not exist. `ConfigError` for bad TOML or unknown keys."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}", setting=CONFIG_ENV) from None
    unknown = sorted(set(data) - set(ENV))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(ENV)}", setting=CONFIG_ENV)
    wrong = sorted(k for k, v in data.items() if not isinstance(v, str))
    if wrong:
        raise ConfigError(f"{path}: {', '.join(wrong)} must be text", setting=CONFIG_ENV)
    return data


def resolve(flags: dict[str, str | None], *, config: Path | None = None) -> Connection:
    """Each setting from its flag, else its environment variable, else the config file, else the local stack."""
    file = read_config(config_path(config))
    defaults = {
        "url": DEFAULT_URL,
        "function_key": "",
        "storage_connection_string": AZURITE_CONNECTION_STRING,
        "storage_account_url": "",
        "user": "",
    }
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, env in ENV.items():
        for source, value in (
            ("flag", flags.get(name)),
            (f"env {env}", os.environ.get(env)),
            (f"config {config_path(config)}", file.get(name)),
            ("default", defaults[name]),
        ):
            if value is not None and (value or source == "default"):
                values[name], sources[name] = value, source
                break
    return Connection(**values, sources=sources)
