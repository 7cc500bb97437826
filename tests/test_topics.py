"""Topic names, topic filters and the matcher (connector/mqtt/topics.py) against MQTT 3.1.1 section 4.7."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.matcher import MQTTMatcher

from connector.mqtt.topics import (MAX_TOPIC_BYTES, FilterSet, TopicError, check_topic_filter, check_topic_name, matches,
                                   split_shared)

# -- names and filters ---------------------------------------------------------------------

VALID_BOTH = [
    "a",
    "sensors/a/temperature",
    "/",                      # a lone '/': two empty levels
    "/finance",               # a leading '/' makes an empty first level
    "finance/",
    "a//b",
    "sensors/smoke alarms/kitchen",
    " ",                      # spaces are ordinary characters
    "Sensors/A",
    "$SYS/broker/uptime",
    "température/ü/日本",
    "a" * MAX_TOPIC_BYTES,                                # 65,535 bytes
    "é" * (MAX_TOPIC_BYTES // 2) + "a",                   # 2-byte characters, 65,535 bytes
    "€" * (MAX_TOPIC_BYTES // 3),                         # 3-byte characters, 65,535 bytes
    "\U0001F600" * (MAX_TOPIC_BYTES // 4) + "abc",        # 4-byte characters, 65,535 bytes
]

# (text, words the error must contain) -- wrong for both a name and a filter
INVALID_BOTH = [
    ("", "empty"),
    ("a\x00b", "NUL"),
    ("\x00", "NUL"),
    ("a" * (MAX_TOPIC_BYTES + 1), "65,536 bytes"),
    ("é" * (MAX_TOPIC_BYTES // 2 + 1), "65,536 bytes"),             # only 32,768 characters
    ("€" * (MAX_TOPIC_BYTES // 3) + "a", "65,536 bytes"),
    ("\U0001F600" * (MAX_TOPIC_BYTES // 4 + 1), "65,536 bytes"),     # 16,384 characters
    ("\ud800", "UTF-8"),                                             # a lone surrogate cannot be encoded
]

VALID_FILTERS = [
    "#",
    "+",
    "+/+",
    "/+",
    "a/#",
    "a/+/c",
    "+/tennis/#",
    "sport/tennis/player1/#",
    "sensors/smoke alarms/#",
    "$SYS/#",
    "$share/group/a/b",
    "$share/group/#",
    "$share/group/+/temperature",
    "$share/g 1/a",            # a space is allowed in a group name
    "$share",                  # no '/' after it: an ordinary filter, not a shared subscription
    "$sharex/g/a",
    "+/+/+/#",
    "/#",
    "a" * (MAX_TOPIC_BYTES - 2) + "/#",
]

INVALID_FILTERS = [
    ("a/#/b", "'#' must be the whole last level"),
    ("#/a", "'#' must be the whole last level"),
    ("a#", "'#' must be the whole last level"),
    ("a/b#", "'#' must be the whole last level"),
    ("##", "'#' must be the whole last level"),
    ("a/#/", "'#' must be the whole last level"),
    ("a+", "'+' must be a whole level"),
    ("+a/b", "'+' must be a whole level"),
    ("a/++", "'+' must be a whole level"),
    ("a/b+/c", "'+' must be a whole level"),
    ("$share//a", "group name"),               # empty group
    ("$share/g+/a", "group name"),
    ("$share/+/a", "group name"),
    ("$share/g#/a", "group name"),
    ("$share/g", "no filter after the group"),  # no filter at all
    ("$share/g/", "no filter after the group"),
    ("$share/g/a/#/b", "'#' must be the whole last level"),
    ("$share/g/a+", "'+' must be a whole level"),
    ("$share/g/a\x00", "NUL"),
]

INVALID_NAMES = ["#", "+", "a/#", "a/+/c", "a+b", "a#b", "+/tennis", "$share/g/+"]


@pytest.mark.parametrize("topic", VALID_BOTH, ids=lambda t: repr(t[:30]) + f"({len(t)})")
def test_valid_names_and_filters(topic: str) -> None:
    check_topic_name(topic)
    check_topic_filter(topic)


@pytest.mark.parametrize(("topic", "words"), INVALID_BOTH, ids=lambda v: repr(v[:30]) if isinstance(v, str) else None)
def test_invalid_for_names_and_filters(topic: str, words: str) -> None:
    with pytest.raises(TopicError, match=re.escape(words)):
        check_topic_name(topic)
    with pytest.raises(TopicError, match=re.escape(words)):
        check_topic_filter(topic)


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    just_fits = "é" * (MAX_TOPIC_BYTES // 2) + "a"
    assert len(just_fits.encode("utf-8")) == 65_535
    check_topic_name(just_fits)
    too_long = just_fits + "a"
    assert len(too_long) == 32_769  # far fewer characters than the limit, yet too many bytes
    with pytest.raises(TopicError, match="65,536 bytes long in UTF-8; MQTT allows at most 65,535"):
        check_topic_name(too_long)


@pytest.mark.parametrize("value", [None, 7, b"a/b", ["a"]])
def test_not_text(value: object) -> None:
    with pytest.raises(TopicError, match="must be text"):
        check_topic_name(value)  # type: ignore[arg-type]
    with pytest.raises(TopicError, match="must be text"):
        check_topic_filter(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=lambda t: repr(t[:30]))
def test_valid_filters(topic_filter: str) -> None:
    check_topic_filter(topic_filter)


@pytest.mark.parametrize(("topic_filter", "words"), INVALID_FILTERS, ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_invalid_filters(topic_filter: str, words: str) -> None:
    with pytest.raises(TopicError, match=re.escape(words)) as info:
        check_topic_filter(topic_filter)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("topic", INVALID_NAMES)
def test_a_name_has_no_wildcards(topic: str) -> None:
    with pytest.raises(TopicError, match="wildcard"):
        check_topic_name(topic)


def test_split_shared() -> None:
    assert split_shared("$share/g/a/+") == ("g", "a/+")
    assert split_shared("$share/g/") == ("g", "")
    assert split_shared("a/b") == (None, "a/b")
    assert split_shared("$SHARE/g/a") == (None, "$SHARE/g/a")  # the prefix is case-sensitive


# -- the matcher -----------------------------------------------------------------------------

MATCHES = [
    # MQTT 3.1.1 section 4.7.1.2: the multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("sport/#", "sports", False),
    ("sport/#", "sport/", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    # 4.7.1.3: the single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+", "sport", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("+/tennis/#", "sport/golf", False),
    ("+/+/#", "a", False),
    ("a/+/#", "a/b", True),
    # 4.7.2: topics beginning with '$'
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/x", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/x", "$SYS/x", True),
    # 4.7.3: case-sensitive, spaces allowed, empty levels are levels
    ("ACCOUNTS", "accounts", False),
    ("Accounts payable", "Accounts payable", True),
    ("sensors/+/temperature", "Sensors/a/temperature", False),
    ("/finance", "finance", False),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/b", "a/b/", False),
    # no wildcard: exact equality only
    ("a/b", "a/b", True),
    ("a/b", "a/bc", False),
    # shared subscriptions deliver what their inner filter matches
    ("$share/g/sensors/+/temperature", "sensors/a/temperature", True),
    ("$share/g/sensors/+/temperature", "sensors/a/humidity", False),
    ("$share/g/#", "a/b", True),
    ("$share/g/#", "$SYS/x", False),
    ("$share/g/a/b", "a/b", True),
    ("$share/g/a/b", "$share/g/a/b", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    check_topic_filter(topic_filter)
    check_topic_name(topic)
    assert matches(topic_filter, topic) is expected


# -- property test against an independent reference ------------------------------------------

def reference_matches(topic_filter: str, topic: str) -> bool:
    """The spec read literally, through a regular expression."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    levels = topic_filter.split("/")
    multi = levels[-1] == "#"
    if multi:
        levels = levels[:-1]
    pattern = "/".join("[^/]*" if level == "+" else re.escape(level) for level in levels)
    if multi:
        pattern = ".*" if not levels else pattern + "(?:/.*)?"
    return re.fullmatch(pattern, topic, re.DOTALL) is not None


TOPIC_LEVELS = st.sampled_from(["a", "b", "", "A", "$x", "a b"])
FILTER_LEVELS = st.sampled_from(["a", "b", "", "A", "$x", "a b", "+"])

topics = st.lists(TOPIC_LEVELS, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=0, max_size=5))
    if not levels or draw(st.booleans()):
        levels.append("#")
    text = "/".join(levels) or "#"  # a filter holds at least one character
    if draw(st.integers(0, 4)) == 0:
        text = "$share/grp/" + text
    return text


@settings(max_examples=600, deadline=None)
@given(topic_filter=filters(), topic=topics)
def test_matches_agrees_with_the_reference(topic_filter: str, topic: str) -> None:
    check_topic_filter(topic_filter)
    check_topic_name(topic)
    assert matches(topic_filter, topic) is reference_matches(topic_filter, topic)


@settings(max_examples=300, deadline=None)
@given(topic=topics)
def test_a_topic_as_filter_matches_itself_and_hash_matches_all_but_dollar(topic: str) -> None:
    assert matches(topic, topic)
    assert matches("#", topic) is (not topic.startswith("$"))


def test_reference_is_not_trivial() -> None:
    # the reference itself must tell matches from non-matches, or the property test proves nothing
    assert reference_matches("sport/#", "sport") and not reference_matches("sport/#", "sports")
    assert reference_matches("+/+", "/finance") and not reference_matches("+", "/finance")
    assert not reference_matches("#", "$SYS/x") and reference_matches("$SYS/#", "$SYS/x")


# -- many filters at once: the index against the matcher and against paho's own ------------

def _paho_index(filters: list[str]) -> MQTTMatcher:
    matcher = MQTTMatcher()
    for topic_filter in filters:
        inner = split_shared(topic_filter)[1]
        try:
            same = matcher[inner]
        except KeyError:
            same = matcher[inner] = []
        same.append(topic_filter)
    return matcher


def test_the_index_agrees_with_the_matcher_on_the_spec_cases() -> None:
    for topic_filter, topic, expected in MATCHES:
        assert FilterSet([topic_filter]).match(topic) is expected, (topic_filter, topic)
    everything = FilterSet(f for f, _, _ in MATCHES)
    for _, topic, _ in MATCHES:
        assert sorted(everything.matching(topic)) == sorted(f for f, _, _ in MATCHES if matches(f, topic)), topic


def _random_filter(rng: random.Random, levels: list[str]) -> str:
    names = [rng.choice(levels + ["+"]) for _ in range(rng.randint(1, 5))]
    if len(names) > 1 and rng.random() < 0.2:  # not '#' alone: it would match nearly every topic
        names[-1] = "#"
    text = "/".join(names) or "#"
    return f"$share/g{rng.randint(1, 3)}/{text}" if rng.random() < 0.15 else text


def test_the_index_agrees_with_the_matcher_and_paho_over_many_random_filters() -> None:
    rng = random.Random(20261203)
    levels = ["a", "b", "c", "", "$x", "A", "a b", "é"]
    filters = [_random_filter(rng, levels) for _ in range(600)]
    filters += filters[:20]  # a filter given twice is matched twice, as given
    index, paho_index = FilterSet(filters), _paho_index(filters)
    assert len(index) == 620
    hits, pairs = 0, 0
    for _ in range(1500):
        topic = "/".join(rng.choice(levels + ["z"]) for _ in range(rng.randint(1, 6)))
        if not topic:
            continue
        expected = sorted(f for f in filters if matches(f, topic))
        by_paho = sorted(f for same in paho_index.iter_match(topic) for f in same)
        assert sorted(index.matching(topic)) == expected == by_paho, topic
        assert index.match(topic) is bool(expected), topic
        hits, pairs = hits + bool(expected), pairs + len(expected)
    # some topics matched no filter, most matched many: the comparison proved something
    assert 1500 - hits > 40 and pairs > 5 * hits > 5 * 1000


@settings(max_examples=300, deadline=None)
@given(some=st.lists(filters(), min_size=0, max_size=12), topic=topics)
def test_the_index_agrees_with_the_reference(some: list[str], topic: str) -> None:
    index = FilterSet(some)
    assert sorted(index.matching(topic)) == sorted(f for f in some if reference_matches(f, topic))
    assert index.match(topic) is any(reference_matches(f, topic) for f in some)


def test_an_empty_index_matches_nothing() -> None:
    empty = FilterSet()
    assert (len(empty), bool(empty), empty.match("a"), empty.matching("a")) == (0, False, False, [])


# -- the validator against an independent reference --------------------------------------------

def _refused_char(cp: int) -> bool:
    """MQTT 1.5.3 / 1.5.4: NUL, C0 and C1 controls, surrogates and non-characters (refused, see topics.py)."""
    return (cp <= 0x1F or 0x7F <= cp <= 0x9F or 0xD800 <= cp <= 0xDFFF or 0xFDD0 <= cp <= 0xFDEF
            or cp & 0xFFFE == 0xFFFE)


def reference_name_ok(text: str) -> bool:
    return (0 < len(text) and not any(_refused_char(ord(c)) for c in text)
            and len(text.encode("utf-8")) <= MAX_TOPIC_BYTES and "+" not in text and "#" not in text)


def _plain_filter_ok(text: str) -> bool:
    levels = text.split("/")
    return bool(text) and all(level in ("+", "#") or ("+" not in level and "#" not in level) for level in levels) \
        and "#" not in levels[:-1]


def reference_filter_ok(text: str) -> bool:
    if not text or any(_refused_char(ord(c)) for c in text) or len(text.encode("utf-8")) > MAX_TOPIC_BYTES:
        return False
    if text.startswith("$share/"):
        parts = text.split("/", 2)
        if len(parts) < 3:
            return False
        _, group, inner = parts
        return bool(group) and "+" not in group and "#" not in group and _plain_filter_ok(inner)
    return _plain_filter_ok(text)


PIECES = st.sampled_from(["a", "/", "/", "+", "#", "$", "$share/", "$SYS", "g", " ", "é", "日", "\U0001F600",
                          "\x00", "\x01", "\t", "\x1f", "\x7f", "\x85", "\x9f", "\xa0", "\ufdd0", "\ufdef", "\ufdf0",
                          "\ufffd", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff", "\ud800", "\udfff"])
texts = st.lists(PIECES, min_size=0, max_size=8).map("".join)
#: Mostly-valid texts, so that the acceptance side is exercised as much as the refusals.
clean_texts = st.lists(st.sampled_from(["a", "/", "+", "#", "$share/", "g", " ", "é"]), max_size=8).map("".join)


def _accepts(check: object, text: str) -> bool:
    try:
        check(text)  # type: ignore[operator]
    except TopicError as exc:
        assert str(exc) and "\n" not in str(exc)
        return False
    return True


@settings(max_examples=800, deadline=None)
@given(text=st.one_of(texts, clean_texts))
def test_validators_agree_with_the_reference(text: str) -> None:
    assert _accepts(check_topic_name, text) is reference_name_ok(text), repr(text)
    assert _accepts(check_topic_filter, text) is reference_filter_ok(text), repr(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=20)
       .filter(lambda t: not any(_refused_char(ord(c)) for c in t)))
def test_any_clean_text_is_a_valid_name_and_filter(text: str) -> None:
    check_topic_name(text)
    if not text.startswith("$share/"):
        check_topic_filter(text)


DISCOURAGED = [
    ("a\tb", "U+0009 at character 2: a control character"),
    ("a\nb", "U+000A"),
    ("\x1f", "U+001F"),
    ("a\x7f", "U+007F"),
    ("\x85", "U+0085"),
    ("x\x9f", "U+009F"),
    ("a\ufdd0", "U+FDD0 at character 2: a Unicode non-character"),
    ("\ufdef", "U+FDEF"),
    ("\ufffe", "U+FFFE"),
    ("\uffff", "U+FFFF"),
    ("\U0001fffe", "U+1FFFE"),
    ("\U0010ffff", "U+10FFFF"),
    ("\udfff", "lone surrogate"),
]


@pytest.mark.parametrize(("topic", "words"), DISCOURAGED, ids=lambda v: ascii(v) if isinstance(v, str) else None)
def test_control_characters_and_non_characters_are_refused(topic: str, words: str) -> None:
    for check in (check_topic_name, check_topic_filter):
        with pytest.raises(TopicError, match=re.escape(words)):
            check(topic)


@pytest.mark.parametrize("topic", ["\xa0", "a\ufdf0", "\ufffd", "\U0001F600", "\u200b"])
def test_characters_next_to_the_refused_ones_are_fine(topic: str) -> None:
    check_topic_name(topic)
    check_topic_filter(topic)


def test_the_validator_reference_is_not_trivial() -> None:
    assert reference_filter_ok("$share/g/a/#") and not reference_filter_ok("$share/g/")
    assert reference_filter_ok("+/a/#") and not reference_filter_ok("a/#/b") and not reference_filter_ok("a+")
    assert reference_name_ok("a b/é") and not reference_name_ok("a/+") and not reference_name_ok("a\x85")


# -- the schema says the same (what a runtime that only reads the schema gets) ---------------------

def _schema_accepts(action: str, topic: str) -> bool:
    import json
    from pathlib import Path

    from jsonschema import Draft202012Validator

    global _OPERATION_VALIDATOR
    if _OPERATION_VALIDATOR is None:
        path = Path(__file__).resolve().parent.parent / "schemas" / "operation.schema.json"  # the single copy
        _OPERATION_VALIDATOR = Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))
    return _OPERATION_VALIDATOR.is_valid({"action": action, "topic": topic})


_OPERATION_VALIDATOR = None


@settings(max_examples=500, deadline=None)
@given(text=clean_texts)
def test_the_operation_schema_agrees_with_the_topic_rules(text: str) -> None:
    # The schema cannot count UTF-8 bytes; apart from that it refuses exactly what topics.py refuses,
    # except a shared subscription whose filter is missing, which only topics.py sees.
    assert _schema_accepts("send", text) is _accepts(check_topic_name, text), repr(text)
    schema_ok, rules_ok = _schema_accepts("listen", text), _accepts(check_topic_filter, text)
    if schema_ok and not rules_ok:
        assert text.startswith("$share/") and split_shared(text)[1] == "", repr(text)
    else:
        assert schema_ok is rules_ok, repr(text)
