"""Runs cases.toml against every built implementation and prints the matrix.

    python tests/conformance/runner.py [--build build/conformance] [--json out.json]

Implementations are the artifacts `nox -s conformance` builds from
impl/<language>/ into build/conformance/<language>.<abi>.wasm. A cell is
"ok", "FAIL: <why>" or "n/a: <why>" when impl/<language>/UNSUPPORTED.toml
says the language cannot do that case (and why). Exit status 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import heliosdb_wasm as h

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SETUP = """
CREATE TABLE conf_items(id INTEGER PRIMARY KEY, label TEXT NOT NULL);
INSERT INTO conf_items VALUES (1, 'apple'), (2, 'pear');
CREATE TABLE conf_secret(x INTEGER);
INSERT INTO conf_secret VALUES (42);
"""
# What the engine cannot do yet, whatever the language: shown as n/a.
ENGINE_GAPS: dict[str, dict[str, str]] = {}
# Small enough that "allocate 64 MiB" must fail and every runtime still starts.
LIMITS = h.Limits(memory_bytes=32 * 1024 * 1024, fuel=2_000_000_000, timeout_seconds=10.0)


@dataclass(frozen=True)
class Implementation:
    language: str
    abi: str
    wasm: Path

    @property
    def label(self) -> str:
        return f"{self.language}/{self.abi}"

    def unsupported(self) -> dict[str, str]:
        """case name -> why this language cannot do it."""
        path = HERE / "impl" / self.language / "UNSUPPORTED.toml"
        gaps = dict(ENGINE_GAPS.get(self.abi, {}))
        if path.exists():
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            gaps.update({str(k): str(v) for k, v in data.get(self.abi, {}).items()})
        return gaps


@dataclass
class Case:
    name: str
    call: str
    inputs: list[list[Any]]
    expect: list[Any] | None = None
    table: bool = False
    error: str | None = None
    user_code: str | None = None
    limit: str | None = None
    fuel: int | None = None
    after: str | None = None
    after_expect: Any = None
    logs: list[list[str]] = field(default_factory=list)


def load_cases() -> tuple[dict[str, str], list[Case]]:
    data = tomllib.loads((HERE / "cases.toml").read_text(encoding="utf-8"))
    return dict(data["procedures"]), [Case(**c) for c in data["case"]]


def implementations(build: Path) -> list[Implementation]:
    found = []
    for wasm in sorted(build.glob("*.wasm")):
        language, abi = wasm.name.removesuffix(".wasm").split(".", 1)
        found.append(Implementation(language, abi, wasm))
    return found


# -- values ----------------------------------------------------------------------


class _Loopback(BaseHTTPRequestHandler):
    """The HTTP server of the fetch cases: /hello answers, anything else 404s."""

    def do_GET(self) -> None:
        status, body = (200, b"hello, procedure") if self.path == "/hello" else (404, b"not here")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


_server: ThreadingHTTPServer | None = None


def server_port() -> int:
    """The loopback server's port, started on first use ({server} and {port} in cases)."""
    global _server
    if _server is None:
        _server = ThreadingHTTPServer(("127.0.0.1", 0), _Loopback)
        threading.Thread(target=_server.serve_forever, daemon=True).start()
    return int(_server.server_address[1])


def decode(value: Any) -> Any:
    """A cases.toml value as the Python value SQL receives or returns."""
    if isinstance(value, str) and "{" in value:
        port = server_port()
        return value.replace("{server}", f"http://127.0.0.1:{port}").replace("{port}", str(port))
    if isinstance(value, dict):
        if value.get("null"):
            return None
        if "blob" in value:
            return bytes.fromhex(value["blob"])
        if "text" in value:
            return value["text"] * int(value.get("times", 1))
    return value


def same(actual: Any, expected: Any, start: float) -> bool:
    if isinstance(expected, dict):
        if "json" in expected:
            return isinstance(actual, str) and json.loads(actual) == expected["json"]
        if expected.get("now"):
            return isinstance(actual, int) and start * 1e6 - 5e6 <= actual <= time.time() * 1e6
        if "approx" in expected:
            return isinstance(actual, float) and math.isclose(actual, expected["approx"])
        expected = decode(expected)
    if isinstance(expected, float):
        if math.isnan(expected):
            return isinstance(actual, float) and math.isnan(actual)
        return (
            isinstance(actual, float)
            and actual == expected
            and math.copysign(1, actual) == math.copysign(1, expected)
        )
    if isinstance(expected, bool):
        return actual in (0, 1) and bool(actual) is expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(same(a, e, start) for a, e in zip(actual, expected, strict=True))
        )
    return type(actual) is type(expected) and actual == expected


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- running -----------------------------------------------------------------------


def run_case(db: h.Database, case: Case) -> str | None:
    """None when the case passes, else what went wrong."""
    expects = case.expect if case.expect is not None else [None] * len(case.inputs)
    for args, expected in zip(case.inputs, expects, strict=True):
        values = [decode(a) for a in args]
        if case.expect is None and case.error is None:
            expected = args[0]  # a round trip
        holes = ", ".join("?" * len(values))
        sql = (
            f"SELECT * FROM {case.call}({holes})" if case.table else f"SELECT {case.call}({holes})"
        )
        start = time.time()
        before = len(db.logs(case.call))
        try:
            result = db.execute(sql, values)
            actual: Any = result.rows if case.table else result.scalar()
        except h.ProcedureError as exc:
            if case.error is None:
                return f"{show(values)}: unexpected {exc.code}: {exc}"
            if exc.code != case.error:
                return f"expected {case.error}, got {exc.code}: {exc}"
            if case.user_code and getattr(exc, "user_code", None) != case.user_code:
                return f"expected user code {case.user_code}, got {getattr(exc, 'user_code', None)}"
            if case.limit and getattr(exc, "limit", None) != case.limit:
                return f"expected limit {case.limit}, got {getattr(exc, 'limit', None)}: {exc}"
        else:
            if case.error is not None:
                return f"expected {case.error}, got {show(actual)}"
            if not same(actual, expected, start):
                return f"{show(values)}: expected {show(decode(expected))}, got {show(actual)}"
        if case.logs:
            got = [[r.level, r.message] for r in db.logs(case.call)[before:]]
            if got != case.logs:
                return f"logs {got}"
    if case.after is not None:
        got = db.execute(case.after).scalar()
        if got != case.after_expect:
            return f"after: {case.after} gave {got}, expected {case.after_expect}"
    return None


def register(db: h.Database, impl: Implementation, name: str, signature: str, case: Case) -> None:
    sig, _, caps = signature.partition(" CAPABILITIES ")
    called_on_null = " CALLED ON NULL INPUT" in sig
    sig = sig.replace(" CALLED ON NULL INPUT", "")
    export = name if impl.abi == "basic" else name.replace("_", "-")
    clauses = [f"CREATE OR REPLACE PROCEDURE {name}{sig} LANGUAGE wasm"]
    if called_on_null:
        clauses.append("CALLED ON NULL INPUT")
    if caps:
        clauses.append(f"CAPABILITIES {caps}")
    if case.fuel:
        clauses.append(f"WITH (fuel = {case.fuel})")
    clauses.append(f"USING EXPORT '{export}' AS $wasm$file://{impl.wasm.resolve()}$wasm$")
    db.execute(" ".join(clauses))


def pack(impl: Implementation, procedures: dict[str, str], out_dir: Path) -> Path:
    """One extension archive per implementation: every conformance procedure."""
    from heliosdb_wasm import archive

    specs = []
    for name, signature in procedures.items():
        sig, _, caps = signature.partition(" CAPABILITIES ")
        capabilities = tuple(
            c.strip().strip("'") for c in caps.strip("() ").split(",") if c.strip()
        )
        specs.append(
            archive.ProcedureSpec(
                name=name,
                file=f"wasm/{impl.wasm.name}",
                abi=impl.abi,
                export=name if impl.abi == "basic" else name.replace("_", "-"),
                signature=sig,
                capabilities=capabilities,
            )
        )
    files = {
        f"wasm/{impl.wasm.name}": impl.wasm.read_bytes(),
        "wit/conformance.wit": (HERE / "conformance.wit").read_bytes(),
        "cases.toml": (HERE / "cases.toml").read_bytes(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"conformance_{impl.language}_{impl.abi}-0.1.0.tar.gz"
    archive.pack(
        f"conformance_{impl.language}_{impl.abi}",
        "0.1.0",
        specs,
        files,
        output,
        description=f"The conformance procedures in {impl.language} ({impl.abi} ABI)",
        license="Apache-2.0",
    )
    return output


def run_implementation(
    impl: Implementation, procedures: dict[str, str], cases: Sequence[Case]
) -> Iterator[tuple[Case, str]]:
    """(case, cell) for every case."""
    skip = impl.unsupported()
    for case in cases:
        with h.Database.open(":memory:", limits=LIMITS) as db:
            db.execute(SETUP)
            try:
                register(db, impl, case.call, procedures[case.call], case)
                problem = run_case(db, case)
            except h.ProcedureError as exc:
                problem = f"{exc.code}: {exc}"
        if case.name in skip:
            # An n/a must still be true: a case that passes is no gap.
            yield (
                case,
                (
                    f"n/a: {skip[case.name]}"
                    if problem is not None
                    else "FAIL: passes, but UNSUPPORTED.toml lists it as n/a"
                ),
            )
            continue
        yield case, "ok" if problem is None else f"FAIL: {problem}"


def matrix(impls: Sequence[Implementation], cases: Sequence[Case]) -> dict[str, dict[str, str]]:
    procedures, _ = load_cases()
    cells: dict[str, dict[str, str]] = {c.name: {} for c in cases}
    for impl in impls:
        for case, cell in run_implementation(impl, procedures, cases):
            cells[case.name][impl.label] = cell
    return cells


def render(impls: Sequence[Implementation], cells: dict[str, dict[str, str]]) -> str:
    labels = [i.label for i in impls]
    width = max(len(c) for c in cells)
    short = {label: max(len(label), 4) for label in labels}
    lines = [
        "case".ljust(width) + " | " + " | ".join(lbl.ljust(short[lbl]) for lbl in labels),
        "-" * width + "-+-" + "-+-".join("-" * short[lbl] for lbl in labels),
    ]
    notes: list[str] = []
    for case, row in cells.items():
        marks = []
        for label in labels:
            cell = row.get(label, "")
            mark = "ok" if cell == "ok" else "n/a" if cell.startswith("n/a") else "FAIL"
            if cell != "ok":
                notes.append(f"  {label} / {case}: {cell}")
            marks.append(mark.ljust(short[label]))
        lines.append(case.ljust(width) + " | " + " | ".join(marks))
    return "\n".join(lines + (["", *notes] if notes else []))


def markdown(impls: Sequence[Implementation], cells: dict[str, dict[str, str]]) -> str:
    """The matrix as the README's support table (n/a cells keep their reason)."""
    labels = [i.label for i in impls]
    lines = ["| case | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for case, row in cells.items():
        marks = []
        for label in labels:
            cell = row.get(label, "")
            marks.append("✓" if cell == "ok" else cell.replace("|", "/") if cell else "")
        lines.append(f"| {case} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "build" / "conformance")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="also write the matrix as a Markdown table")
    parser.add_argument("--pack", type=Path, help="pack each implementation as an archive here")
    args = parser.parse_args(argv)
    impls = implementations(args.build)
    if not impls:
        print(f"no implementations in {args.build}: run `nox -s conformance`", file=sys.stderr)
        return 1
    if args.pack:
        procedures, _ = load_cases()
        for impl in impls:
            print(f"packed {pack(impl, procedures, args.pack)}")
        return 0
    _, cases = load_cases()
    cells = matrix(impls, cases)
    print(render(impls, cells))
    if args.json:
        args.json.write_text(json.dumps(cells, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(impls, cells) + "\n")
    failed = any(cell.startswith("FAIL") for row in cells.values() for cell in row.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
