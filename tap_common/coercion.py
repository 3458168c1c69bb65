"""Export rows arrive as text (CSV cells, NDJSON strings); the schema says what they are.

``TypedRows`` is compiled once per stream from its JSON schema: for each ``integer``,
``number`` and ``boolean`` property, the converter of its text. A million-row export
goes through it, so a row costs one dict lookup per typed field and nothing else.

Strict (the default): a value that does not convert fails the run, naming the stream,
the export, the line and the value. Lenient: it becomes null (for files the vendor
fills loosely, such as the Marketplace catalog snapshot).
"""

from __future__ import annotations

import typing as t

from tap_common.errors import PayloadError

Converter = t.Callable[[t.Any], t.Any]

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def to_bool(value: t.Any) -> bool:
    """``true``/``false`` and their usual spellings (``t``, ``yes``, ``1`` …)."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


def lenient_int(value: t.Any) -> int | None:
    """A whole number, also written as ``3.0``; None for anything else."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


def lenient(convert: Converter) -> Converter:
    def converted_or_none(value: t.Any) -> t.Any:
        try:
            return convert(value)
        except (TypeError, ValueError):
            return None

    return converted_or_none


#: JSON Schema type -> (strict converter, lenient converter, what a failure says).
CONVERTERS: dict[str, tuple[Converter, Converter, str]] = {
    "integer": (int, lenient_int, "not a whole number"),
    "number": (float, lenient(float), "not a number"),
    "boolean": (to_bool, lenient(to_bool), "not true or false"),
}


def json_type(property_schema: t.Mapping[str, t.Any]) -> str | None:
    """The one non-null type of a property (``["integer", "null"]`` -> ``integer``)."""
    declared = property_schema.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or ())
    types = [name for name in types if name != "null"]
    return types[0] if len(types) == 1 else None


class TypedRows:
    """Converts the text values of rows to the types of a stream's schema."""

    def __init__(self, schema: t.Mapping[str, t.Any], *, strict: bool = True) -> None:
        fields = []
        for name, property_schema in schema.get("properties", {}).items():
            kind = json_type(property_schema)
            if kind in CONVERTERS:
                strict_convert, lenient_convert, failure = CONVERTERS[kind]
                fields.append((name, strict_convert if strict else lenient_convert, failure))
        #: (field, converter, what a failure says), in schema order.
        self.fields: tuple[tuple[str, Converter, str], ...] = tuple(fields)
        self._conversions = tuple((name, convert) for name, convert, _ in fields)
        self._failures = {name: failure for name, _, failure in fields}

    def rows(self, rows: t.Iterable[dict], *, where: str) -> t.Iterator[dict]:
        """Each row with its typed fields converted (in place); ``where`` (``<stream>:
        export <id>``) starts the message of a value that does not convert."""
        conversions = self._conversions
        if not conversions:
            yield from rows
            return
        for number, row in enumerate(rows, 1):
            try:
                for name, convert in conversions:
                    # Subscript, not .get(): a method call per field costs on a million rows.
                    if name in row:
                        value = row[name]
                        if value is not None:
                            row[name] = convert(value)
            except (TypeError, ValueError):
                msg = (f"{where}: line {number} has {name}={value!r}, "
                       f"{self._failures[name]}")
                raise PayloadError(msg) from None
            yield row

    def row(self, row: dict) -> dict:
        """One row converted in place (lenient use: no line to name)."""
        for name, convert in self._conversions:
            value = row.get(name)
            if value is not None:
                row[name] = convert(value)
        return row
