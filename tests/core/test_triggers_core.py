"""Incoming triggers in the pure core: tokens and templates."""

from __future__ import annotations

import pytest

from crewyard.core.triggers import (
    InvalidTemplate,
    apply_template,
    check_template,
    looks_like_token,
    new_token,
    token_hash,
)


def test_tokens_are_long_random_and_stored_only_as_hashes():
    a, b = new_token(), new_token()
    assert a != b and looks_like_token(a) and len(a) == 43
    assert token_hash(a) != a and len(token_hash(a)) == 64
    assert not looks_like_token("short") and not looks_like_token("x" * 42 + "/")


def test_templates_pick_fields_from_the_body():
    body = {"repository": {"full_name": "acme/app"}, "ref": "refs/heads/main", "commits": [{"id": "c1"}]}
    template = check_template(
        {"repo": "$.repository.full_name", "branch": "$.ref", "first": "$.commits.0.id"}
    )
    template["source"] = "github"
    template["missing"] = "$.nope.deeper"
    assert apply_template(template, body) == {
        "repo": "acme/app",
        "branch": "refs/heads/main",
        "first": "c1",
        "source": "github",
        "missing": None,
    }
    assert apply_template(None, body) is body
    assert apply_template({"all": "$"}, body) == {"all": body}
    # Only ASCII digits index a list (superscript two is a digit to str.isdigit, not to int()).
    for odd in ("$.commits.²", "$.commits.\u0661", "$.commits." + "9" * 5000, "$.commits.-1"):
        assert apply_template({"x": odd}, body) == {"x": None}, odd
    with pytest.raises(InvalidTemplate):
        check_template({"x": "$repository"})
