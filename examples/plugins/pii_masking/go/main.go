// Command pii_masking is a query-hook plugin (docs/plugins.md): its
// post-execution hook masks social security numbers, e-mail addresses and
// phone numbers in query results unless the session's role is an admin
// role. See README.md for the config.
package main

import (
	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
	"github.com/heliosdb/heliosdb-wasm/sdks/go/plugin"
)

// The Basic-ABI form of the hook: (request JSON) RETURNS JSON.
//
//heliosdb:procedure post_execution
func postExecution(request heliosdb.JSON) (heliosdb.JSON, error) {
	return plugin.HandlePostExecution(request, MaskResult)
}

// MaskResult leaves the rows alone for admin roles and otherwise masks
// every configured column, and every value of a detected shape.
func MaskResult(ctx *plugin.Context, columns []string, rows [][]heliosdb.Value) (plugin.Verdict, error) {
	cfg, err := loadConfig(ctx)
	if err != nil {
		return plugin.Verdict{}, err
	}
	if cfg.isAdmin(role(ctx, cfg)) {
		return plugin.Allow(), nil
	}
	masked, changed := cfg.mask(columns, rows)
	if !changed {
		return plugin.Allow(), nil
	}
	return plugin.ReplaceRows(masked), nil
}

// role is the session variable an authentication plugin set, else the
// connection's user. A variable that is set but empty still counts: an
// authentication plugin that clears the role means "no role", not "trust
// the user name the client sent".
func role(ctx *plugin.Context, cfg *config) string {
	if cfg.roleVariable != "" {
		if r, ok := ctx.Session(cfg.roleVariable); ok {
			return r
		}
	}
	return ctx.User
}

func main() {} // required by package main; never called
