"""Typed documents: frozen dataclasses that write themselves as JSON data and validate when read back.

The manifest, the profiler worker's result and the bench run file are each one :class:`Contract` subclass,
defined once and used by every reader and writer. ``from_dict`` checks every field against its annotation
(``str``, ``int``, ``float``, ``bool``, ``list``/``dict`` and their item types, ``X | None``, nested contracts;
``object``: any JSON value, taken as it is)
and raises :class:`~edgekit.errors.ContractError` naming the file and the field; ``to_dict`` refuses a float
that is not finite, so no NaN ever reaches a JSON file. Keys a newer edgekit adds are ignored on read.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any, TypeVar, Union

from .errors import ContractError

C = TypeVar("C", bound="Contract")
#: JSON data as ``json.loads`` gives it and ``json.dumps`` takes it: what a document's ``to_dict`` returns
Json = Union[None, bool, int, float, str, list["Json"], dict[str, "Json"]]
#: a JSON object (a table): ``to_dict``'s result
JsonDict = dict[str, Json]
_HINTS: dict[type, dict[str, object]] = {}


def _hints(cls: type) -> dict[str, object]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: object, tp: object, path: str) -> object:
    """``value`` converted to ``tp`` (nested contracts built, lists to tuples where declared), or ContractError."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, path)
            except ContractError as exc:
                errors.append(exc)
        raise errors[0] if errors else ContractError(f"{path} must not be null")
    if isinstance(tp, type) and issubclass(tp, Contract):
        return tp._from(value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ContractError(f"{path} is {value!r}; allowed: {', '.join(m.value for m in tp)}") from None
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ContractError(f"{path} must be a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_check(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ContractError(f"{path} must be a table, got {type(value).__name__}")
        args = typing.get_args(tp)
        item = args[1] if args else Any
        return {str(k): _check(v, item, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ContractError(f"{path} must be a number, got {value!r}"[:200])
        if not math.isfinite(value):
            raise ContractError(f"{path} is {value}, not a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{path} must be an integer, got {value!r}"[:200])
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ContractError(f"{path} must be {_type_name(tp)}, got {value!r}"[:200])
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # a bug in a contract definition, not bad input


def _plain(value: object, path: str) -> Json:
    if isinstance(value, Contract):
        return value.to_dict(path)
    if isinstance(value, float) and not math.isfinite(value):
        raise ContractError(f"{path} is {value}: refusing to write a non-finite number to JSON")
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


@dataclasses.dataclass(frozen=True)
class Contract:
    """Base class of edgekit's typed documents. Constructing one validates (and converts) every field too."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(
                self, f.name, _check(getattr(self, f.name), hints[f.name], f"{type(self).__name__}.{f.name}")
            )

    @classmethod
    def _from(cls: type[C], data: object, path: str) -> C:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise ContractError(f"{path or cls.__name__} must be a table, got {type(data).__name__}")
        hints = _hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            where = f"{path}.{f.name}" if path else f.name
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ContractError(f"missing field {where}")
                continue
            kwargs[f.name] = _check(data[f.name], hints[f.name], where)
        return cls(**kwargs)

    @classmethod
    def from_dict(cls: type[C], data: object, source: str = "") -> C:
        """Validate ``data`` and build the document.

        Raises:
            ContractError: a missing or mistyped field, named with ``source`` (the file it came from).
        """
        try:
            return cls._from(data, "")
        except ContractError as exc:
            if source:
                raise ContractError(f"{source}: {exc.message}", exc.hint or "rewrite it with this edgekit") from None
            raise

    def to_dict(self, path: str = "") -> JsonDict:
        """Plain JSON data; raises ContractError for a non-finite float."""
        return {
            f.name: _plain(getattr(self, f.name), f"{path}.{f.name}" if path else f.name)
            for f in dataclasses.fields(self)
        }

    def replace(self: C, **changes: object) -> C:
        return dataclasses.replace(self, **changes)
