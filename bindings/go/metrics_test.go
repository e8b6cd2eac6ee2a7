package openfl_test

import (
	"strings"
	"testing"
	"time"

	"openfl-transport/openfl"
)

// TestMetrics: the snapshots of a server and a client count the calls made
// (3 GetTasks, 1 upload of 256 KiB, 1 refused GetTasks: col1's certificate
// claiming to be col2), the same message bytes on both sides, and render
// as Prometheus text.
func TestMetrics(t *testing.T) {
	server := startServer(t, serverOptions(mutual), &testLogic{})
	client := newClient(t, clientOptions(server.Port(), mutual, "col1"))
	ctx := ctxTimeout(t, 20*time.Second)
	for i := 0; i < 3; i++ {
		if _, err := client.GetTasks(ctx, "col1"); err != nil {
			t.Fatalf("GetTasks: %v", err)
		}
	}
	data := make([]byte, 256<<10)
	results := openfl.TaskResults{RoundNumber: 1, TaskName: "train", DataSize: 10,
		Tensors: []openfl.TensorView{{Name: "w", RoundNumber: 1, Lossless: true, Data: data}}}
	if err := client.SendLocalTaskResults(ctx, "col1", results); err != nil {
		t.Fatalf("SendLocalTaskResults: %v", err)
	}
	_, err := client.GetTasks(ctx, "col2")
	expectCode(t, "spoofed sender", err, openfl.CodeUnauthenticated, "differs")

	s, err := server.Metrics()
	if err != nil {
		t.Fatalf("server metrics: %v", err)
	}
	c, err := client.Metrics()
	if err != nil {
		t.Fatalf("client metrics: %v", err)
	}
	if s.Role != openfl.RoleAggregatorServer || c.Role != openfl.RoleAggregatorClient {
		t.Errorf("roles %v %v", s.Role, c.Role)
	}
	for _, m := range []*openfl.Metrics{s, c} {
		if got := m.Calls("GetTasks", openfl.CodeOK); got != 3 {
			t.Errorf("%v: GetTasks OK = %d, want 3", m.Role, got)
		}
		if got := m.Calls("GetTasks", openfl.CodeUnauthenticated); got != 1 {
			t.Errorf("%v: GetTasks UNAUTHENTICATED = %d, want 1", m.Role, got)
		}
		if got := m.Calls("SendLocalTaskResults", openfl.CodeOK); got != 1 {
			t.Errorf("%v: uploads = %d, want 1", m.Role, got)
		}
		if m.CallsTotal("") != 5 || m.InFlight != 0 || m.Retries != 0 || m.ActiveConnections != 1 {
			t.Errorf("%v: %+v", m.Role, m)
		}
		if m.AuthFailures.CNMismatch != 1 || m.AuthFailures.TLSHandshake != 0 {
			t.Errorf("%v: auth failures %+v", m.Role, m.AuthFailures)
		}
	}
	up, _ := s.RPC("SendLocalTaskResults")
	sent, _ := c.RPC("SendLocalTaskResults")
	if up.BytesIn != sent.BytesOut || up.BytesIn < uint64(len(data)) || up.BytesIn > uint64(len(data))+512 {
		t.Errorf("upload bytes: server %d, client %d, payload %d", up.BytesIn, sent.BytesOut, len(data))
	}
	if s.Rejected.Identity != 1 || s.Rejected.BadHeader != 0 || c.Rejected.Identity != 0 {
		t.Errorf("rejected: server %+v, client %+v", s.Rejected, c.Rejected)
	}
	if len(s.RPCs) != 7 || s.RPCs[0].Name != "GetTasks" || s.RPCs[6].Name != "unknown" {
		t.Errorf("RPCs %+v", s.RPCs)
	}
	text := s.Prometheus()
	for _, want := range []string{
		"# TYPE openfl_transport_calls_total counter\n",
		"openfl_transport_calls_total{role=\"aggregator_server\",rpc=\"GetTasks\",code=\"OK\"} 3\n",
		"openfl_transport_auth_failures_total{role=\"aggregator_server\",kind=\"cn_mismatch\"} 1\n",
		"openfl_transport_active_connections{role=\"aggregator_server\"} 1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Prometheus text lacks %q:\n%s", want, text)
		}
	}

	// Closed handles refuse with CodeCancelled.
	client.Close()
	if _, err := client.Metrics(); openfl.CodeOf(err) != openfl.CodeCancelled {
		t.Errorf("Metrics after Close: %v", err)
	}
}
