// Package record defines smtplog's one record type, the public contract of
// docs/schema.md: every input (relay, capture server, MTA logs, pcap, the
// application library) converts what it saw into a Record, and every output
// (JSON lines, text, store, syslog, Kafka, web UI) consumes Records.
//
// The package depends on the standard library only. Field names in JSON are
// snake_case and never change meaning; absent values are omitted.
package record

import (
	"crypto/rand"
	"time"
)

// Type says what a Record describes.
type Type string

const (
	TypeMessage Type = "message" // one SMTP transaction or one message in an MTA's queue
	TypeSession Type = "session" // one SMTP connection
)

// Source names the vantage point that produced a record.
type Source string

const (
	SourceProxy     Source = "proxy"
	SourceCapture   Source = "capture"
	SourcePostfix   Source = "postfix"
	SourceExim      Source = "exim"
	SourceSendmail  Source = "sendmail"
	SourceOpenSMTPD Source = "opensmtpd"
	SourcePcap      Source = "pcap"
	SourceApp       Source = "app"
)

// Status values of a message record: the latest known outcome at the
// vantage point that wrote the record.
const (
	StatusAccepted = "accepted" // the server answered 250 to the end of DATA
	StatusRejected = "rejected" // refused before or at the end of DATA (5xx), or no valid recipient
	StatusDeferred = "deferred" // a temporary failure (4xx)
	StatusBounced  = "bounced"  // a permanent delivery failure after queueing
	StatusSent     = "sent"     // delivered to the next hop
	StatusExpired  = "expired"  // gave up after the queue lifetime
	StatusAborted  = "aborted"  // the transaction did not complete (connection lost, timeout, reset)
)

// Abort settles a message record whose transaction ended before its
// content was accepted, for reason why: aborted, or, when no recipient
// was accepted and some were refused, rejected with the last refusal's
// reply. The engine and the capture decoder both end transactions so.
func (r *Record) Abort(why string) {
	r.Status = StatusAborted
	if len(r.RcptTo) == 0 && len(r.RejectedRcpt) > 0 {
		r.Status = StatusRejected
		r.SMTPResponse = r.RejectedRcpt[len(r.RejectedRcpt)-1].SMTPResponse
	}
	r.Reason = why
}

// Close reasons of a session record.
const (
	CloseQuit         = "quit"
	CloseTimeout      = "timeout"
	CloseClientLost   = "client_lost"
	CloseUpstreamLost = "upstream_lost"
	CloseError        = "error"
	CloseShutdown     = "shutdown"
)

// Record is one message or session record. Zero values are omitted in JSON,
// except MailFrom on message records, where "" means the null sender <>.
type Record struct {
	Type      Type      `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	End       time.Time `json:"end,omitzero"`
	Source    Source    `json:"source,omitempty"`
	Host      string    `json:"host,omitempty"`
	SessionID string    `json:"session_id,omitempty"`

	ClientIP   string `json:"client_ip,omitempty"`
	ClientPort int    `json:"client_port,omitempty"`
	ServerIP   string `json:"server_ip,omitempty"`
	ServerPort int    `json:"server_port,omitempty"`
	Helo       string `json:"helo,omitempty"`
	Username   string `json:"username,omitempty"`

	// Header fields, RFC 2047 decoded.
	MessageID string   `json:"message_id,omitempty"`
	Subject   string   `json:"subject,omitempty"`
	From      string   `json:"from,omitempty"`
	To        []string `json:"to,omitempty"`
	Cc        []string `json:"cc,omitempty"`
	Date      string   `json:"date,omitempty"`
	UserAgent string   `json:"user_agent,omitempty"`
	Received  []string `json:"received,omitempty"` // newest first

	// Envelope. MailFrom is a pointer so that the null sender ("") can be told
	// from "no MAIL command seen".
	MailFrom     *string     `json:"mail_from,omitempty"`
	RcptTo       []string    `json:"rcpt_to,omitempty"`
	RejectedRcpt []Rejection `json:"rejected_rcpt,omitempty"`
	Nrcpt        int         `json:"nrcpt,omitempty"`

	Status       string `json:"status,omitempty"`
	SMTPResponse string `json:"smtp_response,omitempty"`
	ReplyCode    int    `json:"reply_code,omitempty"`
	EnhancedCode string `json:"enhanced_code,omitempty"`
	QueueID      string `json:"queue_id,omitempty"`
	// ParentQueueID links an MTA-generated message (a bounce or delivery
	// status notification) to the queue ID of the message it reports on.
	ParentQueueID string `json:"parent_queue_id,omitempty"`
	Size          int64  `json:"size,omitempty"`
	BodySHA256    string `json:"body_sha256,omitempty"`

	TLS         *TLS `json:"tls,omitempty"`
	UpstreamTLS *TLS `json:"upstream_tls,omitempty"`

	Deliveries []Delivery `json:"deliveries,omitempty"`

	LatencyMS  float64            `json:"latency_ms,omitempty"`
	PhasesMS   map[string]float64 `json:"phases_ms,omitempty"`
	DurationMS float64            `json:"duration_ms,omitempty"`

	// Session records.
	Auth        *Auth    `json:"auth,omitempty"`
	Messages    int      `json:"messages,omitempty"`
	CloseReason string   `json:"close_reason,omitempty"`
	Reason      string   `json:"reason,omitempty"` // why a session or transaction failed, in words
	Errors      []string `json:"errors,omitempty"`
	Anomalies   []string `json:"anomalies,omitempty"`

	Upstream string `json:"upstream,omitempty"` // the relay's upstream address

	// Flags set by inputs (e.g. "incomplete" for a log message flushed before
	// its last line was seen).
	Flags []string `json:"flags,omitempty"`

	Transcript []TranscriptLine `json:"transcript,omitempty"`
}

// Rejection is one recipient the server refused.
type Rejection struct {
	Address      string `json:"address"`
	SMTPResponse string `json:"smtp_response"`
}

// TLS describes one TLS leg. Used is always present when the struct is.
type TLS struct {
	Used    bool   `json:"used"`
	Version string `json:"version,omitempty"`
	Cipher  string `json:"cipher,omitempty"`
	SNI     string `json:"sni,omitempty"`
	// OfferedVersions are the versions the client offered, as far as the
	// vantage point sees them (captures: from its ClientHello).
	OfferedVersions []string `json:"offered_versions,omitempty"`
	PeerCert        string   `json:"peer_cert,omitempty"` // subject of the peer's leaf certificate
	Trust           string   `json:"trust,omitempty"`     // MTA logs: Trusted, Verified, Untrusted, Anonymous
	Error           string   `json:"error,omitempty"`
}

// Auth describes an AUTH exchange. The secret never appears here.
type Auth struct {
	Mechanism string `json:"mechanism,omitempty"`
	Username  string `json:"username,omitempty"`
	Result    string `json:"result,omitempty"` // success, failure, aborted
}

// Delivery is one attempt to deliver to one recipient, from MTA logs.
type Delivery struct {
	Timestamp    time.Time `json:"timestamp"`
	Rcpt         string    `json:"rcpt"`
	OrigRcpt     string    `json:"orig_rcpt,omitempty"`
	Status       string    `json:"status"`
	Relay        string    `json:"relay,omitempty"`
	DSN          string    `json:"dsn,omitempty"`
	SMTPResponse string    `json:"smtp_response,omitempty"`
	DelayS       float64   `json:"delay_s,omitempty"`
	Delays       string    `json:"delays,omitempty"`
	QueueID      string    `json:"queue_id,omitempty"` // when the attempt was made from a re-injected copy
}

// TranscriptLine is one line of an SMTP dialogue. Dir is "C" (client to
// server) or "S" (server to client). AUTH payloads are "[redacted]"; DATA
// content is summarised as a byte count.
type TranscriptLine struct {
	TMS  float64 `json:"t_ms"`
	Dir  string  `json:"dir"`
	Leg  string  `json:"leg,omitempty"` // "upstream" for the relay's second leg; absent for the client leg
	Line string  `json:"line"`
}

// Ptr returns a pointer to s; handy for MailFrom.
func Ptr(s string) *string { return &s }

// NewID returns a new session ID: 26 characters of Crockford base32, the
// first ten encoding the time in milliseconds so IDs sort by creation time,
// the rest random (as ULIDs do).
func NewID(now time.Time) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [26]byte
	ms := uint64(now.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = alphabet[ms&31]
		ms >>= 5
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails on supported platforms
	for i := 10; i < 26; i++ {
		b[i] = alphabet[rnd[i-10]&31]
	}
	return string(b[:])
}
