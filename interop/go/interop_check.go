package main

// The interop and check modes: the reference's cross-implementation check,
// as its `qtalk interop` and `qtalk check` commands (cmd/qtalk) run it, over
// stdio, TCP or WebSocket, or over QUIC as the reference does (-quic, see
// quic.go). The services themselves come from the reference's interop
// package.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/progrium/qtalk-go/fn"
	"github.com/progrium/qtalk-go/interop"
	"github.com/progrium/qtalk-go/mux"
	"github.com/progrium/qtalk-go/rpc"
)

// interopServe serves the reference's InteropService (Unary, Stream and
// Bytes, which call the same selector back on the caller, and Error) on sess
// until the session ends.
func interopServe(sess mux.Session, o options) {
	c, _ := interopCodec(o)
	srv := rpc.Server{
		Handler: fn.HandlerFrom(interop.InteropService{}),
		Codec:   c,
	}
	srv.Respond(sess, nil)
	logf("session-end %v", sess.Wait())
	os.Exit(0)
}

// checkValues are the values the check sends through Unary and Stream.
var checkValues = []any{
	100,
	true,
	"hello",
	map[string]any{"foo": "bar"},
	[]any{1, 2, 3},
}

// check runs the reference's check sequence against a peer serving the
// interop service: the command given with -cmd (run by sh -c, speaking qmux
// on its stdin/stdout), a listening peer at -dial, or else this program in
// interop mode. It serves the reference's CallbackService for the peer's
// calls back. Results go to stdout in the reference's format; a failure logs
// "fail check <reason>" on stderr and exits 1. Stricter than the reference,
// which only prints: the errors must come from the peer, and what Unary,
// Stream and Bytes send must come back unchanged.
func check(o options) {
	c, name := interopCodec(o)
	if name == "json" {
		logf("* Using JSON codec")
	}

	var sess mux.Session
	var cmd *exec.Cmd
	if o.dial != "" {
		sess = dial(o)
	} else {
		if o.cmd != "" {
			cmd = exec.Command("sh", "-c", o.cmd)
		} else {
			self, err := os.Executable()
			if err != nil {
				fatalf("executable: %v", err)
			}
			args := []string{"-mode", "interop"}
			if o.codecSet {
				args = append(args, "-codec", o.codec)
			}
			cmd = exec.Command(self, args...)
		}
		cmd.Stderr = os.Stderr
		w, err := cmd.StdinPipe()
		if err != nil {
			fatalf("stdin pipe: %v", err)
		}
		r, err := cmd.StdoutPipe()
		if err != nil {
			fatalf("stdout pipe: %v", err)
		}
		if err := cmd.Start(); err != nil {
			fatalf("start %q: %v", o.cmd, err)
		}
		sess, _ = mux.DialIO(w, r)
	}

	// finish ends the session and the peer process (interrupt, then kill
	// after a grace period).
	finish := func() {
		sess.Close()
		if cmd == nil {
			return
		}
		cmd.Process.Signal(syscall.SIGINT)
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	failf := func(format string, args ...any) {
		logf("fail check "+format, args...)
		finish()
		os.Exit(1)
	}
	if o.timeout > 0 {
		go func() {
			time.Sleep(o.timeout)
			failf("timeout after %v", o.timeout)
		}()
	}

	srv := rpc.Server{
		Handler: fn.HandlerFrom(interop.CallbackService{}),
		Codec:   c,
	}
	go srv.Respond(sess, nil)
	// With -careful, calls go through careful (see there): against the
	// reference's own server (a Go peer) the unknown selector is answered
	// before its arguments are read and error answers are closed early, which
	// fails the reference's plain client now and then (about one run in 25).
	var calls mux.Session = sess
	if o.careful {
		calls = careful{sess}
	}
	caller := rpc.NewClient(calls, c)
	ctx := context.Background()

	// Errors: the handler's own, then an unknown selector.
	for _, sel := range []string{"Error", "BadSelector"} {
		_, err := caller.Call(ctx, sel, "test", nil)
		if err == nil {
			failf("%s: expected error", sel)
		}
		if !errors.As(err, new(rpc.RemoteError)) {
			failf("%s: expected an error from the peer, got %v", sel, err)
		}
		fmt.Println("Error:", strings.TrimPrefix(err.Error(), "remote: "))
	}

	// Unary: each value makes a round trip through the peer and back
	// through our CallbackService.
	for _, v := range checkValues {
		var ret any
		if _, err := caller.Call(ctx, "Unary", v, &ret); err != nil {
			failf("Unary %v: %v", v, err)
		}
		fmt.Println("Unary:", v, ret)
		if !sameValue(ret, v) {
			failf("Unary %v: got %v back", v, ret)
		}
	}

	// Stream: send all values, half-close, print what comes back until the
	// stream ends.
	resp, err := caller.Call(ctx, "Stream", nil, nil)
	if err != nil {
		failf("Stream: %v", err)
	}
	go func() {
		for _, v := range checkValues {
			if err := resp.Send(v); err != nil {
				failf("Stream send: %v", err)
			}
		}
		if err := resp.Channel.CloseWrite(); err != nil {
			failf("Stream closewrite: %v", err)
		}
	}()
	var streamed []any
	for {
		var ret any
		if err := resp.Receive(&ret); err != nil {
			break
		}
		fmt.Println("Stream:", ret)
		streamed = append(streamed, ret)
	}
	resp.Channel.Close()
	if !sameValue(streamed, checkValues) {
		failf("Stream: got %v back, sent %v", streamed, checkValues)
	}

	// Bytes: 1 byte, 1 KiB and 1 MiB of data through the peer and back.
	for _, size := range []int{1, 1024, 1 << 20} {
		data := make([]byte, size)
		pattern(data, size%251, 0)
		resp, err := caller.Call(ctx, "Bytes", nil, nil)
		if err != nil {
			failf("Bytes: %v", err)
		}
		go func() {
			resp.Channel.Write(data)
			resp.Channel.CloseWrite()
		}()
		var back bytes.Buffer
		io.Copy(&back, resp.Channel)
		resp.Channel.Close()
		// The reference compares lengths only; the contents are checked too.
		if !bytes.Equal(back.Bytes(), data) {
			failf("Bytes: byte stream buffer does not match (%d bytes back of %d)", back.Len(), len(data))
		}
		fmt.Println("Bytes:", back.Len())
	}
	finish()
}
