// calculate_discount in Go: the customer's loyalty tier decides the discount
// (examples/README.md).
package main

import (
	"errors"
	"strconv"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

var rates = map[string]float64{"gold": 0.20, "silver": 0.10, "bronze": 0.05}

// CalculateDiscount returns the discount on orderTotal for the customer.
//
//heliosdb:procedure calculate_discount
func CalculateDiscount(customerID int64, orderTotal float64) (float64, error) {
	customer, err := heliosdb.QueryRow("SELECT tier FROM customers WHERE id = ?", customerID)
	if errors.Is(err, heliosdb.ErrNoRows) {
		return 0, heliosdb.UserError("CUSTOMER_NOT_FOUND",
			"no customer with id "+strconv.FormatInt(customerID, 10))
	} else if err != nil {
		return 0, err
	}
	tier := customer.String("tier")
	discount := orderTotal * rates[tier]
	heliosdb.Log.Info("customer " + strconv.FormatInt(customerID, 10) + " tier " + tier +
		": discount " + strconv.FormatFloat(discount, 'g', -1, 64))
	return discount, nil
}

func main() {}
