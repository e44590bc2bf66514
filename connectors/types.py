"""Iceberg column types downstream: declared types per database, and row values as typed parameters.

Change events carry JSON-ready values (`icetide.events`: decimals as exact strings, dates and times
as ISO-8601 text, binary as base64, NaN/±Infinity as strings). When the events' `RowSchema` is known,
the sink converts each value to the Python value of its Iceberg type (`converter`) and then to what
its database stores:

| Iceberg          | PostgreSQL                     | SQLite declared type | SQLite stores             |
|------------------|--------------------------------|----------------------|---------------------------|
| boolean          | boolean                        | BOOLEAN              | 0 / 1                     |
| int / long       | integer / bigint               | INTEGER / BIGINT     | integer                   |
| float / double   | real / double precision        | FLOAT / DOUBLE       | real (NaN, -0.0: text)    |
| decimal(p, s)    | numeric(p,s)                   | DECIMAL TEXT(p,s)    | exact text, scale s       |
| date             | date                           | DATE                 | `YYYY-MM-DD`              |
| time             | time(6)                        | TIME                 | `HH:MM:SS.ffffff`         |
| timestamp        | timestamp(6)                   | TIMESTAMP            | `YYYY-MM-DD HH:MM:SS.ffffff` |
| timestamptz      | timestamptz                    | TIMESTAMPTZ          | same in UTC + `+00:00`    |
| string           | text                           | TEXT                 | text                      |
| uuid             | uuid                           | UUID                 | canonical text            |
| binary, fixed[n] | bytea                          | BLOB, FIXED(n)       | blob                      |
| struct/list/map  | jsonb                          | JSON                 | JSON text (keys sorted)   |
| anything else    | text                           | TEXT                 | the JSON-ready value      |

SQLite keeps every value exact: a decimal is text in a column whose declared type contains `TEXT`
(TEXT affinity, so SQLite never turns it into a binary float), NaN and -0.0 are stored as text in
the REAL column (SQLite stores a NaN REAL as NULL and -0.0 as 0), and SQLite's date and time
functions read the temporal texts. `SqliteSink.read_rows` turns each stored value back into the
Python value of its declared type.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any

from icetide.errors import EventError

Convert = Callable[[Any], Any]
_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")
_FIXED = re.compile(r"fixed\[(\d+)\]")
_CONTEXT = decimal.Context(prec=100, traps=[decimal.InvalidOperation, decimal.Inexact])


def kind(iceberg: str) -> str:
    """The family of an Iceberg type string: its name, `decimal`, `fixed`, `nested` or `other`."""
    if iceberg in ("boolean", "int", "long", "float", "double", "date", "time", "timestamp", "timestamptz",
                   "string", "uuid", "binary"):
        return iceberg
    if _DECIMAL.fullmatch(iceberg):
        return "decimal"
    if _FIXED.fullmatch(iceberg):
        return "fixed"
    if iceberg.startswith(("struct<", "list<", "map<")):
        return "nested"
    return "other"


def decimal_of(iceberg: str) -> tuple[int, int]:
    found = _DECIMAL.fullmatch(iceberg)
    if not found:
        raise ValueError(f"not a decimal type: {iceberg}")
    return int(found.group(1)), int(found.group(2))


def covers(wide: str, narrow: str) -> bool:
    """True if a column of type `wide` holds every value of `narrow` unchanged (Iceberg's promotions)."""
    if wide == narrow:
        return True
    if (wide, narrow) in (("long", "int"), ("double", "float")):
        return True
    if kind(wide) == kind(narrow) == "decimal":
        (p1, s1), (p2, s2) = decimal_of(wide), decimal_of(narrow)
        return s1 == s2 and p1 >= p2
    return False


# -- JSON-ready (or already typed) value → the Python value of the Iceberg type --------------------
def _bad(iceberg: str, value: Any) -> EventError:
    shown = repr(value)
    return EventError(f"value {shown[:80]} is not a valid {iceberg}")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # SQLite's stored booleans (upgrades)
        return bool(value)
    raise _bad("boolean", value)


def _integer(bits: int) -> Convert:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    name = "int" if bits == 32 else "long"

    def convert(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value) and low <= int(value) <= high:
            return int(value)  # text columns of older icetide versions, upgraded in place
        raise _bad(name, value)

    return convert


def _floating(value: Any) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # "NaN", "Infinity", "-Infinity" (and text columns of older versions)
        try:
            return float(value)
        except ValueError:
            pass
    raise _bad("double", value)


def _decimal(precision: int, scale: int) -> Convert:
    exponent = decimal.Decimal(1).scaleb(-scale)
    name = f"decimal({precision}, {scale})"

    def convert(value: Any) -> decimal.Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | decimal.Decimal):
            raise _bad(name, value)
        try:
            number = decimal.Decimal(value).quantize(exponent, context=_CONTEXT)
        except decimal.DecimalException:
            raise _bad(name, value) from None
        if not number.is_finite() or len(number.as_tuple().digits) > precision:
            raise _bad(name, value)
        return number

    return convert


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _bad("date", value)


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.time) and value.tzinfo is None:
        return value
    if isinstance(value, str):
        try:
            parsed = dt.time.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed
    raise _bad("time", value)


def _datetime(value: Any, zoned: bool) -> dt.datetime:
    """Both `2024-01-01 01:00:00.123456Z` (Flink's JSON) and `2024-01-01T01:00:00.123456Z` (ISO)."""
    name = "timestamptz" if zoned else "timestamp"
    parsed: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise _bad(name, value)
    if not zoned:
        if parsed.tzinfo is not None:
            raise _bad(name, value)
        return parsed
    if parsed.tzinfo is None:  # a zoned column's value written without its zone: UTC, as icetide writes it
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        if isinstance(value, str):
            return uuid.UUID(value)
        if isinstance(value, bytes) and len(value) == 16:
            return uuid.UUID(bytes=value)
    except ValueError:
        pass
    raise _bad("uuid", value)


def _binary(length: int | None) -> Convert:
    name = "binary" if length is None else f"fixed[{length}]"

    def convert(value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            out = bytes(value)
        elif isinstance(value, str):
            try:
                out = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _bad(name, value) from None
        else:
            raise _bad(name, value)
        if length is not None and len(out) != length:
            raise _bad(name, value)
        return out

    return convert


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _bad("string", value)


def _nested(value: Any) -> Any:
    if isinstance(value, dict | list):
        return value
    raise _bad("nested value", value)


def _as_is(value: Any) -> Any:
    return value


def converter(iceberg: str) -> Convert:
    """JSON-ready (or already typed) value → the Python value of `iceberg`; EventError if it is not one.
    None is never passed (NULL stays NULL)."""
    family = kind(iceberg)
    if family == "decimal":
        return _decimal(*decimal_of(iceberg))
    if family == "fixed":
        found = _FIXED.fullmatch(iceberg)
        assert found is not None
        return _binary(int(found.group(1)))
    simple: dict[str, Convert] = {
        "boolean": _boolean, "int": _integer(32), "long": _integer(64), "float": _floating, "double": _floating,
        "date": _date, "time": _time, "timestamp": lambda v: _datetime(v, False),
        "timestamptz": lambda v: _datetime(v, True), "string": _string, "uuid": _uuid, "binary": _binary(None),
        "nested": _nested,
    }
    return simple.get(family, _as_is)


# -- PostgreSQL ---------------------------------------------------------------------------------
_PG = {"boolean": "boolean", "int": "integer", "long": "bigint", "float": "real", "double": "double precision",
       "date": "date", "time": "time(6) without time zone", "timestamp": "timestamp(6) without time zone",
       "timestamptz": "timestamp with time zone", "string": "text", "uuid": "uuid", "binary": "bytea",
       "fixed": "bytea", "nested": "jsonb", "other": "text"}


def pg_type(iceberg: str) -> str:
    """The PostgreSQL type, spelled as `format_type()` prints it (so declared types compare as text)."""
    family = kind(iceberg)
    if family == "decimal":
        precision, scale = decimal_of(iceberg)
        return f"numeric({precision},{scale})"
    return _PG[family]


# -- SQLite -------------------------------------------------------------------------------------
_SQLITE = {"boolean": "BOOLEAN", "int": "INTEGER", "long": "BIGINT", "float": "FLOAT", "double": "DOUBLE",
           "date": "DATE", "time": "TIME", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMPTZ", "string": "TEXT",
           "uuid": "UUID", "binary": "BLOB", "nested": "JSON", "other": "TEXT"}


def sqlite_type(iceberg: str) -> str:
    family = kind(iceberg)
    if family == "decimal":
        precision, scale = decimal_of(iceberg)
        return f"DECIMAL TEXT({precision},{scale})"
    if family == "fixed":
        found = _FIXED.fullmatch(iceberg)
        assert found is not None
        return f"FIXED({found.group(1)})"
    return _SQLITE[family]


def _store_float(value: float) -> float | str:
    """SQLite stores a NaN REAL as NULL and -0.0 as 0: those two are stored as text that SQLite does
    not take for a number (`nan`, and `-0x0.0p+0` — text `-0.0` would be converted back to 0)."""
    if math.isnan(value):
        return "nan"
    if value == 0.0 and math.copysign(1.0, value) < 0:
        return value.hex()
    return value


def _store_time(value: dt.time) -> str:
    return value.isoformat(timespec="microseconds")


def _store_datetime(value: dt.datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def _store_nested(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def sqlite_store(iceberg: str) -> Convert:
    """JSON-ready (or typed) value → what the SQLite column of `iceberg` stores."""
    convert = converter(iceberg)
    family = kind(iceberg)
    stores: dict[str, Convert] = {
        "float": _store_float, "double": _store_float, "decimal": lambda d: format(d, "f"),
        "date": dt.date.isoformat, "time": _store_time, "timestamp": _store_datetime,
        "timestamptz": _store_datetime, "uuid": str, "nested": _store_nested,
    }
    store = stores.get(family)
    if store is None:
        return convert
    finish = store
    return lambda value: finish(convert(value))


def _read_float(value: Any) -> Any:
    if isinstance(value, str):
        return float.fromhex(value) if "x" in value else float(value)
    return value


_READERS: dict[str, Convert] = {
    "BOOLEAN": bool, "JSON": json.loads, "FLOAT": _read_float, "DOUBLE": _read_float,
    "DATE": dt.date.fromisoformat, "TIME": dt.time.fromisoformat, "TIMESTAMP": dt.datetime.fromisoformat,
    "TIMESTAMPTZ": dt.datetime.fromisoformat, "UUID": uuid.UUID, "BLOB": bytes,
}


def sqlite_reader(declared: str) -> Convert | None:
    """Stored value → Python value for a column of this declared type (None: as stored)."""
    if declared.startswith("DECIMAL TEXT("):
        return decimal.Decimal
    if declared.startswith("FIXED("):
        return bytes
    return _READERS.get(declared)
