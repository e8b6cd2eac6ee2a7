package openfl_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"openfl-transport/openfl"
)

// stalledUpload opens a SendLocalTaskResults call on a raw connection
// (HTTP/2 preface, request head, 100 bytes of a 4096-byte message) and then
// sends nothing more: a client that stalls its upload.
func stalledUpload(t *testing.T, port uint16) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	frame := func(out []byte, kind, flags byte, stream uint32, payload []byte) []byte {
		n := len(payload)
		out = append(out, byte(n>>16), byte(n>>8), byte(n), kind, flags,
			byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
		return append(out, payload...)
	}
	literal := func(out []byte, s string) []byte { return append(append(out, byte(len(s))), s...) }
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = frame(out, 0x4, 0, 0, nil)
	head := []byte{0x83, 0x86, 0x04} // POST, http, :path literal
	head = literal(head, "/openfl.aggregator.Aggregator/SendLocalTaskResults")
	head = literal(append(head, 0x01), "127.0.0.1")
	head = literal(append(head, 0x0f, 0x10), "application/grpc")
	head = literal(literal(append(head, 0x00), "te"), "trailers")
	out = frame(out, 0x1, 0x4, 1, head)
	body := append([]byte{0, 0, 0, 0x10, 0x00}, make([]byte, 100)...)
	out = frame(out, 0x0, 0, 1, body)
	if _, err := conn.Write(out); err != nil {
		t.Fatalf("writing the stalled request: %v", err)
	}
	return conn
}

func TestShutdownGraceOptions(t *testing.T) {
	cases := []struct {
		what   string
		set    func(*openfl.AggregatorServerOptions)
		needle string
	}{
		{"negative grace", func(o *openfl.AggregatorServerOptions) { o.Limits.ShutdownGrace = -time.Second }, "ShutdownGrace"},
		{"sub-millisecond grace", func(o *openfl.AggregatorServerOptions) { o.Limits.ShutdownGrace = time.Microsecond }, "ShutdownGrace"},
		{"grace over a year", func(o *openfl.AggregatorServerOptions) { o.Limits.ShutdownGrace = 400 * 24 * time.Hour }, "shutdown_grace"},
		{"negative quit poll interval", func(o *openfl.AggregatorServerOptions) { o.QuitPollInterval = -time.Second }, "QuitPollInterval"},
		{"quit poll interval over a year", func(o *openfl.AggregatorServerOptions) { o.QuitPollInterval = 400 * 24 * time.Hour }, "quit_poll_interval"},
	}
	for _, c := range cases {
		so := serverOptions(insecure)
		c.set(&so)
		_, err := openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, c.what, err, openfl.CodeInvalidArgument, c.needle)
	}
	do := directorOptions(t, insecure)
	do.Limits.ShutdownGrace = -time.Second
	_, err := openfl.StartDirectorServer(do, nil)
	expectCode(t, "director: negative grace", err, openfl.CodeInvalidArgument, "ShutdownGrace")
}

// A stalled upload holds Serve for the grace, not longer (and not at all
// with NoShutdownGrace); the cut upload never reaches the logic.
func TestStopWithAStalledClient(t *testing.T) {
	for _, grace := range []time.Duration{800 * time.Millisecond, 0} {
		so := serverOptions(insecure)
		so.QuitPollInterval = 20 * time.Millisecond
		if grace == 0 {
			so.Limits.NoShutdownGrace = true
		} else {
			so.Limits.ShutdownGrace = grace
		}
		logic := &testLogic{}
		server := startServer(t, so, logic)
		served := make(chan error, 1)
		go func() { served <- server.Serve(context.Background()) }()
		conn := stalledUpload(t, server.Port())
		time.Sleep(300 * time.Millisecond)

		started := time.Now()
		if err := server.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(grace + 5*time.Second):
			t.Fatalf("grace %v: Serve did not return", grace)
		}
		took := time.Since(started)
		t.Logf("grace %v: Serve returned %v after Stop", grace, took)
		if took > grace+time.Second || took+50*time.Millisecond < grace {
			t.Errorf("grace %v: Serve returned %v after Stop", grace, took)
		}
		if n := logic.calls.Load(); n != 0 {
			t.Errorf("grace %v: the logic was called %d times (the cut upload reached it?)", grace, n)
		}
		conn.Close()
		server.Close()
	}
}
