// Package sendmail parses Sendmail 8.x log lines (programs sm-mta,
// sendmail, sm-msp-queue) and correlates them by queue ID into smtplog
// records.
//
// A line is "QUEUEID: key=value, key=value, ..." (from=, to=, ruleset=
// rejections), "PARENTID: CHILDID: DSN: reason" (a bounce created), or a
// line about a connection without a queue ID: "STARTTLS=server, relay=...,
// version=..., verify=..., cipher=...", "AUTH=server, relay=..., authid=...,
// mech=...", "AUTH failure (PLAIN): ...", "lost input channel from ...".
// stat= and reject= are always last and run to the end of the line.
package sendmail

import (
	"errors"
	"strings"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// Field is one key=value pair, in line order.
type Field struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Event is one parsed Sendmail log line.
type Event struct {
	QueueID string  `json:"queue_id,omitempty"`
	Child   string  `json:"child,omitempty"` // "PARENT: CHILD: DSN: ..." lines
	Kind    string  `json:"kind"`            // from, to, reject, dsn, starttls, auth, authfail, lost, rcpt_error, note, conn_note
	Fields  []Field `json:"fields,omitempty"`
	Text    string  `json:"text,omitempty"`
}

// Get returns the value of the first field named key.
func (ev *Event) Get(key string) string {
	for _, f := range ev.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// ErrNotSendmail is returned for text that is not a Sendmail log line.
var ErrNotSendmail = errors.New("sendmail: not a sendmail log line")

// IsQueueID reports whether s looks like a Sendmail 8 queue ID: 12 to 20
// letters and digits ("0ATA1B2C012345").
func IsQueueID(s string) bool {
	if len(s) < 12 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// Parse parses the message of one Sendmail log line. It never panics.
func Parse(msg string) (Event, error) {
	var ev Event
	s := msg
	if id, rest, ok := strings.Cut(s, ": "); ok && IsQueueID(id) {
		ev.QueueID, s = id, rest
		if id2, rest2, ok := strings.Cut(s, ": "); ok && IsQueueID(id2) {
			ev.Child, s = id2, rest2
			ev.Kind = "dsn"
			ev.Text = s
			return ev, nil
		}
	}
	switch {
	case strings.HasPrefix(s, "from="):
		ev.Kind = "from"
	case strings.HasPrefix(s, "to="):
		ev.Kind = "to"
	case strings.HasPrefix(s, "ruleset="), strings.HasPrefix(s, "Milter") && strings.Contains(s, "reject="):
		ev.Kind = "reject"
	case strings.HasPrefix(s, "STARTTLS=server"), strings.HasPrefix(s, "STARTTLS=client"):
		ev.Kind = "starttls"
		if strings.HasPrefix(s, "STARTTLS=server: ") || strings.HasPrefix(s, "STARTTLS=client: ") {
			ev.Kind, ev.Text = "tls_error", s
			ev.Fields = []Field{{"STARTTLS", s[len("STARTTLS="):strings.IndexByte(s, ':')]}}
			return ev, nil
		}
	case strings.HasPrefix(s, "STARTTLS: "), strings.HasPrefix(s, "STARTTLS="):
		ev.Kind, ev.Text = "tls_error", s
		return ev, nil
	case strings.HasPrefix(s, "AUTH=server"), strings.HasPrefix(s, "AUTH=client"):
		ev.Kind = "auth"
	case strings.HasPrefix(s, "AUTH failure"):
		ev.Kind, ev.Text = "authfail", s
		parseAuthFail(&ev, s)
		return ev, nil
	case strings.HasPrefix(s, "lost input channel from "):
		ev.Kind, ev.Text = "lost", s
		return ev, nil
	case strings.HasPrefix(s, "<") && strings.Contains(s, ">... "):
		ev.Kind = "rcpt_error"
		addr, reason, _ := strings.Cut(s, ">... ")
		ev.Fields = []Field{{"addr", strings.TrimPrefix(addr, "<")}}
		ev.Text = reason
		return ev, nil
	case strings.Contains(s, " did not issue "), strings.HasPrefix(s, "timeout waiting for input"),
		strings.HasPrefix(s, "collect: "), strings.HasPrefix(s, "Syntax error"), strings.HasPrefix(s, "Milter"),
		strings.HasPrefix(s, "clone"), strings.HasPrefix(s, "done"), strings.HasPrefix(s, "SYSERR"),
		strings.HasPrefix(s, "Authentication-Warning"), strings.HasPrefix(s, "sender notify"),
		strings.HasPrefix(s, "postmaster notify"), strings.HasPrefix(s, "return to sender"),
		strings.HasPrefix(s, "setsender"), strings.HasPrefix(s, "discarded"), strings.HasPrefix(s, "Losing "),
		strings.HasPrefix(s, "tls_"), strings.HasPrefix(s, "ruleset"):
		ev.Kind, ev.Text = "note", s
		if ev.QueueID == "" {
			ev.Kind = "conn_note"
		}
		return ev, nil
	case ev.QueueID == "" && (strings.HasPrefix(s, "starting daemon") || strings.HasPrefix(s, "restarting") ||
		strings.HasPrefix(s, "alias database") || strings.HasPrefix(s, "/etc/mail/") || strings.HasPrefix(s, "gethostbyaddr")):
		ev.Kind, ev.Text = "daemon", s
		return ev, nil
	default:
		return Event{Text: msg}, ErrNotSendmail
	}
	ev.Fields = fields(s)
	return ev, nil
}

// fields splits "k=v, k=v, ..." where a value runs to the next ", key="
// and stat= and reject= run to the end of the line.
func fields(s string) []Field {
	var out []Field
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			if len(out) > 0 {
				out[len(out)-1].Value += ", " + s
			}
			return out
		}
		key := s[:eq]
		s = s[eq+1:]
		if key == "stat" || key == "reject" {
			out = append(out, Field{key, s})
			return out
		}
		end := nextField(s)
		out = append(out, Field{key, s[:end]})
		if end >= len(s) {
			return out
		}
		s = s[end+2:]
	}
	return out
}

// nextField returns the index of the ", " that starts the next key=value
// pair in s, or len(s).
func nextField(s string) int {
	for i := 0; i+2 < len(s); i++ {
		if s[i] != ',' || s[i+1] != ' ' {
			continue
		}
		j := i + 2
		for j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
			j++
		}
		if j > i+2 && j < len(s) && s[j] == '=' {
			return i
		}
	}
	return len(s)
}

func parseAuthFail(ev *Event, s string) {
	if i := strings.Index(s, "("); i >= 0 {
		if j := strings.Index(s[i:], ")"); j > 0 {
			ev.Fields = append(ev.Fields, Field{"mech", s[i+1 : i+j]})
		}
	}
	if i := strings.Index(s, ", user="); i >= 0 {
		rest := s[i+len(", user="):]
		user, _, _ := strings.Cut(rest, ", ")
		ev.Fields = append(ev.Fields, Field{"user", user})
	}
	if i := strings.Index(s, "relay="); i >= 0 {
		relay, _, _ := strings.Cut(s[i+len("relay="):], ", ")
		ev.Fields = append(ev.Fields, Field{"relay", relay})
	}
}

// Detect scores how likely l is a Sendmail line: 0, 1 (a Sendmail program
// name) or 2 (a queue ID with from=/to=/stat=).
func Detect(l mtalog.Line) int {
	prog := l.Program
	isProg := Claims(prog)
	ev, err := Parse(l.Message)
	if err == nil && ev.QueueID != "" && (ev.Kind == "from" || ev.Kind == "to") {
		if isProg {
			return 2
		}
		if ev.Kind == "to" && ev.Get("stat") != "" || ev.Kind == "from" && ev.Get("nrcpts") != "" {
			return 2
		}
	}
	if isProg {
		return 1
	}
	return 0
}

// relayHost splits Sendmail's relay= ("name. [ip]", "[ip] [ip]", "name [ip]
// (may be forged)", "name.") into a name and an IP.
func relayHost(v string) (name, ip string) {
	v = strings.TrimSuffix(v, " (may be forged)")
	if i := strings.LastIndex(v, "["); i >= 0 {
		if j := strings.IndexByte(v[i:], ']'); j > 0 {
			ip = v[i+1 : i+j]
			name = strings.TrimSpace(v[:i])
		}
	} else {
		name = v
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".")
	if strings.HasPrefix(ip, "IPv6:") {
		ip = ip[5:]
	}
	return name, ip
}
