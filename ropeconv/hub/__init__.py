"""The Hugging Face Hub: MODEL as `org/name[@revision]`, safetensors headers without the weights, and push.

`resolve()` fetches only what a command needs into huggingface_hub's cache and returns the
snapshot folder with the exact commit sha. `read_safetensors_header()` reads a shard's header with
ranged requests. `push_folder()` checks the token's rights before sending anything, creates the
repo (and branch), copies unchanged weight files server-side from the source repo when the Hub
allows it, uploads the rest and returns the commit or pull-request URL.

The environment is read at call time (HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE,
HF_HUB_OFFLINE), and huggingface_hub is imported inside functions only, so `ropeconv --help`
stays fast. Calls the client does not retry itself are retried here on connection errors, 429
and 5xx, with exponential backoff (ROPECONV_HUB_RETRIES, default 5; ROPECONV_HUB_RETRY_WAIT,
the first wait in seconds, default 1). No token is ever printed, logged or written.

What lives where (the public names are re-exported here; private helpers stay in their submodule):

- `client`:  talking to the Hub safely: HubSettings/settings(), the HfApi client, retry_policy() and
  with_retries(), hub_error()/hub_errors() (one-line HubError, tokens scrubbed).
- `sources`: reading repos: parse_model_spec(), select_files(), resolve() and the cache handling,
  read_safetensors_header(), shard_headers().
- `push`:    pushing: resolve_token(), write_permission_problem(), PushPlan/plan_push() (server-side
  copies), push_folder() and its commit and report.

The names here are bindings to the submodules' objects: to monkeypatch one for code inside the
package, patch it in the submodule that uses it (e.g. `ropeconv.hub.sources.settings`).
"""

from __future__ import annotations

from ropeconv.errors import HubError, RopeconvError
from ropeconv.folder import Source
from ropeconv.hub.client import (RETRY_STATUS, UNAPPLIED_STATUS, HubSettings, hub_error, hub_errors, retry_policy,
                                 settings, with_retries)
from ropeconv.hub.push import (PUSH_IGNORE, RECORD_NAME, PushPlan, check_push_possible, plan_push, push_folder,
                               resolve_token, write_permission_problem)
from ropeconv.hub.sources import (CONFIG_PATTERNS, INDEX_PATTERNS, NEEDS, OTHER_FORMAT_SUFFIXES, PICKLE_SUFFIXES,
                                  SMALL_FILE_LIMIT, parse_model_spec, read_safetensors_header, resolve, select_files,
                                  shard_headers)

__all__ = [
    # client
    "RETRY_STATUS", "UNAPPLIED_STATUS", "HubSettings", "settings", "retry_policy", "with_retries", "hub_error",
    "hub_errors",
    # sources
    "NEEDS", "SMALL_FILE_LIMIT", "CONFIG_PATTERNS", "INDEX_PATTERNS", "OTHER_FORMAT_SUFFIXES", "PICKLE_SUFFIXES",
    "parse_model_spec", "select_files", "resolve", "shard_headers", "read_safetensors_header",
    # push
    "RECORD_NAME", "PUSH_IGNORE", "PushPlan", "resolve_token", "write_permission_problem", "plan_push",
    "push_folder", "check_push_possible",
    # names the module had before it became a package
    "HubError", "RopeconvError", "Source",
]
