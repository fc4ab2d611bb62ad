package record

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSchemaDocumentsEveryField keeps docs/schema.md and docs/schema.json
// in step with the Record type.
func TestSchemaDocumentsEveryField(t *testing.T) {
	md, err := os.ReadFile("../../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../docs/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(Record{}), reflect.TypeOf(TLS{}), reflect.TypeOf(Delivery{}), reflect.TypeOf(Auth{}), reflect.TypeOf(TranscriptLine{}), reflect.TypeOf(Rejection{})} {
		for i := 0; i < typ.NumField(); i++ {
			key, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if !strings.Contains(string(md), "`"+key+"`") && !strings.Contains(string(md), key) {
				t.Errorf("%s.%s (%q) is not documented in docs/schema.md", typ.Name(), typ.Field(i).Name, key)
			}
			if typ == reflect.TypeOf(Record{}) {
				if _, ok := schema.Properties[key]; !ok {
					t.Errorf("%q is missing from docs/schema.json", key)
				}
			}
		}
	}
}

func TestJSONLine(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	r := &Record{
		Type:      TypeMessage,
		Timestamp: time.Date(2025, 8, 30, 11, 12, 34, 500, loc),
		ClientIP:  "203.0.113.45",
		MessageID: "<a\u2028b@x>",
		MailFrom:  Ptr(""),
		Subject:   "line\r\nX-Forged: 1",
		TLS:       &TLS{Used: false},
	}
	b, err := MarshalJSONLine(r)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "}\n") {
		t.Fatalf("not one line: %q", s)
	}
	for _, want := range []string{`"timestamp":"2025-08-30T10:12:34.0000005Z"`, `"mail_from":""`, `"tls":{"used":false}`, `"message_id":"<a\u2028b@x>"`, `\r\n`} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %s", s, want)
		}
	}
	for _, absent := range []string{"null", `"rcpt_to"`, `"end"`, `"size"`} {
		if strings.Contains(s, absent) {
			t.Errorf("%s has %s", s, absent)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          "plain",
		"a\r\nb":         `a\r\nb`,
		"\x1b[2J":        `\x1b[2J`,
		"back\\slash":    `back\\slash`,
		"bad\xffutf8":    `bad\xffutf8`,
		"u\u2028v":       `u\u2028v`,
		"rtl\u202eoverr": `rtl\u202eoverr`,
		"café":           "café",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTextLine(t *testing.T) {
	r := &Record{Type: TypeMessage, Timestamp: time.Unix(0, 0), Subject: "a\nb \x1b", MailFrom: Ptr("x@y"), RcptTo: []string{"v@w"}, Status: StatusAccepted, TLS: &TLS{Used: true, Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", SNI: "mx.example.org"}}
	got := string(MarshalText(r))
	want := `1970-01-01T00:00:00.000Z message from=<x@y> to=<v@w> subject="a\nb \x1b" status=accepted tls="TLS 1.3/TLS_AES_128_GCM_SHA256" sni=mx.example.org` + "\n"
	if got != want {
		t.Errorf("text line:\n%q\nwant\n%q", got, want)
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := NewID(time.UnixMilli(1000))
	b := NewID(time.UnixMilli(2000))
	if len(a) != 26 || !(a < b) || NewID(time.UnixMilli(1000)) == a {
		t.Errorf("ids %s %s", a, b)
	}
}
