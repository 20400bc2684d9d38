"""The Typer app and what every command shares: one-line errors, the store, composing and checking a config.

Kept import-light: `balance-lab --help` is instant; torch, lightning and mlflow load only inside
the command that needs them."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

try:  # Typer 0.2x carries its own copy of Click; its errors are that copy's
    from typer._click import exceptions as click_errors
except ImportError:  # older Typer: Click itself
    from click import exceptions as click_errors


class OneLineErrors(TyperGroup):
    """Click's usage errors (`--jobs 0`, `--nope`, a missing argument) as one line naming the command,
    the option and the value given, like every other error of the CLI, instead of Typer's boxed panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        given = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(given, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # the help, already printed
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            typer.echo(f"error: {_usage_message(exc, given)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_message(exc, given: list[str]) -> str:
    ctx = getattr(exc, "ctx", None)
    message = exc.format_message()
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", []) if param is not None else []
    value = next((given[i + 1] for i, a in enumerate(given[:-1]) if a in opts), None)
    if value is not None and repr(value) not in message and f" {value} " not in f" {message} ":
        message += f" (given: {value})"
    return f"{ctx.command_path}: {message} (see {ctx.command_path} --help)" if ctx else message


app = typer.Typer(
    help="Load-balancing ablations of Mixture-of-Experts language models: train, sweep, report, browse.",
    cls=OneLineErrors,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
configs_app = typer.Typer(help="Inspect the Hydra configs (conf/).", no_args_is_help=True)
app.add_typer(configs_app, name="configs")
data_app = typer.Typer(help="Prepare data for large runs (BPE token files).", no_args_is_help=True)
app.add_typer(data_app, name="data")

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
OverridesArg = typer.Argument(
    None, help="Hydra overrides, e.g. model=tiny balance=aux_loss trainer.max_steps=100 seed=1", show_default=False
)


@app.callback()
def main(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="On an error, print the full error (Hydra's message, Python's traceback) instead of one line.",
    ),
) -> None:
    """Load-balancing ablations of Mixture-of-Experts language models: train, sweep, report, browse."""
    if verbose:
        set_verbose()


def set_verbose() -> None:
    from balance_lab.errors import VERBOSE_ENV

    os.environ[VERBOSE_ENV] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # the training process shows Hydra's full error too


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit `code`; with --verbose, the exception being handled in full first."""
    from balance_lab.errors import VERBOSE_ENV

    if os.environ.get(VERBOSE_ENV) and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def existing_store(tracking_uri: str | None) -> str:
    """The store URI (option, MLFLOW_TRACKING_URI, default); a SQLite file that does not exist is an error
    (reading commands must not create an empty store)."""
    from balance_lab.errors import ConfigError
    from balance_lab.store import tracking
    from balance_lab.store.reachable import check_reachable

    uri = tracking.resolve_tracking_uri(tracking_uri)
    db = tracking.sqlite_file(uri)
    if db is not None and not db.exists():
        fail(f"no MLflow store at {uri} (train or sweep first, or pass --tracking-uri / set MLFLOW_TRACKING_URI)")
    try:
        check_reachable(uri)  # a server that does not answer: MLflow's client would retry for minutes, silently
    except ConfigError as exc:
        fail(str(exc))
    return uri


def compose(overrides: list[str]):
    from balance_lab.config.compose import compose_config
    from balance_lab.errors import ConfigError

    try:
        return compose_config(overrides)
    except ConfigError as exc:
        fail(str(exc))


def prepare_data(sources) -> None:
    """Build what the runs' data sources cache (token files) here, with progress, before any run exists."""
    from balance_lab.cli.tokenizing import prepare_sources
    from balance_lab.console import console
    from balance_lab.errors import ConfigError

    try:
        prepare_sources(sources, console())
    except ConfigError as exc:
        fail(str(exc))


def check(cfg):
    """Every value and the store, before a run exists; returns the run spec. The training process runs
    the same check_config again (it is another process), and the same store check."""
    from balance_lab.config.validation import check_config
    from balance_lab.errors import ConfigError
    from balance_lab.store import tracking
    from balance_lab.store.reachable import check_reachable

    try:
        spec = check_config(cfg)
        check_reachable(tracking.resolve_tracking_uri(cfg.logger.tracking_uri))
    except ConfigError as exc:
        fail(str(exc))
    return spec
