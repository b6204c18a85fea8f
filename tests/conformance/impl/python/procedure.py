"""The conformance world (tests/conformance/conformance.wit) in Python."""

import json
from dataclasses import dataclass

from heliosdb_procedures import (
    F32,
    I32,
    Json,
    ProcedureError,
    digest,
    execute,
    fetch,
    hmac,
    log,
    now,
    procedure,
    query,
    query_one,
    transaction,
)


@dataclass
class Numbered:
    i: int
    label: str
    half: float


@procedure
def echo_i64(x: int) -> int:
    return x


@procedure
def echo_i32(x: I32) -> I32:
    return x


@procedure
def echo_f64(x: float) -> float:
    return x


@procedure
def echo_f32(x: F32) -> F32:
    return x


@procedure
def echo_bool(x: bool) -> bool:
    return x


@procedure
def echo_text(x: str) -> str:
    return x


@procedure
def echo_blob(x: bytes) -> bytes:
    return x


@procedure
def echo_nullable(x: int | None) -> int | None:
    return x


@procedure
def text_chars(x: str) -> int:
    return len(x)


@procedure
def blob_sum(x: bytes) -> int:
    return sum(x)


@procedure
def numbered_rows(n: int) -> list[Numbered]:
    return [Numbered(i, f"row {i}", i / 2.0) for i in range(1, n + 1)]


@procedure
def make_json(name: str, n: int) -> Json:
    return json.dumps({"name": name, "n": n, "tags": ["a", "b"]})


@procedure
def count_label(label: str) -> int:
    row = query_one("SELECT count(*) AS n FROM conf_items WHERE label = ?", label)
    return row["n"] if row else 0


@procedure
def query_error_case() -> str:
    try:
        query("SELEKT 1")
    except ProcedureError as exc:
        return exc.code
    return "no error"


@procedure
def query_error_raise() -> int:
    query("SELEKT 1")
    return 0


@procedure
def raise_user_error(code: str, message: str) -> int:
    raise ProcedureError(code, message)


def _insert(row_id: int) -> None:
    execute("INSERT INTO conf_items(id, label) VALUES (?, 'tx')", row_id)


def _count(row_id: int) -> int:
    row = query_one("SELECT count(*) AS n FROM conf_items WHERE id = ?", row_id)
    return row["n"] if row else 0


@procedure
def tx_commit(row_id: int) -> int:
    with transaction():
        _insert(row_id)
    return _count(row_id)


class _Rollback(Exception):
    pass


@procedure
def tx_rollback(row_id: int) -> int:
    try:
        with transaction():
            _insert(row_id)
            raise _Rollback
    except _Rollback:
        pass
    return _count(row_id)


@procedure
def insert_then_trap(row_id: int) -> int:
    _insert(row_id)
    raise RuntimeError("trapping on purpose after an insert")


@procedure
def log_levels() -> int:
    log.trace("t")
    log.debug("d")
    log.info("i")
    log.warn("w")
    log.error("e")
    return 5


@procedure
def now_micros() -> int:
    return now()


@procedure
def trap() -> int:
    raise RuntimeError("trapping on purpose")


@procedure
def spin() -> int:
    n = 0
    while True:
        n += 1


@procedure
def allocate_mib(mib: int) -> int:
    # One MiB at a time, each touched, all kept: memory grows until it is
    # enough or the limit refuses it.
    blocks = []
    for _ in range(mib):
        block = bytearray(1024 * 1024)
        block[::4096] = b"\x01" * len(block[::4096])
        blocks.append(block)
    return len(blocks)


@procedure
def read_secret() -> int:
    row = query_one("SELECT x FROM conf_secret")
    return row["x"] if row else 0


@procedure
def sha256_hex(x: bytes) -> str:
    return digest("sha256", x).hex()


@procedure
def hmac_sha256_hex(key: bytes, data: bytes) -> str:
    return hmac("sha256", key, data).hex()


@procedure
def fetch_text(url: str) -> str:
    answer = fetch(url)
    return f"{answer.status} {answer.text}"
