"""The skip decision (ropeconv.batch.decide): one set of rules for a run and a dry run, the words derived
from the decision. Pure: the facts are built here, nothing is read from a model or the Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from ropeconv.batch.decide import BUILD, CHECK, SKIP, Facts, decide
from ropeconv.batch.state import Inputs, PushedBuild, SourceRevision, Stamp, StateEntry
from ropeconv.recipes import load_recipes

HUB = SourceRevision("hub", repo_id="org/base", revision="main", sha="a" * 40)
LOCAL = SourceRevision("local", config_sha256="sha256:" + "1" * 64, weights="sha256:" + "2" * 64)


def conv_of(tmp_path: Path, extra: str = "", source: str = "org/base"):
    path = tmp_path / "r.toml"
    path.write_text(f'[[conversion]]\nname = "a"\nsource = "{source}"\nmethod = "yarn"\nfactor = 4.0\n{extra}')
    (conv,) = load_recipes([path])
    return conv


def facts(conv, inputs, *, last=None, pushed=None, wants_probe=False, pushes=False, stamp=None, exists=False):
    return Facts(conv=conv, inputs=inputs, wants_probe=wants_probe, pushes=pushes, state_path=Path("state.json"),
                 last=last, pushed=pushed, output=Path("out/a"), output_stamp=stamp, output_exists=exists)


def entry(inputs, *, probed=False, url=None):
    return StateEntry(inputs, "2026-01-01T00:00:00+00:00", "out/a", probed, None, {"url": url} if url else None)


def test_a_local_build_is_decided_the_same_in_a_run_and_a_dry_run(tmp_path):
    conv = conv_of(tmp_path, source="./m")
    inputs = Inputs(LOCAL, conv.sha256, "1.0")
    built = Stamp("a", "r.toml", inputs, "2026-01-01T00:00:00+00:00")
    decision = decide(facts(conv, inputs, last=entry(inputs), stamp=built, exists=True))
    assert decision.action == SKIP and decision.text().startswith("unchanged since 2026-01-01")
    moved = Inputs(SourceRevision("local", config_sha256="sha256:" + "3" * 64, weights=LOCAL.weights),
                   conv.sha256, "1.0")
    decision = decide(facts(conv, moved, last=entry(inputs), stamp=built, exists=True))
    assert decision.action == BUILD and decision.text() == "the source's config.json changed"
    decision = decide(facts(conv, inputs, last=entry(inputs), stamp=None, exists=False))
    assert (decision.action, decision.text()) == (BUILD, f"the output {Path('out/a')} is missing")


def test_a_hub_source_whose_sha_is_unknown_is_checked_only_when_nothing_else_decides(tmp_path):
    conv = conv_of(tmp_path)
    last = Inputs(HUB, conv.sha256, "1.0")
    unknown = Inputs(None, conv.sha256, "1.0")  # a dry run: the current sha needs the network
    built = Stamp("a", "r.toml", last, "2026-01-01T00:00:00+00:00")
    decision = decide(facts(conv, unknown, last=entry(last), stamp=built, exists=True))
    assert decision.action == CHECK and decision.short() == "builds only if org/base has moved"
    assert decision.text().startswith(f"last built from org/base@main ({'a' * 12})")
    # ... but a missing output, a recipe change or a probe not yet run decide without the network
    assert decide(facts(conv, unknown, last=entry(last), stamp=None)).action == BUILD
    assert decide(facts(conv, unknown, last=entry(last), stamp=built, exists=True, wants_probe=True)).text() == \
        "the last build was not probed; the probe is on now"
    changed = Inputs(None, "f" * 64, "1.0")
    assert decide(facts(conv, changed, last=entry(last), stamp=built, exists=True)).text().startswith(
        "the recipe changed (sha256 ")
    # the run, knowing the sha, decides
    assert decide(facts(conv, last, last=entry(last), stamp=built, exists=True)).action == SKIP
    moved = Inputs(SourceRevision("hub", repo_id="org/base", revision="main", sha="b" * 40), conv.sha256, "1.0")
    assert decide(facts(conv, moved, last=entry(last), stamp=built, exists=True)).text() == \
        f"the source moved: org/base@main is {'b' * 12}, was {'a' * 12}"


@pytest.mark.parametrize("stamp,exists,probed,action,text", [
    (None, False, False, BUILD, "nothing pushed to org/out@main yet"),
    (None, True, False, BUILD, "org/out@main holds a ropeconv.json without a batch record"),
    ("same", True, False, BUILD, "the build on org/out@main was not probed; the probe is on now"),
    ("same", True, True, SKIP, "unchanged since 2026-01-01T00:00:00+00:00: org/out@main already holds this build"),
    ("other", True, True, BUILD, "ropeconv changed (0.9 → 1.0)"),
])
def test_the_pushed_record_decides_a_pushed_conversion(tmp_path, stamp, exists, probed, action, text):
    conv = conv_of(tmp_path, 'push_to = "org/out"\n')
    inputs = Inputs(HUB, conv.sha256, "1.0")
    recorded = {"same": inputs, "other": Inputs(HUB, conv.sha256, "0.9")}.get(stamp)
    pushed = PushedBuild("org/out@main", exists,
                         Stamp("a", "r.toml", recorded, "2026-01-01T00:00:00+00:00", probed) if stamp else None)
    decision = decide(facts(conv, inputs, pushed=pushed, pushes=True, wants_probe=True))
    assert decision.action == action and decision.text().startswith(text), decision.text()
    # a dry run does not read it: the decision says what it would look for
    dry = decide(facts(conv, Inputs(None, conv.sha256, "1.0"), pushes=True, wants_probe=True))
    assert dry.action == CHECK and dry.text().startswith("would read ropeconv.json on org/out@main and build unless "
                                                         "it records org/base@main's current sha")


def test_a_pull_request_falls_back_on_the_state_file(tmp_path):
    conv = conv_of(tmp_path, 'push_to = "org/out"\ncreate_pr = true\n')
    inputs = Inputs(HUB, conv.sha256, "1.0")
    run = decide(facts(conv, inputs, pushes=True, pushed=PushedBuild("org/out@main", False, None)))
    assert (run.action, run.reason) == (BUILD, "first-build")
    dry = decide(facts(conv, Inputs(None, conv.sha256, "1.0"), pushes=True))
    assert dry.action == CHECK and dry.otherwise.reason == "first-build"
    assert dry.text() == ("would read ropeconv.json on org/out@main and skip if it holds this build; otherwise "
                          "first build (no entry in state.json)")


def test_inputs_round_trip_through_their_json_form():
    inputs = Inputs(LOCAL, "c" * 64, "1.0")
    assert Inputs.from_json(inputs.to_json()) == inputs and Inputs.from_json("junk") is None
    assert inputs.to_json()["source"] == {"kind": "local", "config_sha256": LOCAL.config_sha256,
                                          "weights": LOCAL.weights}
