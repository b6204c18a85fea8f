package main

import "testing"

// The rules on their own; tests/plugins/test_pii_masking_go.py runs the
// built module through the engine.

func TestMaskDigits(t *testing.T) {
	for in, want := range map[string]string{
		"123-45-6789":       "***-**-6789",
		"123456789":         "*****6789",
		"+1 (555) 123-4567": "+* (***) ***-4567",
		"555.123.4567 x12":  "***.***.**67 x12",
		"4567":              "4567",
		"n/a":               "n/a",
		"":                  "",
	} {
		if got := maskDigits(in); got != want {
			t.Errorf("maskDigits(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":      "a***@example.com",
		"a@x.io":                 "a***@x.io",
		"élodie@example.fr":      "é***@example.fr",
		`"a@b"@example.com`:      `"***@example.com`,
		"@example.com":           "***@example.com",
		"not an address":         "***",
		"bob@sub.example.co.uk ": "b***@sub.example.co.uk ",
	} {
		if got := maskEmail(in); got != want {
			t.Errorf("maskEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLooksLike(t *testing.T) {
	for _, c := range []struct {
		k    kind
		s    string
		want bool
	}{
		{kindSSN, "123-45-6789", true},
		{kindSSN, "123-45-678", false},
		{kindSSN, "123456789", false},
		{kindSSN, "2024-01-1234", false},
		{kindEmail, "alice@example.com", true},
		{kindEmail, "alice@localhost", false},
		{kindEmail, "a b@example.com", false},
		{kindEmail, "@example.com", false},
		{kindEmail, "a@b@example.com", false},
		{kindPhone, "+1 555 123 4567", true},
		{kindPhone, "(555) 123-4567", true},
		{kindPhone, "5551234567", false}, // an ID as likely as a phone number
		{kindPhone, "2024-01-15", false},
		{kindPhone, "555-1234", false},
		{kindPhone, "1-800-FLOWERS", false},
	} {
		if got := looksLike(c.k, c.s); got != c.want {
			t.Errorf("looksLike(%s, %q) = %v", c.k, c.s, got)
		}
	}
}

func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"ssn", "ssn", true},
		{"ssn", "ssn2", false},
		{"*_ssn", "customer_ssn", true},
		{"*_ssn", "ssn", false},
		{"contact_*", "contact_email", true},
		{"*phone*", "mobile_phone_number", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*", "anything", true},
	} {
		if got := matchPattern(c.pattern, c.name); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
}
