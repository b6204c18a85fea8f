"""The seed's procedures, in every language and ABI they are built for
(`nox -s build`), give the same answers against the seed data."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import heliosdb_wasm as h
from conftest import ROOT, TEST_LIMITS, example, example_variants

READ_SHOP = "CAPABILITIES ('read:customers', 'read:orders')"


@pytest.fixture
def shop() -> Iterator[h.Database]:
    with h.Database.open(":memory:", limits=TEST_LIMITS) as db:
        db.execute((ROOT / "examples" / "seed.sql").read_text())
        yield db


def register(db: h.Database, name: str, variant: tuple[str, str], declaration: str) -> None:
    language, abi = variant
    db.execute(
        f"CREATE PROCEDURE {name}{declaration} AS $wasm$file://{example(name, abi, language)}$wasm$"
    )


def discount(db: h.Database, variant: tuple[str, str], caps: str) -> None:
    register(
        db,
        "calculate_discount",
        variant,
        f"(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE LANGUAGE wasm {caps}",
    )


DISCOUNT = example_variants("calculate_discount")


@pytest.mark.parametrize("variant", DISCOUNT, ids="/".join)
def test_calculate_discount(shop: h.Database, variant: tuple[str, str]) -> None:
    discount(shop, variant, "CAPABILITIES ('read:customers')")
    assert shop.procedures()[0].abi == variant[1]
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
    logs = [r.message for r in shop.logs("calculate_discount") if r.level == "info"]
    assert logs[0].startswith("customer 12345 tier gold: discount 119.99")


@pytest.mark.parametrize("variant", DISCOUNT, ids="/".join)
def test_calculate_discount_unknown_customer_is_a_user_error(
    shop: h.Database, variant: tuple[str, str]
) -> None:
    discount(shop, variant, "CAPABILITIES ('read:customers')")
    with pytest.raises(h.UserError) as err:
        shop.execute("SELECT calculate_discount(42, 10.0)")
    assert err.value.user_code == "CUSTOMER_NOT_FOUND"
    assert err.value.procedure == "calculate_discount"
    assert "42" in err.value.message


@pytest.mark.parametrize("variant", DISCOUNT, ids="/".join)
def test_calculate_discount_without_its_capability_is_denied(
    shop: h.Database, variant: tuple[str, str]
) -> None:
    discount(shop, variant, "")
    with pytest.raises(h.CapabilityDenied) as err:
        shop.execute("SELECT calculate_discount(12345, 599.99)")
    assert "read:customers" in str(err.value)


@pytest.mark.parametrize("variant", example_variants("validate_order"), ids="/".join)
def test_validate_order(shop: h.Database, variant: tuple[str, str]) -> None:
    register(
        shop,
        "validate_order",
        variant,
        f"(customer_id BIGINT, order_total DOUBLE) RETURNS BOOLEAN LANGUAGE wasm {READ_SHOP}",
    )
    cases = {(12345, 100.0): 1, (12345, 4500.0): 0, (42, 1.0): 0, (23456, -1.0): 0}
    for args, expected in cases.items():
        assert shop.execute("SELECT validate_order(?, ?)", args).scalar() == expected, args


@pytest.mark.parametrize("variant", example_variants("detect_fraud"), ids="/".join)
def test_detect_fraud(shop: h.Database, variant: tuple[str, str]) -> None:
    register(
        shop,
        "detect_fraud",
        variant,
        f"(customer_id BIGINT, amount DOUBLE) RETURNS JSON LANGUAGE wasm {READ_SHOP}",
    )
    verdicts = {
        (12345, 5000.0): (50, ["amount_over_3x_average", "large_amount"], True),
        (42, 10.0): (70, ["unknown_customer", "first_order"], True),
        (23456, 100.0): (0, [], False),
    }
    for (customer, amount), (score, flags, fraud) in verdicts.items():
        text = shop.execute("SELECT detect_fraud(?, ?)", (customer, amount)).scalar()
        assert json.loads(text) == {
            "customer_id": customer,
            "score": score,
            "flags": flags,
            "fraud": fraud,
        }


@pytest.mark.parametrize("variant", example_variants("aggregate_sales"), ids="/".join)
def test_aggregate_sales_is_a_table(shop: h.Database, variant: tuple[str, str]) -> None:
    register(
        shop,
        "aggregate_sales",
        variant,
        "(from_date TEXT, to_date TEXT) RETURNS TABLE(region TEXT, orders BIGINT, revenue DOUBLE)"
        " LANGUAGE wasm CAPABILITIES ('read:sales')",
    )
    rows = shop.execute("SELECT * FROM aggregate_sales('2024-01-01', '2024-02-01')").rows
    assert rows == [("amer", 1, 75.0), ("apac", 1, 60.0), ("emea", 2, 350.5)]
    top = shop.execute(
        "SELECT region FROM aggregate_sales('2024-01-01', '2024-02-01')"
        " ORDER BY revenue DESC LIMIT 1"
    ).scalar()
    assert top == "emea"


@pytest.mark.parametrize("variant", [v for v in DISCOUNT if v[1] == "component"], ids="/".join)
def test_component_signature_comes_from_its_wit(shop: h.Database, variant: tuple[str, str]) -> None:
    language, abi = variant
    shop.execute(
        "CREATE PROCEDURE calculate_discount LANGUAGE wasm CAPABILITIES ('read:customers')"
        f" AS $wasm$file://{example('calculate_discount', abi, language)}$wasm$"
    )
    assert shop.procedures()[0].signature.render() == (
        "(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE"
    )


def test_every_language_gives_the_same_answers(shop: h.Database) -> None:
    # One query over every build of calculate_discount: identical results.
    names = []
    for language, abi in DISCOUNT:
        name = f"discount_{language}_{abi}"
        shop.execute(
            f"CREATE PROCEDURE {name}(customer_id BIGINT, order_total DOUBLE) RETURNS DOUBLE"
            " LANGUAGE wasm CAPABILITIES ('read:customers')"
            f" USING EXPORT '{'calculate_discount' if abi == 'basic' else 'calculate-discount'}'"
            f" AS $wasm$file://{example('calculate_discount', abi, language)}$wasm$"
        )
        names.append(name)
    assert len(names) >= 2
    columns = ", ".join(f"{n}(o.customer_id, o.total)" for n in names)
    for row in shop.execute(f"SELECT {columns} FROM orders o").rows:
        assert len(set(row)) == 1, row


@pytest.mark.parametrize("variant", example_variants("compound_interest"), ids="/".join)
def test_compound_interest(shop: h.Database, variant: tuple[str, str]) -> None:
    register(
        shop,
        "compound_interest",
        variant,
        "(principal DOUBLE, rate DOUBLE, years INTEGER) RETURNS DOUBLE LANGUAGE wasm",
    )
    assert shop.execute("SELECT compound_interest(1000, 0.05, 10)").scalar() == pytest.approx(
        1000 * 1.05**10
    )


def test_a_pure_rust_procedure_imports_nothing() -> None:
    import wasmtime

    wasm = example("compound_interest", "basic", "rust").read_bytes()
    assert wasmtime.Module(wasmtime.Engine(), wasm).imports == []
