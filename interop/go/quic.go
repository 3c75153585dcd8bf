package main

// QUIC as the base layer (-quic): the reference's mux.Session and
// mux.Channel interfaces implemented on a quic-go connection, with the wire
// mapping of the reference's x/quic package (which pins an old quic-go and
// is not built here):
//
//   - TLS 1.3, ALPN "qtalk-quic";
//   - every channel is one bidirectional QUIC stream, and its ID is the
//     stream ID truncated to 32 bits;
//   - the side that opens a stream sends the single byte '!' at once, so the
//     peer learns of the stream; the accepting side drops that byte (here:
//     on the channel's first Read);
//   - CloseWrite finishes the stream's sending side (FIN); Close also stops
//     its receiving side (STOP_SENDING, error code 42);
//   - closing the session closes the connection with application error 42
//     and the reason "close connection"; an Accept that fails with an error
//     mentioning that reason reports io.EOF, the clean end of a session.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/progrium/qtalk-go/mux"
	"github.com/quic-go/quic-go"
)

const (
	quicALPN        = "qtalk-quic"
	quicCloseCode   = 42
	quicCloseReason = "close connection"
	quicOpenMarker  = '!'
)

// quicConfig is the quic-go configuration of both sides. Keep-alives stop an
// idle session from hitting QUIC's idle timeout (30 s by default).
func quicConfig() *quic.Config {
	return &quic.Config{KeepAlivePeriod: 10 * time.Second}
}

// quicSession is a mux.Session over one QUIC connection.
type quicSession struct {
	conn *quic.Conn
}

var _ mux.Session = (*quicSession)(nil)

func (s *quicSession) Open(ctx context.Context) (mux.Channel, error) {
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := st.Write([]byte{quicOpenMarker}); err != nil {
		st.CancelRead(quicCloseCode)
		st.CancelWrite(quicCloseCode)
		return nil, err
	}
	return &quicChannel{stream: st}, nil
}

func (s *quicSession) Accept() (mux.Channel, error) {
	st, err := s.conn.AcceptStream(context.Background())
	if err != nil {
		if strings.Contains(err.Error(), quicCloseReason) {
			return nil, io.EOF
		}
		return nil, err
	}
	return &quicChannel{stream: st, markerPending: true}, nil
}

func (s *quicSession) Close() error {
	return s.conn.CloseWithError(quicCloseCode, quicCloseReason)
}

// Wait blocks until the connection has ended and returns why.
func (s *quicSession) Wait() error {
	ctx := s.conn.Context()
	<-ctx.Done()
	return context.Cause(ctx)
}

// quicChannel is a mux.Channel over one bidirectional QUIC stream.
type quicChannel struct {
	stream *quic.Stream
	// markerPending: the channel was accepted and the opener's marker byte
	// has not been read yet. Only Read touches it (reads are not concurrent).
	markerPending bool
}

var _ mux.Channel = (*quicChannel)(nil)

func (c *quicChannel) ID() uint32 {
	return uint32(c.stream.StreamID())
}

func (c *quicChannel) Read(p []byte) (int, error) {
	if c.markerPending {
		var b [1]byte
		if _, err := io.ReadFull(c.stream, b[:]); err != nil {
			return 0, err
		}
		c.markerPending = false
	}
	return c.stream.Read(p)
}

func (c *quicChannel) Write(p []byte) (int, error) {
	return c.stream.Write(p)
}

// CloseWrite finishes the sending side (FIN).
func (c *quicChannel) CloseWrite() error {
	return c.stream.Close()
}

// Close stops the receiving side and finishes the sending side.
func (c *quicChannel) Close() error {
	c.stream.CancelRead(quicCloseCode)
	return c.stream.Close()
}

// quicListen listens for QUIC on the UDP address addr with a freshly
// generated self-signed certificate.
func quicListen(addr string) (*quic.Listener, error) {
	cert, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("certificate: %v", err)
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{quicALPN},
		MinVersion:   tls.VersionTLS13,
	}
	return quic.ListenAddr(addr, tlsConf, quicConfig())
}

// quicAccept waits for one connection on l and returns it as a session.
func quicAccept(l *quic.Listener) (mux.Session, error) {
	conn, err := l.Accept(context.Background())
	if err != nil {
		return nil, err
	}
	return &quicSession{conn: conn}, nil
}

// quicDial connects to the QUIC server at addr. Like the reference's checker
// it does not verify the server's certificate.
func quicDial(addr string) (mux.Session, error) {
	tlsConf := &tls.Config{
		InsecureSkipVerify: true,
		NextProtos:         []string{quicALPN},
		MinVersion:         tls.VersionTLS13,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, tlsConf, quicConfig())
	if err != nil {
		return nil, err
	}
	return &quicSession{conn: conn}, nil
}

// selfSignedCert makes an ECDSA P-256 certificate, valid for a day, for
// localhost, 127.0.0.1 and ::1.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "qtalk-go-peer"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
