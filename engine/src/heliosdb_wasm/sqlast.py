"""The JSON form of a parsed SQL statement that post-parse plugins see.

Statements are parsed with sqlglot (SQLite's dialect; PostgreSQL's in front
of a real PostgreSQL, see pgwire/proxy.py) and converted to a
plain JSON tree (docs/plugins.md §AST): every node is an object whose
``"node"`` member names its kind (sqlglot's expression key, lower case:
``select``, ``table``, ``column``, ``eq``, ``and``, ``literal``, ...) and whose
other members are the node's arguments under sqlglot's argument names, each
a node, a list of nodes, or a plain string, number or boolean. Absent
arguments are left out. A plugin may change any part of the tree; the engine
converts it back and renders it as SQL, refusing a tree that does not
describe a statement.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any

import sqlglot
import sqlglot.errors
from sqlglot import exp

from . import ddl
from .errors import DdlError, InvalidArgument

DIALECT = "sqlite"
# How each dialect writes parameter N when a tree is rendered.
_PLACEHOLDER = {"sqlite": "?{}", "postgres": "${}"}
KIND = "node"


def _classes() -> dict[str, type[exp.Expression]]:
    found: dict[str, type[exp.Expression]] = {}
    pending: list[type[exp.Expression]] = [exp.Expression]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.key, cls)
        pending.extend(cls.__subclasses__())
    return found


_CLASSES = _classes()


class AstError(InvalidArgument):
    """A statement that cannot be parsed, or a tree that is not a statement."""

    sqlstate = "42601"  # syntax error, for the wire endpoint


def parse(sql: str, dialect: str = DIALECT) -> list[exp.Expression]:
    """The statements of ``sql`` (empty statements dropped).

    SQLite's numbered parameters (``?``, ``?N``) and PostgreSQL's ``$N`` are
    not all sqlglot syntax: they become placeholders named ``pN`` (N the
    parameter's number) in the tree and ``?N`` again when it is rendered.
    """
    try:
        trees = sqlglot.parse(_named_placeholders(sql), read=dialect)
    except sqlglot.errors.SqlglotError as exc:
        raise AstError(f"cannot parse the statement: {_first_line(exc)}") from None
    return [t for t in trees if isinstance(t, exp.Expression)]


def to_json(tree: exp.Expression) -> dict[str, Any]:
    """The JSON form of a sqlglot tree."""
    node: dict[str, Any] = {KIND: tree.key}
    for name, value in tree.args.items():
        converted = _value_to_json(value)
        if converted is not None:
            node[name] = converted
    return node


def _value_to_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, exp.Expression):
        return to_json(value)
    if isinstance(value, list):
        return [_value_to_json(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name  # a data type's kind: "INT", "TEXT", ...
    if isinstance(value, bool | int | float | str):
        return value
    raise AstError(f"cannot express a {type(value).__name__} argument in the JSON form")


def from_json(node: Any, where: str = "ast") -> exp.Expression:
    """The sqlglot tree of a JSON form; AstError names the first bad node."""
    if not isinstance(node, dict):
        raise AstError(f"{where}: expected a node object, got {type(node).__name__}")
    kind = node.get(KIND)
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise AstError(f"{where}: unknown node kind {kind!r}")
    args: dict[str, Any] = {}
    for name, value in node.items():
        if name == KIND:
            continue
        if name not in cls.arg_types:
            raise AstError(f"{where}: a {kind} node has no argument {name!r}")
        args[name] = _value_from_json(value, f"{where}.{name}")
    if cls is exp.DataType and isinstance(args.get("this"), str):
        try:
            args["this"] = exp.DataType.Type[args["this"]]
        except KeyError:
            raise AstError(f"{where}: unknown data type {args['this']!r}") from None
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise AstError(f"{where}: {exc}") from None


def _value_from_json(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return from_json(value, where)
    if isinstance(value, list):
        return [_value_from_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def render(tree: exp.Expression, dialect: str = DIALECT) -> str:
    """SQL text for a tree, in ``dialect`` (SQLite's or PostgreSQL's)."""
    spelling = _PLACEHOLDER[dialect]

    def numbered(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder):
            name = node.name
            if name[:1] == "p" and name[1:].isdigit():
                return exp.Var(this=spelling.format(int(name[1:])))
        return node

    try:
        return tree.transform(numbered, copy=True).sql(dialect=dialect)
    except (sqlglot.errors.SqlglotError, TypeError, ValueError, AttributeError) as exc:
        raise AstError(f"cannot render the statement: {_first_line(exc)}") from None


def dumps(tree: exp.Expression) -> str:
    return json.dumps(to_json(tree), separators=(",", ":"))


def loads(text: str) -> exp.Expression:
    try:
        node = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AstError(f"the AST is not JSON: {exc}") from None
    return from_json(node)


def tables(tree: exp.Expression) -> list[str]:
    """Tables the statement references, lower case, in order, without the
    names its CTEs define."""
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    seen: dict[str, None] = {}
    for table in _walk_tables(tree):
        name = table.name.lower()
        if name and name not in ctes:
            seen.setdefault(name, None)
    return list(seen)


def _walk_tables(tree: exp.Expression) -> Iterator[exp.Table]:
    for node in tree.walk():
        if isinstance(node, exp.Table):
            yield node


def _named_placeholders(sql: str) -> str:
    """``?``, ``?N`` and ``$N`` outside literals, identifiers and comments as
    ``:pN``, numbered as SQLite numbers them (a bare ``?`` is one more than
    the largest number so far). ddl's tokenizer knows where those are."""
    try:
        tokens = ddl.tokenize(sql)
    except DdlError as exc:
        raise AstError(f"cannot parse the statement: {exc.message}") from None
    out: list[str] = []
    last, largest = 0, 0
    for i, tok in enumerate(tokens):
        if tok.text not in ("?", "$"):
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        numbered = (
            after is not None
            and after.kind == "number"
            and after.pos == tok.pos + 1
            and after.text.isdigit()
        )
        if numbered:
            assert after is not None
            # SQLite's ?NNN stops there (and int() of 5000 digits refuses).
            if len(after.text) > 5 or int(after.text) > ddl.MAX_PLACEHOLDER:
                raise AstError(
                    f"placeholder {tok.text}{after.text[:20]} is past {ddl.MAX_PLACEHOLDER}"
                )
            number, end = int(after.text), after.pos + len(after.text)
        elif tok.text == "?":
            number, end = largest + 1, tok.pos + 1
        else:
            continue
        largest = max(largest, number)
        out += [sql[last : tok.pos], f":p{number}"]
        last = end
    out.append(sql[last:])
    return "".join(out)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
