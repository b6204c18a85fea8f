// detect_fraud in Go: queries, then a JSON verdict (examples/README.md).
package main

import heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"

// Verdict is the JSON object detect_fraud returns.
type Verdict struct {
	CustomerID int64    `json:"customer_id"`
	Score      int      `json:"score"`
	Flags      []string `json:"flags"`
	Fraud      bool     `json:"fraud"`
}

// DetectFraud scores an order amount against the customer's history. A
// struct result is returned as JSON (encoding/json).
//
//heliosdb:procedure detect_fraud
func DetectFraud(customerID int64, amount float64) (Verdict, error) {
	v := Verdict{CustomerID: customerID, Flags: []string{}}
	flag := func(name string, points int) {
		v.Flags = append(v.Flags, name)
		v.Score += points
	}
	known, err := heliosdb.QueryRow("SELECT count(*) AS n FROM customers WHERE id = ?", customerID)
	if err != nil {
		return v, err
	}
	if known.Int64("n") == 0 {
		flag("unknown_customer", 60)
	}
	history, err := heliosdb.QueryRow(
		"SELECT count(*) AS n, coalesce(avg(total), 0.0) AS average FROM orders WHERE customer_id = ?",
		customerID)
	if err != nil {
		return v, err
	}
	if history.Int64("n") == 0 {
		flag("first_order", 10)
	} else if amount > 3*history.Float64("average") {
		flag("amount_over_3x_average", 30)
	}
	if amount >= 5000 {
		flag("large_amount", 20)
	}
	v.Fraud = v.Score >= 50
	return v, nil
}

func main() {}
