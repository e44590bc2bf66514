"""The mask library: which masks fit which types, which is stricter, and how each renders.

Every mask renders as a sqlglot expression for Spark, Trino and DuckDB that yields the same
value in all three, and has a Python reference implementation (`reference`) the tests compare
against. Masks keep the column's type (so views have the base table's schema), except `hash`
(a hex string). NULL stays NULL except under `redact` (a constant hides nullness too).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import replace
from datetime import date, datetime
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any

from sqlglot import exp

from policies.keys import HmacPads
from policies.model import MaskSpec
from policies.schemas import family

REDACTED = "****"
RANK = {"none": 0, "bucket": 50, "year_only": 50, "show_first": 50, "show_last": 50, "hash": 80, "redact": 90,
        "null": 100}
DIALECTS = ("spark", "trino", "duckdb")


def applicable(kind: str, col_type: str) -> bool:
    """Whether a mask kind can be applied to a column of `col_type`."""
    fam = family(col_type)
    if kind in ("none", "null"):
        return True
    if kind in ("redact", "show_first", "show_last"):
        return fam == "string"
    if kind == "hash":
        return col_type in ("string", "int", "long")
    if kind == "year_only":
        return fam in ("date", "timestamp")
    if kind == "bucket":
        return fam == "number"
    return False


def strictest(masks: list[MaskSpec], col_type: str) -> tuple[MaskSpec, str | None]:
    """The most restrictive of `masks` for a column, and a note when masks had to be escalated.

    Masks that do not fit the type become null; incomparable partial masks (show_first vs
    show_last) become redact (strings) or null, so combining rules can never reveal more.
    """
    fitted = [m if applicable(m.kind, col_type) else replace(m, kind="null") for m in masks]
    note = None if len(fitted) == len(masks) and all(a is b for a, b in zip(fitted, masks, strict=True)) else (
        "a mask that does not fit the column type was replaced by null")
    top = max(RANK[m.kind] for m in fitted)
    best = [m for m in fitted if RANK[m.kind] == top]
    kinds = {m.kind for m in best}
    if len(kinds) > 1:
        kind = "redact" if family(col_type) == "string" else "null"
        return MaskSpec(kind, best[0].pos), f"incomparable masks {sorted(kinds)} combined into {kind}"
    first = best[0]
    if first.kind in ("show_first", "show_last"):
        return min(best, key=lambda m: m.n or 0), note
    if first.kind == "bucket":
        return max(best, key=lambda m: m.width or 0), note
    if first.kind == "hash" and len({m.key for m in best}) > 1:
        return min(best, key=lambda m: m.key or ""), "hash masks with different keys; the first key id wins"
    return first, note


def sql_type(col_type: str) -> exp.DataType:
    """sqlglot type for a canonical column type (renders per dialect)."""
    return _sql_type(col_type).copy()


@lru_cache(maxsize=256)
def _sql_type(col_type: str) -> exp.DataType:
    names = {"string": "TEXT", "long": "BIGINT", "int": "INT", "float": "FLOAT", "double": "DOUBLE",
             "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMPNTZ", "timestamptz": "TIMESTAMPTZ",
             "binary": "BINARY"}
    return exp.DataType.build(names.get(col_type, col_type.upper()))


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _num(value: int | Decimal) -> exp.Expression:
    return exp.Literal.number(str(value))


def _hmac_sql(value: exp.Expression, dialect: str, pads: HmacPads) -> exp.Expression:
    text = exp.Cast(this=value, to=sql_type("string"))
    if dialect == "trino":
        mac = _fn("HMAC_SHA256", _fn("TO_UTF8", text), _fn("FROM_HEX", exp.Literal.string(pads.key.hex())))
        return _fn("LOWER", _fn("TO_HEX", mac))
    ipad, opad = exp.Literal.string(pads.ipad.hex()), exp.Literal.string(pads.opad.hex())
    if dialect == "spark":
        inner = _fn("SHA2", _fn("CONCAT", _fn("UNHEX", ipad), _fn("ENCODE", text, exp.Literal.string("UTF-8"))),
                    _num(256))
        return _fn("SHA2", _fn("CONCAT", _fn("UNHEX", opad), _fn("UNHEX", inner)), _num(256))
    inner = _fn("SHA256", exp.DPipe(this=_fn("UNHEX", ipad), expression=_fn("ENCODE", text)))
    return _fn("SHA256", exp.DPipe(this=_fn("UNHEX", opad), expression=_fn("UNHEX", inner)))


def render(mask: MaskSpec, value: exp.Expression, col_type: str, dialect: str,
           pads: HmacPads | None = None) -> exp.Expression:
    """The masked value of `value` (a column expression) in `dialect`."""
    if not applicable(mask.kind, col_type):
        raise ValueError(f"mask {mask.label()} does not apply to {col_type}")
    kind = mask.kind
    if kind == "none":
        return value.copy()
    if kind == "null":
        return exp.Cast(this=exp.Null(), to=sql_type(col_type))
    if kind == "redact":
        return exp.Literal.string(REDACTED)
    is_null = exp.Is(this=value.copy(), expression=exp.Null())
    if kind in ("show_first", "show_last"):
        n = int(mask.n or 0)
        length = exp.Length(this=value.copy())
        if kind == "show_first":
            shown = exp.Concat(expressions=[exp.Substring(this=value.copy(), start=_num(1), length=_num(n)),
                                            exp.Literal.string(REDACTED)])
        else:
            start = exp.Add(this=exp.Sub(this=length.copy(), expression=_num(n)), expression=_num(1))
            shown = exp.Concat(expressions=[exp.Literal.string(REDACTED),
                                            exp.Substring(this=value.copy(), start=start)])
        return exp.Case(ifs=[exp.If(this=is_null, true=exp.Null()),
                             exp.If(this=exp.LTE(this=length, expression=_num(n)),
                                    true=exp.Literal.string(REDACTED))], default=shown)
    if kind == "hash":
        if pads is None:
            raise ValueError("hash mask needs a key")
        return _hmac_sql(value.copy(), dialect, pads)
    if kind == "year_only":
        if dialect == "trino":
            year_start: exp.Expression = exp.Cast(
                this=_fn("DATE_TRUNC", exp.Literal.string("year"), value.copy()), to=sql_type("date"))
        else:
            year_start = _fn("MAKE_DATE", exp.Year(this=value.copy()), _num(1), _num(1))
        return exp.Cast(this=year_start, to=sql_type(col_type))
    return _bucket(value.copy(), int(mask.width or 1), col_type)


def _integral_bucket(col_type: str) -> bool:
    """Whether a bucket of `col_type` fits a BIGINT: ints, longs and decimals with at most 18 integer digits.
    Those take the integer path; floats, doubles and wider decimals stay in double precision."""
    if col_type in ("int", "long"):
        return True
    if col_type.startswith("decimal"):
        precision, scale = (int(part) for part in col_type[len("decimal("):-1].split(","))
        return precision - scale <= 18
    return False


def _clamp(value: exp.Expression, ends: tuple[float, float]) -> exp.Expression:
    low, high = (exp.Cast(this=exp.Literal.number(repr(end)), to=sql_type("double")) for end in ends)
    return exp.Case(ifs=[exp.If(this=exp.LT(this=value.copy(), expression=low), true=low.copy()),
                         exp.If(this=exp.GT(this=value.copy(), expression=high), true=high.copy())],
                    default=value)


def _bucket(value: exp.Expression, width: int, col_type: str) -> exp.Expression:
    """floor(value / width) * width, the quotient floored in double precision in every engine and kept so the
    bucket stays inside the type (see bucket_ends).

    For integral buckets the multiple is taken as a BIGINT and cast to the column type from there: the cast
    of a double back to a decimal went through arbitrary-precision arithmetic per row in Spark and cost a
    masked analyst +31-34 % on aggregations; a BIGINT to a decimal is a scaled long. Same value either way.
    """
    as_double = exp.Cast(this=value, to=sql_type("double"))
    quotient: exp.Expression = exp.Cast(
        this=exp.Floor(this=exp.Div(this=as_double, expression=exp.Cast(this=_num(width), to=sql_type("double")))),
        to=sql_type("double"))
    if _integral_bucket(col_type):
        quotient = _clamp(quotient, quotient_ends(col_type, width))
        multiple: exp.Expression = exp.Mul(this=exp.Cast(this=quotient, to=sql_type("long")), expression=_num(width))
    else:
        multiple = exp.Mul(this=quotient, expression=exp.Cast(this=_num(width), to=sql_type("double")))
        ends = bucket_ends(col_type, width)
        if ends is not None:
            multiple = _clamp(multiple, ends)
        if col_type.startswith("decimal"):  # a whole double to decimal(38,0) is exact; DuckDB's straight cast
            multiple = exp.Cast(this=multiple, to=sql_type("decimal(38,0)"))  # scales in double first (lossy)
    return exp.Cast(this=multiple, to=sql_type(col_type))


def _type_range(col_type: str) -> tuple[Decimal, Decimal] | None:
    """The least and greatest value of a bounded numeric type (None for float and double)."""
    if col_type.startswith("decimal"):
        precision, scale = (int(p) for p in col_type[len("decimal("):-1].split(","))
        top = Decimal(10) ** (precision - scale) - Decimal(1).scaleb(-scale)
        return -top, top
    bits = {"int": 31, "long": 63}.get(col_type)
    return (Decimal(-(2**bits)), Decimal(2**bits - 1)) if bits else None


@lru_cache(maxsize=256)
def bucket_ends(col_type: str, width: int) -> tuple[float, float] | None:
    """The lowest and highest bucket a column of `col_type` can hold, as doubles inside the type.

    Buckets floor toward minus infinity, so the one of a value near the type's least value (-99999999.99 in
    decimal(10,2), width 100) starts below it and the cast back to the type fails — the whole query, in
    every engine; a long near its greatest value rounds above it in double. Such values take the outermost
    multiple of the width inside the type: still one value for the whole end bucket.
    """
    bounds = _type_range(col_type)
    if bounds is None:
        return None
    least, greatest = bounds
    step = Decimal(width)
    low = float((least / step).to_integral_value(rounding="ROUND_CEILING") * step)
    high = float((greatest / step).to_integral_value(rounding="ROUND_FLOOR") * step)
    while Decimal(low) < least:  # a double rounded outside the type: the next one inward
        low = math.nextafter(low, 0.0)
    while Decimal(high) > greatest:
        high = math.nextafter(high, 0.0)
    return low, high


@lru_cache(maxsize=256)
def quotient_ends(col_type: str, width: int) -> tuple[float, float]:
    """For an integral bucket: the least and greatest quotient whose BIGINT multiple of the width is inside
    the type, as whole doubles (so the CAST to BIGINT and the product are exact)."""
    bounds = _type_range(col_type)
    assert bounds is not None, col_type
    least, greatest = bounds
    step = Decimal(width)
    low = float((least / step).to_integral_value(rounding="ROUND_CEILING"))
    high = float((greatest / step).to_integral_value(rounding="ROUND_FLOOR"))
    while Decimal(low) * step < least:  # a double rounded outside: the next whole one inward
        low = float(math.ceil(math.nextafter(low, 0.0)))
    while Decimal(high) * step > greatest:
        high = float(math.floor(math.nextafter(high, 0.0)))
    return low, high

def reference(mask: MaskSpec, value: Any, col_type: str, pads: HmacPads | None = None) -> Any:
    """What `render` must produce, computed in Python (the tests' oracle)."""
    kind = mask.kind
    if kind == "none":
        return value
    if kind == "null":
        return None
    if kind == "redact":
        return REDACTED
    if value is None:
        return None
    if kind == "show_first":
        n = int(mask.n or 0)
        return REDACTED if len(value) <= n else value[:n] + REDACTED
    if kind == "show_last":
        n = int(mask.n or 0)
        return REDACTED if len(value) <= n else REDACTED + value[len(value) - n:]
    if kind == "hash":
        assert pads is not None
        return hmac.new(pads.key, str(value).encode(), hashlib.sha256).hexdigest()
    if kind == "year_only":
        start = date(value.year, 1, 1)
        return datetime(value.year, 1, 1, tzinfo=getattr(value, "tzinfo", None)) if col_type != "date" else start
    width = int(mask.width or 1)
    quotient = math.floor(float(value) / float(width))
    if not _integral_bucket(col_type):
        bucket = float(quotient) * float(width)
        ends = bucket_ends(col_type, width)
        if ends is not None:
            bucket = min(max(bucket, ends[0]), ends[1])
        return _as_decimal(int(bucket), col_type) if col_type.startswith(
            "decimal") else bucket
    low, high = quotient_ends(col_type, width)
    quotient = int(min(max(float(quotient), low), high))
    if col_type.startswith("decimal"):
        return _as_decimal(quotient * width, col_type)
    return quotient * width


def _as_decimal(whole: int, col_type: str) -> Decimal:
    """A whole number at the scale of a decimal type (up to decimal(38,s): wider than Python's default
    28-digit context)."""
    return Decimal(whole).quantize(Decimal(1).scaleb(-_scale(col_type)), context=_DECIMAL38)


_DECIMAL38 = Context(prec=40)


def _scale(col_type: str) -> int:
    return int(col_type.split(",")[1].rstrip(")"))
