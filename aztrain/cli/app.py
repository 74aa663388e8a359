"""The `aztrain` typer app: global options, the session they make, and what every command shares.

The commands live in `cli.runs`, `cli.catalog` and `cli.data` and register themselves on `app`; `cli.main` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from typer import _click as click
from typer._click.exceptions import NoSuchOption  # typer vendors click; its parse errors are these
from typer.core import TyperGroup

from aztrain.api.models import MIN_RUN_PREFIX
from aztrain.cli import config as cli_config
from aztrain.cli.client import LAST_RUN, Client
from aztrain.cli.output import EXIT_MEANINGS, Out
from aztrain.domain.manifest import parse_duration

EXIT_CODES_HELP = "\n\n".join(
    [
        "[bold]Exit codes[/bold]",
        "\n".join(f"{code.value:>3}  {meaning}" for code, meaning in EXIT_MEANINGS.items()),
        "Connection: flags, then environment (AZTRAIN_URL, AZTRAIN_FUNCTION_KEY, ...), then the config file "
        "($AZTRAIN_CONFIG or ~/.config/aztrain/config.toml), then the local stack. The global options "
        "(--url, --function-key, --config, --user) and --json may come anywhere on the command line. Docs: docs/cli.md",
    ]
)


#: The global options that take a value; `_Commands` accepts them anywhere on the command line.
GLOBAL_VALUE_OPTIONS = ("--url", "--function-key", "--config", "--user")
#: Every command that answers has `--json`; given before the command's name, it is moved after it.
_JSON = "--json"


def global_options_first(args: list[str]) -> list[str]:
    """`args` with the global options moved before the command and `--json` after it, wherever they were given.

    So `aztrain runs --url U --json` and `aztrain --url U --json runs` mean the same. Nothing after `--` moves.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    moved_json = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if arg.split("=", 1)[0] in GLOBAL_VALUE_OPTIONS:
            takes_next = "=" not in arg and index + 1 < len(args)
            hoisted += args[index : index + (2 if takes_next else 1)]
            index += 2 if takes_next else 1
            continue
        if arg == _JSON and not any(not a.startswith("-") for a in rest):  # before the command's name
            moved_json = True
        else:
            rest.append(arg)
        index += 1
    if moved_json:
        end = rest.index("--") if "--" in rest else len(rest)
        rest.insert(end, _JSON)
    return hoisted + rest


class _Commands(TyperGroup):
    """Global options anywhere; a mistyped option is answered with the subcommand's usage and a "did you mean"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, global_options_first(list(args)))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoSuchOption as exc:
            if exc.possibilities:
                exc.message = f"No such option: {exc.option_name}. Did you mean {' or '.join(exc.possibilities)}?"
                exc.possibilities = None
            raise


app = typer.Typer(
    name="aztrain",
    cls=_Commands,
    help="Submit and follow training runs, read their logs, upload data, check manifests, run the local stack.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)

#: The answer of the command being run, so `main` reports errors in the form (JSON or text) it asked for.
_out = Out()


@dataclass
class Session:
    """The global options, and the connection and API client they lead to (resolved on first use)."""

    flags: dict[str, str | None]
    config: Path | None = None
    extra_flags: dict[str, str | None] = field(default_factory=dict)

    @cached_property
    def connection(self) -> cli_config.Connection:
        return cli_config.resolve({**self.flags, **self.extra_flags}, config=self.config)

    @cached_property
    def client(self) -> Client:
        return Client(self.connection.url, key=self.connection.function_key, user=self.connection.user)


def begin(ctx: typer.Context, as_json: bool) -> tuple[Session, Out]:
    """The session and the answer of the command starting now."""
    global _out
    _out = Out(as_json=as_json)
    session: Session = ctx.obj
    return session, _out


def examples(*lines: str) -> str:
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  [cyan]{line}[/cyan]" for line in lines)


def _duration(value: str | int) -> int:
    try:
        return parse_duration(int(value) if str(value).isdigit() else str(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _run_ref(value: str) -> str:
    if value != LAST_RUN and len(value) < MIN_RUN_PREFIX:
        raise typer.BadParameter(
            f"give the run's short id (6 characters, as `aztrain runs` shows it), its id, or {LAST_RUN!r}"
        )
    return value


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document (shapes: docs/cli.md).")]
TimeoutOption = Annotated[
    int,
    typer.Option(
        parser=_duration,
        metavar="DURATION",
        show_default="1h",
        help="How long to follow the run: 90s, 10m, 2h, 1h30m. The run goes on after it.",
    ),
]
RunIdArgument = Annotated[
    str,
    typer.Argument(
        parser=_run_ref,
        metavar="RUN",
        help=f"The run's short id (as `aztrain runs` shows it), its full id, or {LAST_RUN!r} for the newest run.",
    ),
]
ManifestArgument = Annotated[
    Path,
    typer.Argument(
        exists=True, dir_okay=False, readable=True, metavar="MANIFEST", help="Manifest file (YAML or JSON)."
    ),
]
ConnectionStringOption = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        help="Storage connection string. (env AZTRAIN_STORAGE_CONNECTION_STRING; default: the local Azurite)",
        show_default=False,
    ),
]
AccountUrlOption = Annotated[
    str | None,
    typer.Option(
        "--account-url",
        help="Blob account URL, e.g. https://ACCOUNT.blob.core.windows.net: sign in with DefaultAzureCredential "
        "(az login, managed identity). Wins over a connection string. (env AZTRAIN_STORAGE_ACCOUNT_URL)",
        show_default=False,
    ),
]
WorkersOption = Annotated[int, typer.Option(min=1, max=64, help="Parallel uploads (threads).")]


def _show_version(value: bool) -> None:
    if value:
        print(f"aztrain {package_version('aztrain')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="API base URL. (env AZTRAIN_URL; config url; default http://127.0.0.1:7071)"),
    ] = None,
    function_key: Annotated[
        str | None,
        typer.Option(help="Function key for an API in Azure. (env AZTRAIN_FUNCTION_KEY; config function_key)"),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(help="The dev host's user to act as (its users file). (env AZTRAIN_USER; config user)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file (TOML). (env AZTRAIN_CONFIG; default ~/.config/aztrain/config.toml)"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Event-driven control plane for distributed Horovod training on Azure: the command line."""
    ctx.obj = Session({"url": url, "function_key": function_key, "user": user}, config)


def current_out() -> Out:
    """The answer of the command that ran last (plain text before any command began)."""
    return _out
