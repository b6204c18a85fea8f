package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	heliosdb "github.com/heliosdb/heliosdb-wasm/sdks/go"
	"github.com/heliosdb/heliosdb-wasm/sdks/go/plugin"
)

// kind is a sort of PII, and the masking rule for it.
type kind string

const (
	kindSSN   kind = "ssn"
	kindEmail kind = "email"
	kindPhone kind = "phone"
)

// kinds in the order a column name is tried against them: the first kind
// with a matching pattern wins, so a column is never masked twice.
var kinds = []kind{kindSSN, kindEmail, kindPhone}

// rawConfig is the manifest's [plugin.config] as it arrives.
type rawConfig struct {
	// Columns maps each kind to a result column name or a list of them;
	// names match case-insensitively and may hold * wildcards.
	Columns map[string]patterns `json:"columns"`
	// Detect lists the kinds that are also recognised by the shape of a
	// text value in any other column (an alias such as SELECT ssn AS x
	// must not unmask it). nil: the default.
	Detect *[]string `json:"detect"`
	// AdminRoles see everything.
	AdminRoles []string `json:"admin_roles"`
	// RoleVariable is the session variable holding the role; "" means the
	// connection's user only. nil: the default.
	RoleVariable *string `json:"role_variable"`
}

// patterns is one column name or a list of them.
type patterns []string

func (p *patterns) UnmarshalJSON(data []byte) error {
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*p = patterns{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return configError("expected a column name or a list of names, got " + string(data))
	}
	*p = many
	return nil
}

type config struct {
	columns      map[kind][]string // lower-case patterns
	detect       []kind
	admins       map[string]bool
	roleVariable string
}

var (
	defaultColumns = map[kind][]string{kindSSN: {"ssn"}, kindEmail: {"email"}, kindPhone: {"phone"}}
	// Phone-like text is too common (order numbers, IDs) to guess at by
	// default; SSNs and e-mail addresses have unmistakable shapes.
	defaultDetect       = []kind{kindSSN, kindEmail}
	defaultRoleVariable = "auth.role"
)

// The config is the same for every call of a plugin instance: decode it
// once per distinct text.
var cached struct {
	text string
	cfg  *config
}

func loadConfig(ctx *plugin.Context) (*config, error) {
	if cached.cfg != nil && cached.text == ctx.ConfigJSON {
		return cached.cfg, nil
	}
	var raw rawConfig
	if err := ctx.Config(&raw); err != nil {
		return nil, err
	}
	cfg, err := raw.compile()
	if err != nil {
		return nil, heliosdb.UserError(plugin.CodeConfig, "pii_masking config: "+err.Error())
	}
	cached.text, cached.cfg = ctx.ConfigJSON, cfg
	return cfg, nil
}

type configError string

func (e configError) Error() string { return string(e) }

func parseKind(name, where string) (kind, error) {
	for _, k := range kinds {
		if string(k) == name {
			return k, nil
		}
	}
	return "", configError(where + ": unknown kind " + strconv.Quote(name) + " (ssn, email or phone)")
}

func (r *rawConfig) compile() (*config, error) {
	cfg := &config{
		columns:      defaultColumns,
		detect:       defaultDetect,
		admins:       map[string]bool{},
		roleVariable: defaultRoleVariable,
	}
	if r.Columns != nil {
		cfg.columns = map[kind][]string{}
		for name, list := range r.Columns {
			k, err := parseKind(name, "columns")
			if err != nil {
				return nil, err
			}
			if len(list) == 0 {
				return nil, configError("columns." + name + ": no column names")
			}
			for _, p := range list {
				if strings.Trim(p, "*") == "" {
					return nil, configError("columns." + name + ": " + strconv.Quote(p) + " is not a column name or pattern")
				}
				cfg.columns[k] = append(cfg.columns[k], strings.ToLower(p))
			}
		}
	}
	if r.Detect != nil {
		cfg.detect = nil
		for _, name := range *r.Detect {
			k, err := parseKind(name, "detect")
			if err != nil {
				return nil, err
			}
			cfg.detect = append(cfg.detect, k)
		}
	}
	for _, role := range r.AdminRoles {
		if role == "" {
			return nil, configError("admin_roles: an empty role name would make users without a role admins")
		}
		cfg.admins[role] = true
	}
	if r.RoleVariable != nil {
		cfg.roleVariable = *r.RoleVariable
	}
	return cfg, nil
}

// isAdmin compares role names exactly: "Admin" is not "admin", so a
// spelling variant never grants more than was configured.
func (c *config) isAdmin(role string) bool { return c.admins[role] }

// columnKind is the kind configured for a result column, "" for none.
func (c *config) columnKind(column string) kind {
	name := strings.ToLower(column)
	for _, k := range kinds {
		for _, p := range c.columns[k] {
			if matchPattern(p, name) {
				return k
			}
		}
	}
	return ""
}

// mask returns the masked rows and whether any value changed; rows is
// never modified, and unchanged rows are shared.
func (c *config) mask(columns []string, rows [][]heliosdb.Value) ([][]heliosdb.Value, bool) {
	byName := make([]kind, len(columns))
	named := false
	for i, col := range columns {
		byName[i] = c.columnKind(col)
		named = named || byName[i] != ""
	}
	if !named && len(c.detect) == 0 {
		return rows, false
	}
	out := make([][]heliosdb.Value, len(rows))
	changed := false
	for r, row := range rows {
		out[r] = row
		copied := false
		for i, v := range row {
			var nv heliosdb.Value
			var ok bool
			if i < len(byName) && byName[i] != "" {
				nv, ok = maskAs(byName[i], v)
			} else {
				nv, ok = c.maskDetected(v)
			}
			if !ok {
				continue
			}
			if !copied {
				out[r], copied = append([]heliosdb.Value(nil), row...), true
			}
			out[r][i] = nv
			changed = true
		}
	}
	return out, changed
}

// maskAs masks a value of a column configured as k: text by k's rule,
// NULL stays NULL, and any other value (a number, a blob) becomes NULL
// because no rule can show part of it safely.
func maskAs(k kind, v heliosdb.Value) (heliosdb.Value, bool) {
	switch v.Kind() {
	case heliosdb.KindNull:
		return v, false
	case heliosdb.KindText:
		masked := maskText(k, v.Text())
		return heliosdb.TextValue(masked), masked != v.Text()
	}
	return heliosdb.Null, true
}

func (c *config) maskDetected(v heliosdb.Value) (heliosdb.Value, bool) {
	if v.Kind() != heliosdb.KindText {
		return v, false
	}
	s := v.Text()
	for _, k := range c.detect {
		if looksLike(k, s) {
			return heliosdb.TextValue(maskText(k, s)), true
		}
	}
	return v, false
}

func maskText(k kind, s string) string {
	if k == kindEmail {
		return maskEmail(s)
	}
	return maskDigits(s)
}

// maskDigits replaces every ASCII digit but the last four with *, keeping
// everything else: 123-45-6789 → ***-**-6789, +1 (555) 123-4567 →
// +* (***) ***-4567.
func maskDigits(s string) string {
	digits := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			digits++
		}
	}
	if digits <= 4 {
		return s
	}
	b := []byte(s)
	for i := range b {
		if digits > 4 && isDigit(b[i]) {
			b[i] = '*'
			digits--
		}
	}
	return string(b)
}

// maskEmail keeps the first character of the local part and the domain:
// alice@example.com → a***@example.com. The *** hides the local part's
// length too. Text without an @ is masked whole, since it may be anything.
func maskEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "***"
	}
	first := ""
	if at > 0 {
		_, size := utf8.DecodeRuneInString(s)
		first = s[:size]
	}
	return first + "***" + s[at:]
}

// looksLike reports whether a whole text value has the shape of k.
func looksLike(k kind, s string) bool {
	switch k {
	case kindSSN: // 123-45-6789
		if len(s) != 11 || s[3] != '-' || s[6] != '-' {
			return false
		}
		for i := 0; i < len(s); i++ {
			if i != 3 && i != 6 && !isDigit(s[i]) {
				return false
			}
		}
		return true
	case kindEmail: // local@domain.tld, no spaces
		at := strings.IndexByte(s, '@')
		if at <= 0 || strings.IndexByte(s[at+1:], '@') >= 0 || strings.ContainsAny(s, " \t\r\n") {
			return false
		}
		domain := s[at+1:]
		dot := strings.LastIndexByte(domain, '.')
		return dot > 0 && dot < len(domain)-1
	case kindPhone: // 10 to 15 digits with phone punctuation, and a + or a separator
		digits, separated := 0, strings.HasPrefix(s, "+")
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case isDigit(c):
				digits++
			case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
				separated = true
			case c == '+' && i == 0:
			default:
				return false
			}
		}
		return separated && digits >= 10 && digits <= 15
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// matchPattern matches a lower-case column name against a lower-case
// pattern in which * stands for any run of characters.
func matchPattern(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	if !strings.HasPrefix(name, pattern[:star]) {
		return false
	}
	name, pattern = name[star:], pattern[star+1:]
	for i := 0; i <= len(name); i++ {
		if matchPattern(pattern, name[i:]) {
			return true
		}
	}
	return false
}
