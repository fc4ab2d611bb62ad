package mtalog

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stale is an open entry of a correlator (a message or, with Session, a
// session) that has seen no line since a Flush's cut-off.
type Stale struct {
	Key     string
	Last    time.Time
	Session bool
}

// SortStale orders s as a Flush emits it: least recently seen first, by key
// on ties, so the output does not depend on map order.
func SortStale(s []Stale) {
	slices.SortFunc(s, func(a, b Stale) int {
		if d := a.Last.Compare(b.Last); d != 0 {
			return d
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// AppendLasts appends the last time of each entry of open to lasts.
func AppendLasts[K comparable, V any](lasts []time.Time, open map[K]V, last func(V) time.Time) []time.Time {
	for _, v := range open {
		lasts = append(lasts, last(v))
	}
	return lasts
}

// BoundCut returns the Flush cut-off that takes the least recently seen
// tenth of a correlator's open state, given each entry's last time (which it
// sorts). lasts must not be empty.
func BoundCut(lasts []time.Time) time.Time {
	slices.SortFunc(lasts, time.Time.Compare)
	return lasts[len(lasts)/10].Add(time.Nanosecond)
}

// ReplyCodes finds an SMTP reply code and enhanced status code (RFC 3463)
// in a reply as logged: "554 5.7.1 …", "host x said: 450 4.2.0 …", or the
// first line of a multi-line reply, "550-5.1.1 …".
func ReplyCodes(text string) (int, string) {
	s := AfterSaid(text)
	code := 0
	if len(s) >= 4 && (s[3] == ' ' || s[3] == '-') && s[0] >= '2' && s[0] <= '5' && isDigit(s[1]) && isDigit(s[2]) {
		code = int(s[0]-'0')*100 + int(s[1]-'0')*10 + int(s[2]-'0')
		s = s[4:]
	}
	enh := ""
	if w, _, _ := strings.Cut(s, " "); IsEnhancedCode(w) {
		enh = w
	}
	return code, enh
}

// AfterSaid returns what follows the first " said: " in s, the words of
// a remote server as Postfix quotes them ("host x[1.2.3.4] said: 450 …"),
// or s when there is none. It looks at the colons of s, which are few,
// where strings.Index would look at every space.
func AfterSaid(s string) string {
	for i := 0; ; {
		j := strings.IndexByte(s[i:], ':')
		if j < 0 {
			return s
		}
		j += i
		if j >= 5 && j+1 < len(s) && s[j+1] == ' ' && s[j-5:j] == " said" {
			return s[j+2:]
		}
		i = j + 1
	}
}

// IsEnhancedCode reports whether w is an enhanced status code (RFC 3463):
// class 2, 4 or 5, then two dot-separated numbers.
func IsEnhancedCode(w string) bool {
	if len(w) < 5 || len(w) > 11 || (w[0] != '2' && w[0] != '4' && w[0] != '5') || w[1] != '.' {
		return false
	}
	dots := 1
	for i := 2; i < len(w); i++ {
		switch {
		case w[i] == '.':
			dots++
		case !isDigit(w[i]):
			return false
		}
	}
	return dots == 2 && w[len(w)-1] != '.'
}

// ParseDelay parses a delay as Exim and OpenSMTPD log it, numbers with
// units ("1w2d", "1d2h3m4s", "0.123s", "10s"), into seconds; it returns 0
// for anything else, a number without a unit included.
func ParseDelay(v string) float64 {
	total := 0.0
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isDigit(c) || c == '.' {
			continue
		}
		n, err := strconv.ParseFloat(v[start:i], 64)
		if err != nil {
			return 0
		}
		start = i + 1
		switch c {
		case 'w':
			total += n * 7 * 86400
		case 'd':
			total += n * 86400
		case 'h':
			total += n * 3600
		case 'm':
			total += n * 60
		case 's':
			total += n
		default:
			return 0
		}
	}
	if start != len(v) {
		return 0
	}
	return total
}
