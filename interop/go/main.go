// Command qtalk-go-peer is a small test peer built on the reference Go
// implementation of qtalk (github.com/progrium/qtalk-go: mux, rpc, fn, talk
// and the CBOR codec of x/cbor). The Rust integration tests start it as a
// subprocess and talk to it over stdio, TCP, WebSocket or QUIC, so that the Rust
// implementation is checked against the real thing.
//
// Every event is logged as one line on stderr; in stdio mode stdout carries
// only protocol bytes. See README.md for the flags and modes.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/progrium/qtalk-go/mux"
)

var logMu sync.Mutex

// logf writes one event line to stderr immediately (os.Stderr is unbuffered;
// the mutex keeps lines from concurrent goroutines whole).
func logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	line = strings.ReplaceAll(line, "\n", " ") + "\n"
	logMu.Lock()
	os.Stderr.WriteString(line)
	logMu.Unlock()
}

type options struct {
	mode     string
	listen   string
	dial     string
	ws       bool // -listen / -dial speak qmux over WebSocket
	quic     bool // -listen / -dial use QUIC (UDP) as the base layer
	channels int
	size     int64
	chunk    int
	timeout  time.Duration
	linger   time.Duration
	codec    string
	codecSet bool // -codec was given explicitly
	duration time.Duration
	cmd      string
	careful  bool
	runs     int    // record: runs of the check sequence
	variants int    // record: variants kept beside the most frequent ordering
	out      string // record: output directory
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "echo", "echo | hello | recv | closefirst | open | sequential | selfbench | rpc-serve | rpc-call | interop | check | rpc-selfbench | record")
	flag.StringVar(&o.listen, "listen", "", "listen on this TCP address (UDP with -quic; e.g. 127.0.0.1:0) and serve exactly one connection")
	flag.StringVar(&o.dial, "dial", "", "dial this TCP address (UDP with -quic)")
	flag.BoolVar(&o.ws, "ws", false, "with -listen or -dial: qmux over WebSocket (the reference's mux.ListenWS / mux.DialWS, path /) instead of plain TCP")
	flag.BoolVar(&o.quic, "quic", false, "with -listen or -dial: QUIC over UDP (one stream per channel, ALPN qtalk-quic, as the reference's x/quic) instead of TCP; the listener uses a fresh self-signed certificate, the dialer does not verify certificates")
	flag.IntVar(&o.channels, "channels", 0, "number of channels (open, sequential: default 1; selfbench: default 16)")
	flag.Int64Var(&o.size, "size", -1, "bytes per channel (open: default 1024; selfbench: total bytes, default 1 GiB)")
	flag.IntVar(&o.chunk, "chunk", 32768, "write size in bytes (open, selfbench)")
	flag.DurationVar(&o.timeout, "timeout", 120*time.Second, "client modes (open, sequential, rpc-call, check): give up and exit 1 after this long (0 = never)")
	flag.DurationVar(&o.linger, "linger", 100*time.Millisecond, "client modes (open, sequential, rpc-call): wait this long after 'done' before closing the session, so the peer's CLOSE replies can arrive")
	flag.StringVar(&o.codec, "codec", "json", "rpc modes: json | cbor (interop, check: default from QTALK_CODEC, CBOR unless it is json)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "rpc-selfbench: measuring time per scenario")
	flag.BoolVar(&o.careful, "careful", false, "check: send each call's header and arguments in one write and drain error answers before closing (avoids races of the reference's own server; off by default so that peers are checked with the reference's plain client)")
	flag.IntVar(&o.runs, "runs", 30, "record: runs of the check sequence")
	flag.IntVar(&o.variants, "variants", 9, "record: orderings kept beside the most frequent one (-1: all)")
	flag.StringVar(&o.out, "out", "", "record: write the transcripts into this directory")
	flag.StringVar(&o.cmd, "cmd", "", "check: run this command with sh -c as the peer, over its stdin/stdout")
	flag.Parse()
	modeSet := false
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "codec":
			o.codecSet = true
		case "mode":
			modeSet = true
		}
	})
	// Like the reference's qtalk command: "interop" and "check [CMD]" also
	// work as positional arguments (after the flags).
	rest := flag.Args()
	if len(rest) > 0 && !modeSet {
		switch {
		case rest[0] == "interop" && len(rest) == 1:
			o.mode, rest = "interop", nil
		case rest[0] == "check" && len(rest) <= 2 && o.cmd == "":
			if len(rest) == 2 {
				o.cmd = rest[1]
			}
			o.mode, rest = "check", nil
		}
	}

	// Without this, Go kills the process with SIGPIPE when the peer stops
	// reading our stdout; with it the write just fails and the session ends.
	signal.Ignore(syscall.SIGPIPE)

	if len(rest) != 0 {
		fatalf("unexpected arguments: %v", rest)
	}
	if o.listen != "" && o.dial != "" {
		fatalf("-listen and -dial are mutually exclusive")
	}
	if o.ws && o.listen == "" && o.dial == "" {
		fatalf("-ws needs -listen or -dial")
	}
	if o.quic && o.listen == "" && o.dial == "" {
		fatalf("-quic needs -listen or -dial")
	}
	if o.quic && o.ws {
		fatalf("-quic and -ws are mutually exclusive")
	}
	if o.chunk <= 0 {
		fatalf("-chunk must be positive")
	}
	if o.codec != "json" && o.codec != "cbor" {
		fatalf("unknown codec %q (json | cbor)", o.codec)
	}

	switch o.mode {
	case "rpc-selfbench":
		rpcSelfbench(o)
		return
	case "record":
		record(o)
		return
	case "check":
		if o.listen != "" {
			fatalf("check: -listen is not supported (use -dial or -cmd)")
		}
		check(o)
		return
	case "rpc-serve", "rpc-call", "interop":
	case "selfbench":
		if o.channels <= 0 {
			o.channels = 16
		}
		if o.size < 0 {
			o.size = 1 << 30
		}
		selfbench(o)
		return
	case "open", "sequential":
		if o.channels <= 0 {
			o.channels = 1
		}
		if o.size < 0 {
			o.size = 1024
		}
	case "echo", "hello", "recv", "closefirst":
	default:
		fatalf("unknown mode %q", o.mode)
	}

	sess := connect(o)

	switch o.mode {
	case "echo":
		serve(sess, echoChannel)
	case "hello":
		hello(sess)
	case "recv":
		serve(sess, recvChannel)
	case "closefirst":
		serve(sess, closeFirstChannel)
	case "open":
		runClient(sess, o, openMode)
	case "sequential":
		runClient(sess, o, sequentialMode)
	case "rpc-serve":
		rpcServe(sess, o)
	case "rpc-call":
		rpcCall(sess, o)
	case "interop":
		interopServe(sess, o)
	}
}

func fatalf(format string, args ...any) {
	logf("error "+format, args...)
	os.Exit(2)
}

// connect sets up the transport and returns the mux session on it.
func connect(o options) mux.Session {
	switch {
	case o.listen != "" && o.quic:
		l, err := quicListen(o.listen)
		if err != nil {
			fatalf("listen: %v", err)
		}
		logf("listening %s", l.Addr())
		sess, err := quicAccept(l)
		// Closing the listener leaves the accepted connection alone.
		l.Close()
		if err != nil {
			fatalf("accept: %v", err)
		}
		return sess
	case o.listen != "":
		listen := mux.ListenTCP
		if o.ws {
			listen = mux.ListenWS
		}
		l, err := listen(o.listen)
		if err != nil {
			fatalf("listen: %v", err)
		}
		logf("listening %s", l.Addr())
		sess, err := l.Accept()
		l.Close()
		if err != nil {
			fatalf("accept: %v", err)
		}
		return sess
	case o.dial != "":
		return dial(o)
	default:
		sess, err := mux.DialIO(os.Stdout, os.Stdin)
		if err != nil {
			fatalf("stdio: %v", err)
		}
		return sess
	}
}

// dial connects to o.dial over TCP, or over WebSocket with -ws, or over QUIC
// with -quic.
func dial(o options) mux.Session {
	d := mux.DialTCP
	switch {
	case o.ws:
		d = mux.DialWS
	case o.quic:
		d = quicDial
	}
	sess, err := d(o.dial)
	if err != nil {
		fatalf("dial: %v", err)
	}
	return sess
}

// endSession waits for the session to end, logs it and exits 0.
func endSession(sess mux.Session) {
	err := sess.Wait()
	logf("session-end %v", err)
	os.Exit(0)
}

// serve accepts channels until the session ends, running handle for each one
// in its own goroutine. When the session has ended it gives the handlers a
// moment to log their last events, then logs session-end and exits 0.
func serve(sess mux.Session, handle func(mux.Channel)) {
	var wg sync.WaitGroup
	for {
		ch, err := sess.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(ch)
		}()
	}
	err := sess.Wait()
	waitTimeout(&wg, 2*time.Second)
	logf("session-end %v", err)
	os.Exit(0)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// closeChannel sends CLOSE. The reference returns io.EOF when a CLOSE was
// already sent on the channel, which includes the automatic reply it sends
// when the peer's CLOSE arrived first (and channels dropped with the
// session); that is not an error for the peer's purposes.
func closeChannel(ch mux.Channel) error {
	if err := ch.Close(); err != io.EOF {
		return err
	}
	return nil
}

// closeWrite sends EOF, with the same treatment of io.EOF as closeChannel
// (nothing can be sent on a channel that is already closed).
func closeWrite(ch mux.Channel) error {
	if err := ch.CloseWrite(); err != io.EOF {
		return err
	}
	return nil
}

// echoChannel copies everything it reads back to the channel; at read EOF it
// sends EOF (CloseWrite) and then CLOSE.
func echoChannel(ch mux.Channel) {
	id := ch.ID()
	logf("accept %d", id)
	buf := make([]byte, 32*1024)
	var total int64
	for {
		n, rerr := ch.Read(buf)
		if n > 0 {
			if _, werr := ch.Write(buf[:n]); werr != nil {
				logf("error %d write: %v", id, werr)
				ch.Close()
				logf("closed %d", id)
				return
			}
			total += int64(n)
		}
		if rerr != nil {
			if rerr != io.EOF {
				logf("error %d read: %v", id, rerr)
			}
			break
		}
	}
	logf("eof %d %d", id, total)
	if err := closeWrite(ch); err != nil {
		logf("error %d closewrite: %v", id, err)
	}
	if err := closeChannel(ch); err != nil {
		logf("error %d close: %v", id, err)
	}
	logf("closed %d", id)
}

// hello accepts a single channel, writes a greeting and closes it without
// sending EOF first, then keeps the session until it ends.
func hello(sess mux.Session) {
	ch, err := sess.Accept()
	if err != nil {
		logf("error accept: %v", err)
		endSession(sess)
	}
	if _, err := ch.Write([]byte("Hello world")); err != nil {
		logf("error %d write: %v", ch.ID(), err)
	}
	if err := closeChannel(ch); err != nil {
		logf("error %d close: %v", ch.ID(), err)
	}
	logf("hello %d", ch.ID())
	endSession(sess)
}

// recvChannel reads everything until EOF (or an error) and logs the byte
// count and SHA-256 of what it got, then closes the channel.
func recvChannel(ch mux.Channel) {
	id := ch.ID()
	h := sha256.New()
	n, err := io.Copy(h, ch)
	if err != nil {
		logf("error %d read: %v", id, err)
	}
	logf("recv %d %d %s", id, n, hex.EncodeToString(h.Sum(nil)))
	if err := closeChannel(ch); err != nil {
		logf("error %d close: %v", id, err)
	}
}

// closeFirstChannel reads exactly 5 bytes and then closes the channel
// without sending EOF, while the peer may still be sending.
func closeFirstChannel(ch mux.Channel) {
	id := ch.ID()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(ch, buf); err != nil {
		logf("error %d read: %v", id, err)
	} else {
		logf("read %d %s", id, buf)
	}
	if err := closeChannel(ch); err != nil {
		logf("error %d close: %v", id, err)
	}
	logf("closed %d", id)
}

// pattern fills buf with the test pattern of channel i starting at offset off:
// byte(k) = byte((k + 7*i) % 251).
func pattern(buf []byte, i int, off int64) {
	v := (off + 7*int64(i)) % 251
	for j := range buf {
		buf[j] = byte(v)
		v++
		if v == 251 {
			v = 0
		}
	}
}

// failures tracks which channels of a client mode have finished.
type failures struct {
	mu   sync.Mutex
	done map[int]bool
}

// fail logs the failure of channel i and exits 1 at once.
func (f *failures) fail(i int, format string, args ...any) {
	f.mu.Lock()
	logf("fail %d %s", i, fmt.Sprintf(format, args...))
	os.Exit(1)
}

func (f *failures) finish(i int) {
	f.mu.Lock()
	f.done[i] = true
	f.mu.Unlock()
}

// runClient runs a client mode with an overall timeout, then logs done,
// closes the session and exits 0. A failing channel exits 1 (see fail).
func runClient(sess mux.Session, o options, run func(mux.Session, options, *failures)) {
	f := &failures{done: map[int]bool{}}
	finished := make(chan struct{})
	go func() {
		run(sess, o, f)
		close(finished)
	}()
	var timeout <-chan time.Time
	if o.timeout > 0 {
		timeout = time.After(o.timeout)
	}
	select {
	case <-finished:
	case <-timeout:
		f.mu.Lock()
		var pending []int
		for i := 0; i < o.channels; i++ {
			if !f.done[i] {
				pending = append(pending, i)
			}
		}
		sort.Ints(pending)
		for _, i := range pending {
			logf("fail %d timeout after %v", i, o.timeout)
		}
		os.Exit(1)
	}
	logf("done")
	// Give the peer's CLOSE replies a moment to arrive before hanging up.
	time.Sleep(o.linger)
	sess.Close()
	ended := make(chan error, 1)
	go func() { ended <- sess.Wait() }()
	select {
	case err := <-ended:
		logf("session-end %v", err)
	case <-time.After(2 * time.Second):
		logf("session-end timeout")
	}
	os.Exit(0)
}

// openMode opens o.channels channels at once; each one sends o.size bytes of
// its pattern, sends EOF, reads the echo back to EOF and compares it.
func openMode(sess mux.Session, o options, f *failures) {
	var wg sync.WaitGroup
	for i := 0; i < o.channels; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := openOne(sess, o, i); err != nil {
				f.fail(i, "%v", err)
				return
			}
			f.finish(i)
		}(i)
	}
	wg.Wait()
}

func openOne(sess mux.Session, o options, i int) error {
	ch, err := sess.Open(context.Background())
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	defer ch.Close()

	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, o.chunk)
		var off int64
		for off < o.size {
			n := int64(len(buf))
			if rest := o.size - off; rest < n {
				n = rest
			}
			pattern(buf[:n], i, off)
			if _, err := ch.Write(buf[:n]); err != nil {
				werr <- fmt.Errorf("write at %d: %v", off, err)
				return
			}
			off += n
		}
		if err := ch.CloseWrite(); err != nil {
			werr <- fmt.Errorf("closewrite: %v", err)
			return
		}
		werr <- nil
	}()

	got, err := readCompare(ch, i, o.size)
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if err := closeChannel(ch); err != nil {
		return fmt.Errorf("close: %v", err)
	}
	logf("ok %d %d %d", i, ch.ID(), got)
	return nil
}

// readCompare reads ch to EOF, checking the bytes against channel i's
// pattern and the total against want.
func readCompare(ch mux.Channel, i int, want int64) (int64, error) {
	buf := make([]byte, 64*1024)
	exp := make([]byte, len(buf))
	var off int64
	for {
		n, err := ch.Read(buf)
		if n > 0 {
			if off+int64(n) > want {
				return off + int64(n), fmt.Errorf("got more than %d bytes", want)
			}
			pattern(exp[:n], i, off)
			for j := 0; j < n; j++ {
				if buf[j] != exp[j] {
					return off, fmt.Errorf("mismatch at offset %d: got %d want %d", off+int64(j), buf[j], exp[j])
				}
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return off, fmt.Errorf("read at %d: %v", off, err)
		}
	}
	if off != want {
		return off, fmt.Errorf("short echo: got %d bytes want %d", off, want)
	}
	return off, nil
}

// sequentialMode opens o.channels channels one after another; each sends
// "ping", sends EOF, reads the echo to EOF, checks it and closes.
func sequentialMode(sess mux.Session, o options, f *failures) {
	for i := 0; i < o.channels; i++ {
		if err := sequentialOne(sess, i); err != nil {
			f.fail(i, "%v", err)
			return
		}
		f.finish(i)
		// Let the peer's CLOSE reply arrive so that the local id is freed.
		time.Sleep(20 * time.Millisecond)
	}
}

func sequentialOne(sess mux.Session, i int) error {
	ch, err := sess.Open(context.Background())
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	defer ch.Close()
	logf("open %d %d", i, ch.ID())
	if _, err := ch.Write([]byte("ping")); err != nil {
		return fmt.Errorf("write: %v", err)
	}
	if err := ch.CloseWrite(); err != nil {
		return fmt.Errorf("closewrite: %v", err)
	}
	got, err := io.ReadAll(ch)
	if err != nil {
		return fmt.Errorf("read: %v", err)
	}
	if string(got) != "ping" {
		return fmt.Errorf("echo mismatch: got %q", got)
	}
	if err := closeChannel(ch); err != nil {
		return fmt.Errorf("close: %v", err)
	}
	return nil
}

// selfbench measures the reference mux against itself over TCP loopback, and
// raw TCP loopback for comparison. Results go to stdout, one line each:
// "<name> <n>ch <bytes> <seconds> <MB/s>" (MB = 10^6 bytes).
func selfbench(o options) {
	report := func(name string, n int, bytes int64, d time.Duration) {
		secs := d.Seconds()
		fmt.Printf("%s %dch %d %.3f %.1f\n", name, n, bytes, secs, float64(bytes)/1e6/secs)
	}

	d, err := benchMux(1, o.size, o.chunk)
	if err != nil {
		fatalf("selfbench go-mux 1ch: %v", err)
	}
	report("go-mux", 1, o.size, d)

	per := o.size / int64(o.channels)
	d, err = benchMux(o.channels, per, o.chunk)
	if err != nil {
		fatalf("selfbench go-mux %dch: %v", o.channels, err)
	}
	report("go-mux", o.channels, per*int64(o.channels), d)

	d, err = benchRawTCP(o.size, o.chunk)
	if err != nil {
		fatalf("selfbench raw-tcp: %v", err)
	}
	report("raw-tcp", 1, o.size, d)
}

// benchMux connects two mux sessions over TCP loopback, opens n channels and
// pushes size bytes through each in chunk-sized writes while the other side
// reads and discards. It returns the time until every reader saw EOF.
func benchMux(n int, size int64, chunk int) (time.Duration, error) {
	l, err := mux.ListenTCP("127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	type accepted struct {
		sess mux.Session
		err  error
	}
	acc := make(chan accepted, 1)
	go func() {
		s, err := l.Accept()
		acc <- accepted{s, err}
	}()
	client, err := mux.DialTCP(l.Addr().String())
	if err != nil {
		return 0, err
	}
	defer client.Close()
	a := <-acc
	if a.err != nil {
		return 0, a.err
	}
	server := a.sess
	defer server.Close()

	errs := make(chan error, 1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	var readers sync.WaitGroup
	readers.Add(n)
	go func() {
		for i := 0; i < n; i++ {
			ch, err := server.Accept()
			if err != nil {
				report(fmt.Errorf("accept: %v", err))
				for ; i < n; i++ {
					readers.Done()
				}
				return
			}
			go func() {
				defer readers.Done()
				buf := make([]byte, 32*1024)
				var got int64
				for {
					k, err := ch.Read(buf)
					got += int64(k)
					if err == io.EOF {
						break
					}
					if err != nil {
						report(fmt.Errorf("read: %v", err))
						return
					}
				}
				if got != size {
					report(fmt.Errorf("read %d bytes, want %d", got, size))
				}
				ch.Close()
			}()
		}
	}()

	chans := make([]mux.Channel, n)
	for i := range chans {
		ch, err := client.Open(context.Background())
		if err != nil {
			return 0, fmt.Errorf("open: %v", err)
		}
		chans[i] = ch
	}

	start := time.Now()
	var writers sync.WaitGroup
	for _, ch := range chans {
		writers.Add(1)
		go func(ch mux.Channel) {
			defer writers.Done()
			buf := make([]byte, chunk)
			pattern(buf, 0, 0)
			var sent int64
			for sent < size {
				k := int64(len(buf))
				if rest := size - sent; rest < k {
					k = rest
				}
				if _, err := ch.Write(buf[:k]); err != nil {
					report(fmt.Errorf("write: %v", err))
					return
				}
				sent += k
			}
			if err := ch.CloseWrite(); err != nil {
				report(fmt.Errorf("closewrite: %v", err))
			}
		}(ch)
	}
	writers.Wait()
	readers.Wait()
	elapsed := time.Since(start)
	for _, ch := range chans {
		ch.Close()
	}
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return elapsed, nil
}

// benchRawTCP copies size bytes over a plain TCP loopback connection in
// chunk-sized writes and returns the time until the reader saw EOF.
func benchRawTCP(size int64, chunk int) (time.Duration, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			res <- result{0, err}
			return
		}
		defer c.Close()
		buf := make([]byte, 32*1024)
		var got int64
		for {
			k, err := c.Read(buf)
			got += int64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				res <- result{got, err}
				return
			}
		}
		res <- result{got, nil}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	buf := make([]byte, chunk)
	pattern(buf, 0, 0)
	var sent int64
	for sent < size {
		k := int64(len(buf))
		if rest := size - sent; rest < k {
			k = rest
		}
		if _, err := c.Write(buf[:k]); err != nil {
			return 0, err
		}
		sent += k
	}
	c.(*net.TCPConn).CloseWrite()
	r := <-res
	elapsed := time.Since(start)
	if r.err != nil {
		return 0, r.err
	}
	if r.n != size {
		return 0, fmt.Errorf("read %d bytes, want %d", r.n, size)
	}
	return elapsed, nil
}
