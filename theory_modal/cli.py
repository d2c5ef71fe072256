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
KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY",
            "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY")


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


def _adapter_options(f):
    f = click.option("--environment", "-e", default=None, help="Modal environment (modal adapter).")(f)
    f = click.option("--app-name", default=None, help="Deployed Modal app name (default: $THEORY_MODAL_APP or 'theory').")(f)
    f = click.option("--mode", type=click.Choice(MODES), default="smoke", show_default=True,
                     help="smoke: hermetic, no network, no keys, no spend. live: real providers.")(f)
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


def _summary_line(resp: dict[str, Any]) -> str:
    u = resp["usage"]
    cost = "cost unknown" if u["usd_micros"] is None else f"${u['usd_micros'] / 1e6:.6f}"
    return f"{resp['ref']} · {resp['model']} · {u['tokens_in']} in / {u['tokens_out']} out · {u['latency_ms']} ms · {cost}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="theory-modal")
def cli() -> None:
    """Run LLM provider processors in-process or on Modal."""


@cli.command()
@_adapter_options
@click.option("--prompt", "-p", default="Hello", show_default=True, help="The prompt to send.")
@click.option("--model", "-m", default=None, help="Model, e.g. openai/gpt-4o-mini or ollama_chat/qwen2.5:0.5b.")
@click.option("--attach", "attach", multiple=True, metavar="NAME=PATH", help="Attach a file (repeatable).")
@click.option("--system", default=None, help="System prompt.")
@click.option("--temperature", type=float, default=None)
@click.option("--max-tokens", type=int, default=None)
@click.option("--stream", is_flag=True, help="Print the reply as it arrives.")
@click.option("--json", "as_json", is_flag=True, help="Print the response as JSON.")
def run(ref, adapter, mode, app_name, environment, prompt, model, attach, system, temperature, max_tokens, stream, as_json):
    """Run one processor once (defaults: llm/litellm@1, local adapter, smoke mode)."""
    payload: dict[str, Any] = {"prompt": prompt, "mode": mode}
    if model:
        payload["model"] = model
    options = {k: v for k, v in {"system": system, "temperature": temperature, "max_tokens": max_tokens}.items() if v is not None}
    if options:
        payload["options"] = options
    if attach:
        payload["attachments"] = _parse_attach(attach)
    runner = _make_adapter(adapter, app_name, environment)
    if stream:
        s = runner.stream(ref, payload)
        for chunk in s:
            if not as_json:
                click.echo(chunk, nl=False)
        resp = s.response
        if not as_json:
            click.echo()
    else:
        resp = runner.run(ref, payload)
        if not as_json:
            click.echo(resp["text"])
    if as_json:
        click.echo(json.dumps(resp, ensure_ascii=False))
    else:
        click.secho(_summary_line(resp), dim=True, err=True)


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


def _ollama_status(base: str, timeout: float = 2.0) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base.rstrip("/") + "/api/tags", timeout=timeout) as r:  # noqa: S310 - user's base
            models = json.loads(r.read() or b"{}").get("models", [])
        return f"answers ({len(models)} model(s) pulled)"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"does not answer ({redact(str(reason))})"


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json):
    """Report what is configured, without printing any secret value."""
    from importlib.metadata import PackageNotFoundError, version

    from modal.config import config

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    base = os.environ.get("LLM_API_BASE") or "http://localhost:11434"
    report = {
        "versions": {"theory-modal": __version__, "litellm": ver("litellm"), "modal": ver("modal")},
        "provider_keys": {k: ("set" if os.environ.get(k) else "not set") for k in KEY_VARS},
        "modal_token": "configured" if (config.get("token_id") and config.get("token_secret")) else
        "not configured (run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)",
        "modal_server": redact(str(config.get("server_url"))),
        "ollama": {"base_url": redact(base), "status": _ollama_status(base)},
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    for k, v in report["provider_keys"].items():
        click.echo(f"{k}: {v}")
    click.echo(f"Modal token: {report['modal_token']}")
    click.echo(f"Modal server: {report['modal_server']}")
    click.echo(f"Ollama at {report['ollama']['base_url']}: {report['ollama']['status']}")


# ------------------------------------------------------------------------------------------------ batch
def _read_items(path: Path, mode: str) -> list[tuple[dict[str, Any] | None, str | None, Any]]:
    """Each non-blank JSONL line -> (payload, error, id). A bad line becomes an error item, not an abort."""
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            items.append((None, f"line {lineno}: not valid JSON ({exc.msg})", None))
            continue
        if isinstance(obj, str):
            obj = {"prompt": obj}
        if not isinstance(obj, dict):
            items.append((None, f"line {lineno}: expected a JSON object with 'prompt' or a JSON string", None))
            continue
        item_id = obj.pop("id", None)
        obj.setdefault("mode", mode)
        items.append((obj, None, item_id))
    return items


def _done_indices(output: Path) -> tuple[set[int], list[bytes]]:
    """Lines of a previous run worth keeping: valid JSON, with a reply (errors are retried on resume)."""
    done: set[int] = set()
    keep: list[bytes] = []
    if not output.exists():
        return done, keep
    for raw in output.read_bytes().splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            continue  # a torn last line from a killed run
        if isinstance(obj, dict) and isinstance(obj.get("index"), int) and "error" not in obj and obj["index"] not in done:
            done.add(obj["index"])
            keep.append(raw)
    return done, keep


@cli.command()
@_adapter_options
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="JSONL: one {\"prompt\": ..., \"model\"?, \"options\"?, \"id\"?} (or a JSON string) per line.")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path), help="JSONL results.")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Parallel calls (local adapter; Modal scales out by itself).")
@click.option("--resume", is_flag=True, help="Keep replies already in --output and run only the rest.")
def batch(ref, adapter, mode, app_name, environment, input_path, output_path, concurrency, resume):
    """Run a processor over a JSONL file; one failing item never costs the others."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from theory_modal.adapters import error_dict
    from theory_modal.catalog import resolve

    if not input_path.is_file():
        raise BadInput(f"--input {input_path}: no such file")
    proc = resolve(ref)
    items = _read_items(input_path, mode)
    done, keep = _done_indices(output_path) if resume else (set(), [])
    todo = [(i, payload, err, item_id) for i, (payload, err, item_id) in enumerate(items) if i not in done]

    # Rewrite the kept lines atomically, then append each result with one write() per line.
    tmp = output_path.with_name(output_path.name + ".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in keep))
    os.replace(tmp, output_path)
    fd = os.open(output_path, os.O_WRONLY | os.O_APPEND)

    def write(obj: dict[str, Any]) -> None:
        os.write(fd, (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))

    stats = {"ok": len(done), "failed": 0, "tokens_in": 0, "tokens_out": 0, "usd_micros": 0, "cost_unknown": 0}
    latencies: list[int] = []
    runner = _make_adapter(adapter, app_name, environment)
    ids = {i: item_id for i, _, _, item_id in todo}
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=__import__("rich.console").console.Console(stderr=True), transient=False) as bar:
            task = bar.add_task(proc.ref, total=len(todo))
            bad = [(i, err) for i, payload, err, _ in todo if payload is None]
            good = [(i, payload) for i, payload, err, _ in todo if payload is not None]
            for i, err in bad:
                write({"index": i, **({"id": ids[i]} if ids[i] is not None else {}), "ref": proc.ref,
                       "error": {"type": "InvalidRequestError", "kind": "invalid_request", "message": err}})
                stats["failed"] += 1
                bar.advance(task)
            try:
                results = runner.map(proc.ref, [p for _, p in good], concurrency=concurrency)
                for (i, _), result in zip(good, results):
                    result = {**result, "index": i}
                    if ids[i] is not None:
                        result["id"] = ids[i]
                    write(result)
                    if "error" in result:
                        stats["failed"] += 1
                    else:
                        u = result["usage"]
                        stats["ok"] += 1
                        stats["tokens_in"] += u["tokens_in"]
                        stats["tokens_out"] += u["tokens_out"]
                        latencies.append(u["latency_ms"])
                        if u["usd_micros"] is None:
                            stats["cost_unknown"] += 1
                        else:
                            stats["usd_micros"] += u["usd_micros"]
                    bar.advance(task)
            except (ProviderError, RuntimeError) as exc:  # the adapter itself failed: record what is left
                written = stats["ok"] + stats["failed"] - len(done)
                for i, _ in good[written - len(bad):]:
                    write({"index": i, "ref": proc.ref, "error": error_dict(exc)})
                    stats["failed"] += 1
                raise
    finally:
        os.close(fd)
    latencies.sort()
    pct = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else (lambda q: 0)
    cost = f"${stats['usd_micros'] / 1e6:.6f}" + (f" (+{stats['cost_unknown']} unpriced)" if stats["cost_unknown"] else "")
    click.echo(
        f"{stats['ok']} ok, {stats['failed']} failed · tokens {stats['tokens_in']} in / {stats['tokens_out']} out · "
        f"cost {cost} · latency p50 {pct(0.5)} ms, p90 {pct(0.9)} ms · {output_path}"
    )
    if stats["failed"]:
        raise SystemExit(EXIT_FAILURE)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def emulator(ctx):
    """Run the loopback Modal emulator: [--port P] [--secrets secrets.json] (see theory_modal.testing.emulator)."""
    from theory_modal.testing.emulator import main as emulator_main

    raise SystemExit(emulator_main(list(ctx.args)))


# ------------------------------------------------------------------------------------------------ entry
def _is_bad_input(exc: BaseException) -> bool:
    return isinstance(exc, (InvalidRequestError, BadInput))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps every failure to one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="theory-modal", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:  # bad flags/values: one line instead of click's usage block
        click.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the CLI never prints a traceback
        code = EXIT_BAD_INPUT if _is_bad_input(exc) else EXIT_FAILURE
        message = redact(str(exc)).replace("\n", " ").strip() or type(exc).__name__
        click.echo(f"error: {message}", err=True)
        return code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
