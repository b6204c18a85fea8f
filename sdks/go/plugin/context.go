package plugin

import (
	"encoding/json"
	"strings"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
)

// Context is what every hook learns about the statement and its session
// (WIT plugin-types.context, docs/plugins.md §2).
type Context struct {
	// QueryID is unique per statement in the server process.
	QueryID uint64 `json:"query-id"`
	// User, Database and ApplicationName are the startup parameters.
	User            string `json:"user"`
	Database        string `json:"database"`
	ApplicationName string `json:"application-name"`
	// ConnectionParams holds every startup parameter as (name, value)
	// pairs, including options and any a client adds (jwt, tenant, ...).
	ConnectionParams [][2]string `json:"connection"`
	// SessionVars holds the session variables (SET, or set by plugins).
	SessionVars [][2]string `json:"session"`
	// Tables the statement references, lower case, without CTE names;
	// empty at pre-parse.
	Tables []string `json:"tables"`
	// ConfigJSON is the plugin's config table from its manifest, a JSON
	// object; Config decodes it.
	ConfigJSON string `json:"config"`
}

// Session returns the value of the session variable name. Names match
// exactly: a case-insensitive match could pick up a variable the client
// SET under another spelling of a name a plugin set and protects. The
// last pair wins if a name occurs twice.
func (c *Context) Session(name string) (string, bool) { return lookup(c.SessionVars, name) }

// Connection returns the value of the startup parameter name ("user",
// "tenant", ...), matched exactly like Session.
func (c *Context) Connection(name string) (string, bool) {
	return lookup(c.ConnectionParams, name)
}

func lookup(pairs [][2]string, name string) (value string, found bool) {
	for _, p := range pairs {
		if p[0] == name {
			value, found = p[1], true
		}
	}
	return value, found
}

// CodeConfig is the user-error code of a config that does not decode.
const CodeConfig = "PLUGIN_CONFIG"

// Config decodes the plugin's config into into (a pointer, as for
// json.Unmarshal). Unknown members are errors: a misspelt option of a
// security plugin must not silently fall back to its default. An empty
// config decodes as {}. The error is a user error with code CodeConfig,
// so returning it from a hook fails the statement with a clear message.
func (c *Context) Config(into any) error {
	text := strings.TrimSpace(c.ConfigJSON)
	if text == "" {
		text = "{}"
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		return heliosdb.UserError(CodeConfig, "plugin config: "+err.Error())
	}
	if dec.More() {
		return heliosdb.UserError(CodeConfig, "plugin config: more than one JSON value")
	}
	return nil
}
