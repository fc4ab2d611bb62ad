package testenv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"time"
)

// SendMail sends one message to the SMTP server at addr with net/smtp and
// returns the server's reply to the final dot without its code, e.g.
// "2.0.0 Ok: queued as 4ABC" (net/smtp's own SendMail discards it, so DATA
// is driven through the client's textproto.Conn). With tlsConf it issues
// STARTTLS after EHLO. Recipients refused at RCPT are skipped and their
// errors (*textproto.Error, with the code) returned in rcptErrs; the
// transaction goes on if any recipient was accepted. msg is the message
// with CRLF line ends, without the terminating dot; dot-stuffing is done
// here. The whole session must end within 30 seconds.
func SendMail(addr string, tlsConf *tls.Config, from string, to []string, msg string) (reply string, rcptErrs []error, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", nil, err
	}
	// One deadline for the whole session keeps a stuck server from
	// hanging the test.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return "", nil, err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return "", nil, err
	}
	if tlsConf != nil {
		if err := c.StartTLS(tlsConf); err != nil {
			return "", nil, fmt.Errorf("starttls: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return "", nil, err
	}
	accepted := 0
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			rcptErrs = append(rcptErrs, err)
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return "", rcptErrs, errors.New("no recipient accepted")
	}
	id, err := c.Text.Cmd("DATA")
	if err != nil {
		return "", rcptErrs, err
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(354)
	c.Text.EndResponse(id)
	if err != nil {
		return "", rcptErrs, err
	}
	w := c.Text.DotWriter()
	if _, err := w.Write([]byte(msg)); err != nil {
		return "", rcptErrs, err
	}
	if err := w.Close(); err != nil {
		return "", rcptErrs, err
	}
	_, reply, err = c.Text.ReadResponse(250)
	if err != nil {
		return "", rcptErrs, err
	}
	return reply, rcptErrs, c.Quit()
}
