package main

// The rpc-serve mode: a talk.Peer answering a fixed set of handlers, used by
// the Rust tests as the Go side of every kind of call. The same handlers back
// the in-process benchmark (rpc-selfbench), and whoami is also answered in
// rpc-call mode, where the Rust side calls back during a call.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/progrium/qtalk-go/codec"
	"github.com/progrium/qtalk-go/fn"
	"github.com/progrium/qtalk-go/mux"
	"github.com/progrium/qtalk-go/rpc"
	"github.com/progrium/qtalk-go/talk"
	cborcodec "github.com/progrium/qtalk-go/x/cbor/codec"
)

// rpcCodec returns the codec named by -codec (json or cbor).
func rpcCodec(o options) codec.Codec {
	if o.codec == "cbor" {
		return cborcodec.CBORCodec{}
	}
	return codec.JSONCodec{}
}

// interopCodec picks the codec the way the reference's qtalk commands do:
// CBOR unless QTALK_CODEC is "json". An explicit -codec flag wins.
func interopCodec(o options) (codec.Codec, string) {
	name := "cbor"
	if os.Getenv("QTALK_CODEC") == "json" {
		name = "json"
	}
	if o.codecSet {
		name = o.codec
	}
	if name == "json" {
		return codec.JSONCodec{}, name
	}
	return cborcodec.CBORCodec{}, name
}

// service is turned into handlers by fn.HandlerFrom: one per exported method,
// registered under the method's name. The arguments of such a handler are a
// positional array; its results are the method's results (an error result
// becomes the response error; two non-error results are two reply values).
type service struct{}

func (service) Upper(s string) string { return strings.ToUpper(s) }

func (service) Error(s string) error { return errors.New(s) }

func (service) Sum(a, b int) int { return a + b }

func (service) Pair() (string, int) { return "pair", 2 }

// receiveArgs reads the call's argument value (every call carries one).
func receiveArgs(c *rpc.Call) (any, error) {
	var v any
	err := c.Receive(&v)
	return v, err
}

// asInt reads a whole number from a decoded value: JSON gives float64, CBOR
// gives uint64 or int64.
func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		if n == float64(int64(n)) {
			return int64(n), true
		}
	case uint64:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

// doubled returns twice a decoded number (as an integer when it is whole).
func doubled(v any) (any, error) {
	if n, ok := asInt(v); ok {
		return 2 * n, nil
	}
	if f, ok := v.(float64); ok {
		return 2 * f, nil
	}
	return nil, fmt.Errorf("double: not a number: %v", v)
}

func echoHandler(r rpc.Responder, c *rpc.Call) {
	v, err := receiveArgs(c)
	if err != nil {
		r.Return(fmt.Errorf("echo: %v", err))
		return
	}
	r.Return(v)
}

func failHandler(r rpc.Responder, c *rpc.Call) {
	receiveArgs(c)
	r.Return(errors.New("user error"))
}

func whoamiHandler(r rpc.Responder, c *rpc.Call) {
	receiveArgs(c)
	r.Return("the Go peer")
}

// countHandler: server streaming. The argument is n; it continues, sends the
// numbers 0 .. n-1, then half-closes.
func countHandler(r rpc.Responder, c *rpc.Call) {
	args, err := receiveArgs(c)
	if err != nil {
		r.Return(fmt.Errorf("count: %v", err))
		return
	}
	n, ok := asInt(args)
	if !ok {
		r.Return(fmt.Errorf("count: want a number, got %v", args))
		return
	}
	ch, err := r.Continue()
	if err != nil {
		logf("error count continue: %v", err)
		return
	}
	defer ch.Close()
	for i := int64(0); i < n; i++ {
		if err := r.Send(i); err != nil {
			logf("error count send: %v", err)
			return
		}
	}
	if err := ch.CloseWrite(); err != nil {
		logf("error count closewrite: %v", err)
	}
}

// collectHandler: client streaming. After the argument it receives values
// until the caller half-closes, or, when the argument is a number n, until
// it has n of them (the reference's client streaming with a Go channel as
// args sends no EOF), and answers them as one list.
func collectHandler(r rpc.Responder, c *rpc.Call) {
	args, err := receiveArgs(c)
	if err != nil {
		r.Return(fmt.Errorf("collect: %v", err))
		return
	}
	limit, bounded := asInt(args)
	got := []any{}
	for !bounded || int64(len(got)) < limit {
		var v any
		if err := c.Receive(&v); err != nil {
			if err != io.EOF {
				r.Return(fmt.Errorf("collect: %v", err))
				return
			}
			break
		}
		got = append(got, v)
	}
	r.Return(got)
}

// doubleHandler: bidirectional streaming. It continues at once, then answers
// every number it receives with its double; at EOF it half-closes.
func doubleHandler(r rpc.Responder, c *rpc.Call) {
	if _, err := receiveArgs(c); err != nil {
		r.Return(fmt.Errorf("double: %v", err))
		return
	}
	ch, err := r.Continue()
	if err != nil {
		logf("error double continue: %v", err)
		return
	}
	defer ch.Close()
	for {
		var v any
		if err := c.Receive(&v); err != nil {
			if err != io.EOF {
				logf("error double receive: %v", err)
			}
			break
		}
		d, err := doubled(v)
		if err != nil {
			logf("error %v", err)
			return
		}
		if err := r.Send(d); err != nil {
			logf("error double send: %v", err)
			return
		}
	}
	if err := ch.CloseWrite(); err != nil {
		logf("error double closewrite: %v", err)
	}
}

// bytesHandler: continues, then the call is a raw byte stream: it echoes the
// bytes until EOF and half-closes.
func bytesHandler(r rpc.Responder, c *rpc.Call) {
	if _, err := receiveArgs(c); err != nil {
		r.Return(fmt.Errorf("bytes: %v", err))
		return
	}
	ch, err := r.Continue()
	if err != nil {
		logf("error bytes continue: %v", err)
		return
	}
	defer ch.Close()
	n, err := io.Copy(ch, c)
	if err != nil {
		logf("error bytes copy after %d bytes: %v", n, err)
		return
	}
	if err := ch.CloseWrite(); err != nil {
		logf("error bytes closewrite: %v", err)
	}
}

// callbackHandler calls whoami on whoever called it, during the call.
func callbackHandler(r rpc.Responder, c *rpc.Call) {
	receiveArgs(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var name string
	if _, err := c.Caller.Call(ctx, "whoami", nil, &name); err != nil {
		r.Return(fmt.Errorf("callback: whoami: %v", err))
		return
	}
	r.Return("hello, " + name)
}

// slowHandler answers after 500 ms, unless the caller gave up meanwhile: then
// it logs "cancelled slow" and leaves the answer to the server (which fails).
// Giving up shows as the end of the call's input (the peer's CLOSE ends reads
// with EOF; callers here never half-close a unary call). The error of Return
// cannot tell: it also fails when the caller, having read the answer, closed
// first.
func slowHandler(r rpc.Responder, c *rpc.Call) {
	receiveArgs(c)
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(gone)
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case <-gone:
		logf("cancelled slow")
		return
	default:
	}
	r.Return("slow done")
	logf("answered slow")
}

// register puts the rpc-serve handler set on m.
func register(m *rpc.RespondMux) {
	m.Handle("echo", rpc.HandlerFunc(echoHandler))
	m.Handle("fail", rpc.HandlerFunc(failHandler))
	m.Handle("count", rpc.HandlerFunc(countHandler))
	m.Handle("collect", rpc.HandlerFunc(collectHandler))
	m.Handle("double", rpc.HandlerFunc(doubleHandler))
	m.Handle("bytes", rpc.HandlerFunc(bytesHandler))
	m.Handle("callback", rpc.HandlerFunc(callbackHandler))
	m.Handle("slow", rpc.HandlerFunc(slowHandler))
	m.Handle("whoami", rpc.HandlerFunc(whoamiHandler))
	// fn.HandlerFrom of a struct is a RespondMux with one handler per method
	// (Upper, Error, Sum, Pair). Mounted at "/", it is consulted for every
	// selector without an exact match above; unknown selectors still get the
	// reference's "not found: <selector>".
	m.Handle("/", fn.HandlerFrom(service{}))
}

// rpcServe answers calls on sess until the session ends.
func rpcServe(sess mux.Session, o options) {
	peer := talk.NewPeer(sess, rpcCodec(o))
	register(peer.RespondMux)
	served := make(chan struct{})
	go func() {
		peer.Respond()
		close(served)
	}()
	logf("ready")
	err := sess.Wait()
	select {
	case <-served:
	case <-time.After(2 * time.Second):
	}
	logf("session-end %v", err)
	os.Exit(0)
}
