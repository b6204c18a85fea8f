"""The Rust examples, built in both ABIs by `nox -s build`, against the seed data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import heliosdb_wasm as h
from conftest import ROOT, TEST_LIMITS, example

ABIS = ["basic", "component"]


@pytest.fixture
def shop() -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute((ROOT / "examples" / "seed.sql").read_text())
        yield db


def register_discount(
    db: h.Database, abi: str, caps: str = "CAPABILITIES ('read:customers')"
) -> None:
    signature = "(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE"
    db.execute(
        f"CREATE PROCEDURE calculate_discount{signature} LANGUAGE wasm {caps}"
        f" AS $wasm$file://{example('calculate_discount', abi)}$wasm$"
    )


@pytest.mark.parametrize("abi", ABIS)
def test_calculate_discount(shop: h.Database, abi: str) -> None:
    register_discount(shop, abi)
    assert shop.procedures()[0].abi == abi
    value = shop.execute("SELECT calculate_discount(12345, 599.99)").scalar()
    assert value == pytest.approx(119.998)
    discounts = shop.execute(
        "SELECT o.id, calculate_discount(o.customer_id, o.total) FROM orders o ORDER BY o.id"
    ).rows
    assert discounts == [
        (1, pytest.approx(119.998)),
        (2, pytest.approx(12.0)),
        (3, pytest.approx(4.0)),
        (4, 0.0),
        (5, pytest.approx(2.0)),
    ]
    logs = [r for r in shop.logs("calculate_discount") if r.level == "info"]
    assert logs and "12345" in logs[0].message and "gold" in logs[0].message


@pytest.mark.parametrize("abi", ABIS)
def test_calculate_discount_unknown_customer_is_a_user_error(shop: h.Database, abi: str) -> None:
    register_discount(shop, abi)
    with pytest.raises(h.UserError) as err:
        shop.execute("SELECT calculate_discount(42, 10.0)")
    assert err.value.user_code == "CUSTOMER_NOT_FOUND"
    assert err.value.procedure == "calculate_discount"


@pytest.mark.parametrize("abi", ABIS)
def test_calculate_discount_without_its_capability_is_denied(shop: h.Database, abi: str) -> None:
    register_discount(shop, abi, caps="")
    with pytest.raises(h.CapabilityDenied) as err:
        shop.execute("SELECT calculate_discount(12345, 599.99)")
    assert "read:customers" in str(err.value)


@pytest.mark.parametrize("abi", ABIS)
def test_compound_interest(shop: h.Database, abi: str) -> None:
    shop.execute(
        "CREATE PROCEDURE compound_interest(principal DOUBLE, rate DOUBLE, years INTEGER)"
        " RETURNS DOUBLE LANGUAGE wasm"
        f" AS $wasm$file://{example('compound_interest', abi)}$wasm$"
    )
    assert shop.execute("SELECT compound_interest(1000, 0.05, 10)").scalar() == pytest.approx(
        1000 * 1.05**10
    )


def test_compound_interest_basic_module_has_no_imports() -> None:
    import wasmtime

    module = wasmtime.Module(wasmtime.Engine(), example("compound_interest", "basic").read_bytes())
    assert module.imports == []


@pytest.mark.parametrize("abi", ABIS)
def test_aggregate_sales_is_a_table(shop: h.Database, abi: str) -> None:
    shop.execute(
        "CREATE PROCEDURE aggregate_sales(from_date TEXT, to_date TEXT)"
        " RETURNS TABLE(region TEXT, orders BIGINT, revenue DOUBLE) LANGUAGE wasm"
        " CAPABILITIES ('read:sales')"
        f" AS $wasm$file://{example('aggregate_sales', abi)}$wasm$"
    )
    rows = shop.execute("SELECT * FROM aggregate_sales('2024-01-01', '2024-02-01')").rows
    assert rows == [("amer", 1, 75.0), ("apac", 1, 60.0), ("emea", 2, 350.5)]
    top = shop.execute(
        "SELECT region FROM aggregate_sales('2024-01-01', '2024-02-01') ORDER BY revenue DESC LIMIT 1"
    ).scalar()
    assert top == "emea"


def test_component_signature_matches_the_basic_declaration(shop: h.Database) -> None:
    shop.execute(
        "CREATE PROCEDURE calculate_discount LANGUAGE wasm CAPABILITIES ('read:customers')"
        f" AS $wasm$file://{example('calculate_discount', 'component')}$wasm$"
    )
    assert shop.procedures()[0].signature.render() == (
        "(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE"
    )
