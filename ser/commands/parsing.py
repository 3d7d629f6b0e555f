"""How a command line that cannot be parsed ends: the error first, then where to look.

argparse (and jsonargparse after it) prints the whole usage, ~60 lines for ``fit``, before the one
line that matters. ``ShortErrors.error`` (argparse's public hook for this) prints the ``error:``
line and one hint instead, and exits with argparse's status 2. jsonargparse's
``Parser key "data.batch_size":`` is said as the option the user typed, ``--data.batch_size:``,
and its eight lines for a value of none of an option's types become one (``--trainer.max_epochs:
expected int or null; given abc``). A key that comes from a ``-c`` config file, not the command
line, is said with the file that sets it (``--model.head_lrr: no such option (set in my.yaml)``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import yaml

_PARSER_KEY = re.compile(r'^Parser key "([^"]+)":')
# LightningCLI checks a subcommand's whole config in the main parser: its keys "fit.model.x".
_SUBCOMMAND_KEY = re.compile(r"^(?:fit|validate|test)\.")
_CLASS_PROBLEM = re.compile(r"^- Problem with given class_path '([\w.]+)':$")
_REQUIRED = "the following arguments are required: "
_REQUIRED_LINE = re.compile(rf"^({_REQUIRED})(.+)$", re.MULTILINE)
_UNION_FAILED = "Does not validate against any of the Union subtypes"
_EXPECTED = "- Expected a "
_UNRECOGNIZED = "unrecognized arguments: "
_WRONG_TYPE = re.compile(r"^Expected a (<class '[\w.]+'>)\. Got value: (.*)$")
# An option a config file gives that no class takes: of the subcommand, of a class, of a group.
_NOT_ACCEPTED = (
    re.compile(r"^Subcommand '\w+' does not accept option '([\w.]+)'$"),
    re.compile(r"^Option '([\w.]+)' is not accepted$"),
    re.compile(r"^Group '([\w.]+)' does not accept option '([\w.]+)'$"),
)
_NO_SUCH_OPTION = "no such option"
_OPTION = re.compile(r"--([\w.]+)")


class ShortErrors:
    """Mixed into a jsonargparse ``ArgumentParser`` (or a subclass): short parse errors.

    A parser that jsonargparse itself uses with ``exit_on_error=False`` (it tries one type after
    another and catches the error) keeps raising, as before.
    """

    # The arguments the last parse_args read: where the -c config files are named.
    given: ClassVar[tuple[str, ...]] = ()

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        ShortErrors.given = tuple(sys.argv[1:] if args is None else args)
        return super().parse_args(args, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        command = self.prog.replace(" [options]", "")
        message = _not_accepted(message) or message
        message = _PARSER_KEY.sub(lambda key: f"{_option(key.group(1))}:", message)
        message = _short_class_error(message) or _short_type_error(message)
        message = _REQUIRED_LINE.sub(_required_options, message)
        message = _with_config_file(message, ShortErrors.given)
        sys.stderr.write(f"error: {message}\n({command} --help lists the options)\n")
        self.exit(2)


class ShortArgumentParser(ShortErrors, argparse.ArgumentParser):
    """The standard library's parser with short errors: the light commands (``synth``, ``cache``,
    ``cv``, ``cv-summary``, ``compare``, ``export``), which start without jsonargparse."""


def _option(key: str) -> str:
    """A config key as the option a user types: ``model.backbone`` or the main parser's
    ``fit.model.backbone`` -> ``--model.backbone``."""
    return "--" + _SUBCOMMAND_KEY.sub("", key)


def _required_options(line: re.Match) -> str:
    """A "required:" line with the main parser's keys (``fit.model.backbone``) as options; names
    of other parsers (``--out``, a positional ``cv_dir``) as they are."""
    names = [_option(n) if _SUBCOMMAND_KEY.match(n) else n for n in line.group(2).split(", ")]
    return line.group(1) + ", ".join(names)


def _not_accepted(message: str) -> str | None:
    """One line for a config file's option that the subcommand or a class-typed option's class
    does not take (``--model.head_lrr: no such option``); None for any other message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    subcommand = _NOT_ACCEPTED[0].match(lines[0]) if lines else None
    if subcommand is not None and len(lines) == 1:
        return f"--{subcommand.group(1)}: {_NO_SUCH_OPTION}"
    # A class that is the option's only type: "--model.backbone:", its problem, the reason.
    if len(lines) == 3 and lines[0].endswith(":") and _CLASS_PROBLEM.match("- " + lines[1]):
        key = _PARSER_KEY.match(lines[0])
        option = _option(key.group(1)) if key else lines[0].removesuffix(":")
        class_path = _CLASS_PROBLEM.match("- " + lines[1]).group(1)
        name = _rejected_name(lines[2])
        if name is not None:
            return f"{option}.{name}: {_NO_SUCH_OPTION} (of {option}'s class {class_path})"
    return None


def _rejected_name(reason: str) -> str | None:
    """The option a class rejects (``loader.batchsize``) in jsonargparse's reason; else None."""
    for pattern in _NOT_ACCEPTED[1:]:
        match = pattern.match(reason)
        if match is not None:
            return ".".join(match.groups())
    return None


def _with_config_file(message: str, given: Sequence[str]) -> str:
    """``message`` with the config file that sets its option (the last ``-c`` file holding the
    key, where the command line does not give it), said after the first line."""
    found = _OPTION.search(message)
    if found is None:
        return message
    key = found.group(1)
    if any(word == f"--{key}" or word.startswith(f"--{key}=") for word in given):
        return message
    setting = [path for path in _config_files(given) if _sets(path, key.split("."))]
    if not setting:
        return message
    first, *rest = message.split("\n", 1)
    return "\n".join([f"{first} (set in {setting[-1]})", *rest])


def _config_files(given: Sequence[str]) -> list[Path]:
    """The ``-c``/``--config`` files among the arguments, in order."""
    files = []
    for before, word in zip(["", *given], given, strict=False):
        if before in ("-c", "--config"):
            files.append(Path(word))
        elif word.startswith("--config="):
            files.append(Path(word.removeprefix("--config=")))
    return [path for path in files if path.is_file()]


def _sets(path: Path, keys: list[str]) -> bool:
    """Whether the YAML file ``path`` sets the dotted ``keys`` (a class's ``init_args`` level
    skipped, as the option names it)."""
    try:
        node = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    for key in keys:
        if isinstance(node, dict) and key not in node:
            node = node.get("init_args")
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _short_class_error(message: str) -> str | None:
    """One line for a class-typed option (``--data``) whose class is given but one of its own
    options is not (``--data.root``, the most common slip), is misspelt
    (``--data.loader.batchsize``) or has a value it cannot take; else None.

    jsonargparse says it as ~10 lines: the union of the option's types (the class or null), the
    class's problem, and a dump of every value given.
    """
    lines = [line.strip() for line in message.splitlines()]
    if len(lines) < 2 or lines[1] != _UNION_FAILED or not lines[0].endswith(":"):
        return None
    problems = [i for i, line in enumerate(lines) if _CLASS_PROBLEM.match(line)]
    if len(problems) != 1:
        return None
    start = problems[0] + 1  # the class's problem: its lines up to null's "Expected a"
    end = next(
        (
            i
            for i, line in enumerate(lines[start:], start)
            if line == f"{_EXPECTED}<class 'NoneType'>"
        ),
        None,
    )
    if end is None:
        return None
    reason = [line for line in lines[start:end] if line]
    others = [line for line in lines[:start] + lines[end + 1 :] if line.startswith("- ")]
    if not reason or any(not _CLASS_PROBLEM.match(line) for line in others):
        return None  # another type than the class or null failed too
    option = lines[0].removesuffix(":")
    class_path = _CLASS_PROBLEM.match(lines[problems[0]]).group(1)
    if reason[0].startswith(_REQUIRED):
        names = ", ".join(f"{option}.{n}" for n in reason[0].removeprefix(_REQUIRED).split(", "))
        return f"{_REQUIRED}{names} (of {option}'s class {class_path})"
    if reason[0].startswith(_UNRECOGNIZED):
        given = reason[0].removeprefix(_UNRECOGNIZED).split()
        names = ", ".join(
            f"{option}.{word[2:].split('=')[0]}" for word in given if word[:2] == "--"
        )
        return f"{_UNRECOGNIZED}{names} (of {option}'s class {class_path})"
    rejected = _rejected_name(reason[0])
    if rejected is not None:
        return f"{option}.{rejected}: {_NO_SUCH_OPTION} (of {option}'s class {class_path})"
    key = _PARSER_KEY.match(reason[0])
    if key is None:
        return None
    details = [line.removeprefix("- ") for line in reason[1:]]
    wrong_type = [_WRONG_TYPE.match(detail) for detail in details]
    if details and all(wrong_type):
        expected = " or ".join(_type_name(match.group(1)) for match in wrong_type)
        return f"{option}.{key.group(1)}: expected {expected}; given {wrong_type[0].group(2)}"
    return f"{option}.{key.group(1)}: {'; '.join(details)}"


def _short_type_error(message: str) -> str:
    """One line for "a value of none of the option's types"; any other message as it is.

    Only when every type's error is "Expected a <type>" (a class path's error, several lines
    of its own, is kept whole).
    """
    lines = [line.strip() for line in message.splitlines()]
    if len(lines) < 2 or lines[1] != _UNION_FAILED:
        return message
    reasons = [line[2:] for line in lines if line.startswith("- ")]
    given = [
        line.removeprefix("Given value: ") for line in lines if line.startswith("Given value: ")
    ]
    if not given or not reasons or not all(r.startswith(_EXPECTED[2:]) for r in reasons):
        return message
    expected = " or ".join(_type_name(r.removeprefix(_EXPECTED[2:])) for r in reasons)
    return f"{lines[0]} expected {expected}; given {given[0]}"


def _type_name(text: str) -> str:
    """``<class 'int'>`` -> int, ``NoneType`` -> null, ``typing.Literal[...]`` -> one of [...]."""
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    return text.replace("NoneType", "null").replace("typing.Literal", "one of ")
