"""Numbers-in, number-out procedures whose host functions the core serves
run whole in the core (engine/core/src/python/hosted.rs): from SQL, from
Database.call and in batches, with the same results, errors, nesting
limits and telemetry from each."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import heliosdb_wasm as h
from conftest import TEST_LIMITS, b64, make_component, wasm_of

HOSTED = b64(wasm_of("hosted"))
DEPTH = 5


@pytest.fixture
def db() -> Iterator[h.Database]:
    limits = TEST_LIMITS.with_overrides(max_call_depth=DEPTH)
    with h.Database.open(":memory:", limits=limits) as database:
        database.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
        database.execute("INSERT INTO cust VALUES (1, 0.5), (2, 0.25), (3, 2.0)")

        def register(name: str, signature: str, extra: str = "") -> None:
            database.execute(
                f"CREATE PROCEDURE {name}{signature} LANGUAGE wasm {extra} AS $wasm${HOSTED}$wasm$"
            )

        register("lookup", "(id BIGINT) RETURNS DOUBLE", "CAPABILITIES ('read:cust')")
        register("strict_lookup", "(id BIGINT) RETURNS DOUBLE", "CAPABILITIES ('read:cust')")
        register("blind_lookup", "(id BIGINT) RETURNS DOUBLE", "USING EXPORT 'lookup'")
        register("self_call", "(n BIGINT) RETURNS BIGINT", "CAPABILITIES ('call:self_call')")
        register("null_tag", "(x BIGINT) RETURNS BIGINT", "CALLED ON NULL INPUT")
        register("logs", "(x BIGINT) RETURNS BIGINT")
        register("null_result", "(x BIGINT) RETURNS BIGINT")
        register(
            "rates_from",
            "(start BIGINT) RETURNS TABLE(id BIGINT, rate DOUBLE)",
            "CAPABILITIES ('read:cust')",
        )
        yield database


def test_they_take_the_core_path(db: h.Database) -> None:
    for name in ("lookup", "self_call", "null_tag", "logs"):
        assert db._runner(name)._hosted, name


def test_a_query_per_row_gives_what_the_join_gives(db: h.Database) -> None:
    joined = db.execute("SELECT sum(rate) FROM cust").scalar()
    assert db.execute("SELECT sum(lookup(id)) FROM cust").scalar() == joined
    assert db.execute("SELECT lookup(99)").scalar() == 0.0
    assert db.call("lookup", 3) == 2.0
    assert db.call_batch("lookup", [[1, 2, 99]]) == [0.5, 0.25, 0.0]
    db.session.telemetry.collect()
    (m,) = db.metrics("lookup").values()
    assert m.calls == 3 + 1 + 1 + 3 and m.errors == 0 and m.fuel > 0 and m.max_memory


def test_the_connections_own_statements_run_unbounded_after_a_guest_query() -> None:
    # The gate's progress handler stays installed once a guest statement
    # ran; outside guest statements it must never stop one, even long
    # after the procedure's deadline has passed.
    limits = TEST_LIMITS.with_overrides(timeout_seconds=0.05)
    with h.Database.open(":memory:", limits=limits) as database:
        database.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
        database.execute("INSERT INTO cust VALUES (1, 0.5)")
        database.execute(
            "CREATE PROCEDURE lookup(id BIGINT) RETURNS DOUBLE LANGUAGE wasm"
            f" CAPABILITIES ('read:cust') AS $wasm${HOSTED}$wasm$"
        )
        assert database.execute("SELECT lookup(1)").scalar() == 0.5
        long = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)"
            " SELECT count(*) FROM c"
        )
        assert database.execute(long).scalar() == 3_000_000
        # And a guest statement still has its deadline after it.
        assert database.execute("SELECT lookup(1)").scalar() == 0.5


def test_a_denied_query_is_a_status_the_guest_sees(db: h.Database) -> None:
    # 1 = access-denied (docs/abi.md §4): the guest returned -status.
    assert db.execute("SELECT blind_lookup(1)").scalar() == -1.0


def test_a_raised_error_is_typed_and_located(db: h.Database) -> None:
    with pytest.raises(h.UserError) as err:
        db.execute("SELECT strict_lookup(99)")
    assert (err.value.code, err.value.procedure) == ("user-error", "strict_lookup")
    assert "customer not found" in err.value.message
    assert db.execute("SELECT strict_lookup(2)").scalar() == 0.25
    db.session.telemetry.collect()
    (m,) = db.metrics("strict_lookup").values()
    assert (m.calls, m.errors) == (2, 1)


def test_nesting_stops_at_the_depth_limit(db: h.Database) -> None:
    # Levels 1..DEPTH run; the next is refused with call-depth, which its
    # caller's query reports as status 4 (limit-exceeded); each level
    # above adds one.
    assert db.execute("SELECT self_call(0)").scalar() == 4 + DEPTH - 1
    assert db.call("self_call", 0) == 4 + DEPTH - 1
    assert db.session.depth == 0 and db.session.gate.depth == 0
    # The connection is usable, and its policy is the host's again.
    assert db.execute("SELECT count(*) FROM cust").scalar() == 3


def test_a_null_argument_is_null_to_the_guest(db: h.Database) -> None:
    assert db.execute("SELECT null_tag(NULL), null_tag(5)").rows == [(0, 1)]
    assert db.call("null_tag", None) == 0
    assert db.call_batch("null_tag", [[None, 5]]) == [0, 1]


def test_a_null_result_through_heliosdb_return(db: h.Database) -> None:
    assert db.execute("SELECT null_result(1)").scalar() is None
    assert db.call("null_result", 1) is None
    assert db.call_batch("null_result", [[1, 2]]) == [None, None]


def test_a_log_line_is_logged_in_the_core(
    db: h.Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hosted call's log line goes into the database's log with no Python
    (no context is made for it), reaches Python's logging at the end of the
    statement, in order, and is persisted by the next flush."""
    from heliosdb_wasm.invoke import HostedHooks

    def refused(self: HostedHooks) -> object:
        raise AssertionError("a context was made for a log line")

    monkeypatch.setattr(HostedHooks, "context", refused)
    with caplog.at_level(logging.INFO, logger="heliosdb_wasm.procedure"):
        assert db.execute("SELECT logs(7) + logs(8)").scalar() == 15
    lines = [r for r in db.session.logs if r.procedure == "logs"]
    assert [(r.level, r.message, r.version) for r in lines] == [
        ("info", "hello from the core", 1)
    ] * 2
    echoed = [r for r in caplog.records if r.name == "heliosdb_wasm.procedure"]
    assert [r.getMessage() for r in echoed] == ["logs v1: hello from the core"] * 2
    assert [r.procedure_time for r in echoed] == [r.time for r in lines]  # type: ignore[attr-defined]
    # Echoed once: the next statement adds only its own line.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="heliosdb_wasm.procedure"):
        db.call("logs", 1)
    assert len([r for r in caplog.records if r.name == "heliosdb_wasm.procedure"]) == 1
    assert [r.message for r in db.persisted_logs("logs")] == ["hello from the core"] * 3


@contextmanager
def _alone(name: str, signature: str, extra: str = "", **limits: int) -> Iterator[h.Database]:
    """A database with the customers and one procedure of hosted.wat under
    ``limits``, on the core's path."""
    with h.Database.open(":memory:", limits=TEST_LIMITS.with_overrides(**limits)) as db:
        db.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
        db.execute("INSERT INTO cust VALUES (1, 0.5), (2, 0.25), (3, 2.0)")
        db.execute(
            f"CREATE PROCEDURE {name}{signature} LANGUAGE wasm {extra} AS $wasm${HOSTED}$wasm$"
        )
        assert db._runner(name)._hosted
        yield db


def test_a_log_bound_ends_a_hosted_call() -> None:
    """Over max_log_bytes in one call, the call the core runs whole ends
    with the typed limit, the line not logged, and the next call runs."""
    with _alone("logs", "(x BIGINT) RETURNS BIGINT", max_log_bytes=10) as db:
        for run in (lambda: db.call("logs", 1), lambda: db.execute("SELECT logs(2)")):
            with pytest.raises(h.ResourceLimitExceeded, match=r"max_log_bytes \(10\)") as err:
                run()
            assert err.value.procedure == "logs"
        assert [r for r in db.session.logs if r.procedure == "logs"] == []
        assert db.session.depth == 0 and db.conn.getautocommit()


def test_the_log_bound_is_per_call() -> None:
    """The core keeps a call's host state for the next call: what one call
    logged never counts against the next (each logs 19 of its 30 bytes)."""
    with _alone("logs", "(x BIGINT) RETURNS BIGINT", max_log_bytes=30) as db:
        assert db.execute("SELECT sum(logs(x)) FROM (SELECT 1 x UNION ALL SELECT 2)").scalar() == 3
        for i in range(5):
            assert db.call("logs", i) == i
        assert len([r for r in db.session.logs if r.procedure == "logs"]) == 7


def test_threads_logging_at_once_lose_no_line(tmp_path: Path) -> None:
    """The procedure log in the core is one sequence every call pushes to,
    whichever thread's: lines of calls on four threads at once all reach
    the in-memory log and the file, once each."""
    db = h.Database.open(str(tmp_path / "logs.db"), limits=TEST_LIMITS)
    db.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
    db.execute(
        f"CREATE PROCEDURE logs(x BIGINT) RETURNS BIGINT LANGUAGE wasm AS $wasm${HOSTED}$wasm$"
    )
    errors: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for i in range(100):
                x = base + i
                assert db.execute("SELECT logs(?)", [x]).scalar() == x
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(1000 * t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.logs("logs")) == 400
    assert len(db.persisted_logs("logs", limit=1000)) == 400
    db.close()
    # A new process's view of the file: every line, once.
    with h.Database.open(str(tmp_path / "logs.db")) as again:
        assert len(again.persisted_logs("logs", limit=1000)) == 400


def test_threads_share_the_connection_safely(db: h.Database) -> None:
    """The depth counts every call in progress on the connection, whichever
    thread's: threads can only make each other's limit tighter, never
    looser."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(200):
                assert db.execute("SELECT sum(lookup(id)) FROM cust").scalar() == 2.75
                assert 4 <= db.call("self_call", 0) <= 4 + DEPTH - 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.session.depth == 0


def test_statements_are_prepared_once_per_policy(db: h.Database) -> None:
    """The core keeps procedures' read-only statements prepared (gate.rs),
    keyed by the grants they were authorized under: the same text from a
    procedure without the grant is authorized anew, and denied."""
    gate = db.session.gate
    assert db.execute("SELECT sum(lookup(id)) FROM cust").scalar() == 2.75
    assert gate.cached_statements == 1
    assert db.execute("SELECT blind_lookup(1)").scalar() == -1.0  # access-denied
    assert gate.cached_statements == 1  # a denied statement is not kept
    assert db.execute("SELECT sum(lookup(id)) FROM cust").scalar() == 2.75
    # The schema changes under a cached statement: SQLite prepares it again,
    # and the authorizer sees it again (under the procedure's policy).
    db.execute("ALTER TABLE cust RENAME COLUMN rate TO old_rate")
    assert db.execute("SELECT lookup(1)").scalar() == -2.0  # sql-error: no such column
    db.execute("ALTER TABLE cust ADD COLUMN rate REAL DEFAULT 9")
    assert db.execute("SELECT lookup(1)").scalar() == 9.0
    # The set of procedures changing (calling one needs call:) empties it.
    db.execute(
        "CREATE PROCEDURE another(x BIGINT) RETURNS BIGINT LANGUAGE wasm"
        f" USING EXPORT 'logs' AS $wasm${HOSTED}$wasm$"
    )
    assert gate.cached_statements == 0


def test_a_connection_with_cached_statements_still_closes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    for close in ("database", "raw"):
        db = h.Database.open(path)
        if close == "database":
            db.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
            db.execute(
                "CREATE PROCEDURE lookup(id BIGINT) RETURNS DOUBLE LANGUAGE wasm"
                f" CAPABILITIES ('read:cust') AS $wasm${HOSTED}$wasm$"
            )
        assert db.execute("SELECT lookup(1)").scalar() == 0.0
        assert db.session.gate.cached_statements == 1
        if close == "database":
            db.close()
        else:
            db.conn.close()  # SQLite would refuse with statements open
    # A connection the engine did not open keeps none (it could not
    # finalize them before someone closes it).
    db = h.Database(apsw.Connection(str(path)))
    assert db.execute("SELECT lookup(1)").scalar() == 0.0
    assert db.session.gate.cached_statements == 0
    db.conn.close()


@pytest.fixture
def limited() -> Iterator[h.Database]:
    limits = TEST_LIMITS.with_overrides(timeout_seconds=0.3, max_query_rows=50, fuel=10**12)
    with h.Database.open(":memory:", limits=limits) as database:
        for name in ("endless", "spin", "lookup"):
            database.execute(
                f"CREATE PROCEDURE {name}(x BIGINT) RETURNS DOUBLE LANGUAGE wasm"
                f" AS $wasm${HOSTED}$wasm$"
                if name == "lookup"
                else f"CREATE PROCEDURE {name}(x BIGINT) RETURNS BIGINT LANGUAGE wasm"
                f" AS $wasm${HOSTED}$wasm$"
            )
        yield database


def test_limits_end_a_hosted_call_and_the_next_one_runs(limited: h.Database) -> None:
    db = limited
    assert db._runner("endless")._hosted and db._runner("spin")._hosted
    # Rows past max_query_rows: the call ends (the guest cannot catch it).
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT endless(0)")
    assert (err.value.limit, err.value.procedure) == ("max_query_rows", "endless")
    # A query that never produces a row: the deadline, through the
    # connection's progress handler.
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.execute("SELECT endless(9223372036854775806)")
    assert err.value.limit == "timeout" and "in a query" in err.value.message
    # The guest itself never returning: the epoch deadline.
    with pytest.raises(h.ResourceLimitExceeded) as err:
        db.call("spin", 1)
    assert (err.value.limit, err.value.procedure) == ("timeout", "spin")
    # Nothing is left behind: depth, bounds, policy.
    assert db.session.depth == 0 and db.session.gate.depth == 0
    assert db.session.policy is None
    db.session.telemetry.collect()
    assert db.metrics("spin")[1].errors == 1
    assert db.execute("SELECT lookup(1)").scalar() == -2.0  # sql-error: no table cust


def test_writers_run_whole_in_the_core_in_their_own_savepoint() -> None:
    """Writers take the core path too: each call in a savepoint of its own,
    the guest's transactions as savepoints inside it (their semantics are
    tests/test_basic_abi.py's: rollback on a trap or an error, read-only
    inside a writing statement, transactions left open)."""
    host = b64(wasm_of("host"))
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT)")
        for name, caps in (
            ("insert_item", "'write:items'"),
            ("insert_then_trap", "'write:items'"),
            ("tx_rollback", "'write:items', 'transaction'"),
            ("tx_left_open", "'write:items', 'transaction'"),
        ):
            db.execute(
                f"CREATE PROCEDURE {name}(id BIGINT) RETURNS BIGINT LANGUAGE wasm"
                f" CAPABILITIES ({caps}) AS $wasm${host}$wasm$"
            )
            assert db._runner(name)._hosted, name
        assert db.call("insert_item", 1) == 1
        with pytest.raises(h.ProcedureTrap):
            db.call("insert_then_trap", 2)
        assert db.execute("SELECT tx_rollback(3)").scalar() == 0
        with pytest.raises(h.InvalidArgument, match="1 transaction"):
            db.execute("SELECT tx_left_open(4)")
        assert db.execute("SELECT id FROM items").rows == [(1,)]
        # No savepoint of the core's is left open, nor a transaction.
        assert db.conn.getautocommit() and db.session.depth == 0
        assert db.call_batch("insert_item", [[5, 6]]) == [1, 1]
        assert db.execute("SELECT count(*) FROM items").scalar() == 3


def _outcome(run: Callable[[], object]) -> object:
    try:
        return ("ok", run())
    except h.ProcedureError as exc:
        return ("error", type(exc).__name__, exc.code, exc.procedure, exc.message)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["lookup", "strict_lookup", "blind_lookup", "null_tag", "self_call"]),
    value=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.sampled_from([1, 2, 3, 99])),
)
def test_sql_a_call_and_a_profiled_call_answer_alike(
    db: h.Database, name: str, value: int | None
) -> None:
    """The same call three ways — SQL, Database.call, and Database.call
    that a profiling listener watches (Numeric.profiled) — gives the same
    value or the same typed error."""
    sql = _outcome(lambda: db.execute(f"SELECT {name}(?)", [value]).scalar())
    core = _outcome(lambda: db.call(name, value))
    seen: list[object] = []
    db.session.telemetry.listeners.append(seen.append)
    try:
        profiled = _outcome(lambda: db.call(name, value))
    finally:
        db.session.telemetry.listeners.remove(seen.append)
    assert sql == core == profiled
    # The profiled call did run (a NULL to a RETURNS NULL ON NULL INPUT
    # procedure runs nothing on any path).
    assert seen or (value is None and name != "null_tag")
    assert db.session.depth == 0 and db.conn.getautocommit()


def test_results_that_are_not_numbers_come_back_through_the_core(db: h.Database) -> None:
    """Numbers in, text, blob or JSON out: the core runs the call, Python
    only converts and checks the value the guest gave heliosdb_return."""
    for name, export, returns in (
        ("greet", "text_result", "TEXT"),
        ("greet_blob", "blob_result", "BLOB"),
        ("greet_json", "json_result", "JSON"),
        ("not_json", "text_result", "JSON"),
        ("forgets", "no_return", "TEXT"),
    ):
        db.execute(
            f"CREATE PROCEDURE {name}(x BIGINT) RETURNS {returns} LANGUAGE wasm"
            f" USING EXPORT '{export}' AS $wasm${HOSTED}$wasm$"
        )
        assert db._runner(name)._hosted, name
    assert db.execute("SELECT greet(1), greet_blob(1), greet_json(1)").rows == [
        ("hello from the core", b"hello", '{"k": "v"}')
    ]
    assert db.call("greet", 2) == "hello from the core"
    assert db.call_batch("greet_blob", [[1, 2]]) == [b"hello", b"hello"]
    with pytest.raises(h.AbiError, match="not valid JSON") as err:
        db.execute("SELECT not_json(1)")
    assert err.value.procedure == "not_json"
    with pytest.raises(h.AbiError, match="without calling heliosdb_return"):
        db.call("forgets", 1)


def test_a_result_over_max_result_bytes_is_refused_on_the_core_path() -> None:
    limits = TEST_LIMITS.with_overrides(max_result_bytes=10)
    with h.Database.open(":memory:", limits=limits) as db:
        db.execute(
            "CREATE PROCEDURE greet(x BIGINT) RETURNS TEXT LANGUAGE wasm"
            f" USING EXPORT 'text_result' AS $wasm${HOSTED}$wasm$"
        )
        assert db._runner("greet")._hosted
        with pytest.raises(h.ResourceLimitExceeded, match="over max_result_bytes") as err:
            db.execute("SELECT greet(1)")
        assert (err.value.limit, err.value.procedure) == ("max_result_bytes", "greet")


def test_text_and_blob_arguments_take_the_core_path_too() -> None:
    """Text and blobs go into the guest's own buffers from SQLite (or from
    Database.call) with no Python; what the core's binding does not take (a
    NULL, text that is not UTF-8, a value of another type) is coerced in
    Python first, which answers as before."""
    limits = TEST_LIMITS.with_overrides(max_arg_bytes=64)
    with h.Database.open(":memory:", limits=limits) as db:
        db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT)")
        db.execute("INSERT INTO items VALUES (1, 'a'), (2, 'a'), (3, 'b')")
        db.execute(
            "CREATE PROCEDURE labelled(label TEXT) RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('read:items') USING EXPORT 'query_param_text'"
            f" AS $wasm${b64(wasm_of('host'))}$wasm$"
        )
        db.execute(
            "CREATE PROCEDURE run_sql(sql TEXT) RETURNS TEXT LANGUAGE wasm"
            " CAPABILITIES ('read:items') USING EXPORT 'run_sql'"
            f" AS $wasm${b64(wasm_of('host_sql'))}$wasm$"
        )
        for name in ("labelled", "run_sql"):
            assert db._runner(name)._hosted, name
        assert db.execute("SELECT labelled('a'), labelled('b'), labelled('z')").rows == [(2, 1, 0)]
        assert db.execute("SELECT labelled(label) FROM items ORDER BY id").rows == [
            (2,),
            (2,),
            (1,),
        ]
        assert db.call("labelled", "a") == 2
        assert db.call_batch("labelled", [["a", "b"]]) == [2, 1]  # row by row
        assert db.call("run_sql", "SELECT label FROM items WHERE id = 3") == "b"
        assert db.execute("SELECT labelled(NULL)").scalar() is None
        with pytest.raises(h.InvalidArgument, match="expected TEXT, got INTEGER"):
            db.execute("SELECT labelled(5)")
        with pytest.raises(h.ResourceLimitExceeded, match="over max_arg_bytes") as err:
            db.execute("SELECT labelled(?)", ["x" * 65])
        assert (err.value.limit, err.value.procedure) == ("max_arg_bytes", "labelled")
        with pytest.raises(h.ResourceLimitExceeded, match="over max_arg_bytes"):
            db.call("labelled", "x" * 65)


@pytest.fixture(scope="module")
def math_component(wasm_tools: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_component(wasm_tools, "component_math", "math", tmp_path_factory.mktemp("c"))


@pytest.fixture
def components(math_component: bytes) -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as database:
        wasm = b64(math_component)
        # c_<export>: `add` is an SQL keyword.
        for export, extra in (
            ("add", ""),
            ("maybe-double", ""),
            ("safe-div", ""),
            ("stamp", ""),
            ("spin", " WITH (fuel = 100000)"),
            ("pairs", ""),
        ):
            name = "c_" + export.replace("-", "_")
            database.execute(
                f"CREATE PROCEDURE {name} LANGUAGE wasm USING EXPORT '{export}'{extra}"
                f" AS $wasm${wasm}$wasm$"
            )
        yield database


def test_components_take_the_core_path(components: h.Database) -> None:
    for name in ("c_add", "c_maybe_double", "c_safe_div", "c_stamp", "c_spin", "c_pairs"):
        assert components._runner(name)._hosted, name


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    call=st.one_of(
        st.tuples(
            st.sampled_from(["c_add", "c_safe_div"]),
            st.tuples(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 7])),
        ),
        st.tuples(
            st.just("c_maybe_double"),
            st.tuples(st.one_of(st.none(), st.floats(allow_nan=False, width=64))),
        ),
    )
)
def test_a_components_sql_call_and_profiled_call_answer_alike(
    components: h.Database, call: tuple[str, tuple[object, ...]]
) -> None:
    """A component's call from SQL, Database.call and a profiled
    Database.call (the core runs each whole) gives the same value or typed
    error: an err result, an option's none."""
    name, args = call
    marks = ", ".join("?" * len(args))
    sql = _outcome(lambda: components.execute(f"SELECT {name}({marks})", list(args)).scalar())
    core = _outcome(lambda: components.call(name, *args))
    seen: list[object] = []
    components.session.telemetry.listeners.append(seen.append)
    try:
        profiled = _outcome(lambda: components.call(name, *args))
    finally:
        components.session.telemetry.listeners.remove(seen.append)
    assert sql == core == profiled
    assert components.session.depth == 0 and components.conn.getautocommit()


def test_a_component_limit_ends_the_call_and_the_next_runs(components: h.Database) -> None:
    with pytest.raises(h.ResourceLimitExceeded) as err:
        components.execute("SELECT c_spin()")
    assert err.value.limit == "fuel"
    assert components.execute("SELECT c_add(40, 2)").scalar() == 42
    assert components.execute("SELECT c_stamp()").scalar() > 0  # a host function
    components.session.telemetry.collect()
    (m,) = components.metrics("c_spin").values()
    assert m.errors == 1


def test_threads_share_component_instances_safely(components: h.Database) -> None:
    """Threads calling components on one connection (SQL scans and
    Database.call, values and err results) each get a whole instance of
    the core's pool: every answer is its own call's."""
    components.execute("CREATE TABLE t(x INTEGER)")
    components.execute("INSERT INTO t VALUES (1), (2), (3), (4)")
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                assert components.execute("SELECT sum(c_add(x, ?)) FROM t", [seed]).scalar() == (
                    10 + 4 * seed
                )
                assert components.call("c_safe_div", seed * 7 + i, 7) == seed + i // 7
                with pytest.raises(h.ProcedureError):
                    components.call("c_safe_div", i, 0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert components.session.depth == 0 and components.conn.getautocommit()


def test_null_arguments_take_the_core_path(db: h.Database, components: h.Database) -> None:
    """A NULL for CALLED ON NULL INPUT reaches the guest as NULL from the
    core itself (heliosdb_get_param's tag, a component's option none), from
    SQL and Database.call alike."""
    assert db.execute("SELECT null_tag(NULL)").scalar() == db.call("null_tag", None)
    assert db.execute("SELECT null_tag(7)").scalar() == db.call("null_tag", 7)
    assert components.execute("SELECT c_maybe_double(NULL)").scalar() is None
    assert components.call("c_maybe_double", None) is None
    assert components.execute("SELECT c_maybe_double(1.5)").scalar() == 3.0


def test_json_arguments_take_the_core_path() -> None:
    """A JSON argument reaches the guest as its text from the core itself;
    a document the core's check refuses is checked again in Python, which
    says what is wrong in Python's words (or takes it)."""
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT)")
        db.execute("""INSERT INTO items VALUES (1, '"a"'), (2, '[1, 2]'), (3, '"a"')""")
        db.execute(
            "CREATE PROCEDURE labelled(doc JSON) RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('read:items') USING EXPORT 'query_param_text'"
            f" AS $wasm${b64(wasm_of('host'))}$wasm$"
        )
        assert db._runner("labelled")._hosted
        assert db.execute("""SELECT labelled('"a"'), labelled('[1, 2]')""").rows == [(2, 1)]
        assert db.call("labelled", '"a"') == 2
        for bad in ("nope", "[1,"):
            with pytest.raises(h.InvalidArgument, match="not valid JSON"):
                db.execute("SELECT labelled(?)", [bad])
            with pytest.raises(h.InvalidArgument, match="not valid JSON"):
                db.call("labelled", bad)
        # NaN is JSON to Python's json module, not to the core's check:
        # Python's check takes it, and the core runs the call.
        assert db.execute("SELECT labelled('NaN')").scalar() == 0


def test_table_procedures_take_the_core_path(db: h.Database, components: h.Database) -> None:
    """A table procedure's call runs whole in the core, Basic ABI (rows
    given to heliosdb_return) and component (an option<list<record>>), from
    SQL and Database.call, and gives what a profiled call gives."""

    def profiled_answers() -> list[object]:
        seen: list[object] = []
        db.session.telemetry.listeners.append(seen.append)
        components.session.telemetry.listeners.append(seen.append)
        try:
            return [
                db.call("rates_from", 2),
                components.call("c_pairs", 3),
                components.call("c_pairs", -1),
            ]
        finally:
            db.session.telemetry.listeners.remove(seen.append)
            components.session.telemetry.listeners.remove(seen.append)

    profiled = profiled_answers()
    assert db._runner("rates_from")._hosted
    assert db.execute("SELECT * FROM rates_from(2)").rows == [(2, 0.25), (3, 2.0)]
    pairs = [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert components.execute("SELECT k, v FROM c_pairs(3)").rows == pairs
    # none: no rows; a NULL argument (RETURNS NULL ON NULL INPUT): no call, no rows
    assert components.execute("SELECT * FROM c_pairs(-1)").rows == []
    assert db.execute("SELECT * FROM rates_from(NULL)").rows == []
    assert db.call("rates_from", None) == []
    core = [db.call("rates_from", 2), components.call("c_pairs", 3), components.call("c_pairs", -1)]
    assert core == profiled == [[(2, 0.25), (3, 2.0)], pairs, []]
    # Joined per outer row: one core call each.
    assert db.execute(
        "SELECT c.id, count(*) FROM cust c, rates_from(c.id) r GROUP BY c.id ORDER BY c.id"
    ).rows == [(1, 3), (2, 2), (3, 1)]
    assert db.session.depth == 0 and db.conn.getautocommit()


def test_a_table_over_max_result_bytes_is_refused_on_the_core_path() -> None:
    signature = "(start BIGINT) RETURNS TABLE(id BIGINT, rate DOUBLE)"
    with _alone("rates_from", signature, "CAPABILITIES ('read:cust')", max_result_bytes=40) as db:
        assert db.call("rates_from", 3) == [(3, 2.0)]
        with pytest.raises(h.ResourceLimitExceeded, match="max_result_bytes"):
            db.execute("SELECT * FROM rates_from(1)")


def test_a_components_rows_over_max_result_bytes_are_refused(math_component: bytes) -> None:
    # pairs(n): n records of (s64, f64), 16 bytes each: the core hands
    # exact rows over only within the limit, and Python refuses the rest.
    limits = TEST_LIMITS.with_overrides(max_result_bytes=100)
    with h.Database.open(":memory:", limits=limits) as db:
        db.execute(f"CREATE PROCEDURE pairs LANGUAGE wasm AS $wasm${b64(math_component)}$wasm$")
        assert db.call("pairs", 6) == [(k, k / 2) for k in range(6)]  # 96 bytes
        with pytest.raises(h.ResourceLimitExceeded, match="the result is 112 bytes"):
            db.execute("SELECT * FROM pairs(7)")


def test_a_parameter_named_as_a_column_is_refused(db: h.Database) -> None:
    with pytest.raises(h.InvalidArgument, match="parameter ID is also a column"):
        db.execute(
            "CREATE PROCEDURE clash(ID BIGINT) RETURNS TABLE(id BIGINT, rate DOUBLE)"
            f" LANGUAGE wasm CAPABILITIES ('read:cust') USING EXPORT 'rates_from'"
            f" AS $wasm${HOSTED}$wasm$"
        )
    assert not db.registry.exists("clash")


def test_a_table_procedure_plans_with_its_arguments(db: h.Database) -> None:
    """Its parameters are hidden columns, every one needed: an argument by
    position or by `WHERE param = value`, a join that supplies it per outer
    row (never a scan without it), and a clear error when it is missing."""
    assert db.execute("SELECT id FROM rates_from WHERE start = 3").rows == [(3,)]
    assert db.execute(
        "SELECT c.id, r.id FROM cust c JOIN rates_from(c.id) r ON r.id = c.id + 1 ORDER BY 1"
    ).rows == [(1, 2), (2, 3)]
    with pytest.raises(h.InvalidArgument, match=r"rates_from takes 1 argument.*start not given"):
        db.execute("SELECT * FROM rates_from()")
    with pytest.raises(h.InvalidArgument, match="start not given"):
        db.execute("SELECT * FROM rates_from WHERE start > 1")
    with pytest.raises(h.InvalidArgument, match="expected BIGINT, got TEXT"):
        db.execute("SELECT * FROM rates_from('x')")
    db.execute("DROP PROCEDURE rates_from")
    with pytest.raises(h.SqlError, match="no such table"):
        db.execute("SELECT * FROM rates_from(1)")


def test_the_instance_registration_verified_serves_the_first_call() -> None:
    # CREATE PROCEDURE instantiates the module to check it; that instance
    # goes into the core's pool, so the first call makes none.
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
        db.execute("INSERT INTO cust VALUES (1, 0.5)")
        db.execute(
            "CREATE PROCEDURE lookup(id BIGINT) RETURNS DOUBLE LANGUAGE wasm"
            f" CAPABILITIES ('read:cust') AS $wasm${HOSTED}$wasm$"
        )
        numeric = db._runner("lookup").numeric()
        assert (numeric.instantiated, numeric.idle_instances) == (1, 1)
        assert db.execute("SELECT lookup(1)").scalar() == 0.5
        assert (numeric.instantiated, numeric.idle_instances) == (1, 1)


DIGEST_THEN_TX = """(module
  (import "heliosdb" "heliosdb_digest" (func $digest (param i32 i32 i32 i32 i32) (result i32)))
  (import "heliosdb" "heliosdb_begin_tx" (func $begin (result i32)))
  (import "heliosdb" "heliosdb_execute" (func $execute (param i32 i32 i32 i32 i32) (result i32)))
  (import "heliosdb" "heliosdb_log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "sha256")
  (data (i32.const 16) "INSERT INTO items VALUES (7)")
  (data (i32.const 96) "after the digest")
  (func (export "heliosdb_abi_version") (result i32) (i32.const 1))
  (func (export "heliosdb_alloc") (param i32 i32) (result i32) (i32.const 1024))
  ;; A host function that lives in Python first (the digest: its status,
  ;; denied or not, does not matter), then a log line, a transaction and a
  ;; write left open.
  (func (export "digest_then_tx") (result i64)
    (drop (call $digest (i32.const 0) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const 128)))
    (call $log (i32.const 2) (i32.const 96) (i32.const 16))
    (drop (call $begin))
    (drop (call $execute (i32.const 16) (i32.const 28) (i32.const 64) (i32.const 4) (i32.const 136)))
    (i64.const 0)))"""


def test_a_host_function_in_python_leaves_the_calls_transactions_to_the_core() -> None:
    """Once a call needed Python for one host function, its transactions and
    log lines are still the core's: a transaction left open is rolled back
    and fails the call, the line is in the procedure's log once."""
    import wasmtime

    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute("CREATE TABLE items(id INTEGER)")
        db.execute(
            "CREATE PROCEDURE digest_then_tx() RETURNS BIGINT LANGUAGE wasm"
            " CAPABILITIES ('write:items', 'transaction')"
            f" AS $wasm${b64(wasmtime.wat2wasm(DIGEST_THEN_TX))}$wasm$"
        )
        with pytest.raises(h.InvalidArgument, match=r"1 transaction.* still open"):
            db.call("digest_then_tx")
        assert db.execute("SELECT count(*) FROM items").scalar() == 0
        assert [r.message for r in db.logs("digest_then_tx")] == ["after the digest"]
        assert not db.conn.in_transaction  # nothing left open on the connection


def test_prewarm_fills_the_pool_up_to_its_size() -> None:
    limits = TEST_LIMITS.with_overrides(pool_size=4)
    with h.Database.open(":memory:", limits=limits) as db:
        db.execute("CREATE TABLE cust(id INTEGER PRIMARY KEY, rate REAL)")
        db.execute(
            "CREATE PROCEDURE lookup(id BIGINT) RETURNS DOUBLE LANGUAGE wasm"
            f" CAPABILITIES ('read:cust') AS $wasm${HOSTED}$wasm$"
        )
        numeric = db._runner("lookup").numeric()
        numeric.prewarm(3)
        assert (numeric.idle_instances, numeric.instantiated) == (3, 3)
        numeric.prewarm(2)  # enough idle already: none made
        assert (numeric.idle_instances, numeric.instantiated) == (3, 3)
        numeric.prewarm(10)  # at most pool_size are kept
        assert numeric.idle_instances == 4
        assert db.execute("SELECT lookup(1)").scalar() == 0.0
        assert numeric.instantiated == 10


def test_a_tables_exact_rows_reach_python_as_they_are() -> None:
    """Rows whose every value is of its column's type go from the core to
    the virtual table with no conversion in Python; rows that need one (an
    integer for a DOUBLE column), or that are over max_result_bytes, get
    Python's, with the same answers and errors."""
    rows = b64(wasm_of("table_rows"))
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        for name, table in (
            ("exact", "i BIGINT, half DOUBLE, label TEXT"),
            ("converted", "i DOUBLE, half DOUBLE, label TEXT"),  # Python makes 0 -> 0.0
        ):
            db.execute(
                f"CREATE PROCEDURE {name}(n BIGINT) RETURNS TABLE({table}) LANGUAGE wasm"
                f" USING EXPORT 'numbers' AS $wasm${rows}$wasm$"
            )
        exact = db.execute("SELECT * FROM exact(1000)").rows
        assert exact[:3] == [(0, 0.0, "x"), (1, 0.5, "x"), (2, 1.0, "x")] and len(exact) == 1000
        assert db.call("exact", 3) == [(0, 0.0, "x"), (1, 0.5, "x"), (2, 1.0, "x")]
        converted = db.execute("SELECT * FROM converted(1000)").rows
        assert converted == [(float(i), h_, s) for i, h_, s in exact]
        assert all(type(r[0]) is float for r in converted)
    # 20 rows are 20 * (8 + 8 + 1) = 340 bytes: over a 300-byte limit,
    # refused as Python refuses any result that size.
    with h.Database.open(":memory:", limits=TEST_LIMITS.with_overrides(max_result_bytes=300)) as db:
        db.execute(
            "CREATE PROCEDURE exact(n BIGINT) RETURNS TABLE(i BIGINT, half DOUBLE, label TEXT)"
            f" LANGUAGE wasm USING EXPORT 'numbers' AS $wasm${rows}$wasm$"
        )
        assert len(db.call("exact", 17)) == 17  # 289 bytes
        with pytest.raises(h.ResourceLimitExceeded, match="the result is 340 bytes"):
            db.call("exact", 20)
