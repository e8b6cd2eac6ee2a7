package openfl_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	openfl "openfl-transport/openfl"
)

// A server whose TLSConfig carries the CA's CRL (make_certs.sh: crl.pem
// revokes revoked.crt, a CN=col2 certificate of the CA) refuses the revoked
// certificate at the handshake and serves the CA's others; without the CRL
// the same certificate is served. The CRL is given as a file and as PEM.
func TestTLSConfigCRL(t *testing.T) {
	pem, err := os.ReadFile(cert("crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	revoked := func(port uint16) openfl.AggregatorClientOptions {
		o := clientOptions(port, mutual, "col2")
		o.TLS.Certificate, o.TLS.PrivateKey = cert("revoked.crt"), cert("revoked.key")
		return o
	}
	for _, tc := range []struct {
		name    string
		crl     func(*openfl.TLSConfig)
		refused bool
	}{
		{"no CRL", func(*openfl.TLSConfig) {}, false},
		{"CRL file", func(c *openfl.TLSConfig) { c.CRLFiles = []string{cert("crl.pem")} }, true},
		{"CRL PEM", func(c *openfl.TLSConfig) { c.CRLPEM = [][]byte{pem} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := serverOptions(mutual)
			tc.crl(&opts.TLS)
			logic := &testLogic{}
			server := startServer(t, opts, logic)
			_, err := newClient(t, revoked(server.Port())).GetTasks(ctxTimeout(t, 20*time.Second), "col2")
			if !tc.refused {
				if err != nil {
					t.Fatalf("revoked certificate without a CRL: %v", err)
				}
				return
			}
			expectCode(t, "revoked certificate", err, openfl.CodeTLS, "Revoked")
			if n := logic.calls.Load(); n != 0 {
				t.Errorf("the logic ran %d times for a revoked certificate", n)
			}
			for _, col := range []string{"col1", "col2"} {
				if _, err := newClient(t, clientOptions(server.Port(), mutual, col)).GetTasks(ctxTimeout(t, 20*time.Second), col); err != nil {
					t.Errorf("%s: %v", col, err)
				}
			}
		})
	}
}

// Errors a callback returns reach the collaborator as the gRPC status:
// an *Error keeps its code and message, any other error is UNKNOWN.
func TestCallbackErrorsReachTheClient(t *testing.T) {
	logic := &testLogic{
		getTasks: func(ctx context.Context, col string) (*openfl.Tasks, error) {
			return nil, openfl.Errorf(openfl.CodePermissionDenied, "%s is benched this round", col)
		},
		send: func(ctx context.Context, col string, r *openfl.TaskResults) error {
			return errors.New("disk full")
		},
	}
	server := startServer(t, serverOptions(insecure), logic)
	client := newClient(t, clientOptions(server.Port(), insecure, "col1"))
	_, err := client.GetTasks(ctxTimeout(t, 20*time.Second), "col1")
	expectCode(t, "GetTasks", err, openfl.CodePermissionDenied, "col1 is benched this round")
	err = client.SendLocalTaskResults(ctxTimeout(t, 20*time.Second), "col1", openfl.TaskResults{RoundNumber: 1, TaskName: "train", DataSize: 1})
	expectCode(t, "SendLocalTaskResults", err, openfl.CodeUnknown, "disk full")
}

// Bad shared-object values are refused naming the field; a retry
// deadline given through ConnectOptions is in force.
func TestSharedObjectValues(t *testing.T) {
	o := clientOptions(9, insecure, "col1")
	o.Connect.Retry = &openfl.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Deadline: 300 * time.Millisecond}
	start := time.Now()
	_, err := newClient(t, o).GetTasks(ctxTimeout(t, 20*time.Second), "col1")
	expectCode(t, "nobody listening", err, openfl.CodeRetriesExhausted, "")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a 300 ms retry deadline took %v", d)
	}

	bad := clientOptions(1, mutual, "col1")
	bad.TLS.CRLFiles = []string{""}
	_, err = openfl.NewAggregatorClient(bad)
	expectCode(t, "empty CRL path", err, openfl.CodeInvalidArgument, "path is empty")

	so := serverOptions(insecure)
	so.Limits.HandshakeTimeout = time.Microsecond
	_, err = openfl.StartAggregatorServer(so, &testLogic{})
	expectCode(t, "sub-millisecond handshake timeout", err, openfl.CodeInvalidArgument, "HandshakeTimeout")
}
