"""The `tryon` command: Typer app, and the one place that turns errors into exit codes.

Exit codes: 0 ok; 1 runtime failure; 2 bad input or usage (one line on stderr, no
traceback); 130 interrupted (Ctrl-C), with no partial output left behind.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = "interrupted; no partial output was left"


def _interrupt(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt as usual, except inside an import.

    Raised inside an import (torch, diffusers: seconds at the start of every command), it
    half-initialises modules (a later import fails, or recurses) or unwinds through C++ that
    aborts (`what(): KeyboardInterrupt`, SIGABRT). Nothing of ours is written while modules
    import, so there the process ends at once, with the same line and code as anywhere else.
    """
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            os.write(2, f"tryon: {INTERRUPTED}\n".encode())
            os._exit(130)
        frame = frame.f_back
    raise KeyboardInterrupt


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored (nohup, &)
    signal.signal(signal.SIGINT, _interrupt)

try:  # Ctrl-C while the CLI itself loads is the same clean line as later, not a traceback
    import functools

    import typer

    from engine.errors import InputError, TryonError, from_os_error
    from tryon_cli.commands import (
        batch,
        bench,
        data,
        evaluate,
        generate,
        models,
        stream,
        studio,
        train,
    )
    from tryon_cli.console import stderr
except KeyboardInterrupt:
    sys.stderr.write(f"tryon: {INTERRUPTED}\n")
    sys.exit(130)

cli = typer.Typer(
    name="tryon",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(asked: bool) -> None:
    from importlib.metadata import PackageNotFoundError, version

    if asked:
        try:
            number = version("tryon")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed)"
        sys.stdout.write(f"tryon {number}\n")
        raise typer.Exit()


@cli.callback()
def _main(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit."),
) -> None:
    """Virtual try-on videos: one photo of a person + garment photos → a video of them wearing it."""


cli.command()(generate.dress)
cli.command()(generate.dance)
cli.command()(stream.swap)
cli.command()(stream.extend)
cli.command()(batch.batch)
cli.add_typer(models.app, name="models")
cli.add_typer(data.app, name="data")
cli.command("eval")(evaluate.evaluate)
cli.add_typer(train.app, name="train")
cli.command()(bench.bench)
cli.command()(studio.studio)


def _quiet_libraries() -> None:
    """Called as a command starts running: importing diffusers and transformers (seconds) is
    left to the commands that use them, so --help and usage errors answer at once."""
    from engine.progress import quiet_libraries

    quiet_libraries()


def _flag(option: str | None) -> str | None:
    """The command-line flag of a request field: `switch_at` → `--switch-at`."""
    return None if option is None else "--" + option.replace("_", "-")


def _quietly(command):
    """`command`, preceded by `_quiet_libraries()` (Typer reads the signature through functools.wraps)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        _quiet_libraries()
        return command(*args, **kwargs)

    return run


for _group in (cli, models.app, data.app, train.app):
    for _command in _group.registered_commands:
        _command.callback = _quietly(_command.callback)


def _fail(message: str, code: int) -> None:
    message = " ".join(message.split())  # one line, whatever the message held
    stderr.print(f"tryon: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _internal_error(error: Exception) -> None:
    if os.environ.get("TRYON_DEBUG"):
        raise error
    first_line = (str(error).strip().splitlines() or [""])[0]
    _fail(f"internal error: {type(error).__name__}: {first_line} (set TRYON_DEBUG=1 for the traceback)", 1)


def _flags_without_type(command) -> None:
    """A flag takes no value: --help shows none for it (Typer would show `<bool>`)."""
    help_option = command.get_help_option(typer.Context(command))
    for parameter in [*command.params, *([help_option] if help_option else [])]:
        if getattr(parameter, "is_flag", False):
            parameter.metavar = ""
    for child in getattr(command, "commands", {}).values():
        _flags_without_type(child)


def app() -> None:
    """Console-script entry point."""
    try:
        command = typer.main.get_command(cli)
        _flags_without_type(command)
        code = command.main(prog_name="tryon", standalone_mode=False)  # 130 for Ctrl-C, or the command's code
    except typer.Abort:
        _fail(INTERRUPTED, 130)
    except typer.TyperException as error:  # Typer's (vendored click's) usage errors
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # a bare command group: its help, with click's usage-error code
            sys.exit(2)
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _fail(f"error: {error.format_message()}{hint}", error.exit_code)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except InputError as error:
        _fail(f"error: {error.describe(_flag(error.option))}", error.exit_code)
    except TryonError as error:
        _fail(f"error: {error}", error.exit_code)
    except OSError as error:  # a path the user gave that cannot be used, or a full disk
        meaning = from_os_error(error)
        if meaning is None:
            _internal_error(error)
        _fail(f"error: {meaning}", meaning.exit_code)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, exit 1
        _internal_error(error)
    if code == 130:
        _fail(INTERRUPTED, 130)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    app()
