package openfl_test

import (
	"fmt"
	"testing"
	"time"

	"openfl-transport/openfl"
)

// Server bounds from Go: each bad value gets CodeInvalidArgument naming the
// setting; good values take effect (too many tensors in one upload get
// CodeResourceExhausted; an idle connection is closed and the client gets
// back in on its next call).
func TestServerLimits(t *testing.T) {
	bad := []struct {
		what   string
		set    func(*openfl.ServerLimits)
		needle string
	}{
		{"tiny unary request size", func(l *openfl.ServerLimits) { l.MaxUnaryRequestSize = 10 }, "max_unary_request_size"},
		{"sub-millisecond handshake timeout", func(l *openfl.ServerLimits) { l.HandshakeTimeout = 500 * time.Microsecond }, "HandshakeTimeout"},
		{"negative idle timeout", func(l *openfl.ServerLimits) { l.IdleTimeout = -time.Second }, "IdleTimeout"},
		{"idle timeout over a year", func(l *openfl.ServerLimits) { l.IdleTimeout = 400 * 24 * time.Hour }, "idle_timeout"},
	}
	for _, c := range bad {
		so := serverOptions(insecure)
		c.set(&so.Limits)
		_, err := openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, "aggregator: "+c.what, err, openfl.CodeInvalidArgument, c.needle)
		do := directorOptions(t, insecure)
		c.set(&do.Limits)
		_, err = openfl.StartDirectorServer(do, nil)
		expectCode(t, "director: "+c.what, err, openfl.CodeInvalidArgument, c.needle)
	}
	so := serverOptions(insecure)
	so.UploadMemoryBudget = 1000
	_, err := openfl.StartAggregatorServer(so, &testLogic{})
	expectCode(t, "tiny upload budget", err, openfl.CodeInvalidArgument, "upload_memory_budget")

	so = serverOptions(insecure)
	so.Limits = openfl.ServerLimits{
		MaxConcurrentStreams: 4,
		MaxConnections:       8,
		HandshakeTimeout:     2 * time.Second,
		IdleTimeout:          300 * time.Millisecond,
		MaxUnaryRequestSize:  64 << 10,
	}
	so.UploadMemoryBudget = 16 * mib
	so.MaxTensorsPerUpload = 10
	server := startServer(t, so, &testLogic{})
	c := newClient(t, clientOptions(server.Port(), insecure, ""))
	if _, err := c.GetTasks(ctxTimeout(t, 5*time.Second), "col1"); err != nil {
		t.Fatalf("GetTasks: %v", err)
	}
	tensors := make([]openfl.TensorView, 11)
	for i := range tensors {
		tensors[i] = openfl.TensorView{Name: fmt.Sprintf("t%d", i), Data: []byte{1, 2, 3, 4}}
	}
	err = c.SendLocalTaskResults(ctxTimeout(t, 5*time.Second), "col1", openfl.TaskResults{TaskName: "train", Tensors: tensors})
	expectCode(t, "11 tensors over a cap of 10", err, openfl.CodeResourceExhausted, "tensors")
	if err := c.SendLocalTaskResults(ctxTimeout(t, 5*time.Second), "col1", openfl.TaskResults{TaskName: "train", Tensors: tensors[:10]}); err != nil {
		t.Fatalf("10 tensors: %v", err)
	}
	time.Sleep(700 * time.Millisecond) // the idle connection is closed
	if _, err := c.GetTasks(ctxTimeout(t, 5*time.Second), "col1"); err != nil {
		t.Fatalf("GetTasks after the idle timeout: %v", err)
	}
}
