"""Password and ACL files for the embedded broker, in Mosquitto's formats.

Password file (as ``mosquitto_passwd`` writes it): one ``USER:HASH`` a line, HASH either
``$7$ITERATIONS$SALT$HASH`` (PBKDF2-SHA512, Mosquitto 2.0) or ``$6$SALT$HASH`` (SHA-512 of the
password and the salt, Mosquitto 1.x), salt and hash in base64. Blank lines and ``#`` comments
are skipped.

ACL file (``man mosquitto.conf``, acl_file): ``topic [read|write|readwrite|deny] FILTER`` lines
before any ``user`` line apply to anonymous clients; after ``user NAME`` they apply to that user;
``pattern [read|write|readwrite|deny] FILTER`` lines apply to every client, with ``%u`` the user
name and ``%c`` the client ID. The access defaults to readwrite. A ``deny`` that matches wins; else
some rule must grant the access. Subscribing needs read access to the filter, publishing write
access to the topic, and each message is delivered only where the subscriber may read its topic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

READ, WRITE = 1, 2
_ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": 0}


class AuthFileError(ValueError):
    """A password or ACL file that cannot be used; the message names the file and line."""


def _lines(path: Path, what: str) -> list[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise AuthFileError(f"the {what} {path} does not exist") from None
    except UnicodeDecodeError:
        raise AuthFileError(f"the {what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise AuthFileError(f"cannot read the {what} {path}: {exc.strerror}") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _parse_hash(spec: str) -> tuple[str, int, bytes, bytes]:
    """(kind, iterations, salt, hash) of a Mosquitto password hash; ValueError if not one."""
    parts = spec.split("$")
    if len(parts) == 5 and parts[:2] == ["", "7"] and parts[2].isdigit() and int(parts[2]) > 0:
        return "pbkdf2", int(parts[2]), _b64(parts[3]), _b64(parts[4])
    if len(parts) == 4 and parts[:2] == ["", "6"]:
        return "sha512", 1, _b64(parts[2]), _b64(parts[3])
    raise ValueError(spec)


class Passwords:
    """The users of a Mosquitto password file."""

    def __init__(self, path: Path) -> None:
        self._users: dict[str, tuple[str, int, bytes, bytes]] = {}
        for number, line in _lines(path, "password file"):
            user, colon, spec = line.partition(":")
            try:
                if not colon or not user:
                    raise ValueError(line)
                self._users[user] = _parse_hash(spec)
            except (ValueError, binascii.Error):
                raise AuthFileError(f"the password file {path}, line {number}, is not USER:HASH as mosquitto_passwd "
                                    "writes it ($7$ or $6$ hashes)") from None

    def check(self, user: str | None, password: bytes | None) -> bool:
        entry = self._users.get(user) if user is not None else None
        # an unknown user costs the same hashing as a known one, so timing does not tell users apart
        kind, iterations, salt, expected = entry or ("pbkdf2", 101, b"\0" * 12, b"")
        given, password = password is not None, password or b""
        if kind == "pbkdf2":
            actual = hashlib.pbkdf2_hmac("sha512", password, salt, iterations)
        else:
            actual = hashlib.sha512(password + salt).digest()
        return entry is not None and given and hmac.compare_digest(actual, expected)


def _matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching, the filter's ``+`` and ``#`` against the topic's levels."""
    filter_levels, topic_levels = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels) or level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)


@dataclass
class _Rule:
    access: int
    topic: str


@dataclass
class Acl:
    """The rules of a Mosquitto ACL file."""

    anonymous: list[_Rule] = field(default_factory=list)
    users: dict[str, list[_Rule]] = field(default_factory=dict)
    patterns: list[_Rule] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Acl:
        acl = cls()
        rules = acl.anonymous
        for number, line in _lines(path, "ACL file"):
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            if keyword == "user" and rest:
                rules = acl.users.setdefault(rest, [])
                continue
            if keyword in ("topic", "pattern") and rest:
                access, _, topic = rest.partition(" ")
                if access in _ACCESS and topic.strip():
                    rule = _Rule(_ACCESS[access], topic.strip())
                else:
                    rule = _Rule(READ | WRITE, rest)
                (acl.patterns if keyword == "pattern" else rules).append(rule)
                continue
            raise AuthFileError(f"the ACL file {path}, line {number}, is not 'user NAME', "
                                "'topic [read|write|readwrite|deny] TOPIC' or 'pattern ...'")
        return acl

    def _rules(self, user: str | None, client_id: str) -> list[_Rule]:
        rules = list(self.anonymous if user is None else self.users.get(user, []))
        for pattern in self.patterns:
            if "%u" in pattern.topic and (user is None or any(c in user for c in "+#/")):
                continue  # no user name, or one that would act as a wildcard: the pattern does not apply
            if "%c" in pattern.topic and any(c in client_id for c in "+#/"):
                continue
            rules.append(_Rule(pattern.access, pattern.topic.replace("%u", user or "").replace("%c", client_id)))
        return rules

    def allowed(self, user: str | None, client_id: str, topic: str, access: int) -> bool:
        """May the client read (subscribe, receive) or write (publish) ``topic``? For a
        subscription ``topic`` is its filter, matched as a topic, as Mosquitto does."""
        rules = self._rules(user, client_id)
        if any(rule.access == 0 and _matches(rule.topic, topic) for rule in rules):
            return False
        return any(rule.access & access and _matches(rule.topic, topic) for rule in rules)
