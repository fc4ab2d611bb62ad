// Package report summarises a stream of smtplog records the way pflogsumm
// summarises a Postfix log — Grand Totals, per-day and per-hour traffic,
// top senders, recipients and domains, deferral, bounce and reject details,
// SASL, TLS, warnings — and adds what pflogsumm lacks: latency percentiles
// from Postfix's delays=a/b/c/d, temporary versus permanent failures by
// enhanced status code (RFC 3463), and remote MTAs by failure rate.
//
// An Aggregator is a record.Handler; it works for the records of any MTA
// (every message record with deliveries counts) and uses what only Postfix
// logs show (flags such as "dsn", "local", "hold", reject warnings in
// anomalies) where records carry it. Line-level facts that no record holds
// (warning, fatal and panic lines) come in as Notes. Memory is bounded by
// the number of distinct keys per table (Options.MaxKeys), never by the
// number of records.
package report

import "time"

// Report is the summary, as `smtplog report --format json` prints it. Its
// Totals keys are the contract of DESIGN §5.
type Report struct {
	From  time.Time `json:"from,omitzero"`  // first event seen
	To    time.Time `json:"to,omitzero"`    // last event seen
	Since time.Time `json:"since,omitzero"` // events before this were left out

	Totals Totals `json:"totals"`

	Days    int         `json:"days"`     // distinct days with traffic
	PerDay  []DayCount  `json:"per_day"`  // by date of the log's clock
	PerHour []HourCount `json:"per_hour"` // 24 rows, summed over all days
	// Traffic is a time series for charts, by hour, or by day when the
	// report spans more than a week.
	Traffic     []Bucket `json:"traffic"`
	TrafficStep string   `json:"traffic_step"` // "hour" or "day"

	RecipientDomains  []DomainDelivery `json:"recipient_domains"`
	SendingDomains    []Volume         `json:"sending_domains"`
	SendersByCount    []Volume         `json:"senders_by_count"`
	SendersBySize     []Volume         `json:"senders_by_size"`
	RecipientsByCount []Volume         `json:"recipients_by_count"`
	RecipientsBySize  []Volume         `json:"recipients_by_size"`

	Deferrals      []Reason `json:"deferrals"`
	Bounces        []Reason `json:"bounces"`
	Rejects        []Reason `json:"rejects"`
	RejectWarnings []Reason `json:"reject_warnings"`
	Holds          []Reason `json:"holds"`
	Discards       []Reason `json:"discards"`

	SASL        SASL         `json:"sasl"`
	TLS         TLSUsage     `json:"tls"`
	Diagnostics []Diagnostic `json:"diagnostics"`

	Latency     Latency     `json:"latency"`
	StatusCodes []CodeCount `json:"status_codes"`
	RemoteMX    []RemoteMX  `json:"remote_mx"`

	Sources map[string]int64 `json:"sources"` // message records per source (postfix, exim, …)
	// Incomplete counts message records flushed before their last line.
	Incomplete int64 `json:"incomplete"`
	// Truncated names the tables that reached Options.MaxKeys; their
	// distinct counts (senders, recipients, …) are then lower bounds.
	Truncated []string `json:"truncated,omitempty"`
	Input     *Input   `json:"input,omitempty"`
}

// Totals are pflogsumm's Grand Totals. Deferred counts messages with at
// least one deferred attempt, Deferrals the attempts; Delivered, Bounced
// and Forwarded count delivery lines (one per recipient and attempt);
// Rejected counts rejections (one per refused recipient, or per refused
// connection or message); BytesDelivered adds the message size once per
// delivery.
type Totals struct {
	Received       int64 `json:"received"`
	Delivered      int64 `json:"delivered"`
	Forwarded      int64 `json:"forwarded"`
	Deferred       int64 `json:"deferred"`
	Deferrals      int64 `json:"deferrals"`
	Bounced        int64 `json:"bounced"`
	Rejected       int64 `json:"rejected"`
	RejectWarnings int64 `json:"reject_warnings"`
	Held           int64 `json:"held"`
	Discarded      int64 `json:"discarded"`
	BytesReceived  int64 `json:"bytes_received"`
	BytesDelivered int64 `json:"bytes_delivered"`
	Senders        int64 `json:"senders"`
	SendingHosts   int64 `json:"sending_hosts"`
	Recipients     int64 `json:"recipients"`
	RecipientHosts int64 `json:"recipient_hosts"`
}

// Counts are one row of the traffic tables.
type Counts struct {
	Received  int64 `json:"received"`
	Delivered int64 `json:"delivered"`
	Deferred  int64 `json:"deferred"` // deferral attempts, as pflogsumm counts them here
	Bounced   int64 `json:"bounced"`
	Rejected  int64 `json:"rejected"`
}

// DayCount is one day of traffic.
type DayCount struct {
	Date string `json:"date"` // YYYY-MM-DD
	Counts
}

// HourCount is one hour of the day, summed over the days of the report.
type HourCount struct {
	Hour int `json:"hour"`
	Counts
}

// Bucket is one step of the Traffic series.
type Bucket struct {
	Start time.Time `json:"start"`
	Counts
}

// Volume is a sender, recipient or domain with its messages and bytes.
type Volume struct {
	Name     string `json:"name"`
	Messages int64  `json:"messages"`
	Bytes    int64  `json:"bytes"`
}

// DomainDelivery is a recipient domain: deliveries, bytes, deferrals and
// delivery delays (average over deliveries, maximum over deliveries and
// deferrals, as pflogsumm computes them).
type DomainDelivery struct {
	Name      string  `json:"name"`
	Delivered int64   `json:"delivered"`
	Bytes     int64   `json:"bytes"`
	Deferrals int64   `json:"deferrals"`
	Bounced   int64   `json:"bounced"`
	AvgDelayS float64 `json:"avg_delay_s"`
	MaxDelayS float64 `json:"max_delay_s"`
}

// Reason is a group of deferrals, bounces, rejections, warnings, holds or
// discards with the same reply code, enhanced code and reason.
type Reason struct {
	// Group is the reject stage (RCPT, DATA, CONNECT, header, …) or the
	// bounce's relay.
	Group        string     `json:"group,omitempty"`
	ReplyCode    int        `json:"reply_code,omitempty"`
	EnhancedCode string     `json:"enhanced_code,omitempty"`
	Reason       string     `json:"reason"`
	Count        int64      `json:"count"`
	Top          []KeyCount `json:"top,omitempty"` // recipients, senders or clients most often concerned
}

// KeyCount is a key and how often it was seen.
type KeyCount struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// SASL summarises authenticated submissions and failed authentications.
type SASL struct {
	Users    []Volume      `json:"users"`
	Failures []SASLFailure `json:"failures"`
}

// SASLFailure is a failed authentication, grouped by client, user and
// mechanism.
type SASLFailure struct {
	ClientIP  string `json:"client_ip,omitempty"`
	Username  string `json:"username,omitempty"`
	Mechanism string `json:"mechanism,omitempty"`
	Count     int64  `json:"count"`
}

// TLSUsage counts encrypted messages: inbound (received) and outbound
// (delivered).
type TLSUsage struct {
	Inbound  TLSSide `json:"inbound"`
	Outbound TLSSide `json:"outbound"`
}

// TLSSide is one direction of TLSUsage.
type TLSSide struct {
	Messages  int64      `json:"messages"`
	Encrypted int64      `json:"encrypted"`
	Versions  []KeyCount `json:"versions,omitempty"`
	Ciphers   []KeyCount `json:"ciphers,omitempty"`
	Trust     []KeyCount `json:"trust,omitempty"`
}

// Diagnostic is an MTA's warning, error, fatal or panic line (or a master
// daemon message), grouped by program and text.
type Diagnostic struct {
	Level   string `json:"level"`
	Program string `json:"program"`
	Text    string `json:"text"`
	Count   int64  `json:"count"`
}

// Latency holds percentiles of delivery delays over successful deliveries:
// the total delay and Postfix's delays=a/b/c/d parts.
type Latency struct {
	Total Percentiles `json:"total"`
	// BeforeQmgr (a): from arrival to the queue manager, including the
	// message transmission from the client.
	BeforeQmgr Percentiles `json:"before_qmgr"`
	// InQmgr (b): in the queue manager (queue wait).
	InQmgr Percentiles `json:"in_qmgr"`
	// ConnSetup (c): connection setup, DNS, HELO and TLS.
	ConnSetup Percentiles `json:"conn_setup"`
	// Transmission (d): message transmission to the next hop.
	Transmission Percentiles `json:"transmission"`
}

// Percentiles summarise a distribution in seconds; quantiles are accurate
// to 2%.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// CodeCount counts failures (deferrals, bounces, rejections) by class
// (4xx temporary, 5xx permanent) and enhanced status code.
type CodeCount struct {
	Class        string `json:"class"` // "4xx" or "5xx"
	EnhancedCode string `json:"enhanced_code"`
	Count        int64  `json:"count"`
	Example      string `json:"example,omitempty"` // one reply with this code
}

// RemoteMX is a next-hop MTA with its delivery attempts and how many
// failed.
type RemoteMX struct {
	Relay       string  `json:"relay"`
	Attempts    int64   `json:"attempts"`
	Sent        int64   `json:"sent"`
	Deferred    int64   `json:"deferred"`
	Bounced     int64   `json:"bounced"`
	FailureRate float64 `json:"failure_rate"` // (deferred+bounced)/attempts
}

// Input describes what was read, set by the caller.
type Input struct {
	Lines    int64            `json:"lines"`
	Bytes    int64            `json:"bytes"`
	Records  int64            `json:"records"`
	Unparsed map[string]int64 `json:"unparsed,omitempty"` // per program
}
