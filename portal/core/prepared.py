"""Queries whose SQL Django compiles once per process, not on every request.

Django compiles a queryset's SQL each time it is evaluated. For a query that every
request makes, such as the API token lookup (the token, its user, the user's staff row and
member: four joined tables, ~40 columns), compiling cost more CPU than the database took
to answer: 1.3 ms of the lookup's 2.0 ms on the load bench's machine (docs/load.md).

``PreparedLookup`` compiles the queryset once per database (alias and vendor) with a
marker in place of the value that varies, then on each call runs that SQL with the value
and builds the instances as Django's ``ModelIterable`` does: the same converters, the same
``select_related`` population (a missing reverse one-to-one reads as absent). Nothing is
cached but the SQL and how to read its row: every call queries the database.

``PreparedRows`` reads a page of a ``values()`` queryset that is the same for every
caller (the catalogue, the proposals a member sees); ``PreparedMatches`` reads the rows
of one whose column is among a page's keys (the votes of a page's proposals).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import NotSupportedError, connections
from django.db.models import CharField, F, Func, Model, QuerySet, Value
from django.db.models.lookups import In
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]

M = TypeVar("M", bound=Model)

#: stands for the varying value while the SQL is compiled; found again among its parameters
MARK = "\x00prepared-lookup-value\x00"


@dataclass(frozen=True)
class _Plan:
    sql: str
    params: tuple[Any, ...]
    position: int  # of the value among the parameters
    model: type[Model]
    fields: tuple[int, int]  # the model's own columns in the row: [start, end)
    init_list: list[str]
    populators: list[Any]
    converters: dict[int, tuple[list[Callable[..., Any]], Any]]


class PreparedLookup(Generic[M]):
    """``build(value)[:1]``'s first row, compiled once per database.

    ``build`` takes the varying value and answers the queryset; it is called once per
    database, with a marker, and must use the value exactly once, as a parameter of a
    filter (``ApiToken.objects.filter(key_hash=value)``).
    """

    def __init__(self, build: Callable[[Any], QuerySet[M]]) -> None:
        self._build = build
        self._template: QuerySet[M] | None = None  # build(MARK): which database, per call
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._lock = threading.Lock()

    def first(self, value: Any) -> M | None:
        queryset = self._template
        if queryset is None:
            queryset = self._template = self._build(MARK)
        alias = queryset.db  # the router's answer
        connection = connections[alias]
        plan = self._plans.get((alias, connection.vendor))
        if plan is None:
            with self._lock:
                plan = self._plans.get((alias, connection.vendor)) or self._plan(queryset)
                self._plans[(alias, connection.vendor)] = plan
        params = list(plan.params)
        params[plan.position] = value
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if plan.converters:
            row = list(row)
            for index, (converters, expression) in plan.converters.items():
                for convert in converters:
                    row[index] = convert(row[index], expression, connection)
        start, end = plan.fields
        obj = plan.model.from_db(alias, plan.init_list, row[start:end])
        for populator in plan.populators:
            populator.populate(row, obj)
        return obj  # type: ignore[return-value]

    def _plan(self, queryset: QuerySet[M]) -> _Plan:
        # What ModelIterable reads from the compiler, kept (django/db/models/query.py).
        compiler = queryset[:1].query.get_compiler(using=queryset.db)
        sql, params = compiler.as_sql()
        positions = [i for i, p in enumerate(params) if p == MARK]
        if len(positions) != 1:
            raise ValueError(f"the lookup must use its value once as a parameter: {sql}")
        select, klass_info = compiler.select, compiler.klass_info
        if compiler.annotation_col_map or queryset._known_related_objects:  # type: ignore[attr-defined]
            raise ValueError("a prepared lookup reads models only, no annotations")
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Plan(
            sql=sql,
            params=tuple(params),
            position=positions[0],
            model=klass_info["model"],
            fields=(start, end),
            init_list=[s[0].target.attname for s in select[start:end]],
            populators=get_related_populators(klass_info, select, queryset.db),
            converters=compiler.get_converters([s[0] for s in select[: compiler.col_count]]),
        )


class PreparedRows:
    """A ``values()`` queryset's rows, sliced as a paginator slices them, from SQL that
    Django compiles once per database instead of on every request (the catalogue's, three
    joined tables and a subquery, cost a sixth of its route's CPU to compile).

    The queryset must be the same for every caller (no per-request filter): its SQL and
    parameters are kept; a slice adds ``LIMIT``/``OFFSET`` and each row is read as
    Django's ``ValuesIterable`` reads it (the same converters). ``count()`` is the
    queryset's own.
    """

    ordered = True  # for Django's paginator: the queryset must be ordered (checked below)

    def __init__(self, queryset: QuerySet[Any]) -> None:
        if not queryset.ordered or queryset._iterable_class.__name__ != "ValuesIterable":  # type: ignore[attr-defined]
            raise ValueError("prepared rows read an ordered values() queryset")
        self._queryset = queryset
        self._plans: dict[tuple[str, str], tuple[str, tuple[Any, ...], list[str], Any]] = {}
        self._lock = threading.Lock()

    def count(self) -> int:
        return self._queryset.all().count()

    def __getitem__(self, window: slice) -> list[dict[str, Any]]:
        if not isinstance(window, slice) or window.step is not None:
            raise TypeError("prepared rows are read a page at a time: rows[start:stop]")
        start, stop = window.start or 0, window.stop
        if start < 0 or stop is None or stop < start:
            raise ValueError("a page of prepared rows is rows[start:stop], 0 <= start <= stop")
        if stop == start:
            return []
        alias = self._queryset.db
        connection = connections[alias]
        key = (alias, connection.vendor)
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key) or self._plan(alias)
                self._plans[key] = plan
        sql, params, names, converters = plan
        limit = connection.ops.limit_offset_sql(start, stop)
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} {limit}", params)
            rows = cursor.fetchall()
        return _dicts(rows, names, converters, connection)

    def _plan(self, alias: str) -> tuple[str, tuple[Any, ...], list[str], Any]:
        return _values_plan(self._queryset, alias)


class PreparedMatches:
    """The rows of a ``values()`` queryset whose ``column`` is one of the given keys, in the
    queryset's order, from SQL compiled once per database: the votes of a page's proposals
    in one query (``= ANY(%s)`` on PostgreSQL: one parameter, so one SQL text whatever the
    page's length; ``IN (%s, ...)`` elsewhere).

    As for ``PreparedRows``, the queryset must be the same for every caller.
    """

    def __init__(self, queryset: QuerySet[Any], column: str) -> None:
        if queryset._iterable_class.__name__ != "ValuesIterable":  # type: ignore[attr-defined]
            raise ValueError("prepared matches read a values() queryset")
        # A lookup of a Value: the marker is not converted to the column's type (a value
        # given as ``column__in=`` is).
        self._queryset = queryset.filter(In(F(column), [Value(MARK)]))
        self._plans: dict[tuple[str, str], tuple[str, tuple[Any, ...], list[str], Any]] = {}
        self._lock = threading.Lock()

    def of(self, keys: Sequence[Any]) -> list[dict[str, Any]]:
        """The rows whose column is one of ``keys`` (no query at all for no keys)."""
        if not keys:
            return []
        alias = self._queryset.db
        connection = connections[alias]
        key = (alias, connection.vendor)
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key) or _values_plan(self._queryset, alias)
                self._plans[key] = plan
        sql, params, names, converters = plan
        position = params.index(MARK)
        if connection.vendor == "postgresql":
            sql = sql.replace(_MATCH, "= ANY(%s)")
            values: list[Any] = [*params[:position], list(keys), *params[position + 1 :]]
        else:
            sql = sql.replace(_MATCH, f"IN ({', '.join(['%s'] * len(keys))})")
            values = [*params[:position], *keys, *params[position + 1 :]]
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            rows = cursor.fetchall()
        return _dicts(rows, names, converters, connection)


#: how Django writes ``column__in=[MARK]`` (PreparedMatches replaces it, once, per call)
_MATCH = "IN (%s)"


def _values_plan(
    queryset: QuerySet[Any], alias: str
) -> tuple[str, tuple[Any, ...], list[str], Any]:
    # What ValuesIterable reads from the compiler (django/db/models/query.py).
    query = queryset.query
    compiler = query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    names = [*query.extra_select, *query.values_select, *query.annotation_select]
    converters = compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]])
    if len(names) != compiler.col_count:
        raise ValueError("prepared rows read the columns they name, nothing else")
    if MARK in params and (params.count(MARK) != 1 or sql.count(_MATCH) != 1):
        raise ValueError(f"prepared matches must use their keys once, as one IN: {sql}")
    return sql, tuple(params), names, converters


def _dicts(
    rows: list[tuple[Any, ...]], names: list[str], converters: Any, connection: Any
) -> list[dict[str, Any]]:
    """Rows as ``ValuesIterable`` answers them: each converted by the columns' converters."""
    if converters:
        rows = [list(row) for row in rows]  # type: ignore[misc]
        for row in rows:
            for index, (functions, expression) in converters.items():
                for convert in functions:
                    row[index] = convert(row[index], expression, connection)  # type: ignore[index]
    return [dict(zip(names, row, strict=True)) for row in rows]


class IsoTimestamp(Func):
    """A timestamp column as the text an output serializer's ``DateTimeField`` answers for
    it when the time zone is UTC (ISO 8601, microseconds only if any, ``Z``), written by the
    database: parsing a timestamp into a ``datetime`` and formatting it again took a
    third of the catalogue route's own CPU (two per entry). None for NULL.

    Only for PostgreSQL and SQLite, the databases the portal runs on. SQLite keeps an aware
    timestamp as Django writes it, ``str()`` of its UTC value: the ISO form with a space.
    """

    arity = 1
    output_field = CharField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, Any]:
        column, params = compiler.compile(self.source_expressions[0])
        utc = f"(({column}) AT TIME ZONE 'UTC')"
        micro = f"to_char({utc}, 'US')"
        sql = (
            f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS')"""
            f" || CASE {micro} WHEN '000000' THEN '' ELSE '.' || {micro} END || 'Z'"
        )
        return sql, (*params, *params, *params)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, Any]:
        column, params = compiler.compile(self.source_expressions[0])
        return f"(REPLACE({column}, ' ', 'T') || 'Z')", tuple(params)

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **extra: Any) -> tuple[str, Any]:
        raise NotSupportedError(f"IsoTimestamp is not written for {connection.vendor}")
