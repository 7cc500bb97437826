"""Every MQTT topic rule in one place, and the matcher.

Topic names (what a Send publishes to) and topic filters (what a Listen subscribes to) follow
MQTT 3.1.1 section 4.7 and MQTT 5 section 4.7: UTF-8, 1 to 65,535 bytes, no NUL character;
levels are separated by '/', may be empty and may hold spaces; case matters. A filter may use
'+' as a whole level and '#' as the whole last level; a name may use neither. A filter of the
form ``$share/GROUP/FILTER`` is a shared subscription (MQTT 5 section 4.8.2): GROUP is at least one
character without '/', '+' or '#', FILTER a whole filter; it delivers what FILTER matches.

Characters: MQTT forbids U+0000 and text that is not well-formed UTF-8 (a lone surrogate cannot be
encoded), and says the control characters U+0001..U+001F and U+007F..U+009F and the Unicode
non-characters (U+FDD0..U+FDEF and U+xFFFE, U+xFFFF in every plane) SHOULD NOT be used, a receiver
MAY close the connection. Mosquitto does close it (the whole connection, not just the message), so
we refuse all of them up front, as bad input, for names and filters alike.

Topics starting with '$' (``$SYS/...``) are names like any other, but a filter whose first level is
a wildcard does not match them (MQTT 4.7.2); Mosquitto also confirms a client's publish to ``$SYS``
and ``$share`` topics and drops it (an access rule, not a topic rule: not refused here, but a Send to
a '$' topic is warned about: :func:`reserved_topic_warning`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: Every MQTT string and binary field (topics, client ID, user name, password, will, properties)
#: carries a 16-bit length.
MAX_STRING_BYTES = 65_535
MAX_TOPIC_BYTES = MAX_STRING_BYTES
SHARE_PREFIX = "$share/"


#: Characters MQTT refuses in a UTF-8 string: NUL, C0/C1 controls, surrogates, non-characters
#: (see the module docstring).
_REFUSED = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17)) + "]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


class TextError(ValueError):
    """A text MQTT would carry breaks a rule; the message says which, in words."""


class TopicError(TextError):
    """A topic or filter breaks a rule; the message says which, in words."""


def check_string(text: str, what: str, error: type[TextError] = TextError) -> None:
    """Raise ``error`` unless MQTT can carry ``text`` as a UTF-8 string: no NUL, control character,
    non-character or lone surrogate (Mosquitto drops the connection), at most 65,535 bytes."""
    if not isinstance(text, str):
        raise error(f"the {what} must be text")
    if "\x00" in text:
        raise error(f"the {what} contains a NUL character, which MQTT does not allow")
    bad = refused_character(text)
    if bad is not None:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            kind = "a lone surrogate, which is not valid UTF-8 text"
        elif char <= "\x9f":
            kind = "a control character, which MQTT says not to use (brokers such as Mosquitto drop the connection)"
        else:
            kind = "a Unicode non-character, which MQTT says not to use (brokers such as Mosquitto drop the connection)"
        raise error(f"the {what} contains U+{ord(char):04X} at character {bad.start() + 1}: {kind}")
    _check_size(text, what, error)


def refused_character(text: str) -> re.Match[str] | None:
    """Where ``text`` holds the first character MQTT refuses in a UTF-8 string, or None."""
    return _REFUSED.search(text)


def wildcard_problem(topic_filter: str) -> str | None:
    """Why the wildcards of a (plain, not shared) filter break MQTT's rules [MQTT-4.7.1-2, -3], or None."""
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the whole last level (as in sensors/#)"
        if "+" in level and level != "+":
            return "'+' must be a whole level (as in sensors/+/temperature)"
    return None


def check_binary(data: str | bytes, what: str) -> None:
    """Raise TextError unless MQTT can carry ``data`` (text as UTF-8) as binary data: 65,535 bytes."""
    if isinstance(data, str):
        bad = _SURROGATE.search(data)
        if bad is not None:
            raise TextError(f"the {what} is not valid UTF-8 text (a lone surrogate at character {bad.start() + 1})")
    _check_size(data, what, TextError)


def _check_size(data: str | bytes, what: str, error: type[TextError]) -> None:
    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
    if size > MAX_STRING_BYTES:
        raise error(f"the {what} is {size:,} bytes long in UTF-8; MQTT allows at most {MAX_STRING_BYTES:,}")


def _check_common(text: str, what: str) -> None:
    if isinstance(text, str) and not text:
        raise TopicError(f"the {what} is empty: give at least one character")
    check_string(text, what, TopicError)


def check_topic_name(topic: str) -> None:
    """Raise TopicError unless ``topic`` can be published to."""
    _check_common(topic, "topic")
    if "+" in topic or "#" in topic:
        raise TopicError(f"the topic {topic!r} contains a wildcard: a message is published to one topic, "
                         "'+' and '#' are for Listen filters")


def reserved_topic_warning(topic: str) -> str | None:
    """What a person sending to ``topic`` should know when it starts with '$' (None otherwise)."""
    if not topic.startswith("$"):
        return None
    return (f"the topic {topic[:80]!r} starts with '$', which brokers reserve ($SYS, $share): Mosquitto confirms "
            "a message sent to $SYS/... or $share/... and drops it silently, and no subscription to '#' or '+/...' "
            "receives a '$' topic")


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``('group', 'filter')`` for ``$share/group/filter``, else ``(None, topic_filter)``."""
    if topic_filter.startswith(SHARE_PREFIX):
        group, _, rest = topic_filter[len(SHARE_PREFIX):].partition("/")
        return group, rest
    return None, topic_filter


def check_topic_filter(topic_filter: str) -> None:
    """Raise TopicError unless ``topic_filter`` can be subscribed to."""
    _check_common(topic_filter, "topic filter")
    group, plain = split_shared(topic_filter)
    if group is not None:
        if not group or "+" in group or "#" in group:
            raise TopicError(
                f"the shared subscription {topic_filter!r} needs a group name without '+' or '#': "
                "$share/GROUP/FILTER"
            )
        if not plain:
            raise TopicError(f"the shared subscription {topic_filter!r} has no filter after the group: $share/GROUP/FILTER")
        _check_common(plain, "topic filter")
    why = wildcard_problem(plain)
    if why is not None:
        raise TopicError(f"in the topic filter {topic_filter!r}, {why}")


def matches(topic_filter: str, topic: str) -> bool:
    """True when a message published on ``topic`` is delivered to a subscription on ``topic_filter``.

    Topics starting with '$' are not matched by a filter starting with a wildcard (MQTT 4.7.2).
    A shared subscription matches what its FILTER matches, '$' topics included as MQTT 5 says
    (Mosquitto 2.0 never delivers a '$' topic to ``$share/G/$...``: see tests/test_differential.py).
    """
    _, plain = split_shared(topic_filter)
    if topic.startswith("$") and plain[:1] in ("+", "#"):
        return False
    if "+" not in plain and "#" not in plain:
        return plain == topic
    f_levels = plain.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True  # '#' also matches the parent level: sensors/# matches sensors
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


class FilterSet:
    """Topic filters that say which of them a topic matches, in time that grows with the topic's
    levels and not with the number of filters (a Listen may hold 10,000: tried one by one, each
    message cost about 3 ms).

    Filters without wildcards sit in a set; the others in a tree of their levels, where '+' and
    '#' are children like any level. The rules are those of :func:`matches`: a '$' topic is not
    matched by a wildcard at the first level, and ``$share/GROUP/FILTER`` matches what FILTER
    matches.
    """

    __slots__ = ("_exact", "_tree", "_count")

    def __init__(self, filters: Iterable[str] = ()) -> None:
        self._exact: dict[str, list[str]] = {}  # plain filter -> the filters as given
        self._tree: _Level = _Level()
        self._count = 0
        for topic_filter in filters:
            self.add(topic_filter)

    def add(self, topic_filter: str) -> None:
        self._count += 1
        _, plain = split_shared(topic_filter)
        if "+" not in plain and "#" not in plain:
            self._exact.setdefault(plain, []).append(topic_filter)
            return
        level = self._tree
        for name in plain.split("/"):
            level = level.child(name)
        level.filters.append(topic_filter)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def match(self, topic: str) -> bool:
        """True when any of the filters matches ``topic``."""
        return topic in self._exact or (self._tree.children is not None and self._walk(topic, None))

    def matching(self, topic: str) -> list[str]:
        """The filters (as given) that match ``topic``."""
        found = list(self._exact.get(topic, ()))
        if self._tree.children is not None:
            self._walk(topic, found)
        return found

    def _walk(self, topic: str, found: list[str] | None) -> bool:
        """Whether a filter of the tree matches ``topic``: at the first one when ``found`` is None,
        else after adding every one to ``found``."""
        names = topic.split("/")
        last = len(names)
        dollar = topic.startswith("$")
        hit = False
        stack = [(self._tree, 0)]
        pop, push = stack.pop, stack.append
        while stack:
            level, i = pop()
            children = level.children
            if children is None:  # only filters end here
                if i == last:
                    if found is None:
                        return True
                    found.extend(level.filters)
                    hit = True
                continue
            wild = i or not dollar  # no wildcard at the first level of a '$' topic
            if wild and "#" in children:  # '#' also matches the parent level
                if found is None:
                    return True
                found.extend(children["#"].filters)
                hit = True
            if i == last:
                if level.filters:
                    if found is None:
                        return True
                    found.extend(level.filters)
                    hit = True
                continue
            below = children.get(names[i])
            if below is not None:
                push((below, i + 1))
            if wild:
                below = children.get("+")
                if below is not None:
                    push((below, i + 1))
        return hit


class _Level:
    """One level of a :class:`FilterSet`'s tree: the filters that end here, the levels below."""

    __slots__ = ("children", "filters")

    def __init__(self) -> None:
        self.children: dict[str, _Level] | None = None
        self.filters: list[str] = []

    def child(self, name: str) -> _Level:
        if self.children is None:
            self.children = {}
        level = self.children.get(name)
        if level is None:
            level = self.children[name] = _Level()
        return level


def operation_problems(operation: Mapping[str, Any]) -> list[str]:
    """The topic rules applied to an operation (the Options tab): ``"operation PATH: sentence"`` each."""
    topics = operation["topic"]
    if operation["action"] == "send":
        filters: list[str] = []
        checks = [("topic", topics, check_topic_name)]
        if operation.get("response_topic") is not None:  # a reply is published there
            checks.append(("response_topic", operation["response_topic"], check_topic_name))
    else:
        many = not isinstance(topics, str)
        filters = list(topics) if many else [topics]
        checks = [(f"topic/{i}" if many else "topic", f, check_topic_filter) for i, f in enumerate(filters)]
        if operation.get("dead_letter_topic") is not None:  # published to: a topic name
            checks.append(("dead_letter_topic", operation["dead_letter_topic"], check_topic_name))
    problems = [f"operation filter_qos/{name}: {name!r} is not one of the Listen's filters"
                for name in operation.get("filter_qos") or {} if name not in filters]
    for path, text, check in checks:
        try:
            check(text)
        except TopicError as exc:
            problems.append(f"operation {path}: {exc}")
    dead_letters = operation.get("dead_letter_topic")
    if filters and dead_letters is not None and not problems:
        # Each dead letter would come back as a message, fail, and be wrapped again. MQTT 5's no_local
        # keeps a connection's own messages away, except from shared subscriptions.
        own = [f for f in filters if not operation.get("no_local") or split_shared(f)[0] is not None]
        loop = next((f for f in own if matches(f, dead_letters)), None)
        if loop is not None:
            problems.append(f"operation dead_letter_topic: the Listen's filter {loop!r} matches the dead-letter "
                            f"topic {dead_letters!r}, so its dead letters would come back to it in a loop: "
                            "choose a dead-letter topic outside its filters (or, with MQTT 5, set no_local)")
    return problems
