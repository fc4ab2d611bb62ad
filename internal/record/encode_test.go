package record

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"
)

// goldenRecords decodes every record of the golden files under testdata/:
// JSON lines (*.jsonl) and {"records": […]} documents (*.records.json).
func goldenRecords(t *testing.T) []Record {
	t.Helper()
	var out []Record
	err := filepath.WalkDir("../../testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasSuffix(path, ".jsonl"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for line := range bytes.Lines(data) {
				var r Record
				if err := json.Unmarshal(line, &r); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				out = append(out, r)
			}
		case strings.HasSuffix(path, ".records.json"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			var doc struct{ Records []Record }
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			out = append(out, doc.Records...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSameJSON fails unless the hand-written encoding of r is
// encoding/json's, byte for byte (errors included).
func checkSameJSON(t *testing.T, r *Record) bool {
	t.Helper()
	want, werr := appendJSONLineReflect(nil, r)
	got, gerr := AppendJSONLine(nil, r)
	if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
		t.Errorf("encodings differ for %#v\n got: %s (%v)\nwant: %s (%v)", r, got, gerr, want, werr)
		return false
	}
	return true
}

func TestAppendJSONLineMatchesEncodingJSONOnGoldenRecords(t *testing.T) {
	recs := goldenRecords(t)
	if len(recs) < 50 {
		t.Fatalf("only %d golden records found", len(recs))
	}
	for i := range recs {
		checkSameJSON(t, &recs[i])
	}
	// Zones other than UTC are converted as normalize does.
	loc := time.FixedZone("X", -5*3600-30*60)
	for i := range recs {
		r := recs[i]
		r.Timestamp = r.Timestamp.In(loc)
		checkSameJSON(t, &r)
	}
}

// nastyRunes are what string escaping must get right.
var nastyRunes = []string{
	"a", "Z", " ", "<", ">", "&", "\"", "\\", "/", "'", "\x00", "\x01", "\b", "\f", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f",
	"\u0080", "\u009f", "é", "\u2028", "\u2029", "\u202e", "\ufeff", "\ufffd", "😀", "\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
}

func randString(rnd *rand.Rand) string {
	if rnd.Intn(4) == 0 {
		return ""
	}
	var b strings.Builder
	for n := rnd.Intn(12); n > 0; n-- {
		if rnd.Intn(3) == 0 {
			b.WriteByte(byte(rnd.Intn(256)))
		} else {
			b.WriteString(nastyRunes[rnd.Intn(len(nastyRunes))])
		}
	}
	return b.String()
}

func randStrings(rnd *rand.Rand) []string {
	switch rnd.Intn(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	out := make([]string, 1+rnd.Intn(3))
	for i := range out {
		out[i] = randString(rnd)
	}
	return out
}

var floats = []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1.25, 12345.678, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 1.5e300, -2.5e-9, 0.001, 1234567890123456789}

func randFloat(rnd *rand.Rand) float64 {
	if rnd.Intn(2) == 0 {
		return floats[rnd.Intn(len(floats))]
	}
	return (rnd.Float64() - 0.5) * math.Pow(10, float64(rnd.Intn(50)-25))
}

var zones = []*time.Location{time.UTC, time.FixedZone("A", 3600), time.FixedZone("B", -(9*3600 + 30*60)), time.FixedZone("C", 14*3600)}

func randTime(rnd *rand.Rand) time.Time {
	switch rnd.Intn(6) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	}
	sec := rnd.Int63n(400*365*86400) - 100*365*86400 + 946684800 // 1900 to 2300
	return time.Unix(sec, rnd.Int63n(1e9)*int64(rnd.Intn(2))).In(zones[rnd.Intn(len(zones))])
}

func randTLS(rnd *rand.Rand) *TLS {
	if rnd.Intn(3) == 0 {
		return nil
	}
	return &TLS{Used: rnd.Intn(2) == 0, Version: randString(rnd), Cipher: randString(rnd), SNI: randString(rnd), OfferedVersions: randStrings(rnd), PeerCert: randString(rnd), Trust: randString(rnd), Error: randString(rnd)}
}

// randRecord fills every field of a Record, each often zero.
func randRecord(rnd *rand.Rand) Record {
	r := Record{
		Type: Type(randString(rnd)), Timestamp: randTime(rnd), End: randTime(rnd), Source: Source(randString(rnd)),
		Host: randString(rnd), SessionID: randString(rnd), ClientIP: randString(rnd), ClientPort: rnd.Intn(3) * rnd.Intn(70000),
		ServerIP: randString(rnd), ServerPort: -rnd.Intn(2) * rnd.Intn(9), Helo: randString(rnd), Username: randString(rnd),
		MessageID: randString(rnd), Subject: randString(rnd), From: randString(rnd), To: randStrings(rnd), Cc: randStrings(rnd),
		Date: randString(rnd), UserAgent: randString(rnd), Received: randStrings(rnd), RcptTo: randStrings(rnd),
		Nrcpt: rnd.Intn(3), Status: randString(rnd), SMTPResponse: randString(rnd), ReplyCode: rnd.Intn(2) * 550,
		EnhancedCode: randString(rnd), QueueID: randString(rnd), ParentQueueID: randString(rnd), Size: rnd.Int63n(3) * rnd.Int63(),
		BodySHA256: randString(rnd), TLS: randTLS(rnd), UpstreamTLS: randTLS(rnd), LatencyMS: randFloat(rnd), DurationMS: randFloat(rnd),
		Messages: rnd.Intn(3), CloseReason: randString(rnd), Reason: randString(rnd), Errors: randStrings(rnd),
		Anomalies: randStrings(rnd), Upstream: randString(rnd), Flags: randStrings(rnd),
	}
	if rnd.Intn(2) == 0 {
		r.MailFrom = Ptr(randString(rnd))
	}
	for n := rnd.Intn(3); n > 0; n-- {
		r.RejectedRcpt = append(r.RejectedRcpt, Rejection{Address: randString(rnd), SMTPResponse: randString(rnd)})
	}
	for n := rnd.Intn(4); n > 0; n-- {
		r.Deliveries = append(r.Deliveries, Delivery{Timestamp: randTime(rnd), Rcpt: randString(rnd), OrigRcpt: randString(rnd),
			Status: randString(rnd), Relay: randString(rnd), DSN: randString(rnd), SMTPResponse: randString(rnd),
			DelayS: randFloat(rnd), Delays: randString(rnd), QueueID: randString(rnd)})
	}
	if n := rnd.Intn(4); n > 0 {
		r.PhasesMS = map[string]float64{}
		for ; n > 0; n-- {
			r.PhasesMS[randString(rnd)] = randFloat(rnd)
		}
	}
	if rnd.Intn(2) == 0 {
		r.Auth = &Auth{Mechanism: randString(rnd), Username: randString(rnd), Result: randString(rnd)}
	}
	for n := rnd.Intn(3); n > 0; n-- {
		r.Transcript = append(r.Transcript, TranscriptLine{TMS: randFloat(rnd), Dir: randString(rnd), Leg: randString(rnd), Line: randString(rnd)})
	}
	return r
}

// Generate makes Record a testing/quick value.
func (Record) Generate(rnd *rand.Rand, _ int) reflect.Value { return reflect.ValueOf(randRecord(rnd)) }

func TestAppendJSONLineMatchesEncodingJSONOnRandomRecords(t *testing.T) {
	f := func(r Record) bool { return checkSameJSON(t, &r) }
	if err := quick.Check(f, &quick.Config{MaxCount: 20000}); err != nil {
		t.Error(err)
	}
}

func TestAppendJSONLineFallsBack(t *testing.T) {
	for _, r := range []Record{
		{Type: TypeMessage, Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Type: TypeMessage, Timestamp: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Type: TypeMessage, LatencyMS: math.NaN()},
		{Type: TypeMessage, DurationMS: math.Inf(-1)},
		{Type: TypeMessage, Deliveries: []Delivery{{DelayS: math.Inf(1)}}},
		{Type: TypeMessage, Deliveries: []Delivery{{Timestamp: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{Type: TypeMessage, PhasesMS: map[string]float64{"a": 1, "b": math.NaN()}},
		{Type: TypeMessage, Transcript: []TranscriptLine{{TMS: math.NaN()}}},
		{Type: TypeMessage, End: time.Date(10001, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := AppendJSONLine(nil, &r); err == nil {
			t.Errorf("%+v: no error", r)
		}
		checkSameJSON(t, &r)
	}
}

func TestWriterReusesItsBuffer(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, FormatJSON)
	recs := goldenRecords(t)
	var want []byte
	for i := range recs {
		if err := w.Write(&recs[i]); err != nil {
			t.Fatal(err)
		}
		b, err := appendJSONLineReflect(nil, &recs[i])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Error("Writer output differs from encoding/json")
	}
}

func FuzzAppendJSONLine(f *testing.F) {
	f.Add("a<b>&c", "\u2028\u2029", "\xff\x00\x1f", 1.5, int64(0))
	f.Add("", "\"\\", "\x7f\u0080", -1e-7, int64(1e18))
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, fl float64, ns int64) {
		r := Record{Type: Type(s1), Timestamp: time.Unix(0, ns), Host: s2, MailFrom: &s3, RcptTo: []string{s1, s2, s3},
			LatencyMS: fl, PhasesMS: map[string]float64{s1: fl, s2: -fl}, Auth: &Auth{Username: s3},
			Deliveries: []Delivery{{Rcpt: s2, SMTPResponse: s3, DelayS: fl}}, TLS: &TLS{Cipher: s1}}
		checkSameJSON(t, &r)
	})
}
