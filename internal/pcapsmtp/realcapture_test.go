package pcapsmtp_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/smtplog/smtplog/internal/pcapsmtp"
	"github.com/smtplog/smtplog/internal/record"
)

// TestKernelCapture decodes a real tcpdump capture of the loopback
// interface (testdata/pcap/make.sh), as pcap and as pcapng: swaks to
// smtplog's capture server, plain, pipelined and with STARTTLS. The queue
// IDs are those the server gave.
func TestKernelCapture(t *testing.T) {
	ids, err := os.ReadFile("../../testdata/pcap/lo-smtp.queue-ids")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lo-smtp.pcap", "lo-smtp.pcapng"} {
		t.Run(name, func(t *testing.T) {
			file, err := os.ReadFile("../../testdata/pcap/" + name)
			if err != nil {
				t.Fatal(err)
			}
			recs, st, err := decode(t, file)
			if err != nil {
				t.Fatal(err)
			}
			ms, ss := byType(recs, record.TypeMessage), byType(recs, record.TypeSession)
			if len(ms) != 2 || len(ss) != 3 || st.Incomplete != 0 || st.Encrypted != 1 {
				t.Fatalf("%d messages, %d sessions, stats %+v", len(ms), len(ss), st)
			}
			for _, m := range ms {
				if m.QueueID == "" || !strings.Contains(string(ids), `"queue_id":"`+m.QueueID+`"`) || m.Status != record.StatusAccepted || m.BodySHA256 == "" || m.ClientIP != "127.0.0.1" || m.Helo != "client.test" {
					t.Errorf("message %s: queue %q status %q", m.MessageID, m.QueueID, m.Status)
				}
			}
			if ms[0].MessageID != "<plain@client.test>" || ms[0].Subject != "real capture" || ms[1].MessageID != "<pipelined@client.test>" || !slices.Equal(ms[1].RcptTo, []string{"a@dest.test", "b@dest.test"}) {
				t.Errorf("messages %+v", ms)
			}
			tls := ss[2]
			if !tls.TLS.Used || !slices.Contains(tls.Flags, pcapsmtp.FlagContentEncrypted) || len(tls.Anomalies) != 0 || ss[0].CloseReason != record.CloseQuit {
				t.Errorf("sessions: %+v / %+v", ss[0], tls)
			}
		})
	}
}
