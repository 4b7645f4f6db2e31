"""Whether a conversion is built or skipped: `decide(facts) -> Decision`, one set of rules for a run
and a dry run. The words a run logs and a dry run explains are derived from the decision
(`Decision.text()`, `Decision.short()`), never worked out a second time.

A run knows every fact: the source's current revision and, with a push target, the pushed
ropeconv.json. A dry run uses no network, so those two may be unknown (None); where the answer
depends on them the decision is CHECK, with the condition in its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ropeconv.batch.state import Inputs, PushedBuild, Stamp, StateEntry
from ropeconv.recipes import Conversion, display_path

SKIP, BUILD, CHECK = "skip", "build", "check"


@dataclass(frozen=True)
class Facts:
    """What a decision is made from."""

    conv: Conversion
    inputs: Inputs  # inputs.source is None when not known (a Hub source in a dry run)
    wants_probe: bool  # the recipe probes and probing is on
    pushes: bool  # the recipe pushes and pushing is on
    state_path: Path
    last: StateEntry | None  # the state file's entry
    pushed: PushedBuild | None  # None: not read (no push target, or a dry run)
    output: Path
    output_stamp: Stamp | None  # the stamp in the output folder's ropeconv.json
    output_exists: bool

    @property
    def push_target(self) -> str:
        return f"{self.conv.push_to}@{self.conv.push_revision or 'main'}"


@dataclass(frozen=True)
class Decision:
    """`action` SKIP, BUILD or CHECK (a dry run only: decided by what only the network knows), and
    `reason`, a fixed code the words are derived from."""

    action: str
    reason: str
    facts: Facts
    changes: tuple[str, ...] = ()  # what changed since the compared build, in words
    otherwise: Decision | None = None  # CHECK on a pull request: what the state file decides

    def text(self) -> str:
        """Why, in a sentence (the run's log line and the dry run's explanation)."""
        f = self.facts
        conv, inputs = f.conv, f.inputs
        where = f.push_target
        if self.reason == "pushed-holds-this-build":
            return (f"unchanged since {f.pushed.stamp.built_at or '?'}: {where} already holds this build "
                    f"({_about(inputs)})")
        if self.reason == "nothing-pushed":
            return f"nothing pushed to {where} yet"
        if self.reason == "pushed-without-stamp":
            return f"{where} holds a ropeconv.json without a batch record"
        if self.reason == "pushed-not-probed":
            return f"the build on {where} was not probed; the probe is on now"
        if self.reason == "pushed-other-build":
            return "; ".join(self.changes) or f"{where} holds another build"
        if self.reason == "first-build":
            return f"first build (no entry in {display_path(f.state_path)})"
        if self.reason == "changed":
            return "; ".join(self.changes)
        if self.reason == "not-probed":
            return "the last build was not probed; the probe is on now"
        if self.reason == "not-pushed":
            return "the last build was not pushed; pushing is on now"
        if self.reason == "output-missing":
            return f"the output {display_path(f.output)} is missing"
        if self.reason == "output-other-build":
            return f"the output {display_path(f.output)} holds another build"
        if self.reason == "unchanged":
            return (f"unchanged since {f.last.built_at or '?'} ({_about(inputs)}; "
                    f"{display_path(f.state_path)})")
        if self.reason == "check-pushed":
            if inputs.source is None:
                return (f"would read ropeconv.json on {where} and build unless it records "
                        f"{conv.repo_id}@{conv.revision or 'main'}'s current sha, this recipe "
                        f"({inputs.recipe_sha256[:12]}) and ropeconv {inputs.ropeconv_version}")
            return f"would read ropeconv.json on {where} and build unless it records these inputs"
        if self.reason == "check-source-moved":
            last = f.last.inputs.source if f.last and f.last.inputs else None
            return (f"last built from {last.describe() if last else '?'} on {f.last.built_at}; "
                    f"would build only if {conv.repo_id}@{conv.revision or 'main'} has moved")
        if self.reason == "check-pull-request":
            return (f"would read ropeconv.json on {where} and skip if it holds this build; otherwise "
                    f"{self.otherwise.text()}")
        raise AssertionError(f"no words for the decision {self.reason!r}")

    def short(self) -> str:
        """The reason in a few words, for a summary table (CHECK decisions; else the text)."""
        conv = self.facts.conv
        if self.reason in ("check-pushed", "check-pull-request"):
            return f"builds unless {conv.push_to} holds this build"
        if self.reason == "check-source-moved":
            return f"builds only if {conv.repo_id} has moved"
        return self.text()


def _about(inputs: Inputs) -> str:
    source = inputs.source.describe() if inputs.source else "?"
    return f"{source}, recipe {inputs.recipe_sha256[:12]}, ropeconv {inputs.ropeconv_version}"


def decide(f: Facts) -> Decision:
    """The rules, in order. With a push target (and no pull request) the pushed ropeconv.json
    decides, so CI needs no state; otherwise the state file, the probe/push history and the output
    folder do."""
    conv = f.conv
    if f.pushes and f.pushed is None and not conv.create_pr:
        return Decision(CHECK, "check-pushed", f)
    if f.pushes and f.pushed is not None:
        stamp = f.pushed.stamp
        if stamp is not None and f.inputs.matches(stamp.inputs) and (stamp.probed or not f.wants_probe):
            return Decision(SKIP, "pushed-holds-this-build", f)
        if not conv.create_pr:
            if stamp is None:
                return Decision(BUILD, "pushed-without-stamp" if f.pushed.exists else "nothing-pushed", f)
            if f.inputs.matches(stamp.inputs):
                return Decision(BUILD, "pushed-not-probed", f)
            return Decision(BUILD, "pushed-other-build", f, tuple(f.inputs.changes_since(stamp.inputs)))
    decision = _by_state(f)
    if f.pushes and f.pushed is None and decision.action == BUILD:  # a pull request, in a dry run
        return Decision(CHECK, "check-pull-request", f, otherwise=decision)
    return decision


def _by_state(f: Facts) -> Decision:
    last = f.last
    if last is None:
        return Decision(BUILD, "first-build", f)
    diff = f.inputs.changes_since(last.inputs)
    if diff or last.inputs is None or (f.inputs.source is not None and not f.inputs.matches(last.inputs)):
        return Decision(BUILD, "changed", f, tuple(diff) or ("the last build's inputs are not recorded",))
    if f.wants_probe and not last.probed:
        return Decision(BUILD, "not-probed", f)
    if f.pushes and not last.pushed_url:
        return Decision(BUILD, "not-pushed", f)
    if not f.pushes and (f.output_stamp is None or not f.inputs.matches(f.output_stamp.inputs)):
        return Decision(BUILD, "output-other-build" if f.output_exists else "output-missing", f)
    if f.inputs.source is None:
        return Decision(CHECK, "check-source-moved", f)
    return Decision(SKIP, "unchanged", f)
