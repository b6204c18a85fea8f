// Package plugin writes query-hook plugins (docs/plugins.md) in Go: typed
// hooks over the JSON requests and verdicts that Basic-ABI plugin modules
// exchange with the engine, and helpers over the statement AST.
//
// A Basic-ABI plugin exports each hook as a procedure (request JSON)
// RETURNS JSON named pre_parse, post_parse, pre_execution or
// post_execution. With heliosdb-gen that is one short wrapper per hook:
//
//	//heliosdb:procedure post_execution
//	func postExecution(request heliosdb.JSON) (heliosdb.JSON, error) {
//		return plugin.HandlePostExecution(request, mask)
//	}
//
//	func mask(ctx *plugin.Context, columns []string, rows [][]heliosdb.Value) (plugin.Verdict, error) {
//		if role, _ := ctx.Session("auth.role"); role == "admin" {
//			return plugin.Allow(), nil
//		}
//		...
//		return plugin.ReplaceRows(masked), nil
//	}
//
// The Handle functions decode the request (SQL integers exactly, never
// through float64), call the hook, check that its verdict is one the stage
// allows and encode it. An error from the hook fails the statement.
//
// ParseAST, Tables, AddPredicate and RewriteAST work on the post-parse AST
// (docs/plugins.md §4); CountInWindow is the host's rate-limit counter.
//
// TinyGo: the package uses encoding/json (struct tags, json.Decoder tokens,
// Marshaler/Unmarshaler methods), which needs TinyGo's reflect support. It
// has only been built with standard Go, as the rest of the SDK.
package plugin
