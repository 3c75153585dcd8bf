package main

// The scale mode: the Go side of the memory-per-idle-session and
// memory-per-idle-channel measurements of bench/ (xbench scale). It is a
// subcommand of its own, taken before main's flags are parsed:
//
//	qtalk-go-peer scale -what sessions|bare-sessions|channels [-listen 127.0.0.1:0] [-codec json|cbor]
//
// It listens on TCP and prints `listening <host:port>` on stdout. With
// `-what sessions` it serves every accepted session with the reference's
// rpc.Server (an `echo` handler; nobody calls it), so each session is what an
// idle RPC client costs a Go server; `-what bare-sessions` keeps the mux
// sessions without an RPC server on them. With `-what channels` it accepts one
// session and keeps every channel the peer opens, reading nothing. Every 100
// sessions or channels it prints `<what> N` (e.g. `channels 300`) on stdout. It runs
// until killed, or for -max (default 10 minutes) at most.

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/progrium/qtalk-go/codec"
	"github.com/progrium/qtalk-go/mux"
	"github.com/progrium/qtalk-go/rpc"
	cborcodec "github.com/progrium/qtalk-go/x/cbor/codec"
)

func init() {
	if len(os.Args) < 2 || os.Args[1] != "scale" {
		return
	}
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	what := fs.String("what", "sessions", "sessions | bare-sessions | channels")
	listen := fs.String("listen", "127.0.0.1:0", "TCP address to listen on")
	codecName := fs.String("codec", "json", "json | cbor (sessions)")
	max := fs.Duration("max", 10*time.Minute, "exit after this long")
	fs.Parse(os.Args[2:])
	os.Exit(scaleMain(*what, *listen, *codecName, *max))
}

var stdoutMu sync.Mutex

func say(format string, args ...any) {
	stdoutMu.Lock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
	stdoutMu.Unlock()
}

func scaleMain(what, listen, codecName string, max time.Duration) int {
	l, err := mux.ListenTCP(listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error listen: %v\n", err)
		return 2
	}
	say("listening %s", l.Addr())
	time.AfterFunc(max, func() { os.Exit(0) })

	switch what {
	case "sessions":
		var c codec.Codec = codec.JSONCodec{}
		if codecName == "cbor" {
			c = cborcodec.CBORCodec{}
		}
		rm := rpc.NewRespondMux()
		rm.Handle("echo", rpc.HandlerFunc(func(r rpc.Responder, call *rpc.Call) {
			var v any
			if err := call.Receive(&v); err != nil {
				r.Return(err)
				return
			}
			r.Return(v)
		}))
		srv := &rpc.Server{Handler: rm, Codec: c}
		var sessions []mux.Session
		for n := 1; ; n++ {
			sess, err := l.Accept()
			if err != nil {
				fmt.Fprintf(os.Stderr, "error accept: %v\n", err)
				return 1
			}
			sessions = append(sessions, sess)
			go srv.Respond(sess, nil)
			if n%100 == 0 {
				say("sessions %d", n)
			}
		}
	case "bare-sessions":
		var sessions []mux.Session
		for n := 1; ; n++ {
			sess, err := l.Accept()
			if err != nil {
				fmt.Fprintf(os.Stderr, "error accept: %v\n", err)
				return 1
			}
			sessions = append(sessions, sess)
			if n%100 == 0 {
				say("bare-sessions %d", n)
			}
		}
	case "channels":
		sess, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "error accept: %v\n", err)
			return 1
		}
		var channels []mux.Channel
		for n := 1; ; n++ {
			ch, err := sess.Accept()
			if err != nil {
				say("session-end %v", err)
				return 0
			}
			channels = append(channels, ch)
			if n%100 == 0 {
				say("channels %d", n)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "error unknown -what %q\n", what)
		return 2
	}
}
