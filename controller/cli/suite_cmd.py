"""``joulefarm suite init|check``: write a commented suite, and check one before a night."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import console, err_console
from controller.cli.options import DevicesOption
from controller.demo import DEVICES_FILE, resolve_default
from joulefarm.errors import InputError

app = typer.Typer(help="Write and check suite files (reference: docs/suites.md).",
                  no_args_is_help=True)

TEMPLATE = '''\
# A joulefarm suite: which models to measure, how, on which devices, and when.
# Every key is explained in docs/suites.md; check this file with `joulefarm suite check FILE`
# and run it with `joulefarm sweep run FILE`.
schema_version = 1
name = "{name}"
description = "What this suite measures"

[select]
# Devices of the registry (devices.toml) that carry ALL of these tags; or names = ["..."].
tags = ["demo"]

[measure]
mode = "layers"             # layers | whole | insitu
min_layer_duration_s = 0.02 # layers mode: each layer loops at least this long
repetitions = 1             # separate jobs per (device, model, configuration), own seeds
# num_threads = 1
# use_xnnpack = false
# timeout_s = 600

# [matrix]                  # every combination becomes its own job
# num_threads = [1, 4]

[[model]]
name = "tiny_cnn"
recipe = "tiny_cnn"         # a model joulefarm builds; or file = "models/my_model.tflite"

# [[model]]
# name = "convs"
# sweep = {{ count = 20, kinds = ["conv", "dwconv"] }}   # generated single-layer models

# [schedule]
# cron = "0 2 * * *"        # every night at 02:00 (joulefarm schedule FILE)
'''


@app.command("init", help="Write a commented suite template to FILE (never over an existing "
             "file unless --force).")
def init(file: Path = typer.Argument(..., help="The suite file to write, e.g. nightly.toml."),
         force: bool = typer.Option(False, "--force", help="Replace FILE if it exists.")) -> None:
    if file.exists() and not force:
        raise InputError(f"{file}: already exists; pass --force to replace it")
    file.write_text(TEMPLATE.format(name=file.stem))
    console.print(f"{file}: written; edit it, then: joulefarm suite check {file}",
                  markup=False, soft_wrap=True)


@app.command("check", help="Check a suite file: every problem with its file, line and field "
             "(exit 2), else what it would run on the registry's devices.")
def check(file: Path = typer.Argument(..., help="The suite file."),
          devices: Path | None = DevicesOption) -> None:
    from controller.config.registry import load_registry
    from controller.config.suite import SuiteError, load_suite
    from controller.farm.sweep import job_configs

    try:
        suite = load_suite(file)
    except SuiteError as e:
        for problem in e.problems:
            err_console.print(f"error: {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(code=e.exit_code) from None
    configs = len(job_configs(suite))
    console.print(f"{file}: suite {suite.name!r}, {len(suite.models)} models, {configs} "
                  f"configurations each (repetitions included)", markup=False, soft_wrap=True)
    registry_path = resolve_default(devices, DEVICES_FILE)
    registry = load_registry(registry_path)
    chosen = registry.select(names=suite.select_names or None, tags=suite.select_tags or None)
    names = ", ".join(d.name for d in chosen) or "none"
    console.print(f"devices ({registry_path}): {names}; "
                  f"{len(chosen) * len(suite.models) * configs} jobs per sweep",
                  markup=False, soft_wrap=True)
    if suite.cron:
        console.print(f"schedule: {suite.cron}", markup=False)
