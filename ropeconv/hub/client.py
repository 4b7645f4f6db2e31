"""Talking to the Hub safely: settings from the environment, the API client, retries with
backoff on transient failures, and one-line HubError messages (tokens scrubbed).

Calls the client does not retry itself are retried here on connection errors, 429 and 5xx, with
exponential backoff (ROPECONV_HUB_RETRIES, default 5; ROPECONV_HUB_RETRY_WAIT, the first wait in
seconds, default 1). No token is ever printed, logged or written.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ropeconv.errors import HubError, RopeconvError

RETRY_STATUS = (408, 429, 500, 502, 503, 504)
# A commit answered by one of these was not applied, so retrying cannot open a second pull request.
UNAPPLIED_STATUS = (429, 503)


# -- settings ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    cache_dir: str
    offline: bool


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def settings() -> HubSettings:
    """Where the Hub is, where the cache is, and whether we may go online — from the environment now."""
    from huggingface_hub import constants

    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not cache and os.environ.get("HF_HOME"):
        cache = os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    offline_env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    offline = _truthy(offline_env) if offline_env is not None else constants.is_offline_mode()
    return HubSettings(endpoint, cache or constants.HF_HUB_CACHE, offline)


def _api(cfg: HubSettings, token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=cfg.endpoint, token=token, library_name="ropeconv", library_version=_version())


def _version() -> str:
    from ropeconv import __version__

    return __version__


# -- retries and errors -----------------------------------------------------------------------------

def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes (the client wraps upload errors in RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx2 as httpx
    except ImportError:  # older huggingface_hub releases use httpx or requests
        try:
            import httpx
        except ImportError:
            import requests

            return (requests.ConnectionError, requests.Timeout)
    return (httpx.TransportError,)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient(exc: BaseException, statuses: tuple[int, ...] = RETRY_STATUS) -> bool:
    transport = _transport_errors()
    for link in _chain(exc):
        if isinstance(link, RopeconvError):
            return False
        if isinstance(link, transport):
            return True
        if _status(link) is not None:
            return _status(link) in statuses
    return False


def _unapplied(exc: BaseException) -> bool:
    """True when the request certainly did not reach or change the Hub (safe to repeat a PR commit)."""
    connect = _connect_errors()
    return any(isinstance(link, connect) for link in _chain(exc)) or _transient(exc, UNAPPLIED_STATUS)


def _connect_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx2 as httpx
    except ImportError:
        try:
            import httpx
        except ImportError:
            import requests

            return (requests.ConnectionError,)
    return (httpx.ConnectError, httpx.ConnectTimeout)


def retry_policy() -> tuple[int, float]:
    """(retries, first wait in seconds), from ROPECONV_HUB_RETRIES / ROPECONV_HUB_RETRY_WAIT."""
    try:
        retries = max(0, int(os.environ.get("ROPECONV_HUB_RETRIES", "5")))
    except ValueError:
        retries = 5
    try:
        wait = max(0.0, float(os.environ.get("ROPECONV_HUB_RETRY_WAIT", "1")))
    except ValueError:
        wait = 1.0
    return retries, wait


def with_retries(call: Callable[[], Any], *, retry_if: Callable[[BaseException], bool] = _transient) -> Any:
    """Run `call`; on a transient failure wait 1, 2, 4, 8, 8… × the first wait and try again."""
    retries, wait = retry_policy()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not retry_if(exc):
                exc.ropeconv_attempts = attempt + 1  # for the error message
                raise
            time.sleep(min(wait * 2 ** attempt, wait * 8))
            attempt += 1


def _known_tokens(token: str | None) -> list[str]:
    """Every token this process may have sent: the one given, HF_TOKEN (and its old name), the stored login."""
    found = [token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]
    try:
        from huggingface_hub import get_token

        found.append(get_token())
    except Exception:  # no stored login, or an old client: nothing more to hide
        pass
    return sorted({t.strip() for t in found if isinstance(t, str) and len(t.strip()) >= 4}, key=len, reverse=True)


def _scrub(text: str, token: str | None) -> str:
    """`text` without any token: those this process knows, whatever their shape, and any hf_-shaped string."""
    for known in _known_tokens(token):
        text = text.replace(known, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)  # any token-shaped string, wherever it came from


def _login_fix(cfg: HubSettings, with_option: bool) -> str:
    option = ", or pass --token" if with_option else ""
    return f"create a token at {cfg.endpoint}/settings/tokens, then run `hf auth login` or set HF_TOKEN{option}"


def hub_error(exc: BaseException, *, cfg: HubSettings, repo_id: str | None = None, revision: str | None = None,
              action: str = "read", token: str | None = None) -> HubError:
    """One line that says what went wrong on the Hub and how to fix it; no token in it, read or push."""
    error = _hub_error(exc, cfg=cfg, repo_id=repo_id, revision=revision, action=action, token=token)
    problem, fix = _scrub(error.problem, token), _scrub(error.fix, token) if error.fix else error.fix
    if (problem, fix) == (error.problem, error.fix):
        return error
    return type(error)(problem, fix, exit_code=error.exit_code)


def _hub_error(exc: BaseException, *, cfg: HubSettings, repo_id: str | None = None, revision: str | None = None,
               action: str = "read", token: str | None = None) -> HubError:
    from huggingface_hub import errors as hf

    attempts = getattr(exc, "ropeconv_attempts", 1)
    tried = f" (tried {attempts} times)" if attempts > 1 else ""
    where = repo_id or "the Hub"
    pushing = action == "push"
    for link in _chain(exc):
        if isinstance(link, HubError):
            return link
        if isinstance(link, hf.GatedRepoError):
            return HubError(f"{where} is gated and this account has not been granted access",
                            f"accept its conditions at {cfg.endpoint}/{repo_id}, then log in with that account "
                            "(`hf auth login` or HF_TOKEN)")
        if isinstance(link, hf.RevisionNotFoundError):
            return HubError(f"{where} has no revision '{revision}'",
                            "use an existing branch, tag or commit sha (org/name@REVISION)")
        if isinstance(link, hf.RepositoryNotFoundError):
            return HubError(f"repo {where} was not found on {cfg.endpoint} (or it is private and the token cannot "
                            "see it)", "check the name; for a private repo " + _login_fix(cfg, pushing))
        if isinstance(link, hf.RemoteEntryNotFoundError):
            return HubError(f"a file is missing from {where}@{revision or 'main'}",
                            "check that the repo holds a complete transformers model")
        if isinstance(link, hf.DisabledRepoError):
            return HubError(f"{where} has been disabled on the Hub", "use another repo")
        if isinstance(link, hf.LocalTokenNotFoundError):
            return HubError("no Hugging Face token found", _login_fix(cfg, pushing))
        if isinstance(link, hf.OfflineModeIsEnabled):
            return HubError("HF_HUB_OFFLINE is set, so the Hub cannot be contacted",
                            "unset HF_HUB_OFFLINE to go online")
        if isinstance(link, hf.FileDuplicationError):
            return HubError(f"the Hub could not copy the weight files into {where}",
                            "rerun with --no-server-copy to upload them instead")
        status = _status(link)
        if status == 401:
            return HubError("the Hub refused the token (invalid or expired)" if token or os.environ.get("HF_TOKEN")
                            else f"{where} needs a Hugging Face login", _login_fix(cfg, pushing))
        if status == 403:
            if pushing:
                return HubError(f"the token is not allowed to write to {where}",
                                f"use a token with write access to '{(repo_id or '').split('/')[0]}' "
                                f"(fine-grained tokens need repo write permission); {_login_fix(cfg, True)}")
            return HubError(f"the token is not allowed to read {where}",
                            "ask the owner for access, or " + _login_fix(cfg, False))
        if status == 429:
            return HubError(f"the Hub is rate-limiting these requests{tried}", "wait a few minutes and run it again")
        if status is not None and status >= 500:
            return HubError(f"the Hub at {cfg.endpoint} answered {status}{tried}",
                            "try again later; running the same command again resumes where it stopped")
        if status is not None:
            server = str(getattr(link, "server_message", None) or "").strip()
            message = _scrub(server.splitlines()[0], token) if server else ""
            return HubError(f"the Hub refused to {action} {where}: HTTP {status}{': ' + message if message else ''}",
                            "check the repo id and options; rerun with --debug for details")
        if isinstance(link, _transport_errors()):
            kind = type(link).__name__
            return HubError(f"cannot reach the Hub at {cfg.endpoint} ({kind}){tried}",
                            "check the network and HF_ENDPOINT; models already in the cache work offline with "
                            "HF_HUB_OFFLINE=1")
        if isinstance(link, ValueError) and "Invalid metadata in README.md" in str(link):
            detail = _scrub(str(link).splitlines()[-1].lstrip("- "), token)
            return HubError(f"the Hub rejected README.md's metadata: {detail}", "fix the YAML block of README.md")
    return HubError(f"Hub {action} failed: {_scrub(f'{type(exc).__name__}: {exc}', token).splitlines()[0]}",
                    "rerun with --debug for details")


@contextmanager
def hub_errors(cfg: HubSettings, **context) -> Iterator[None]:
    """Turn any Hub failure inside the block into a one-line HubError."""
    try:
        yield
    except RopeconvError:
        raise
    except Exception as exc:
        raise hub_error(exc, cfg=cfg, **context) from None
