"""Recipes: TOML files (usually in `recipes/`) that say which conversions to build, probe and push.

What lives where (everything is importable from `ropeconv.recipes`):

- `problems`:  Problem, RecipeError, display_path, recipe_words — reporting `file:line: what — fix`,
               library errors worded with recipe keys (`factor`, `set rebase = true`).
- `lines`:     key_lines, line_of — where each TOML key is written (tomllib gives no positions).
- `model`:     Conversion, ProbeSettings — the validated form of a recipe.
- `validate`:  the recipe format (keys, kinds, aliases) and load_recipes / find_recipe_files:
               reading and complete validation, before anything is downloaded or built.
- `hashing`:   recipe_hash — what decides whether a conversion's last build is still current.
- `selection`: parse_shard, shard_of, select — `--only` and `--shard I/N`.

The format itself is described in `ropeconv.recipes.validate`.
"""

from ropeconv.recipes.problems import Problem, RecipeError, display_path, recipe_key, recipe_words
from ropeconv.recipes.lines import key_lines, line_of
from ropeconv.recipes.model import Conversion, ProbeSettings
from ropeconv.recipes.hashing import recipe_hash
from ropeconv.recipes.validate import (ALIASES, BUFFER_MODES, CONVERSION_KEYS, KIND_WORDS, LIST_PARAMS,
                                       METHOD_PARAMS, NAME_RE, PROBE_KEYS, SMOLLM2, SUFFIX, TOP_KEYS,
                                       find_recipe_files, load_recipes, parse_target_context)
from ropeconv.recipes.selection import parse_shard, select, shard_of

__all__ = [
    "ALIASES", "BUFFER_MODES", "CONVERSION_KEYS", "KIND_WORDS", "LIST_PARAMS", "METHOD_PARAMS", "NAME_RE",
    "PROBE_KEYS", "SMOLLM2", "SUFFIX", "TOP_KEYS",
    "Conversion", "Problem", "ProbeSettings", "RecipeError",
    "display_path", "recipe_key", "recipe_words", "find_recipe_files", "key_lines", "line_of", "load_recipes",
    "parse_shard", "parse_target_context", "recipe_hash", "select", "shard_of",
]
