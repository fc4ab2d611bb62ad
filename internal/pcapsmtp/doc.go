// Package pcapsmtp turns captured network traffic into smtplog records: it
// reads pcap and pcapng files (its own small reader, no cgo, no gopacket:
// see capfile.go), reassembles TCP streams (retransmissions, duplicates and
// out-of-order segments are put back in order, lost segments become gaps),
// finds SMTP conversations by their content rather than by port, and decodes
// each with the wire layer the relay uses (internal/smtpwire) into one
// session record per connection and one message record per transaction,
// with source "pcap".
//
// The decoder of one conversation ([Conversation]) is pure: it is fed the
// bytes of each direction with their capture timestamps and emits records
// to a [record.Handler]; the pcap reader ([Decoder]) is the only part that
// knows about packets.
//
// It follows RFC 5321 (SMTP), RFC 2920 (PIPELINING: replies are paired with
// commands in order, whatever the packets), RFC 3030 (BDAT/CHUNKING), RFC
// 4954 (AUTH: the user name is kept, the secret never leaves the decoder)
// and RFC 3207 (STARTTLS: what follows the 220 is encrypted; the session is
// recorded with tls.used and the flag content_encrypted, and of what
// follows only the cleartext start of the TLS handshake is read: the
// ClientHello's server name and versions offered, the ServerHello's
// version and cipher suite, and an alert sent in cleartext; the same on an
// implicit-TLS port). Memory is bounded: connections are flushed when they
// close, when they have been idle for a while in capture time, and when the
// capture ends; message content is kept only up to a limit per connection.
package pcapsmtp
