"""Tests for recipe parsing and validation (``cpedit.recipes.format``); no model is loaded.

Every invalid recipe must raise :class:`RecipeError` whose ``problems`` name the bad
field and whose message names the file, the field and a fix.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from support.paths import REPO_ROOT

from cpedit.errors import CpeditError, RecipeError
from cpedit.recipes.format import (
    KINDS,
    PruneSettings,
    Recipe,
    SamplingSettings,
    load_recipe,
    parse_recipe,
)
from cpedit.recipes.sources import builtin_recipe_files, list_recipes, resolve_recipe

RECIPES_DIR = REPO_ROOT / "recipes"

FULL = """\
cpedit: 1
name: my-style
concept: "My Style"
kind: style
description: Erase my style.
prompts:
  subjects: [cat, dog, house]
  target: "a {subject} in the style of X"
  base: "a photo of a {subject}"
prune:
  skill_ratio: 0.02
  timesteps: 8
  select_ratio: 0.25
sampling:
  steps: 30
  guidance_scale: 5
  seed: 7
  height: 512
  width: 768
preview:
  prompts: ["one", "two"]
"""

MINIMAL = """\
cpedit: 1
name: minimal
concept: thing
prompts:
  target: "a thing"
  base: "nothing"
"""

# A valid recipe as sections, so a test can break exactly one field.
BASE_FIELDS: dict[str, str] = {
    "cpedit": "cpedit: 1",
    "name": "name: test-recipe",
    "concept": "concept: Test",
    "kind": "kind: style",
    "prompts": 'prompts:\n  subjects: [cat, dog]\n  target: "a {subject} by X"\n  base: "a {subject}"',
    "prune": "prune:\n  skill_ratio: 0.01\n  timesteps: 10\n  select_ratio: 0.0",
    "sampling": "sampling:\n  steps: 50\n  guidance_scale: 7.5\n  seed: 0",
}


def make(**overrides: str | None) -> str:
    """Recipe text from BASE_FIELDS with sections replaced (a string) or removed (None)."""
    fields = dict(BASE_FIELDS)
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return "\n".join(fields.values()) + "\n"


def problems_of(text: str, source: str = "bad.yaml") -> RecipeError:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source=source)
    return info.value


def fields_of(err: RecipeError) -> list[str]:
    return [f for f, _ in err.problems]


def message_for(err: RecipeError, field: str) -> str:
    matches = [m for f, m in err.problems if f == field]
    assert matches, f"no problem for {field!r} in {err.problems}"
    return matches[0]


def assert_reports(text: str, field: str, *hints: str) -> RecipeError:
    """The recipe is rejected with a problem at ``field`` whose message holds each hint."""
    err = problems_of(text, source="path/to/bad.yaml")
    assert field in fields_of(err), err.problems
    msg = message_for(err, field)
    for hint in hints:
        assert hint.lower() in msg.lower(), f"{hint!r} not in {msg!r}"
    text_msg = str(err)
    assert "path/to/bad.yaml" in text_msg
    assert "invalid recipe" in text_msg
    if field:
        assert f"- {field}: " in text_msg
    assert msg in text_msg
    return err


# --- Valid recipes ---------------------------------------------------------------------


def test_full_recipe_parses() -> None:
    r = parse_recipe(FULL, source="my.yaml")
    assert r.name == "my-style"
    assert r.concept == "My Style"
    assert r.kind == "style"
    assert r.description == "Erase my style."
    assert r.targets == ("a cat in the style of X", "a dog in the style of X", "a house in the style of X")
    assert r.bases == ("a photo of a cat", "a photo of a dog", "a photo of a house")
    assert r.pairs() == [
        ("a cat in the style of X", "a photo of a cat"),
        ("a dog in the style of X", "a photo of a dog"),
        ("a house in the style of X", "a photo of a house"),
    ]
    assert r.prune == PruneSettings(skill_ratio=0.02, timesteps=8, select_ratio=0.25)
    assert r.sampling == SamplingSettings(steps=30, guidance_scale=5.0, seed=7, height=512, width=768)
    assert isinstance(r.sampling.guidance_scale, float)
    assert r.preview_prompts == ("one", "two")
    assert r.source == "my.yaml"
    assert r.text == FULL


def test_recipe_is_frozen() -> None:
    r = parse_recipe(FULL)
    with pytest.raises(FrozenInstanceError):
        r.name = "other"  # type: ignore[misc]


def test_defaults_when_sections_omitted() -> None:
    r = parse_recipe(MINIMAL)
    assert r.kind == "custom"
    assert r.description == ""
    assert r.prune == PruneSettings()
    assert (r.prune.skill_ratio, r.prune.timesteps, r.prune.select_ratio) == (0.01, 10, 0.0)
    assert (r.sampling.steps, r.sampling.guidance_scale, r.sampling.seed) == (50, 7.5, 0)
    assert r.sampling.height is None and r.sampling.width is None
    assert r.preview_prompts == ()
    assert r.source == "<recipe>"
    assert r.pairs() == [("a thing", "nothing")]


def test_empty_sections_use_defaults() -> None:
    r = parse_recipe(MINIMAL + "prune:\nsampling:\npreview:\n")
    assert r.prune == PruneSettings()
    assert r.sampling == SamplingSettings()
    assert r.preview_prompts == ()


def test_partial_sections_keep_other_defaults() -> None:
    r = parse_recipe(MINIMAL + "prune:\n  skill_ratio: 0.5\nsampling:\n  seed: 3\n")
    assert r.prune == PruneSettings(skill_ratio=0.5, timesteps=10, select_ratio=0.0)
    assert r.sampling == SamplingSettings(steps=50, guidance_scale=7.5, seed=3)


def test_lists_pair_by_index() -> None:
    r = parse_recipe(make(prompts="prompts:\n  target: [t1, t2, t3]\n  base: [b1, b2, b3]"))
    assert r.pairs() == [("t1", "b1"), ("t2", "b2"), ("t3", "b3")]


def test_plain_string_broadcasts_against_list() -> None:
    r = parse_recipe(make(kind="kind: memorization", prompts='prompts:\n  target: [p1, p2, p3]\n  base: ""'))
    assert r.kind == "memorization"
    assert r.targets == ("p1", "p2", "p3")
    assert r.bases == ("", "", "")


def test_plain_string_broadcasts_against_template() -> None:
    r = parse_recipe(make(prompts='prompts:\n  subjects: [a, b]\n  target: "naked {subject}"\n  base: "a person"'))
    assert r.pairs() == [("naked a", "a person"), ("naked b", "a person")]


def test_template_against_list_of_same_length() -> None:
    r = parse_recipe(make(prompts='prompts:\n  subjects: [a, b]\n  target: "x {subject}"\n  base: [p, q]'))
    assert r.pairs() == [("x a", "p"), ("x b", "q")]


def test_template_without_placeholder_and_double_braces() -> None:
    r = parse_recipe(make(prompts='prompts:\n  target: "a {{curly}} cat"\n  base: "a cat"'))
    assert r.pairs() == [("a {curly} cat", "a cat")]


def test_subject_may_appear_twice_in_template() -> None:
    r = parse_recipe(
        make(prompts='prompts:\n  subjects: [cat]\n  target: "{subject} and {subject}"\n  base: "{subject}"')
    )
    assert r.pairs() == [("cat and cat", "cat")]


def test_subjects_keep_order() -> None:
    subjects = ["zebra", "apple", "mouse", "bear"]
    r = parse_recipe(
        make(
            prompts=f'prompts:\n  subjects: [{", ".join(subjects)}]\n  target: "t {{subject}}"\n  base: "b {{subject}}"'
        )
    )
    assert r.targets == tuple(f"t {s}" for s in subjects)
    assert r.bases == tuple(f"b {s}" for s in subjects)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_accepted(kind: str) -> None:
    assert parse_recipe(make(kind=f"kind: {kind}")).kind == kind


def test_timesteps_equal_to_steps_is_allowed() -> None:
    r = parse_recipe(make(prune="prune:\n  timesteps: 20", sampling="sampling:\n  steps: 20"))
    assert r.prune.timesteps == r.sampling.steps == 20


def test_ratio_bounds_inclusive_where_documented() -> None:
    r = parse_recipe(make(prune="prune:\n  skill_ratio: 1\n  select_ratio: 0"))
    assert r.prune.skill_ratio == 1.0 and isinstance(r.prune.skill_ratio, float)
    assert r.prune.select_ratio == 0.0 and isinstance(r.prune.select_ratio, float)


def test_text_is_verbatim_including_comments() -> None:
    text = "# my recipe\n" + make() + "# trailing comment\n"
    assert parse_recipe(text).text == text


def test_load_recipe_attaches_text_and_source(tmp_path: Path) -> None:
    file = tmp_path / "my.yaml"
    file.write_text(FULL, encoding="utf-8")
    r = load_recipe(file)
    assert r.text == FULL
    assert r.source == str(file)
    assert load_recipe(str(file)) == r


def test_recipe_error_is_a_cpedit_error() -> None:
    err = problems_of("[]")
    assert isinstance(err, CpeditError)
    assert err.path == "bad.yaml"


# --- Missing fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "hint"),
    [
        ("cpedit", "cpedit: 1"),
        ("name", "slug"),
        ("concept", "what is erased"),
        ("prompts", "target"),
    ],
)
def test_missing_top_level_field(missing: str, hint: str) -> None:
    err = assert_reports(make(**{missing: None}), missing, "missing", f"`{missing}:`", hint)
    assert len(err.problems) == 1


@pytest.mark.parametrize("side", ["target", "base"])
def test_missing_prompt_side(side: str) -> None:
    other = "base" if side == "target" else "target"
    text = make(prompts=f'prompts:\n  subjects: [cat]\n  {other}: "a {{subject}}"')
    assert_reports(text, f"prompts.{side}", "missing", f"`{side}:`", "template")


@pytest.mark.parametrize("key", ["concept", "name", "cpedit", "prompts", "kind"])
def test_null_required_value_is_reported(key: str) -> None:
    err = problems_of(make(**{key: f"{key}:"}))
    assert key in fields_of(err), err.problems


@pytest.mark.parametrize("value", ['""', '"   "', "5", "[a]"])
def test_concept_must_be_non_empty_string(value: str) -> None:
    assert_reports(make(concept=f"concept: {value}"), "concept", "non-empty string")


def test_description_must_be_string() -> None:
    assert_reports(make(description="description: 5"), "description", "string")


# --- Wrong types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("prune", "timesteps", '"ten"', "integer"),
        ("prune", "timesteps", "2.5", "integer"),
        ("prune", "timesteps", "true", "integer"),
        ("prune", "skill_ratio", "true", "number"),
        ("prune", "skill_ratio", '"0.01"', "number"),
        ("prune", "skill_ratio", ".nan", "number"),
        ("prune", "select_ratio", "[0.1]", "number"),
        ("sampling", "seed", "1.5", "integer"),
        ("sampling", "steps", '"50"', "integer"),
        ("sampling", "guidance_scale", "yes", "number"),
        ("sampling", "guidance_scale", ".inf", "number"),
    ],
)
def test_wrong_number_type(section: str, key: str, value: str, expected: str) -> None:
    text = make(**{section: f"{section}:\n  {key}: {value}"})
    assert_reports(text, f"{section}.{key}", f"must be {'an' if expected == 'integer' else 'a'} {expected}", "got")


@pytest.mark.parametrize("value", ["cat", "[]", "[cat, 3]", '[cat, ""]', "{a: 1}"])
def test_subjects_not_a_list_of_strings(value: str) -> None:
    text = make(prompts=f'prompts:\n  subjects: {value}\n  target: "a {{subject}}"\n  base: "b {{subject}}"')
    err = assert_reports(text, "prompts.subjects", "list of strings", "e.g. [cat, dog, house]")
    # The broken subjects list is not reported again as a template problem.
    assert fields_of(err) == ["prompts.subjects"]


def test_duplicate_subjects() -> None:
    text = make(prompts='prompts:\n  subjects: [cat, cat]\n  target: "a {subject}"\n  base: "b {subject}"')
    assert_reports(text, "prompts.subjects", "duplicate")


@pytest.mark.parametrize("value", ["5", "[]", "[a, 5]", "{x: y}", "null"])
def test_prompt_side_wrong_type(value: str) -> None:
    text = make(prompts=f"prompts:\n  target: {value}\n  base: a photo")
    assert_reports(text, "prompts.target", "template string or a non-empty list of strings")


@pytest.mark.parametrize("value", ["[a, b]", "a string", "5"])
def test_prompts_not_a_mapping(value: str) -> None:
    assert_reports(make(prompts=f"prompts: {value}"), "prompts", "mapping", "target")


@pytest.mark.parametrize("section", ["prune", "sampling", "preview"])
def test_section_not_a_mapping(section: str) -> None:
    assert_reports(make(**{section: f"{section}: [1, 2]"}), section, "mapping", "list")


@pytest.mark.parametrize("value", ['"one"', "[a, 3]", '[""]', "null"])
def test_preview_prompts_wrong_type(value: str) -> None:
    assert_reports(make(preview=f"preview:\n  prompts: {value}"), "preview.prompts", "list of prompt strings")


# --- Unknown keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "typo", "suggestion"),
    [
        ("", "concpet", "concept"),
        ("", "descripton", "description"),
        ("prompts", "subject", "subjects"),
        ("prompts", "targets", "target"),
        ("prune", "skil_ratio", "skill_ratio"),
        ("prune", "timestep", "timesteps"),
        ("sampling", "guidance", "guidance_scale"),
        ("sampling", "sed", "seed"),
        ("preview", "prompt", "prompts"),
    ],
)
def test_unknown_key_near_miss_suggests(section: str, typo: str, suggestion: str) -> None:
    if section == "":
        text = make() + f"{typo}: x\n"
    else:
        body = BASE_FIELDS.get(section, f"{section}:")
        if section == "preview":
            body = "preview:\n  prompts: [a]"
        text = make(**{section: f"{body}\n  {typo}: 1"})
    field = f"{section}.{typo}" if section else typo
    assert_reports(text, field, "unknown key", f"did you mean `{suggestion}`?")


@pytest.mark.parametrize("section", ["", "prompts", "prune", "sampling", "preview"])
def test_unknown_key_far_miss_lists_allowed(section: str) -> None:
    if section == "":
        text = make() + "zzzzzz: 1\n"
    else:
        body = BASE_FIELDS.get(section, f"{section}:")
        text = make(**{section: f"{body}\n  zzzzzz: 1"})
    field = f"{section}.zzzzzz" if section else "zzzzzz"
    assert_reports(text, field, "unknown key", "allowed here:")


def test_non_string_top_level_key() -> None:
    assert_reports(make() + "1: x\n", "1", "unknown key")


# --- Ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "1.5", "-0.01", "0.0"])
def test_skill_ratio_out_of_range(value: str) -> None:
    assert_reports(make(prune=f"prune:\n  skill_ratio: {value}"), "prune.skill_ratio", "(0, 1]", "0.01")


@pytest.mark.parametrize("value", ["1", "-0.1", "1.0", "2"])
def test_select_ratio_out_of_range(value: str) -> None:
    assert_reports(make(prune=f"prune:\n  select_ratio: {value}"), "prune.select_ratio", "[0, 1)")


@pytest.mark.parametrize("value", ["0", "-3"])
def test_tau_below_one(value: str) -> None:
    err = assert_reports(make(prune=f"prune:\n  timesteps: {value}"), "prune.timesteps", "at least 1", "10")
    assert len(err.problems) == 1  # not also reported as larger than steps


def test_tau_larger_than_steps() -> None:
    text = make(prune="prune:\n  timesteps: 60")
    assert_reports(text, "prune.timesteps", "60", "sampling.steps = 50", "at most 50")


def test_tau_larger_than_custom_steps() -> None:
    text = make(prune="prune:\n  timesteps: 10", sampling="sampling:\n  steps: 5")
    assert_reports(text, "prune.timesteps", "at most 5")


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [("steps", "0", "at least 1"), ("guidance_scale", "-1", ">= 0"), ("seed", "-1", "non-negative")],
)
def test_sampling_out_of_range(key: str, value: str, hint: str) -> None:
    assert_reports(make(sampling=f"sampling:\n  {key}: {value}"), f"sampling.{key}", hint)


def test_seed_too_large() -> None:
    assert_reports(make(sampling=f"sampling:\n  seed: {2**63}"), "sampling.seed", "non-negative")


# --- Per-pair seeds (the authors' gender runs seed every pair on its own) ---------------------


def test_pair_seeds_give_each_pair_its_seed() -> None:
    recipe = parse_recipe(make(sampling="sampling:\n  pair_seeds: [44, 232]"))
    assert recipe.sampling.pair_seeds == (44, 232) and recipe.calibration_seeds() == [44, 232]
    assert parse_recipe(make(sampling="sampling:\n  seed: 9")).calibration_seeds() == [9, 9]
    assert parse_recipe(make()).sampling.pair_seeds is None


def test_pair_seeds_must_match_the_pairs() -> None:
    text = make(sampling="sampling:\n  pair_seeds: [1, 2, 3]")
    assert_reports(text, "sampling.pair_seeds", "3 entries but the prompts make 2 pairs")


def test_pair_seeds_and_seed_together_are_refused() -> None:
    assert_reports(make(sampling="sampling:\n  seed: 0\n  pair_seeds: [1, 2]"), "sampling", "not both")


@pytest.mark.parametrize("value", ["7", "[]", "x", "{a: 1}", "null"])
def test_pair_seeds_must_be_a_list(value: str) -> None:
    assert_reports(make(sampling=f"sampling:\n  pair_seeds: {value}"), "sampling.pair_seeds", "list of seeds")


@pytest.mark.parametrize("entry", ["-1", str(2**63), "1.5", "true", "'3'", "1e-2", "null", "[1]"])
def test_pair_seed_entries_must_be_seeds(entry: str) -> None:
    text = make(sampling=f"sampling:\n  pair_seeds: [0, {entry}]")
    assert_reports(text, "sampling.pair_seeds[1]", "non-negative integer", "2**63 - 1")


def test_pair_seeds_at_the_bounds_are_accepted() -> None:
    recipe = parse_recipe(make(sampling=f"sampling:\n  pair_seeds: [0, {2**63 - 1}]"))
    assert recipe.calibration_seeds() == [0, 2**63 - 1]


def test_many_bad_pair_seeds_are_summarised() -> None:
    subjects = ", ".join(f"s{i}" for i in range(10))
    prompts = f'prompts:\n  subjects: [{subjects}]\n  target: "a {{subject}} by X"\n  base: "a {{subject}}"'
    err = problems_of(make(prompts=prompts, sampling="sampling:\n  pair_seeds: [" + ", ".join(["-1"] * 10) + "]"))
    assert fields_of(err) == [*(f"sampling.pair_seeds[{i}]" for i in range(3)), "sampling.pair_seeds"]
    assert "7 more" in message_for(err, "sampling.pair_seeds")


def test_pair_seeds_round_trip_through_the_recipe_writer() -> None:
    import dataclasses

    from cpedit.recipes.writer import compose_recipe, dump_recipe, recipe_data, with_settings

    recipe = parse_recipe(make(sampling="sampling:\n  steps: 20\n  pair_seeds: [44, 232]"))
    written = parse_recipe(dump_recipe(recipe_data(recipe)))
    assert written.sampling == recipe.sampling and written.pairs() == recipe.pairs()
    for source in (recipe, dataclasses.replace(recipe, text="")):  # from its own YAML, or from the object
        assert with_settings(source, sampling={"steps": 30}).calibration_seeds() == [44, 232]
        same_seed = with_settings(source, sampling={"seed": 3})  # one seed for all replaces the per-pair ones
        assert same_seed.sampling.pair_seeds is None and same_seed.calibration_seeds() == [3, 3]
    per_pair = with_settings(parse_recipe(make()), sampling={"pair_seeds": (5, 6)})  # replaces `seed: 0`
    assert per_pair.calibration_seeds() == [5, 6]
    with pytest.raises(RecipeError, match=r"sampling\.pair_seeds: has 1 entries but the prompts make 2 pairs"):
        with_settings(recipe, sampling={"pair_seeds": [1]})
    composed = compose_recipe(
        name="c", concept="c", kind="custom", target=["a", "b"], base=["c", "d"], sampling={"pair_seeds": [7, 8]}
    )
    assert composed.calibration_seeds() == [7, 8]


def test_height_without_width() -> None:
    err = assert_reports(make(sampling="sampling:\n  height: 512"), "sampling", "both height and width")
    assert fields_of(err) == ["sampling"]


def test_width_without_height() -> None:
    assert_reports(make(sampling="sampling:\n  width: 512"), "sampling", "both height and width")


@pytest.mark.parametrize(("key", "value"), [("height", "500"), ("width", "513"), ("height", "0"), ("width", "-8")])
def test_size_not_positive_multiple_of_8(key: str, value: str) -> None:
    other = "width" if key == "height" else "height"
    text = make(sampling=f"sampling:\n  {key}: {value}\n  {other}: 512")
    assert_reports(text, f"sampling.{key}", "multiple of 8", value)


# --- Prompts ---------------------------------------------------------------------------


def test_unequal_lists() -> None:
    text = make(prompts="prompts:\n  target: [a, b, c]\n  base: [x, y]")
    assert_reports(text, "prompts", "target gives 3", "base gives 2", "equal length")


def test_template_and_list_of_different_lengths() -> None:
    text = make(prompts='prompts:\n  subjects: [a, b, c]\n  target: "x {subject}"\n  base: [p, q]')
    assert_reports(text, "prompts", "target gives 3", "base gives 2")


@pytest.mark.parametrize("side", ["target", "base"])
def test_subject_placeholder_without_subjects(side: str) -> None:
    prompts = (
        {"target": '"a {subject} by X"', "base": '"a photo"'}
        if side == "target"
        else {"target": '"a cat by X"', "base": '"a {subject}"'}
    )
    text = make(prompts=f"prompts:\n  target: {prompts['target']}\n  base: {prompts['base']}")
    assert_reports(text, f"prompts.{side}", "`{subject}`", "prompts.subjects", "missing")


@pytest.mark.parametrize(
    "template", ["a {thing}", "a {}", "a {0}", "a {subject.name}", "a {subject!r}", "a {subject:>9}", "a { subject }"]
)
def test_unknown_placeholder(template: str) -> None:
    text = make(prompts=f'prompts:\n  subjects: [cat]\n  target: "{template}"\n  base: "a {{subject}}"')
    assert_reports(text, "prompts.target", "only the `{subject}` placeholder", "`{{`")


@pytest.mark.parametrize("template", ["a {subject", "a } cat", "a {", "a }"])
def test_unbalanced_braces(template: str) -> None:
    text = make(prompts=f'prompts:\n  subjects: [cat]\n  target: "{template}"\n  base: "a {{subject}}"')
    assert_reports(text, "prompts.target", "`{{`")


@pytest.mark.parametrize(("items", "index"), [('["a {subject}", b]', 0), ('[a, "b {thing}"]', 1), ('[a, b, "{}"]', 2)])
def test_placeholder_inside_list_item(items: str, index: int) -> None:
    n = items.count(",") + 1
    base = "[" + ", ".join(f"p{i}" for i in range(n)) + "]"
    text = make(prompts=f"prompts:\n  subjects: [cat]\n  target: {items}\n  base: {base}")
    assert_reports(text, f"prompts.target[{index}]", "taken literally", "template string")


# --- Whole-file problems ---------------------------------------------------------------


def test_bad_yaml_reports_line() -> None:
    text = "cpedit: 1\nname: x\nconcept: [unclosed\nprompts: {}\n"
    err = problems_of(text, source="broken.yaml")
    assert fields_of(err) == [""]
    msg = err.problems[0][1]
    assert "not valid YAML" in msg
    assert "line " in msg
    assert "broken.yaml" in str(err)


def test_bad_yaml_line_number_is_one_based() -> None:
    text = "cpedit: 1\nname: x\n  bad: indent\n"
    err = problems_of(text)
    assert "line 3" in err.problems[0][1], err.problems


def test_tab_indentation_is_bad_yaml() -> None:
    err = problems_of("cpedit: 1\nprompts:\n\ttarget: x\n")
    assert "not valid YAML" in err.problems[0][1]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n", "", "   \n", "# only a comment\n", "null\n"])
def test_not_a_mapping(text: str) -> None:
    err = problems_of(text, source="weird.yaml")
    assert fields_of(err) == [""]
    assert "YAML mapping" in err.problems[0][1]
    assert "recipes/README.md" in err.problems[0][1]
    assert "weird.yaml" in str(err)


@pytest.mark.parametrize("version", ["2", "0", '"1"', "1.0", "true"])
def test_wrong_format_version(version: str) -> None:
    assert_reports(make(cpedit=f"cpedit: {version}"), "cpedit", "format version must be 1", "version 1")


@pytest.mark.parametrize(
    "name", ["Van-Gogh", "van_gogh", "van gogh", "-van", "van-", "van--gogh", '""', "5", "[a]", "vän"]
)
def test_bad_slug_name(name: str) -> None:
    assert_reports(make(name=f"name: {name}"), "name", "slug", "van-gogh")


@pytest.mark.parametrize("name", ["a", "van-gogh", "sd-1-4", "x9"])
def test_good_slug_name(name: str) -> None:
    assert parse_recipe(make(name=f'name: "{name}"')).name == name


@pytest.mark.parametrize("kind", ["Style", "artist", "5", '""'])
def test_bad_kind(kind: str) -> None:
    assert_reports(make(kind=f"kind: {kind}"), "kind", "must be one of", "style", "custom")


def test_several_problems_reported_at_once() -> None:
    text = make(
        name="name: Bad Name",
        prune="prune:\n  skil_ratio: 0.01\n  timesteps: ten",
        sampling="sampling:\n  seed: 1.5",
    )
    err = problems_of(text, source="many.yaml")
    assert len(err.problems) >= 3
    assert {"name", "prune.skil_ratio", "prune.timesteps", "sampling.seed"} <= set(fields_of(err))
    assert f"({len(err.problems)} problems)" in str(err)
    for field, message in err.problems:
        assert f"- {field}: {message}" in str(err)


def test_single_problem_is_singular() -> None:
    err = problems_of(make(kind="kind: bogus"))
    assert "(1 problem)" in str(err)


# --- Files -----------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RecipeError) as info:
        load_recipe(missing)
    err = info.value
    assert err.path == str(missing)
    assert str(missing) in str(err)
    assert "not found" in str(err)
    assert "cpedit recipes list" in str(err)


def test_non_utf8_file(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(make(concept="concept: caf\xe9").encode("latin-1"))
    with pytest.raises(RecipeError) as info:
        load_recipe(file)
    assert str(file) in str(info.value)
    assert "cannot read" in str(info.value)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path)
    assert "cannot read" in str(info.value)


def test_permission_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "locked.yaml"
    file.write_text(make(), encoding="utf-8")

    def deny(path: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    import cpedit.recipes.format

    monkeypatch.setattr(cpedit.recipes.format, "read_recipe_text", deny)
    with pytest.raises(RecipeError) as info:
        load_recipe(file)
    assert str(file) in str(info.value)
    assert "cannot read" in str(info.value)
    assert "Permission denied" in str(info.value)


def test_load_recipe_errors_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(make(prune="prune:\n  skill_ratio: 2"), encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(file)
    assert info.value.path == str(file)
    assert str(info.value).startswith(f"{file}: invalid recipe")
    assert "prune.skill_ratio" in str(info.value)


def test_utf8_content_is_fine(tmp_path: Path) -> None:
    file = tmp_path / "u.yaml"
    file.write_text(make(concept="concept: café ☕"), encoding="utf-8")
    assert load_recipe(file).concept == "café ☕"


# --- YAML safety -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
        "!!python/name:os.system",
    ],
)
def test_python_tags_are_rejected_and_not_executed(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    text = make(concept=f"concept: {tag.format(marker=marker)}")
    err = problems_of(text)
    assert fields_of(err) == [""]
    assert "not valid YAML" in err.problems[0][1]
    assert not marker.exists()


def test_python_tag_file_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    file = tmp_path / "evil.yaml"
    file.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(file)
    assert "not valid YAML" in str(info.value)
    assert not marker.exists()


# --- resolve_recipe --------------------------------------------------------------------


def test_resolve_by_path(tmp_path: Path) -> None:
    file = tmp_path / "mine.yaml"
    file.write_text(FULL, encoding="utf-8")
    assert resolve_recipe(file) == load_recipe(file)
    assert resolve_recipe(str(file)).name == "my-style"


def test_resolve_by_shipped_name() -> None:
    r = resolve_recipe("van-gogh")
    assert r.name == "van-gogh"
    assert r.kind == "style"
    assert len(r.pairs()) == 20
    assert r.pairs()[0] == ("a cat in the style of Van Gogh", "a photo of a cat")
    assert Path(r.source).resolve() == (RECIPES_DIR / "artists" / "van-gogh.yaml").resolve()


def test_resolve_path_to_shipped_file() -> None:
    r = resolve_recipe(RECIPES_DIR / "objects" / "church.yaml")
    assert r.name == "church"


def test_resolve_unknown_name_suggests() -> None:
    with pytest.raises(RecipeError) as info:
        resolve_recipe("van-gog")
    msg = str(info.value)
    assert "van-gog" in msg
    assert "did you mean" in msg
    assert "van-gogh" in msg
    assert "cpedit recipes list" in msg


def test_resolve_far_unknown_name_has_no_suggestion() -> None:
    with pytest.raises(RecipeError) as info:
        resolve_recipe("zzzzzzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert "cpedit recipes list" in str(info.value)


def test_resolve_invalid_file_reports_its_problems(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(make(kind="kind: bogus"), encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        resolve_recipe(file)
    assert fields_of(info.value) == ["kind"]


def test_resolve_passes_recipe_through() -> None:
    r = parse_recipe(FULL)
    assert resolve_recipe(r) is r


def test_builtin_recipe_files_lists_shipped_yaml() -> None:
    files = builtin_recipe_files()
    assert set(files) == {p.stem for p in RECIPES_DIR.rglob("*.yaml")}
    assert all(p.is_file() and p.suffix == ".yaml" for p in files.values())


def test_every_shipped_recipe_resolves_by_name() -> None:
    for name in builtin_recipe_files():
        recipe = resolve_recipe(name)
        assert isinstance(recipe, Recipe)
        assert recipe.name == name


# --- list_recipes ------------------------------------------------------------------------


def test_list_recipes_keeps_a_bad_file_among_good_ones(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(FULL, encoding="utf-8")
    (tmp_path / "b-bad.yaml").write_text(make(kind="kind: bogus"), encoding="utf-8")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c-good.yaml").write_text(FULL.replace("name: my-style", "name: other"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a recipe", encoding="utf-8")
    entries = list_recipes([tmp_path])
    assert [e.name for e in entries] == ["a-good", "b-bad", "c-good"]
    good, bad, nested = entries
    assert good.recipe == load_recipe(tmp_path / "a-good.yaml") and good.error is None and good.valid
    assert nested.recipe is not None and nested.recipe.name == "other"
    assert bad.recipe is None and not bad.valid
    assert isinstance(bad.error, RecipeError) and fields_of(bad.error) == ["kind"]
    assert bad.path == tmp_path / "b-bad.yaml"
    with pytest.raises(FrozenInstanceError):
        bad.name = "x"  # type: ignore[misc]


def test_list_recipes_defaults_to_the_shipped_ones() -> None:
    entries = list_recipes()
    assert {e.name: e.path for e in entries} == builtin_recipe_files()
    assert all(e.error is None and e.recipe is not None and e.recipe.name == e.name for e in entries)


def test_list_recipes_several_folders_and_files(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "x.yaml").write_text(FULL, encoding="utf-8")
    (two / "y.yaml").write_text("cpedit: [", encoding="utf-8")
    single = tmp_path / "z.yaml"
    single.write_text(FULL, encoding="utf-8")
    entries = list_recipes([two, one, single])
    assert [(e.name, e.valid) for e in entries] == [("y", False), ("x", True), ("z", True)]
    assert "not valid YAML" in str(entries[0].error)
    assert list_recipes([]) == []


def test_list_recipes_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CpeditError, match="no such folder"):
        list_recipes([tmp_path / "missing"])


def test_duplicate_key_is_an_error_not_last_wins() -> None:
    err = problems_of(make() + "concept: Something else\n")
    assert "given twice" in err.problems[0][1] and "'concept'" in err.problems[0][1]


def test_subjects_that_nothing_uses_are_an_error() -> None:
    err = problems_of(make(prompts='prompts:\n  subjects: [cat, dog]\n  target: "a photo"\n  base: "a sketch"'))
    assert err.problems[0][0] == "prompts.subjects"
    assert "neither target nor base uses" in err.problems[0][1]
