package main

// rpc-selfbench: the reference's rpc against itself over TCP loopback, for
// comparison with the Rust implementation's numbers.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/progrium/qtalk-go/mux"
	"github.com/progrium/qtalk-go/rpc"
)

// rpcSelfbench serves the rpc-serve handler set on one end of a TCP loopback
// mux session and makes unary echo calls from the other end: first from one
// caller, then from 64 concurrent callers, each for o.duration. It prints
// "go-rpc <codec> <callers> <calls/s> <p50 us> <p99 us>" on stdout.
func rpcSelfbench(o options) {
	c := rpcCodec(o)
	l, err := mux.ListenTCP("127.0.0.1:0")
	if err != nil {
		fatalf("rpc-selfbench listen: %v", err)
	}
	accepted := make(chan mux.Session, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			fatalf("rpc-selfbench accept: %v", err)
		}
		accepted <- s
	}()
	client, err := mux.DialTCP(l.Addr().String())
	if err != nil {
		fatalf("rpc-selfbench dial: %v", err)
	}
	server := <-accepted
	l.Close()
	handlers := rpc.NewRespondMux()
	register(handlers)
	srv := &rpc.Server{Handler: handlers, Codec: c}
	go srv.Respond(server, nil)
	caller := rpc.NewClient(client, c)

	// Warm up.
	if _, err := benchEcho(caller, 1, 200*time.Millisecond); err != nil {
		fatalf("rpc-selfbench warm-up: %v", err)
	}
	for _, n := range []int{1, 64} {
		lat, err := benchEcho(caller, n, o.duration)
		if err != nil {
			fatalf("rpc-selfbench %d callers: %v", n, err)
		}
		sort.Slice(lat.calls, func(i, j int) bool { return lat.calls[i] < lat.calls[j] })
		rate := float64(len(lat.calls)) / lat.elapsed.Seconds()
		fmt.Printf("go-rpc %s %d %.0f %.1f %.1f\n", o.codec, n, rate,
			micros(percentile(lat.calls, 0.50)), micros(percentile(lat.calls, 0.99)))
	}
	client.Close()
	server.Close()
}

type latencies struct {
	calls   []time.Duration
	elapsed time.Duration
}

// benchEcho makes echo calls from n goroutines until d has passed and returns
// every call's latency and the time it all took.
func benchEcho(caller *rpc.Client, n int, d time.Duration) (latencies, error) {
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			var err error
			for time.Now().Before(deadline) {
				t0 := time.Now()
				var out string
				if _, err = caller.Call(context.Background(), "echo", "hello", &out); err != nil {
					break
				}
				if out != "hello" {
					err = fmt.Errorf("echo returned %q", out)
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return latencies{calls: all, elapsed: time.Since(start)}, firstErr
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
