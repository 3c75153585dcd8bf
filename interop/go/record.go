package main

// The record mode: the reference's whole check sequence (cmd/qtalk/check.go
// against interop.InteropService, with interop.CallbackService answering the
// calls back), both sides qtalk-go in this process over TCP loopback, with
// every Write of either side recorded as one transcript line. The output is
// the transcript format of tests/vectors (see tests/vectors/check/README.md):
// the most frequent ordering of -runs runs, every other ordering as a variant.
//
//	qtalk-go-peer -mode record -codec json -runs 30 -variants 9 -out ../../tests/vectors/check

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/progrium/qtalk-go/fn"
	"github.com/progrium/qtalk-go/interop"
	"github.com/progrium/qtalk-go/mux"
	"github.com/progrium/qtalk-go/rpc"
)

// recordSizes are the Bytes sizes of the reference's check.
var recordSizes = []int{1, 1024, 1 << 20}

// seqThreshold: DATA payloads of at least this many bytes that are a run of
// the Bytes pattern (each byte one more than the last, mod 256) are written
// as one seq(FIRST,LEN) token.
const seqThreshold = 4096

type recLine struct {
	side  byte // 'C' or 'S'
	bytes []byte
}

// recLog is the shared, ordered log of both sides' writes.
type recLog struct {
	mu    sync.Mutex
	lines []recLine
	multi int // writes holding more or less than one frame
}

// recConn records every Write before passing it on, so a frame is logged
// before the other side can react to it.
type recConn struct {
	net.Conn
	side byte
	log  *recLog
}

func (c *recConn) Write(b []byte) (int, error) {
	c.log.mu.Lock()
	if frameLen(b) != len(b) {
		c.log.multi++
	}
	c.log.lines = append(c.log.lines, recLine{c.side, append([]byte(nil), b...)})
	c.log.mu.Unlock()
	return c.Conn.Write(b)
}

// frameLen is the length of the qmux frame at the start of b, or -1.
func frameLen(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	switch b[0] {
	case 100:
		return 13
	case 101:
		return 17
	case 102, 105, 106:
		return 5
	case 103:
		return 9
	case 104:
		if len(b) < 9 {
			return -1
		}
		return 9 + int(binary.BigEndian.Uint32(b[5:9]))
	}
	return -1
}

// seqData fills a Bytes payload: byte k is k mod 256.
func seqData(n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(k)
	}
	return b
}

// recordOnce runs the check sequence once and returns its transcript lines
// and what the client saw.
func recordOnce(o options) ([]recLine, []string, error) {
	c, _ := interopCodec(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	log := &recLog{}
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()
	cconn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	sconn, ok := <-accepted
	if !ok {
		return nil, nil, fmt.Errorf("accept failed")
	}
	ssess := mux.New(&recConn{sconn, 'S', log})
	csess := mux.New(&recConn{cconn, 'C', log})
	srv := rpc.Server{Handler: fn.HandlerFrom(interop.InteropService{}), Codec: c}
	go srv.Respond(ssess, nil)
	cb := rpc.Server{Handler: fn.HandlerFrom(interop.CallbackService{}), Codec: c}
	go cb.Respond(csess, nil)

	// The sequence of cmd/qtalk/check.go, with the reference's plain client;
	// only the Bytes payloads differ (a fixed pattern instead of random).
	caller := rpc.NewClient(csess, c)
	ctx := context.Background()
	var seen []string
	for _, sel := range []string{"Error", "BadSelector"} {
		if _, err := caller.Call(ctx, sel, "test", nil); err == nil {
			return nil, nil, fmt.Errorf("%s: expected error", sel)
		} else {
			seen = append(seen, "Error: "+strings.TrimPrefix(err.Error(), "remote: "))
		}
	}
	for _, v := range checkValues {
		var ret any
		if _, err := caller.Call(ctx, "Unary", v, &ret); err != nil {
			return nil, nil, fmt.Errorf("Unary %v: %v", v, err)
		}
		seen = append(seen, fmt.Sprint("Unary: ", v, " ", ret))
	}
	resp, err := caller.Call(ctx, "Stream", nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("Stream: %v", err)
	}
	go func() {
		for _, v := range checkValues {
			resp.Send(v)
		}
		resp.Channel.CloseWrite()
	}()
	for {
		var ret any
		if err := resp.Receive(&ret); err != nil {
			break
		}
		seen = append(seen, fmt.Sprint("Stream: ", ret))
	}
	for _, size := range recordSizes {
		data := seqData(size)
		resp, err := caller.Call(ctx, "Bytes", nil, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("Bytes: %v", err)
		}
		go func() {
			io.Copy(resp.Channel, bytes.NewBuffer(data))
			resp.Channel.CloseWrite()
		}()
		var back bytes.Buffer
		io.Copy(&back, resp.Channel)
		if !bytes.Equal(back.Bytes(), data) {
			return nil, nil, fmt.Errorf("Bytes %d: %d bytes back, not the same", size, back.Len())
		}
		seen = append(seen, fmt.Sprint("Bytes: ", back.Len()))
	}
	// Let the last CLOSE handshake finish, then end without a frame.
	time.Sleep(200 * time.Millisecond)
	csess.Close()
	ssess.Close()
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.multi != 0 {
		return nil, nil, fmt.Errorf("%d writes were not exactly one frame", log.multi)
	}
	return append([]recLine(nil), log.lines...), seen, nil
}

// record runs the sequence -runs times and writes the transcripts.
func record(o options) {
	_, name := interopCodec(o)
	if o.runs <= 0 {
		o.runs = 30
	}
	if o.out == "" {
		fatalf("record: -out DIR is required")
	}
	type ordering struct {
		text  string
		count int
		first int
	}
	byKey := map[string]*ordering{}
	var result []string
	for run := 0; run < o.runs; run++ {
		lines, seen, err := recordOnce(o)
		if err != nil {
			fatalf("record run %d: %v", run, err)
		}
		if result == nil {
			result = seen
		} else if strings.Join(seen, "|") != strings.Join(result, "|") {
			fatalf("record run %d: client saw %q, earlier %q", run, seen, result)
		}
		text := renderLines(lines, name)
		sum := sha256.Sum256([]byte(text))
		key := hex.EncodeToString(sum[:])
		if byKey[key] == nil {
			byKey[key] = &ordering{text: text, first: run}
		}
		byKey[key].count++
	}
	all := make([]*ordering, 0, len(byKey))
	for _, ord := range byKey {
		all = append(all, ord)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].count != all[j].count {
			return all[i].count > all[j].count
		}
		return all[i].first < all[j].first
	})
	if err := os.MkdirAll(filepath.Join(o.out, "variants"), 0o755); err != nil {
		fatalf("record: %v", err)
	}
	header := func(what string) string {
		return "# scenario: check\n" +
			"# codec: " + name + "\n" +
			"# the reference's check sequence (cmd/qtalk/check.go) in-process: server=interop.InteropService, client also serves interop.CallbackService; Bytes sizes 1, 1024 and 1048576, byte k of each being k mod 256\n" +
			"# result seen by client: " + strings.Join(result, " | ") + "\n" +
			"# ordering: " + what + "\n" +
			"# format: see README.md\n"
	}
	kept := all
	if o.variants >= 0 && len(kept) > o.variants+1 {
		kept = kept[:o.variants+1]
	}
	for i, ord := range kept {
		var path, what string
		if i == 0 {
			path = filepath.Join(o.out, name+"_check.txt")
			what = fmt.Sprintf("most frequent of %d runs (seen %d times); %d distinct orderings observed, %d kept", o.runs, ord.count, len(all), len(kept))
		} else {
			path = filepath.Join(o.out, "variants", fmt.Sprintf("%s_check.v%d.txt", name, i))
			what = fmt.Sprintf("variant %d of %d runs (seen %d times)", i, o.runs, ord.count)
		}
		if err := os.WriteFile(path, []byte(header(what)+ord.text), 0o644); err != nil {
			fatalf("record: %v", err)
		}
	}
	counts := make([]string, len(all))
	for i, ord := range all {
		counts[i] = fmt.Sprint(ord.count)
	}
	fmt.Printf("%s_check: %d runs, %d orderings (%s); result: %s\n", name, o.runs, len(all), strings.Join(counts, " "), strings.Join(result, " | "))
}

// renderLines writes transcript lines: hex tokens, then a description.
func renderLines(lines []recLine, codec string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(renderLine(l, codec))
		b.WriteByte('\n')
	}
	return b.String()
}

func renderLine(l recLine, codec string) string {
	f := l.bytes
	u32 := func(i int) uint32 { return binary.BigEndian.Uint32(f[i : i+4]) }
	h := func(i, j int) string { return hex.EncodeToString(f[i:j]) }
	prefix := fmt.Sprintf("%c> %s ", l.side, h(0, 1))
	switch f[0] {
	case 100:
		return prefix + fmt.Sprintf("%s %s %s  # OPEN sender=%d window=%d maxpacket=%d", h(1, 5), h(5, 9), h(9, 13), u32(1), u32(5), u32(9))
	case 101:
		return prefix + fmt.Sprintf("%s %s %s %s  # OPEN_CONFIRM channel=%d sender=%d window=%d maxpacket=%d", h(1, 5), h(5, 9), h(9, 13), h(13, 17), u32(1), u32(5), u32(9), u32(13))
	case 102:
		return prefix + fmt.Sprintf("%s  # OPEN_FAILURE channel=%d", h(1, 5), u32(1))
	case 103:
		return prefix + fmt.Sprintf("%s %s  # WINDOW_ADJUST channel=%d bytes=%d", h(1, 5), h(5, 9), u32(1), u32(5))
	case 105:
		return prefix + fmt.Sprintf("%s  # EOF channel=%d", h(1, 5), u32(1))
	case 106:
		return prefix + fmt.Sprintf("%s  # CLOSE channel=%d", h(1, 5), u32(1))
	}
	// DATA
	payload := f[9:]
	head := prefix + h(1, 5) + " " + h(5, 9) + " "
	desc := fmt.Sprintf("  # DATA channel=%d len=%d", u32(1), u32(5))
	if n := len(payload); n >= 4 && int(binary.BigEndian.Uint32(payload[:4])) == n-4 {
		if text, ok := describeBody(payload[4:], codec); ok {
			return head + hex.EncodeToString(payload[:4]) + " " + hex.EncodeToString(payload[4:]) +
				desc + fmt.Sprintf(" rpcframe(len=%d %s=%s)", n-4, codec, text)
		}
	}
	if len(payload) >= seqThreshold {
		start := int(payload[0])
		run := true
		for k, v := range payload {
			if v != byte(start+k) {
				run = false
				break
			}
		}
		if run {
			return head + fmt.Sprintf("seq(%d,%d)", start, len(payload)) + desc + " raw bytes (pattern)"
		}
	}
	return head + hex.EncodeToString(payload) + desc + " raw bytes"
}

// describeBody decodes one codec value for the line's comment; false when
// the bytes are not exactly one value.
func describeBody(body []byte, codec string) (string, bool) {
	if codec == "json" {
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&v); err != nil || len(bytes.TrimSpace(body[dec.InputOffset():])) != 0 {
			return "", false
		}
		q, _ := json.Marshal(string(body))
		return string(q), true
	}
	return cborDiag(body)
}

// cborDiag renders one CBOR item in RFC 8949 diagnostic notation, map keys
// in wire order (the item kinds the check sends).
func cborDiag(b []byte) (string, bool) {
	s, rest, ok := diagItem(b)
	return s, ok && len(rest) == 0
}

func diagItem(b []byte) (string, []byte, bool) {
	if len(b) == 0 {
		return "", nil, false
	}
	major, info := b[0]>>5, b[0]&31
	b = b[1:]
	arg := uint64(info)
	switch {
	case info == 24 && len(b) >= 1:
		arg, b = uint64(b[0]), b[1:]
	case info == 25 && len(b) >= 2:
		arg, b = uint64(binary.BigEndian.Uint16(b)), b[2:]
	case info == 26 && len(b) >= 4:
		arg, b = uint64(binary.BigEndian.Uint32(b)), b[4:]
	case info == 27 && len(b) >= 8:
		arg, b = binary.BigEndian.Uint64(b), b[8:]
	case info >= 24:
		return "", nil, false
	}
	switch major {
	case 0:
		return fmt.Sprint(arg), b, true
	case 1:
		return fmt.Sprint(-1 - int64(arg)), b, true
	case 2, 3:
		if uint64(len(b)) < arg {
			return "", nil, false
		}
		v := b[:arg]
		if major == 2 {
			return "h'" + hex.EncodeToString(v) + "'", b[arg:], true
		}
		q, _ := json.Marshal(string(v))
		return string(q), b[arg:], true
	case 4, 5:
		parts := []string{}
		for k := uint64(0); k < arg; k++ {
			s, r, ok := diagItem(b)
			if !ok {
				return "", nil, false
			}
			b = r
			if major == 5 {
				v, r, ok := diagItem(b)
				if !ok {
					return "", nil, false
				}
				b = r
				s += ": " + v
			}
			parts = append(parts, s)
		}
		if major == 4 {
			return "[" + strings.Join(parts, ", ") + "]", b, true
		}
		return "{" + strings.Join(parts, ", ") + "}", b, true
	case 7:
		switch info {
		case 20:
			return "false", b, true
		case 21:
			return "true", b, true
		case 22:
			return "null", b, true
		case 25, 26, 27:
			var f float64
			switch info {
			case 26:
				f = float64(math.Float32frombits(uint32(arg)))
			case 27:
				f = math.Float64frombits(arg)
			default:
				return "", nil, false
			}
			return fmt.Sprint(f), b, true
		}
	}
	return "", nil, false
}
