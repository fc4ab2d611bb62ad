package report

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"testing/quick"

	"github.com/smtplog/smtplog/internal/mtalog"
)

// maskPathsSplit is maskPaths as first written, word by word.
func maskPathsSplit(s string) string {
	if !strings.Contains(s, "/") {
		return s
	}
	words := strings.Split(s, " ")
	for i, w := range words {
		if !strings.Contains(w, "/") {
			continue
		}
		var b strings.Builder
		digits := false
		for j := 0; j < len(w); j++ {
			if isDigit(w[j]) {
				if !digits {
					b.WriteByte('#')
				}
				digits = true
				continue
			}
			digits = false
			b.WriteByte(w[j])
		}
		words[i] = b.String()
	}
	return strings.Join(words, " ")
}

func TestMaskPathsAndTrimInBuffers(t *testing.T) {
	check := func(s string) bool {
		want := trim(maskPathsSplit(s), 160)
		b := appendTrimmed(appendMaskPaths([]byte("prefix\x00"), s), len("prefix\x00"), 160)
		return maskPaths(s) == maskPathsSplit(s) && string(b) == "prefix\x00"+want && failureReasonOf(s) == failureReason(s)
	}
	for _, s := range []string{"", "/", " / ", "a b", "UID/GID=102/105: create maildir file /srv/pf/vmail/box/tmp/1796003069.P28939.host: Permission denied",
		"  x/1  y//22 ", strings.Repeat("é/9 ", 60), strings.Repeat("x", 161), strings.Repeat("é", 100)} {
		if !check(s) {
			t.Errorf("%q: maskPaths %q, want %q", s, maskPaths(s), maskPathsSplit(s))
		}
	}
	if err := quick.Check(func(ws []string) bool { return check(strings.Join(ws, " /1")) }, nil); err != nil {
		t.Error(err)
	}
}

// failureReasonOf is failureReason as first written.
func failureReasonOf(s string) string {
	if i := strings.Index(s, " said: "); i >= 0 {
		s = s[i+len(" said: "):]
	}
	if len(s) >= 4 && s[3] == ' ' && isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2]) {
		s = s[4:]
	}
	if w, rest, ok := strings.Cut(s, " "); ok && mtalog.IsEnhancedCode(w) {
		s = rest
	}
	if strings.HasPrefix(s, "<") {
		if i := strings.Index(s, ">: "); i >= 0 {
			s = s[i+3:]
		}
	}
	return trim(maskPathsSplit(s), 160)
}

func TestNormAddr(t *testing.T) {
	for in, want := range map[string]string{"a@b": "a@b", "A@B.Example": "A@b.example", "x": "x", "a@É.x": "a@é.x", "": ""} {
		if got := normAddr(in); got != want {
			t.Errorf("normAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSplitDelays: splitDelays takes the parts strings.SplitN did.
func TestSplitDelays(t *testing.T) {
	check := func(s string) bool {
		v, ok := splitDelays(s)
		parts := strings.SplitN(s, "/", 5)
		for i := range 4 {
			want, err := 0.0, error(nil)
			if i < len(parts) {
				want, err = strconv.ParseFloat(parts[i], 64)
			}
			if ok[i] != (i < len(parts) && err == nil) || ok[i] && math.Float64bits(v[i]) != math.Float64bits(want) {
				return false
			}
		}
		return true
	}
	for _, s := range []string{"", "/", "0.04/0.05/0/0.06", "1/2/3/4/5/6", "1/x/3", "1/2", "//3/", "1e3/NaN/+Inf/-0"} {
		if !check(s) {
			t.Errorf("splitDelays(%q) differs from SplitN", s)
		}
	}
	if err := quick.Check(func(a, b, c, d, e float32, sep uint8) bool {
		s := strconv.FormatFloat(float64(a), 'f', -1, 32) + "/" + strconv.FormatFloat(float64(b), 'g', -1, 32) + "/" +
			strconv.FormatFloat(float64(c), 'f', 2, 32) + string(rune('.'+sep%3)) + strconv.FormatFloat(float64(d), 'f', -1, 32) + "/" +
			strconv.FormatFloat(float64(e), 'f', -1, 32)
		return check(s)
	}, nil); err != nil {
		t.Error(err)
	}
}
