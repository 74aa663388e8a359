"""`aztrain` command line: run the local stack, submit and follow jobs, read logs, upload data, check manifests.

`main` runs the typer app of `cli.app`, on which the command modules below register their commands,
and turns the errors they raise into the documented exit codes (`cli.output.ExitCode`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from aztrain.cli import catalog, code_snapshots, data, events, outputs, runs, teams  # noqa: F401  (they register commands on `app`)
from aztrain.cli.answers import UnexpectedAnswer
from aztrain.cli.app import app, current_out, examples
from aztrain.cli.client import AmbiguousRunId, ApiError, ApiUnreachable
from aztrain.cli.output import ExitCode
from aztrain.domain.errors import AztrainError, ConfigError
from aztrain.service.settings import LOCAL_EVENTS_TOPIC


def configure_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO


@app.command(epilog=examples("aztrain dev", "aztrain dev --port 7080 --azurite-port 10020 --topic-port 7090"))
def dev(
    port: Annotated[int, typer.Option(help="Port of the Functions dev host (the API).")] = 7071,
    azurite_port: Annotated[int, typer.Option(help="Azurite blob port; queue and table use the next two.")] = 10000,
    state_dir: Annotated[
        Path, typer.Option(help="Folder for Azurite's data and the local cluster's job folders.")
    ] = Path(".aztrain/dev"),
    timer_interval: Annotated[float, typer.Option(help="Seconds between reconciler runs.")] = 2.0,
    topic_port: Annotated[
        int, typer.Option(help="Port of the local Event Grid topic for run events (`aztrain events tail --topic`).")
    ] = urlsplit(LOCAL_EVENTS_TOPIC).port or 0,
) -> None:
    """Run Azurite + the Functions dev host (HTTP, Event Grid webhooks, timers, blob → BlobCreated)."""
    from devhost.localstack import LocalStack  # dev-only (not deployed), so imported here alone

    configure_logging(logging.INFO)

    with LocalStack(
        state_dir=Path(state_dir),
        port=port,
        azurite_port=azurite_port,
        timer_interval=timer_interval,
        topic_port=topic_port,
    ) as stack:
        print(f"aztrain dev host on {stack.url} (Azurite on 127.0.0.1:{azurite_port}); Ctrl-C to stop", flush=True)
        print(first_steps(stack.url, os.environ["AZTRAIN_STORAGE_CONNECTION_STRING"]), flush=True)
        stack.serve_forever()


def first_steps(url: str, connection_string: str) -> str:
    """What `aztrain dev` tells a newcomer: where storage is, and that the stack starts empty."""
    return (
        "storage (Azurite's public development account; `aztrain upload` and the SDKs take it):\n"
        f"  AZTRAIN_STORAGE_CONNECTION_STRING='{connection_string}'\n"
        "the stack starts empty; next, in another terminal:\n"
        "  aztrain seed-digits                          # the digits images into datasets/digits/\n"
        "  aztrain submit examples/digits.yaml --wait   # train it; or drop the file into jobs/manifests/\n"
        "  aztrain runs   |   aztrain logs last -f   |   aztrain download last   |   aztrain window digits-classifier\n"
        f"  dashboard: {url}/api/dashboard"
    )


@app.command(epilog=examples("aztrain demo"))
def demo(
    port: Annotated[int, typer.Option(help="Port of the demo's own dev host.")] = 7072,
    azurite_port: Annotated[int, typer.Option(help="The demo's own Azurite blob port (and the next two).")] = 10010,
) -> None:
    """End-to-end demo: data + manifest in, trained model out, cluster back to zero."""
    from devhost.demo import run_demo

    configure_logging(logging.WARNING)  # the demo narrates; only problems should interrupt it
    raise typer.Exit(run_demo(port=port, azurite_port=azurite_port))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see `ExitCode`)."""
    try:
        app(args=argv, prog_name="aztrain")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.OK if exc.code is None else ExitCode.FAILED
    except AmbiguousRunId as exc:
        return _failed(str(exc), ExitCode.USAGE)
    except ApiError as exc:
        message = (
            f"this aztrain API does not serve /api/{exc.path} (an older function app?); update it"
            if exc.endpoint_missing
            else exc.message
        )
        return _failed(message, ExitCode.API_ERROR, problems=exc.problems, status=exc.status)
    except UnexpectedAnswer as exc:
        return _failed(str(exc), ExitCode.API_ERROR)
    except ApiUnreachable as exc:
        return _failed(f"{exc}; is `aztrain dev` running, or is --url / AZTRAIN_URL right?", ExitCode.UNREACHABLE)
    except ConfigError as exc:
        return _failed(str(exc), ExitCode.USAGE)
    except (AztrainError, OSError) as exc:
        return _failed(str(exc), ExitCode.FAILED)
    return ExitCode.OK


def _failed(message: str, code: ExitCode, **details: Any) -> int:
    current_out().error(message, code=code, **details)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
