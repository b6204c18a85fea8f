// validate_order in Go: several queries, a boolean answer (examples/README.md).
package main

import (
	"errors"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

var creditLimits = map[string]float64{"gold": 5000, "silver": 2000, "bronze": 1000}

const defaultCreditLimit = 500

// ValidateOrder reports whether the order fits the customer's credit limit.
//
//heliosdb:procedure validate_order
func ValidateOrder(customerID int64, orderTotal float64) (bool, error) {
	customer, err := heliosdb.QueryRow("SELECT tier FROM customers WHERE id = ?", customerID)
	if errors.Is(err, heliosdb.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if orderTotal <= 0 {
		return false, nil
	}
	history, err := heliosdb.QueryRow(
		"SELECT count(*) AS n, coalesce(sum(total), 0.0) AS spent FROM orders WHERE customer_id = ?",
		customerID)
	if err != nil {
		return false, err
	}
	limit, ok := creditLimits[customer.String("tier")]
	if !ok {
		limit = defaultCreditLimit
	}
	return history.Float64("spent")+orderTotal <= limit, nil
}

func main() {}
