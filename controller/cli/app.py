"""The ``joulefarm`` command: registers every command group and turns errors into exit codes.

Exit codes (README.md, "Exit codes"): 0 success; 1 the work ran but something failed (an
unreachable device, a failed job); 2 bad input (a devices or suite file, a command line, a
missing database, an unknown sweep id, SQL that does not parse) and nothing ran. Each error
class carries its code (``joulefarm.errors``); ``main`` only reads it.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from controller.cli import (
    bench_cmd,
    compare_cmd,
    demo_cmd,
    devices_cmd,
    enroll_cmd,
    export_cmd,
    fit_cmd,
    model_cmd,
    predict_cmd,
    provision_cmd,
    query_cmd,
    report_cmd,
    schedule_cmd,
    suite_cmd,
    sweep_cmd,
    trace_cmd,
)
from controller.cli.console import err_console
from controller.cli.launch import CONTROLLER_PACKAGES, FIT_PACKAGES
from joulefarm.errors import JoulefarmError

app = typer.Typer(
    name="joulefarm",
    help="Measure what each model, and each layer, costs in joules on each device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    epilog="Exit codes: 0 success, 1 the work failed, 2 bad input (nothing ran).",
)
_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from joulefarm.version import package_version  # importlib.metadata only

        typer.echo(f"joulefarm {package_version()}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug


demo_cmd.register(app)
bench_cmd.register(app)
query_cmd.register(app)
compare_cmd.register(app)
report_cmd.register(app)
export_cmd.register(app)
schedule_cmd.register(app)
provision_cmd.register(app)
fit_cmd.register(app)
predict_cmd.register(app)
enroll_cmd.register(app)
app.add_typer(devices_cmd.app, name="devices")
app.add_typer(sweep_cmd.app, name="sweep")
app.add_typer(suite_cmd.app, name="suite")
app.add_typer(model_cmd.app, name="model")
app.add_typer(trace_cmd.app, name="trace")


def main(argv: list[str] | None = None) -> None:
    # Typer (standalone mode) handles usage errors itself (exit 2) and exits with a command's
    # typer.Exit code; what reaches here are our deliberate errors and real bugs.
    try:
        app(args=argv, prog_name="joulefarm")
        code = 0
    except KeyboardInterrupt:
        err_console.print("aborted")
        code = 130
    except JoulefarmError as e:
        if _state["debug"]:
            raise
        # The message is data (file names, fields like [schedule]): never read as markup.
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, soft_wrap=True)
        code = e.exit_code
    except Exception as e:
        missing = e.name if isinstance(e, ModuleNotFoundError) else None
        # A missing package of an extra: the entry point (launch.py) says which to install.
        if _state["debug"] or (missing or "").split(".")[0] in (*CONTROLLER_PACKAGES,
                                                                 *FIT_PACKAGES):
            raise
        err_console.print(f"[bold red]internal error:[/] {escape(repr(e))} (run with --debug for "
                          "the traceback)", markup=True, soft_wrap=True)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
