"""``theory-modal doctor``: diagnose the setup, not just list it.

Each check ends ``ok``, ``warn`` (not set up, which may be fine: e.g. no Modal token when you only run locally)
or ``fail`` (set up but broken: a rejected token, an app that is not deployed, a named secret that does not exist,
a base URL that is malformed or does not answer). The command exits 1 when any check fails. Every network check
is bounded (``timeout``, 5 s by default); no secret value is ever printed, and credentials inside URLs are masked.

What Modal's API lets a client check: the token (``ClientHello``), the app and each of its functions (lookups by
name), and which named secrets exist in the environment. It does not tell a client which secrets a deployed
function was given, so ``doctor`` checks the secrets named at deploy time (``THEORY_MODAL_SECRETS``) exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from providers.errors import redact
from providers.vendors import key_vars, ollama_base

__all__ = ["BASE_URL_VARS", "Check", "DoctorReport", "diagnose", "mask_url", "render"]

#: Variables that redirect provider traffic; shown (masked) because a stale one explains many surprises.
BASE_URL_VARS = ("OPENAI_API_BASE", "OPENAI_BASE_URL", "LLM_API_BASE", "OLLAMA_API_BASE")
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, redact(detail)))

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], **self.info}


def mask_url(url: str) -> str:
    """``https://user:pw@host/p?key=k`` -> ``https://***@host/p?key=[REDACTED]``: shows where, never who."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"***@{host}")
    return redact(urllib.parse.urlunsplit(parts))


def _url_problem(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host, e.g. http://localhost:11434"
    return None


def _check_base_urls(report: DoctorReport) -> None:
    shown: dict[str, str | None] = {}
    for name in BASE_URL_VARS:
        value = os.environ.get(name, "").strip()
        shown[name] = mask_url(value) if value else None
        if value and (problem := _url_problem(value)):
            report.add(f"base_url:{name}", FAIL, f"{name}={mask_url(value)} is {problem}")
        elif value:
            report.add(f"base_url:{name}", OK, f"{name}={mask_url(value)} (overrides the provider's default URL)")
    report.info["base_urls"] = shown


def _check_ollama(report: DoctorReport, timeout: float) -> None:
    base, source = ollama_base()
    status = _ollama_status(base, timeout) if _url_problem(base) is None else "not checked (malformed URL)"
    answers = status.startswith("answers")
    report.info["ollama"] = {"base_url": mask_url(base), "from": source, "status": status}
    # Set on purpose and silent: broken. The default and silent: fine, Ollama is optional.
    level = OK if answers else (FAIL if source != "default" else WARN)
    report.add("ollama", level, f"Ollama at {mask_url(base)} ({source}): {status}")


def _ollama_status(base: str, timeout: float) -> str:
    # urllib would resolve "user:pw@host" as a host name: send userinfo as Basic auth to the host itself.
    parts = urllib.parse.urlsplit(base)
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(
        netloc=parts.netloc.rsplit("@", 1)[-1], path=parts.path.rstrip("/") + "/api/tags")))
    if parts.username is not None:
        import base64

        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:  # noqa: S310 - the user's own base URL
            models = json.loads(r.read() or b"{}").get("models", [])
        return f"answers ({len(models)} model(s) pulled)"
    except (urllib.error.URLError, OSError, ValueError, AttributeError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"does not answer ({redact(str(reason))})"


def _check_versions(report: DoctorReport) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from theory_modal import __version__

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    versions = {"theory-modal": __version__, "litellm": ver("litellm"), "modal": ver("modal")}
    report.info["versions"] = versions
    if versions["litellm"] == "not installed":
        report.add("litellm", WARN, "litellm not installed: the litellm provider runs only on Modal; for local use "
                                    "pip install 'theory-modal[litellm]'")
    report.info["provider_keys"] = {k: ("set" if os.environ.get(k) else "not set") for k in key_vars()}


# ------------------------------------------------------------------------------------------------ Modal
async def _modal_checks(report: DoctorReport, app_name: str, environment: str | None, functions: list[str],
                        secret_names: list[str], timeout: float) -> None:
    import modal
    import modal.exception as mx
    from modal.config import config

    server = str(config.get("server_url"))
    token_id, token_secret = config.get("token_id"), config.get("token_secret")
    modal_info: dict[str, Any] = {"server": mask_url(server), "environment": environment or config.get("environment")
                                  or "the default", "app": app_name}
    report.info["modal"] = modal_info
    if not (token_id and token_secret):
        modal_info["token"] = "not configured"
        report.add("modal_token", WARN, "no Modal token (run `modal token new`, or set MODAL_TOKEN_ID and "
                                        "MODAL_TOKEN_SECRET); Modal checks skipped")
        return

    async def bounded(awaitable):
        return await asyncio.wait_for(awaitable, timeout)

    client = None
    try:
        client = await bounded(modal.Client.from_credentials.aio(token_id, token_secret))
        await bounded(client.hello.aio())
    except mx.AuthError:
        modal_info["token"] = "rejected"
        report.add("modal_token", FAIL, f"the Modal server at {mask_url(server)} rejected the token: run "
                                        "`modal token new`, or fix MODAL_TOKEN_ID / MODAL_TOKEN_SECRET")
        return
    except (asyncio.TimeoutError, TimeoutError, mx.ConnectionError, mx.TimeoutError, OSError):
        modal_info["token"] = "not checked (server unreachable)"
        report.add("modal_server", FAIL, f"the Modal server at {mask_url(server)} did not answer within "
                                         f"{timeout:g} s: check the network or MODAL_SERVER_URL")
        return
    modal_info["token"] = "accepted"
    report.add("modal_token", OK, f"token accepted by {mask_url(server)}")
    try:
        await _app_checks(report, modal_info, client, app_name, environment, functions, bounded)
        await _secret_checks(report, modal_info, client, environment, secret_names, bounded)
    finally:
        close = getattr(client, "close", None)  # not public in every modal 1.x; then it closes at exit
        if close is not None:
            try:
                await asyncio.wait_for(close.aio(), timeout)
            except Exception:  # noqa: BLE001 - closing a client must not change the diagnosis
                pass


async def _app_checks(report, modal_info, client, app_name, environment, functions, bounded) -> None:
    import modal
    import modal.exception as mx

    found: dict[str, bool] = {}
    for name in functions:
        try:
            await bounded(modal.Function.from_name(app_name, name, environment_name=environment,
                                                   client=client).hydrate.aio())
            found[name] = True
        except mx.NotFoundError:
            found[name] = False
        except (asyncio.TimeoutError, TimeoutError, mx.ConnectionError, mx.TimeoutError):
            report.add("modal_app", FAIL, f"looking up {app_name}.{name} took over the time limit")
            return
    modal_info["functions"] = found
    missing = [n for n, ok in found.items() if not ok]
    if len(missing) == len(found):
        modal_info["deployed"] = False
        report.add("modal_app", FAIL, f"app '{app_name}' is not deployed in {modal_info['environment']}: "
                                      "run `modal deploy deploy.py` (THEORY_MODAL_APP names the app)")
    elif missing:
        modal_info["deployed"] = True
        report.add("modal_app", FAIL, f"app '{app_name}' is deployed but lacks {', '.join(missing)}: redeploy with "
                                      "`modal deploy deploy.py`")
    else:
        modal_info["deployed"] = True
        report.add("modal_app", OK, f"app '{app_name}' deployed with {', '.join(found)}")


async def _secret_checks(report, modal_info, client, environment, secret_names, bounded) -> None:
    import modal

    try:
        secrets = await bounded(modal.Secret.objects.list.aio(environment_name=environment or "", client=client))
    except Exception as exc:  # noqa: BLE001 - listing is a bonus; say what could not be checked
        report.add("modal_secrets", WARN, f"could not list the environment's secrets ({type(exc).__name__})")
        return
    existing = sorted(s.name for s in secrets if s.name)
    modal_info["secrets"] = {"in_environment": existing, "named_at_deploy": secret_names}
    missing = [n for n in secret_names if n not in existing]
    note = "(Modal does not tell a client which secrets a deployed function has)"
    if missing:
        report.add("modal_secrets", FAIL, f"THEORY_MODAL_SECRETS names {', '.join(missing)}, which "
                                          f"do{'es' if len(missing) == 1 else ''} not exist: `modal secret create "
                                          f"{missing[0]} KEY=...` {note}")
    elif secret_names:
        report.add("modal_secrets", OK, f"the secrets named at deploy time exist: {', '.join(secret_names)} {note}")
    else:
        report.add("modal_secrets", WARN, "THEORY_MODAL_SECRETS is empty: the app gets no provider keys (the mock "
                                          f"and Ollama need none); secrets in the environment: "
                                          f"{', '.join(existing) or 'none'} {note}")


def diagnose(*, app_name: str, environment: str | None, functions: list[str], timeout: float = 5.0) -> DoctorReport:
    """Run every check; network checks are bounded by ``timeout`` seconds each."""
    report = DoctorReport()
    _check_versions(report)
    _check_base_urls(report)
    secret_names = [n.strip() for n in os.environ.get("THEORY_MODAL_SECRETS", "").split(",") if n.strip()]
    asyncio.run(_modal_checks(report, app_name, environment, functions, secret_names, timeout))
    _check_ollama(report, min(timeout, 2.0))
    return report


def render(report: DoctorReport) -> list[str]:
    """Human-readable lines: one per check, then versions and which keys are set."""
    mark = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}
    lines = [f"{mark[c.status]}  {c.name}: {c.detail}" for c in report.checks]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in report.info["versions"].items()))
    keys = report.info["provider_keys"]
    lines.append("keys set: " + (", ".join(k for k, v in keys.items() if v == "set") or "none"))
    unset = [k for k, v in report.info["base_urls"].items() if v is None]
    if unset:
        lines.append("base URLs not set: " + ", ".join(unset))
    return lines
