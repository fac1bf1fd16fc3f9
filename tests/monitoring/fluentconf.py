"""A small structural parser of Fluentd configuration files (v1 syntax).

Enough to check a fluent.conf offline: directives (`<source>`, `<filter PATTERN>`,
`<match PATTERN>`, nested `<parse>`/`<buffer>`/`<record>`...) balanced, with their
parameters. Values are kept as written (quotes stripped); embedded Ruby is not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_OPEN = re.compile(r"^<\s*([\w.-]+)(?:\s+(.*?))?\s*>$")
_CLOSE = re.compile(r"^</\s*([\w.-]+)\s*>$")


class FluentConfError(ValueError):
    """The text is not a well-formed Fluentd configuration."""


@dataclass
class Directive:
    name: str
    arg: str = ""
    params: dict[str, str] = field(default_factory=dict)
    children: list[Directive] = field(default_factory=list)
    line: int = 0

    @property
    def type(self) -> str | None:
        return self.params.get("@type")

    def find(self, name: str) -> list[Directive]:
        """Direct children of a given directive name."""
        return [child for child in self.children if child.name == name]

    def walk(self) -> Iterator[Directive]:
        """This directive and all nested ones, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def parse(text: str) -> Directive:
    """Parse a configuration into a root Directive named "ROOT"; raises FluentConfError."""
    root = Directive("ROOT")
    stack = [root]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if match := _CLOSE.match(line):
            name = match.group(1)
            if len(stack) == 1:
                raise FluentConfError(f"line {number}: </{name}> closes nothing")
            if stack[-1].name != name:
                raise FluentConfError(
                    f"line {number}: </{name}> closes <{stack[-1].name}> "
                    f"opened on line {stack[-1].line}"
                )
            stack.pop()
        elif match := _OPEN.match(line):
            directive = Directive(match.group(1), (match.group(2) or "").strip(), line=number)
            stack[-1].children.append(directive)
            stack.append(directive)
        elif line.startswith("<"):
            raise FluentConfError(f"line {number}: malformed directive {line!r}")
        else:
            key, _, value = line.partition(" ")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if key in stack[-1].params:
                raise FluentConfError(f"line {number}: {key} set twice in <{stack[-1].name}>")
            stack[-1].params[key] = value
    if len(stack) > 1:
        raise FluentConfError(f"<{stack[-1].name}> opened on line {stack[-1].line} is not closed")
    return root


def tag_matches(pattern: str, tag: str) -> bool:
    """Fluentd's tag matching: `*` is one tag part, `**` zero or more, `{a,b}` either."""
    for alternative in pattern.split():
        regex = ""
        i = 0
        while i < len(alternative):
            if alternative.startswith("**", i):
                regex += r"(?:[^.]+(?:\.[^.]+)*)?"
                i += 2
            elif alternative[i] == "*":
                regex += r"[^.]+"
                i += 1
            elif alternative[i] == "{":
                end = alternative.index("}", i)
                regex += "(?:" + "|".join(map(re.escape, alternative[i + 1 : end].split(","))) + ")"
                i = end + 1
            else:
                regex += re.escape(alternative[i])
                i += 1
        # "a.**" also matches "a" itself.
        regex = regex.replace(r"\.(?:[^.]+(?:\.[^.]+)*)?", r"(?:\.[^.]+(?:\.[^.]+)*)?")
        if re.fullmatch(regex, tag):
            return True
    return False
