package mailhdr

import (
	"reflect"
	"strings"
	"testing"
)

// parseBySplit is how Parse read a message before it skipped the fields
// it does not record: every field through Split, then a switch on the
// lower-cased name. Parse must give the same Fields for every input.
func parseBySplit(msg []byte) Fields {
	raw, truncated := Split(msg)
	f := Fields{Truncated: truncated}
	for _, h := range raw {
		switch strings.ToLower(h.Name) {
		case "message-id":
			if f.MessageID == "" {
				f.MessageID = Decode(h.Value)
			}
		case "subject":
			if f.Subject == "" {
				f.Subject = Decode(h.Value)
			}
		case "from":
			if f.From == "" {
				f.From = decodeAddress(h.Value)
			}
		case "to":
			f.To = append(f.To, decodeAddressList(h.Value)...)
		case "cc":
			f.Cc = append(f.Cc, decodeAddressList(h.Value)...)
		case "date":
			if f.Date == "" {
				f.Date = Decode(h.Value)
			}
		case "user-agent", "x-mailer":
			if f.UserAgent == "" {
				f.UserAgent = Decode(h.Value)
			}
		case "received":
			if len(f.Received) < 100 {
				f.Received = append(f.Received, Decode(h.Value))
			}
		}
	}
	return f
}

var parseCases = []string{
	"",
	"\r\n",
	"Subject: hi\r\n\r\nbody",
	"Subject: hi", // no line end, no body
	" folded before any field\r\nSubject: a\r\n",
	"Subject: a\r\n b\r\n\tc \r\nFrom: x@y.example\r\n",
	"X-Long-Unrecorded-Name: v\r\n more\r\nSubject:  spaced  \r\n",
	"not a header\r\n continuation of the field before it\r\nSubject: s\r\n",
	"Subject: s\r\nnot a header\r\n continuation of Subject\r\n\r\n",
	"SUBJECT: upper\r\nsubject: second\r\n",
	"Message-\u0130D: <dotted-capital-i@x>\r\n", // strings.ToLower folds U+0130 to i
	"Message-\u0130D-X: <not recorded>\r\n",
	"Receiv\u212Aed: kelvin sign, not a k in received\r\n",
	"Bad Name: no\r\nSubject\t: no\r\n:empty name\r\nDate: d\r\n",
	"To: a@x.example, b@y.example\r\nTo: c@z.example\r\nCc: bad <<\r\n",
	"From: =?UTF-8?Q?J=C3=BCrgen?= <j@app.example>\r\nFrom: second@x\r\n",
	"From: \r\nFrom: second@x\r\n",
	"Received: a\r\nReceived: b\r\n c\r\n\nSubject: after a bare LF blank line\r\n",
	"Subject: bare LF\nDate: x\n\nbody",
	"User-Agent: ua\r\nX-Mailer: xm\r\n",
	"Subject: \xff\xfe invalid utf-8\r\n\xc3: bad name byte\r\n",
	"Subject: =?UTF-8?B?SGVsbG8=?=\r\n =?ISO-8859-1?Q?caf=E9?=\r\n",
}

func TestParseMatchesSplit(t *testing.T) {
	many := strings.Repeat("X-A: 1\r\n", maxFields-1) + "Subject: last kept\r\n continued\r\nDate: over the limit\r\n"
	huge := "Subject: " + strings.Repeat("s", MaxHeaderBytes) + "\r\nDate: beyond the header limit\r\n"
	hundred := strings.Repeat("Received: r\r\n", 120)
	for _, in := range append(parseCases, many, huge, hundred) {
		got, want := Parse([]byte(in)), parseBySplit([]byte(in))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%.60q):\n got %+v\nwant %+v", in, got, want)
		}
	}
}

func FuzzParseMatchesSplit(f *testing.F) {
	for _, c := range parseCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, want := Parse(in), parseBySplit(in)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Parse(%q):\n got %+v\nwant %+v", in, got, want)
		}
	})
}
