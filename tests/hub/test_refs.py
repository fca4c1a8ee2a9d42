"""``hub:`` references: one type for recipes and prompt sets, written back as parsed, hostile text refused."""

from __future__ import annotations

import re

import pytest

from cpedit.errors import CpeditError
from cpedit.hub.refs import HUB_PREFIX, MAX_REF_CHARS, HubRef, HubRefError, is_hub_ref


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("hub:acme/recipes/van-gogh.yaml", "recipe", HubRef("acme/recipes", "van-gogh.yaml")),
        ("hub:acme/r/a/b.yml@v1", "recipe", HubRef("acme/r", "a/b.yml", "v1")),
        ("hub:acme/r/x.yaml@refs/pr/4", "recipe", HubRef("acme/r", "x.yaml", "refs/pr/4")),
        ("hub:AIML-TUDA/i2p", "prompts", HubRef("AIML-TUDA/i2p", repo_type="dataset")),
        ("hub:AIML-TUDA/i2p@main", "prompts", HubRef("AIML-TUDA/i2p", None, "main", "dataset")),
        ("hub:a/b/sub/my prompts.csv@" + "0" * 40, "prompts", HubRef("a/b", "sub/my prompts.csv", "0" * 40, "dataset")),
    ],
)
def test_parse_and_str_round_trip(text: str, kind: str, expected: HubRef) -> None:
    parsed = HubRef.parse(text, kind=kind)  # type: ignore[arg-type]
    assert parsed == expected
    assert str(parsed) == text
    assert HubRef.parse(str(parsed), kind=kind) == parsed  # type: ignore[arg-type]
    assert is_hub_ref(text) and text.startswith(HUB_PREFIX)


@pytest.mark.parametrize(
    ("text", "kind", "problem"),
    [
        ("acme/r/x.yaml", "recipe", "does not start with hub:"),
        ("hub:just-a-name", "prompts", "names no repo"),
        ("hub:/b/x.csv", "prompts", "names no repo"),
        ("hub:a//x.csv", "prompts", "names no repo"),
        ("hub:acme/r", "recipe", "names no file"),
        ("hub:acme/r/x.txt", "recipe", "not .yaml or .yml"),
        ("hub:acme/r/../x.yaml", "recipe", "'..' part"),
        ("hub:acme/r/a/../../x.yaml", "recipe", "'..' part"),
        ("hub:a/b/../c.csv", "prompts", "'..' part"),
        ("hub:a/b/./c.csv", "prompts", "'..' part"),
        ("hub:a/b//c.csv", "prompts", "empty"),
        ("hub:a/b/", "prompts", "empty"),
        ("hub:a/b/dir\\c.csv", "prompts", "backslash"),
        ("hub:a/b/ c.csv", "prompts", "starts or ends with a space"),
        ("hub:a/b@", "prompts", "nothing follows @"),
        ("hub:a/b@v1@v2", "prompts", "more than one @"),
        ("hub:a/b@../main", "prompts", "not a branch, tag or commit"),
        ("hub:a/b@-rf", "prompts", "not a branch, tag or commit"),
        ("hub:a/b@main/", "prompts", "not a branch, tag or commit"),
        ("hub:a/b@ma in", "prompts", "not a branch, tag or commit"),
        ("hub:a/b@main\x1b[2J", "prompts", "control or invisible"),
        ("hub:a/b/x\u202e.csv", "prompts", "control or invisible"),
        ("hub:a/b/x\n.csv", "prompts", "control or invisible"),
        ("hub:a/b/x\u00a0.csv", "prompts", "control or invisible"),
        ("hub:a--b/c", "prompts", "not a valid Hub repo id"),
        ("hub:a/b..c", "prompts", "not a valid Hub repo id"),
        ("hub:-a/b", "prompts", "not a valid Hub repo id"),
        ("hub:a b/c/x.yaml", "recipe", "not a valid Hub repo id"),
        ("hub:a/" + "b" * 200, "prompts", "not a valid Hub repo id"),
        ("hub:a/b/" + "c" * MAX_REF_CHARS + ".csv", "prompts", f"longer than {MAX_REF_CHARS} characters"),
    ],
)
def test_malformed_references_are_refused_saying_why(text: str, kind: str, problem: str) -> None:
    with pytest.raises(HubRefError) as info:
        HubRef.parse(text, kind=kind)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, CpeditError) and error.reason == "invalid"
    assert problem in error.problem and error.ref == text and error.kind == kind
    assert error.argument == ("recipes" if kind == "recipe" else "prompts")
    message = str(error)
    what = "Hub recipe reference" if kind == "recipe" else "Hub prompt set"
    assert f"is not a {what}: " in message and f"; write {error.form}" in message
    assert not re.search(r"(?<![\w-])--[a-z]", message)  # a library message names no CLI flag
    assert "\x1b" not in message and "\u202e" not in message and "\n" not in message  # shown escaped
    assert len(message) < 1000  # a long reference is shown cut short


def test_the_form_says_how_to_write_each_kind() -> None:
    with pytest.raises(HubRefError) as recipe:
        HubRef.parse("hub:acme", kind="recipe")
    assert recipe.value.form == "hub:NAMESPACE/NAME/path/to/recipe.yaml, optionally with @REVISION"
    with pytest.raises(HubRefError) as prompts:
        HubRef.parse("hub:acme", kind="prompts")
    assert "hub:OWNER/NAME (a dataset repo, such as hub:AIML-TUDA/i2p)" in prompts.value.form


def test_is_hub_ref() -> None:
    assert is_hub_ref("hub:a/b") and not is_hub_ref("a/b") and not is_hub_ref(None) and not is_hub_ref(b"hub:a/b")
