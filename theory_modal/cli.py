"""The ``theory-modal`` command (also ``python -m theory_modal``).

Exit codes: 0 ok, 1 provider or runtime failure, 2 bad input. Errors are one line on stderr, no traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from providers.errors import InvalidRequestError, ProviderError, redact
from theory_modal import __version__
from theory_modal.wire import MODES

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_REF = "llm/litellm@1"


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


def default_mode(adapter: str | None) -> str:
    """The CLI's ``--mode`` when none is given: ``smoke`` in-process (hermetic: what ``make smoke`` runs), ``live``
    on the modal adapter (calling the deployed app means doing the real work)."""
    return "live" if adapter == "modal" else "smoke"


def _mode_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    # --adapter is declared before --mode, so it is already parsed when --mode falls back to its default.
    return value or default_mode(ctx.params.get("adapter"))


def _adapter_options(f):
    f = click.option("--environment", "-e", default=None, help="Modal environment (modal adapter).")(f)
    f = click.option("--app-name", default=None, help="Deployed Modal app name (default: $THEORY_MODAL_APP or 'theory').")(f)
    f = click.option("--mode", type=click.Choice(MODES), default=None, callback=_mode_callback,
                     help="smoke: hermetic, no network, no keys, no spend. live: real providers. "
                          "[default: smoke on the local adapter, live on the modal adapter]")(f)
    f = click.option("--adapter", type=click.Choice(["local", "modal"]), default="local", show_default=True,
                     help="local: in-process. modal: the deployed app.")(f)
    f = click.option("--ref", default=DEFAULT_REF, show_default=True, help="Processor ref, e.g. llm/mock@1.")(f)
    return f


def _make_adapter(adapter: str, app_name: str | None, environment: str | None):
    from theory_modal.adapters import get_adapter

    return get_adapter(adapter) if adapter == "local" else get_adapter(adapter, app_name=app_name, environment=environment)


def _parse_attach(values: tuple[str, ...]) -> list[dict[str, str]]:
    from providers.attachments import Attachment

    out = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise BadInput(f"--attach expects name=path (e.g. --attach image=photo.jpg), got {value!r}")
        out.append(Attachment.from_path(path, name=name.strip(), root=Path.cwd()).to_dict())
    return out


def _json_file(path: str | None, flag: str) -> Any:
    """The JSON in ``path`` (for --schema / --history), or BadInput naming the flag and the problem."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise BadInput(f"{flag} {path}: not valid JSON ({exc})") from None
    except RecursionError:  # json's C parser gives up on a few thousand levels: bad input, not a crash
        raise BadInput(f"{flag} {path}: nested too deeply to be a schema or a conversation") from None


def _summary_line(resp: dict[str, Any], mode: str) -> str:
    u = resp["usage"]
    cost = "cost unknown" if u["usd_micros"] is None else f"${u['usd_micros'] / 1e6:.6f}"
    return (f"{resp['ref']} · {resp.get('mode', mode)} · {resp['model']} · {u['tokens_in']} in / {u['tokens_out']} out"
            f" · {u['latency_ms']} ms · {cost}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="theory-modal")
def cli() -> None:
    """Run LLM provider processors in-process or on Modal."""


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
@_adapter_options
@click.argument("prompt_arg", metavar="[PROMPT]", required=False)
@click.option("--prompt", "-p", default=None, help="The prompt, as an option (same as the argument).")
@click.option("--model", "-m", default=None, help="Model, e.g. openai/gpt-4o-mini or ollama_chat/qwen2.5:0.5b.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Generation option, repeatable: -o temperature=0.2 -o stop='[\"\\n\"]'. Values are JSON when "
                   "they parse as JSON, else text.")
@click.option("--attach", "attach", multiple=True, metavar="NAME=PATH", help="Attach a file (repeatable).")
@click.option("--fallback", "fallbacks", multiple=True, metavar="MODEL",
              help="Model to try when the previous one fails (repeatable, tried in order).")
@click.option("--system", default=None, help="System prompt (same as -o system=...).")
@click.option("--temperature", type=float, default=None, help="Same as -o temperature=...")
@click.option("--max-tokens", type=int, default=None, help="Same as -o max_tokens=...")
@click.option("--stream", is_flag=True, help="Print the reply as it arrives.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the response as JSON; errors become one JSON object on stderr.")
@click.option("--schema", "schema_file", default=None, metavar="FILE.json",
              help="JSON Schema the reply must validate against; prints the validated data.")
@click.option("--history", "history_file", default=None, metavar="FILE.json",
              help="The conversation before the prompt: a JSON list of {role, content} turns.")
def run(ref, adapter, mode, app_name, environment, prompt_arg, prompt, model, options, attach, fallbacks, system,
        temperature, max_tokens, stream, as_json, schema_file, history_file):
    """Run one processor once on PROMPT (defaults: llm/litellm@1, local adapter, smoke mode, "Hello").

    With no PROMPT, or PROMPT "-", the prompt is read from stdin: echo "Hi" | theory-modal run --ref llm/mock@1.
    Bad input (the model, an option, a missing key for a known vendor) is refused before LiteLLM loads.
    """
    from theory_modal.catalog import resolve
    from theory_modal.cli_input import parse_options, preflight, read_prompt

    proc = resolve(ref)
    flags = {k: v for k, v in {"system": system, "temperature": temperature, "max_tokens": max_tokens}.items()
             if v is not None}
    payload: dict[str, Any] = {"prompt": read_prompt(prompt_arg, prompt), "mode": mode}
    if model:
        payload["model"] = model
    opts = parse_options(options, given=flags)
    if opts:
        payload["options"] = opts
    if attach:
        payload["attachments"] = _parse_attach(attach)
    if fallbacks:
        payload["fallbacks"] = list(fallbacks)
    for key, value in (("output_schema", _json_file(schema_file, "--schema")),
                       ("history", _json_file(history_file, "--history"))):
        if value is not None:
            payload[key] = value
    from theory_modal.wire import Request

    Request.from_dict(payload)  # the wire checks (prompt, options, mode) before the adapter and any import
    if not fallbacks:  # with fallbacks a missing key is the chain's to handle: the next model may answer
        preflight(proc.provider, model, mode=mode, adapter=adapter)
    runner = _make_adapter(adapter, app_name, environment)
    if stream:
        s = runner.stream(proc.ref, payload)
        for chunk in s:
            if not as_json:
                click.echo(chunk, nl=False)
        resp = s.response
        if not as_json:
            click.echo()
    else:
        resp = runner.run(proc.ref, payload)
        if not as_json:
            click.echo(json.dumps(resp["data"], ensure_ascii=False) if "data" in resp else resp["text"])
    if as_json:
        click.echo(json.dumps(resp, ensure_ascii=False))
    else:
        click.secho(_summary_line(resp, mode), dim=True, err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def refs(as_json):
    """List the processors this package serves."""
    from theory_modal.catalog import PROCESSORS

    rows = [{"ref": p.ref, "provider": p.provider, "functions": [p.chat_function, p.stream_function],
             "description": p.description} for p in PROCESSORS]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['ref']:<16} {r['description']}")


@cli.command()
@click.option("--app-name", default=None, help="Deployed Modal app name (default: $THEORY_MODAL_APP or 'theory').")
@click.option("--environment", "-e", default=None, help="Modal environment (default: the configured one).")
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True,
              help="Bound, in seconds, for each network check.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def doctor(app_name, environment, timeout, as_json):
    """Diagnose the setup: Modal token (checked against the server), the deployed app and its functions, the
    secrets named at deploy time, base-URL overrides (credentials masked), Ollama, keys (never their values).

    Exits 1 when something set up is broken (a rejected token, an app not deployed while a token is set, a
    missing secret, a malformed or silent base URL); things merely not set up are warnings.
    """
    from theory_modal.doctor import diagnose, render
    from theory_modal.catalog import PROCESSORS

    name = app_name or os.environ.get("THEORY_MODAL_APP", "").strip() or "theory"
    functions = [f for p in PROCESSORS for f in (p.chat_function, p.stream_function)]
    report = diagnose(app_name=name, environment=environment, functions=functions, timeout=timeout)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for line in render(report):
            click.echo(line)
    if not report.ok:
        raise SystemExit(EXIT_FAILURE)


# ------------------------------------------------------------------------------------------------ batch
def _parse_batch_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``--option key=value`` (repeatable): the same parser as ``run -o`` (JSON values when they parse)."""
    from theory_modal.cli_input import parse_options

    return parse_options(values)


def _batch_progress(total: int):
    """A rich progress bar on stderr (ok / failed / spent), or nothing when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console,
                   disable=not console.is_terminal)
    task = bar.add_task("batch", total=total, stats="")

    def update(s) -> None:
        bar.update(task, total=s.lines, completed=s.done,
                   stats=f"ok {s.kept + s.ok} · failed {s.failed} · ${s.usd_micros / 1e6:.4f}")

    return bar, update


@cli.command()
@_adapter_options
@click.option("--input", "input_path", required=True, metavar="PATH|-",
              help="JSONL: one {\"prompt\": ..., \"model\"?, \"options\"?, \"id\"?} (or a JSON string) per line; - reads stdin.")
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False), help="JSONL results.")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Items in flight at once (local and Modal adapters).")
@click.option("--resume", is_flag=True, help="Keep replies in --output whose input is unchanged; run the rest.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output.")
@click.option("--max-usd", type=float, default=None, help="Stop starting items before this run's spend would pass it.")
@click.option("--max-errors", type=click.IntRange(1, None), default=None, help="Stop starting items after N failures.")
@click.option("--model", "-m", default=None, help="Default model for lines without one.")
@click.option("--system", default=None, help="Default system prompt for lines without one.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Default option for every line (repeatable; JSON values), e.g. --option temperature=0.2.")
@click.option("--grace", type=click.FloatRange(0, None), default=30.0, show_default=True,
              help="Seconds Ctrl-C waits for items in flight before leaving them to --resume.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--fallback", "fallbacks", multiple=True, metavar="MODEL",
              help="Fallback model for every line without its own \"fallbacks\" (repeatable, tried in order).")
def batch(ref, adapter, mode, app_name, environment, input_path, output_path, concurrency, resume, overwrite,
          max_usd, max_errors, model, system, options, grace, as_json, fallbacks):
    """Run a processor over a JSONL file: results written as they finish, resumable, budgeted, locked."""
    import logging
    import signal
    import threading

    from theory_modal.batch import Batch, BatchError, BatchOptions

    if output_path == "-":
        raise BadInput("--output - is not supported: a batch writes a file it can lock and --resume; name a file")
    if input_path == "-":
        data, input_stat = sys.stdin.buffer.read(), os.fstat(sys.stdin.fileno())
    else:
        try:
            with open(input_path, "rb") as f:
                input_stat, data = os.fstat(f.fileno()), f.read()
        except FileNotFoundError:
            raise BadInput(f"--input {input_path}: no such file") from None
        except IsADirectoryError:
            raise BadInput(f"--input {input_path} is a directory: name a JSONL file") from None
        except OSError as exc:
            raise BadInput(f"--input {input_path}: {exc.strerror or exc}") from None
    defaults = {"model": model, "system": system, "options": _parse_batch_options(options),
                "fallbacks": list(fallbacks) or None}
    opts = BatchOptions(ref=ref, mode=mode, output=output_path, input_data=data, input_stat=input_stat,
                        concurrency=concurrency, resume=resume, overwrite=overwrite, max_usd=max_usd,
                        max_errors=max_errors, defaults=defaults, grace_seconds=grace)
    logging.getLogger("modal-client").setLevel(logging.CRITICAL)  # errors become lines; no client tracebacks
    runner = _make_adapter(adapter, app_name, environment)
    bar, update = _batch_progress(0)
    engine = Batch(opts, runner, on_progress=update)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in handled:
            previous[sig] = signal.signal(sig, lambda *_: engine.request_stop())
    try:
        with bar:
            summary = engine.run()
    except BatchError as exc:
        raise (BadInput(str(exc)) if exc.exit_code == EXIT_BAD_INPUT else click.ClickException(str(exc))) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(json.dumps(summary.to_dict()) if as_json else summary.text())
    if summary.stopped:
        click.echo(f"stopped: {summary.reason}", err=True)
    if summary.exit_code:
        raise SystemExit(summary.exit_code)


# The emulator's own click command (cheap to import: the server loads only when it starts).
from theory_modal.testing.emulator.cli import emulator_command  # noqa: E402

cli.add_command(emulator_command, "emulator")


# ------------------------------------------------------------------------------------------------ entry
def _is_bad_input(exc: BaseException) -> bool:
    return isinstance(exc, (InvalidRequestError, BadInput, click.UsageError))


def _wants_json(argv: list[str]) -> bool:
    """``--json`` among the options (not after ``--``, where it would be a prompt)."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in head


def error_object(exc: BaseException) -> dict[str, Any]:
    """The wire's error shape, ``{"type", "kind", "message", "retryable"}``, for ``--json`` errors."""
    if isinstance(exc, click.ClickException):
        message = exc.format_message()
    else:
        message = redact(str(exc))
    kind = "invalid_request" if _is_bad_input(exc) else getattr(exc, "kind", "error")
    return {"type": type(exc).__name__, "kind": str(kind),
            "message": " ".join(message.split()) or type(exc).__name__,
            "retryable": bool(getattr(exc, "retryable", False))}


def _report(exc: BaseException, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(error_object(exc), ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {error_object(exc)['message']}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps every failure to one line (one JSON object under ``--json``) and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        cli.main(args=args, prog_name="theory-modal", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:  # bad flags/values: one line instead of click's usage block
        _report(exc, as_json)
        return EXIT_BAD_INPUT
    except click.ClickException as exc:
        _report(exc, as_json)
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the CLI never prints a traceback
        _report(exc, as_json)
        return EXIT_BAD_INPUT if _is_bad_input(exc) else EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
