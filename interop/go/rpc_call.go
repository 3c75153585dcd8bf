package main

// The rpc-call mode: the Go peer calls the rpc-serve handler set on the other
// side (which the Rust test registers) and checks every answer. One line per
// case: "ok <name>" or "fail <name> <reason>", then "done".

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/progrium/qtalk-go/codec"
	"github.com/progrium/qtalk-go/mux"
	"github.com/progrium/qtalk-go/rpc"
	"github.com/progrium/qtalk-go/talk"
)

// normalize maps a decoded value onto one shape for comparison, whatever the
// codec produced: numbers become float64, maps map[string]any, arrays []any.
func normalize(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	}
	return v
}

func sameValue(got, want any) bool {
	return reflect.DeepEqual(normalize(got), normalize(want))
}

// expectRemote checks that err is the responder's error with this text.
func expectRemote(err error, text string) error {
	if err == nil {
		return fmt.Errorf("no error, want %q", "remote: "+text)
	}
	var re rpc.RemoteError
	if !errors.As(err, &re) {
		return fmt.Errorf("got %T %q, want a remote error", err, err)
	}
	if err.Error() != "remote: "+text {
		return fmt.Errorf("got %q, want %q", err.Error(), "remote: "+text)
	}
	return nil
}

// receiveAll reads values from a continued response until EOF.
func receiveAll(resp *rpc.Response) ([]any, error) {
	var out []any
	for {
		var v any
		err := resp.Receive(&v)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
}

// eofAfterArgs wraps a session so that each call's channel sends EOF right
// before the caller starts reading the response, that is once all streamed
// arguments are written. The reference's client streaming (a chan as args)
// never half-closes on its own.
type eofAfterArgs struct{ mux.Session }

func (s eofAfterArgs) Open(ctx context.Context) (mux.Channel, error) {
	ch, err := s.Session.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &eofBeforeRead{Channel: ch}, nil
}

type eofBeforeRead struct {
	mux.Channel
	once sync.Once
}

func (c *eofBeforeRead) Read(p []byte) (int, error) {
	c.once.Do(func() { c.Channel.CloseWrite() })
	return c.Channel.Read(p)
}

// careful wraps a session so that calls made through it avoid two races of
// the reference's mux, where a Write that reserved window before the peer's
// CLOSE arrived still sends its DATA after the CLOSE reply, and a Go receiver
// then ends the whole session ("qmux: invalid channel N"):
//
//   - The reference's client writes the call header and the arguments as two
//     frames. When the responder answers and closes after the header alone
//     (an unknown selector, a handler that does not read its arguments), the
//     arguments' write fails with EOF instead of the caller reading the
//     answer, or goes out after the CLOSE. Here both go in one write, before
//     anything can come back.
//   - The reference's client closes the channel as soon as it has read an
//     error header, while a Go responder is still writing the value that
//     follows it. Here Close first reads what the responder still sends, until
//     its CLOSE (at most two seconds).
type careful struct{ mux.Session }

func (s careful) Open(ctx context.Context) (mux.Channel, error) {
	ch, err := s.Session.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &carefulChannel{Channel: ch}, nil
}

type carefulChannel struct {
	mux.Channel
	writes int
	held   []byte
}

func (c *carefulChannel) Write(p []byte) (int, error) {
	c.writes++
	switch c.writes {
	case 1: // the call header: hold it
		c.held = append([]byte(nil), p...)
		return len(p), nil
	case 2: // the arguments: send both
		buf := append(c.held, p...)
		c.held = nil
		if _, err := c.Channel.Write(buf); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Channel.Write(p)
}

func (c *carefulChannel) Close() error {
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c.Channel)
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
	}
	return c.Channel.Close()
}

// streamArgs returns a chan carrying vals, for client streaming.
func streamArgs(vals ...any) chan any {
	ch := make(chan any)
	go func() {
		for _, v := range vals {
			ch <- v
		}
		close(ch)
	}()
	return ch
}

type rpcCase struct {
	name string
	run  func(ctx context.Context) error
}

func rpcCases(peer *talk.Peer, sess mux.Session, c codec.Codec) []rpcCase {
	call := peer.Client.Call
	return []rpcCase{
		{"echo", func(ctx context.Context) error {
			vals := []any{100, -7, 1.5, true, nil, "hello", "ünïcødé ✓",
				map[string]any{"foo": "bar", "n": 1}, []any{1, 2, 3}, []any{}}
			for _, v := range vals {
				var got any
				if _, err := call(ctx, "echo", v, &got); err != nil {
					return fmt.Errorf("echo %v: %v", v, err)
				}
				if !sameValue(got, v) {
					return fmt.Errorf("echo %#v: got %#v", v, got)
				}
			}
			return nil
		}},
		{"fail", func(ctx context.Context) error {
			_, err := call(ctx, "fail", nil, nil)
			return expectRemote(err, "user error")
		}},
		{"notfound", func(ctx context.Context) error {
			// The answer comes before the arguments are read; the peer must keep
			// the channel open until they arrive, or this plain client fails.
			_, err := call(ctx, "nope", nil, nil)
			return expectRemote(err, "not found: /nope")
		}},
		{"pair", func(ctx context.Context) error {
			var s string
			var n int
			if _, err := call(ctx, "Pair", nil, &s, &n); err != nil {
				return err
			}
			if s != "pair" || n != 2 {
				return fmt.Errorf("got (%q, %d), want (\"pair\", 2)", s, n)
			}
			return nil
		}},
		{"upper", func(ctx context.Context) error {
			var s string
			if _, err := call(ctx, "Upper", []any{"hello"}, &s); err != nil {
				return err
			}
			if s != "HELLO" {
				return fmt.Errorf("got %q", s)
			}
			return nil
		}},
		{"sum", func(ctx context.Context) error {
			var n int
			if _, err := call(ctx, "Sum", []any{2, 3}, &n); err != nil {
				return err
			}
			if n != 5 {
				return fmt.Errorf("got %d, want 5", n)
			}
			return nil
		}},
		{"sum-arity", func(ctx context.Context) error {
			var n int
			_, err := call(ctx, "Sum", []any{1}, &n)
			return expectRemote(err, "fn: expected 2 params, got 1")
		}},
		{"error", func(ctx context.Context) error {
			_, err := call(ctx, "Error", []any{"boom"}, nil)
			return expectRemote(err, "boom")
		}},
		{"count", func(ctx context.Context) error {
			resp, err := call(ctx, "count", 5, nil)
			if err != nil {
				return err
			}
			defer resp.Channel.Close()
			if !resp.Continue {
				return errors.New("response not continued")
			}
			got, err := receiveAll(resp)
			if err != nil {
				return err
			}
			if !sameValue(got, []any{0, 1, 2, 3, 4}) {
				return fmt.Errorf("got %v", got)
			}
			return nil
		}},
		{"collect", func(ctx context.Context) error {
			// Reference style: the first value of the chan is the argument
			// (how many follow), no EOF.
			var got any
			if _, err := call(ctx, "collect", streamArgs(3, 10, "x", 30), &got); err != nil {
				return err
			}
			if !sameValue(got, []any{10, "x", 30}) {
				return fmt.Errorf("got %v", got)
			}
			return nil
		}},
		{"collect-eof", func(ctx context.Context) error {
			// Unbounded: the handler reads until EOF, sent after the args.
			client := rpc.NewClient(eofAfterArgs{sess}, c)
			var got any
			if _, err := client.Call(ctx, "collect", streamArgs(nil, 1, 2, 3, 4), &got); err != nil {
				return err
			}
			if !sameValue(got, []any{1, 2, 3, 4}) {
				return fmt.Errorf("got %v", got)
			}
			return nil
		}},
		{"double", func(ctx context.Context) error {
			resp, err := call(ctx, "double", nil, nil)
			if err != nil {
				return err
			}
			defer resp.Channel.Close()
			if !resp.Continue {
				return errors.New("response not continued")
			}
			for _, v := range []any{1, 2, 3, -4} {
				if err := resp.Send(v); err != nil {
					return err
				}
			}
			if err := resp.Channel.CloseWrite(); err != nil {
				return err
			}
			got, err := receiveAll(resp)
			if err != nil {
				return err
			}
			if !sameValue(got, []any{2, 4, 6, -8}) {
				return fmt.Errorf("got %v", got)
			}
			return nil
		}},
		{"bytes", func(ctx context.Context) error {
			resp, err := call(ctx, "bytes", nil, nil)
			if err != nil {
				return err
			}
			defer resp.Channel.Close()
			if !resp.Continue {
				return errors.New("response not continued")
			}
			data := make([]byte, 1<<20)
			pattern(data, 3, 0)
			werr := make(chan error, 1)
			go func() {
				if _, err := resp.Channel.Write(data); err != nil {
					werr <- err
					return
				}
				werr <- resp.Channel.CloseWrite()
			}()
			back, err := io.ReadAll(resp.Channel)
			if err != nil {
				return err
			}
			if err := <-werr; err != nil {
				return err
			}
			if !bytes.Equal(back, data) {
				return fmt.Errorf("echoed %d bytes, differ from the %d sent", len(back), len(data))
			}
			return nil
		}},
		{"callback", func(ctx context.Context) error {
			var s string
			if _, err := call(ctx, "callback", nil, &s); err != nil {
				return err
			}
			if s != "hello, the Go peer" {
				return fmt.Errorf("got %q", s)
			}
			return nil
		}},
		{"deadline", func(ctx context.Context) error {
			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			var s string
			_, err := call(dctx, "slow", nil, &s)
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("got %v (%q), want a deadline error", err, s)
			}
			if took > 400*time.Millisecond {
				return fmt.Errorf("deadline error only after %v", took)
			}
			return nil
		}},
		{"burst", func(ctx context.Context) error {
			// 5000 calls started at once on one session: none may be refused.
			const n = 5000
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					want := fmt.Sprintf("burst %d", i)
					var got string
					if _, err := call(ctx, "echo", want, &got); err != nil {
						errs <- fmt.Errorf("call %d: %w", i, err)
						return
					}
					if got != want {
						errs <- fmt.Errorf("got %q, want %q", got, want)
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			failed := 0
			var first error
			for err := range errs {
				if first == nil {
					first = err
				}
				failed++
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d failed, first: %v", failed, n, first)
			}
			return nil
		}},
		{"concurrent", func(ctx context.Context) error {
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := 0; g < 32; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						want := fmt.Sprintf("call %d.%d", g, i)
						var got string
						if _, err := call(ctx, "echo", want, &got); err != nil {
							errs <- err
							return
						}
						if got != want {
							errs <- fmt.Errorf("got %q, want %q", got, want)
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			return <-errs
		}},
	}
}

// rpcCall runs the cases against the peer on sess, answering whoami
// meanwhile, and exits 0 when all passed.
func rpcCall(sess mux.Session, o options) {
	c := rpcCodec(o)
	peer := talk.NewPeer(sess, c)
	peer.Handle("whoami", rpc.HandlerFunc(whoamiHandler))
	go peer.Respond()

	var mu sync.Mutex
	finished := map[string]bool{}
	cases := rpcCases(peer, sess, c)
	if o.timeout > 0 {
		go func() {
			time.Sleep(o.timeout)
			mu.Lock()
			var pending []string
			for _, tc := range cases {
				if !finished[tc.name] {
					pending = append(pending, tc.name)
				}
			}
			sort.Strings(pending)
			for _, name := range pending {
				logf("fail %s timeout after %v", name, o.timeout)
			}
			os.Exit(1)
		}()
	}

	failed := 0
	for _, tc := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := tc.run(ctx)
		cancel()
		mu.Lock()
		finished[tc.name] = true
		if err != nil {
			failed++
			logf("fail %s %v", tc.name, err)
		} else {
			logf("ok %s", tc.name)
		}
		mu.Unlock()
	}
	logf("done")
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
	if failed > 0 {
		os.Exit(1)
	}
	os.Exit(0)
}
