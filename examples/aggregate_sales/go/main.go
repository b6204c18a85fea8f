// aggregate_sales in Go: a table-valued procedure (examples/README.md).
package main

import heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"

// SalesRow is one row of the result; the tags name the SQL columns.
type SalesRow struct {
	Region  string  `heliosdb:"region"`
	Orders  int64   `heliosdb:"orders"`
	Revenue float64 `heliosdb:"revenue"`
}

// AggregateSales sums the sales in [fromDate, toDate) per region.
//
//heliosdb:procedure aggregate_sales
func AggregateSales(fromDate, toDate string) ([]SalesRow, error) {
	rows, err := heliosdb.Query(
		"SELECT region, count(*) AS orders, sum(amount) AS revenue FROM sales"+
			" WHERE sold_at >= ? AND sold_at < ? GROUP BY region ORDER BY region",
		fromDate, toDate)
	if err != nil {
		return nil, err
	}
	out := make([]SalesRow, rows.Len())
	for i := range out {
		out[i] = SalesRow{
			Region:  rows.String(i, "region"),
			Orders:  rows.Int64(i, "orders"),
			Revenue: rows.Float64(i, "revenue"),
		}
	}
	return out, nil
}

func main() {}
