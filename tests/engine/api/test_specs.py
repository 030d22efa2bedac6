from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.specs import parse_garment
from engine.errors import InputError


@pytest.mark.parametrize(
    "text,path,category,start",
    [
        ("shirt.png", "shirt.png", None, 0.0),
        ("shirt.png:top", "shirt.png", "top", 0.0),
        ("a/b c/pants.PNG:Bottom", "a/b c/pants.PNG", "bottom", 0.0),
        ("my:odd.png:dress", "my:odd.png", "dress", 0.0),
        ("C:/garments/x.png", "C:/garments/x.png", None, 0.0),
        ("jupe.png:dress@2.5", "jupe.png", "dress", 2.5),
        ("jupe.png@4", "jupe.png", None, 4.0),
    ],
)
def test_garment_specs(text, path, category, start):
    spec = parse_garment(text, allow_time=True)
    assert (spec.path, spec.category, spec.start) == (Path(path), category, start)
    assert spec.role == (category or "unknown")


@pytest.mark.parametrize("text,message", [
    ("hat.png:hat", "unknown category 'hat'"),
    (":top", "no file given"),
    ("x.png@soon", "not a time"),
    ("x.png@-1", "0 or more"),
])
def test_bad_garment_specs(text, message):
    with pytest.raises(InputError, match=message):
        parse_garment(text, allow_time=True)


def test_time_is_not_parsed_where_not_allowed():
    assert parse_garment("photo@2x.png").path == Path("photo@2x.png")


@given(st.text(alphabet=st.characters(blacklist_characters=":@/\\\x00", blacklist_categories=("Cs",)), min_size=1)
       .filter(lambda s: s.strip() == s and s),
       st.sampled_from([None, "top", "bottom", "dress"]),
       st.one_of(st.none(), st.floats(min_value=0, max_value=1e4, allow_nan=False)))
def test_garment_spec_round_trip(name, category, start):
    text = name + (f":{category}" if category else "") + (f"@{start!r}" if start is not None else "")
    spec = parse_garment(text, allow_time=True)
    assert spec.path == Path(name)
    assert spec.category == category
    assert spec.start == (start or 0.0)
