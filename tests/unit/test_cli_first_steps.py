"""What `aztrain dev` tells a newcomer names real commands and the storage they need."""

from __future__ import annotations

import shlex

import typer

from aztrain.cli.main import app, first_steps
from aztrain.service.settings import AZURITE_CONNECTION_STRING


def test_the_first_steps_name_the_storage_and_only_commands_that_exist():
    text = first_steps("http://127.0.0.1:7071", AZURITE_CONNECTION_STRING)
    assert f"AZTRAIN_STORAGE_CONNECTION_STRING='{AZURITE_CONNECTION_STRING}'" in text
    commands = {command.name for command in typer.main.get_group(app).commands.values()}
    suggested = {
        shlex.split(part)[1]
        for line in text.splitlines()
        for part in line.split("|")
        if part.strip().startswith("aztrain ")
    }
    assert suggested == {"seed-digits", "submit", "runs", "logs", "download", "window"}
    assert suggested <= commands
