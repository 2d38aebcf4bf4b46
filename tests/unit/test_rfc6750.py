"""WWW-Authenticate parsing: the forms real servers send, and no input that makes it raise."""

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcprelay.oauth.rfc6750 import Challenge, bearer_challenge, parse_www_authenticate


def test_bearer_with_quoted_params() -> None:
    [c] = parse_www_authenticate(
        'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", scope="files:read"'
    )
    assert c.scheme == "bearer"
    assert c.resource_metadata == "https://mcp.example.com/.well-known/oauth-protected-resource"
    assert c.scope == "files:read" and c.error is None


def test_several_challenges_in_one_header_with_commas_and_escapes_inside_quotes() -> None:
    header = (
        'Newauth realm="apps", type=1, title="Login to \\"apps\\", please",'
        ' Basic realm="simple", Bearer error="invalid_token", error_description="a, b"'
    )
    challenges = parse_www_authenticate(header)
    assert [c.scheme for c in challenges] == ["newauth", "basic", "bearer"]
    assert challenges[0].params == {"realm": "apps", "type": "1", "title": 'Login to "apps", please'}
    assert challenges[2].error == "invalid_token" and challenges[2].error_description == "a, b"


def test_several_headers() -> None:
    challenges = parse_www_authenticate(['Basic realm="x"', 'Bearer scope="a b"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[1].scope == "a b"


def test_case_insensitive_scheme_and_names_and_odd_spacing() -> None:
    [c] = parse_www_authenticate('  BEARER   Scope = "read"  ,RESOURCE_METADATA=  "https://x/y" ,,  ')
    assert c.scheme == "bearer" and c.scope == "read" and c.resource_metadata == "https://x/y"


def test_unquoted_url_values() -> None:
    [c] = parse_www_authenticate("Bearer resource_metadata=https://h:8443/.well-known/x?a=b, scope=read")
    assert c.resource_metadata == "https://h:8443/.well-known/x?a=b" and c.scope == "read"


def test_token68() -> None:
    challenges = parse_www_authenticate("Negotiate YIIBhgYGKwYBBQUCoIIBejCC==, Bearer realm=x")
    assert challenges[0] == Challenge("negotiate", {}, token68="YIIBhgYGKwYBBQUCoIIBejCC==")
    assert challenges[1] == Challenge("bearer", {"realm": "x"})


def test_bare_schemes_and_first_duplicate_wins() -> None:
    challenges = parse_www_authenticate("Bearer, Basic, Bearer scope=a, scope=b")
    assert [c.scheme for c in challenges] == ["bearer", "basic", "bearer"]
    assert challenges[2].scope == "a"


def test_empty_values_read_as_absent() -> None:
    [c] = parse_www_authenticate('Bearer scope="", error=""')
    assert c.scope is None and c.error is None


@pytest.mark.parametrize(
    "garbage",
    ["", ",,,", '"', '"unterminated', "=", "Bearer =", 'Bearer realm="x', "Bearer realm=x junk, scope=y", "\x00\n\r"],
)
def test_garbage_is_tolerated(garbage: str) -> None:
    assert isinstance(parse_www_authenticate(garbage), list)


def test_unterminated_quote_keeps_what_was_there() -> None:
    [c] = parse_www_authenticate('Bearer scope="a b')
    assert c.scope == "a b"


def test_bearer_challenge_from_httpx_headers_mapping_and_values() -> None:
    headers = httpx2.Headers([("WWW-Authenticate", 'Basic realm="r"'), ("www-authenticate", "Bearer scope=s")])
    found = bearer_challenge(headers)
    assert found is not None and found.scope == "s"
    mapped = bearer_challenge({"WWW-Authenticate": "Bearer error=invalid_token"})
    assert mapped is not None and mapped.error == "invalid_token"
    assert bearer_challenge(['Basic realm="x"']) is None
    assert bearer_challenge("bearer") == Challenge("bearer", {})
    assert bearer_challenge({}) is None


@settings(max_examples=500)
@given(st.one_of(st.text(), st.lists(st.text(), max_size=4)))
def test_never_raises(value: str | list[str]) -> None:
    result = parse_www_authenticate(value)
    assert all(isinstance(c, Challenge) for c in result)
    bearer_challenge(value)


_TCHARS = "!#$%&'*+-.^_`|~abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=12)
# qdtext/quoted-pair: anything printable, including quotes, backslashes and commas (no controls).
_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)
_challenges = st.tuples(_tokens, st.dictionaries(_tokens.map(str.lower), _values, max_size=4))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=300)
@given(st.lists(_challenges, min_size=1, max_size=4), st.sampled_from([",", ", ", " ,  "]))
def test_round_trip_of_well_formed_challenges(challenges: list[tuple[str, dict[str, str]]], sep: str) -> None:
    header = sep.join(
        scheme + (" " + sep.join(f"{k}={_quote(v)}" for k, v in params.items()) if params else "")
        for scheme, params in challenges
    )
    parsed = parse_www_authenticate(header)
    assert [(c.scheme, c.params) for c in parsed] == [(s.lower(), p) for s, p in challenges]
