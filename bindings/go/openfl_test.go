package openfl_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"openfl-transport/openfl"
)

const (
	aggUUID = "agg-uuid-go"
	fedUUID = "fed-uuid-go"
	mib     = 1 << 20
)

var certDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "openfl-go-certs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	script, _ := filepath.Abs("../../tests/certs/make_certs.sh")
	if out, err := exec.Command("bash", script, dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "make_certs.sh: %v\n%s", err, out)
		os.Exit(2)
	}
	certDir = dir
	// Keep the output readable: warnings (e.g. "server without TLS") are expected.
	if err := openfl.SetLogger(openfl.LogError, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func cert(name string) string { return filepath.Join(certDir, name) }

// ---- a configurable Go logic ----------------------------------------------

type testLogic struct {
	getTasks  func(ctx context.Context, col string) (*openfl.Tasks, error)
	getTensor func(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error)
	send      func(ctx context.Context, col string, r *openfl.TaskResults) error
	quit      atomic.Bool
	calls     atomic.Int64
}

func (l *testLogic) GetTasks(ctx context.Context, col string) (*openfl.Tasks, error) {
	l.calls.Add(1)
	if l.getTasks != nil {
		return l.getTasks(ctx, col)
	}
	return &openfl.Tasks{RoundNumber: 1, Tasks: []openfl.Task{{Name: "train", FunctionName: "train_task", TaskType: "train"}}, SleepTime: 2}, nil
}

func (l *testLogic) GetAggregatedTensor(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error) {
	l.calls.Add(1)
	if l.getTensor != nil {
		return l.getTensor(ctx, col, req)
	}
	return nil, openfl.Errorf(openfl.CodeNotFound, "no tensor %q", req.TensorName)
}

func (l *testLogic) SendLocalTaskResults(ctx context.Context, col string, r *openfl.TaskResults) error {
	l.calls.Add(1)
	if l.send != nil {
		return l.send(ctx, col, r)
	}
	return nil
}

func (l *testLogic) AllQuitJobsSent() bool { return l.quit.Load() }

// ---- helpers ----------------------------------------------------------------

type tlsMode int

const (
	mutual tlsMode = iota
	insecure
)

func serverOptions(mode tlsMode) openfl.AggregatorServerOptions {
	o := openfl.AggregatorServerOptions{
		Host:                    "127.0.0.1",
		Federation:              openfl.Federation{AggregatorUUID: aggUUID, FederationUUID: fedUUID},
		AuthorizedCollaborators: []string{"col1", "col2"},
		NoAuthFailureDelay:      true,
	}
	if mode == insecure {
		o.TLS.Disabled = true
	} else {
		o.TLS = openfl.TLSConfig{RootCertificate: cert("ca.crt"), Certificate: cert("server.crt"), PrivateKey: cert("server.key")}
	}
	return o
}

func clientOptions(port uint16, mode tlsMode, col string) openfl.AggregatorClientOptions {
	o := openfl.AggregatorClientOptions{
		Host:       "127.0.0.1",
		Port:       port,
		Federation: openfl.Federation{AggregatorUUID: aggUUID, FederationUUID: fedUUID},
		// Bounded: a test that goes wrong fails instead of hanging.
		Connect: openfl.ConnectOptions{
			Retry:          &openfl.RetryPolicy{InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Deadline: 5 * time.Second},
			ConnectTimeout: 5 * time.Second,
		},
	}
	if mode == insecure {
		o.TLS.Disabled = true
	} else {
		o.TLS = openfl.TLSConfig{RootCertificate: cert("ca.crt"), Certificate: cert(col + ".crt"), PrivateKey: cert(col + ".key")}
	}
	return o
}

func startServer(t *testing.T, opts openfl.AggregatorServerOptions, logic openfl.AggregatorLogic) *openfl.AggregatorServer {
	t.Helper()
	s, err := openfl.StartAggregatorServer(opts, logic)
	if err != nil {
		t.Fatalf("StartAggregatorServer: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t *testing.T, opts openfl.AggregatorClientOptions) *openfl.AggregatorClient {
	t.Helper()
	c, err := openfl.NewAggregatorClient(opts)
	if err != nil {
		t.Fatalf("NewAggregatorClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// expectCode checks err's code (errors.Is and errors.As) and that its
// message contains needle.
func expectCode(t *testing.T, what string, err error, code openfl.Code, needle string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, expected %v", what, code)
		return
	}
	if !errors.Is(err, code) {
		t.Errorf("%s: error %v, expected code %v", what, err, code)
		return
	}
	var e *openfl.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Errorf("%s: errors.As gave %#v", what, e)
		return
	}
	if openfl.CodeOf(err) != code {
		t.Errorf("%s: CodeOf gave %v", what, openfl.CodeOf(err))
	}
	if needle != "" && !strings.Contains(err.Error(), needle) {
		t.Errorf("%s: error %q does not mention %q", what, err, needle)
	}
}

func pattern(n int, mul, add byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)*mul + add
	}
	return b
}

// ---- tests ---------------------------------------------------------------------

func TestVersionAndCodes(t *testing.T) {
	if v := openfl.Version(); v == "" {
		t.Fatal("empty version")
	}
	for c := openfl.Code(-1); c <= 106; c++ {
		want := openfl.LibraryCodeName(c)
		got := c.String()
		if want == "UNKNOWN_CODE" {
			if !strings.HasPrefix(got, "UNKNOWN_CODE") {
				t.Errorf("Code(%d).String() = %q, library says %q", c, got, want)
			}
		} else if got != want {
			t.Errorf("Code(%d).String() = %q, library says %q", c, got, want)
		}
	}
	err := fmt.Errorf("wrapped: %w", openfl.NewError(openfl.CodeNotFound, "x"))
	if !errors.Is(err, openfl.CodeNotFound) || errors.Is(err, openfl.CodeInternal) {
		t.Errorf("errors.Is through a wrap: %v", err)
	}
	if openfl.CodeOf(nil) != openfl.CodeOK || openfl.CodeOf(errors.New("x")) != openfl.CodeUnknown ||
		openfl.CodeOf(context.Canceled) != openfl.CodeCancelled || openfl.CodeOf(openfl.CodeTLS) != openfl.CodeTLS {
		t.Error("CodeOf")
	}
}

// A Go aggregator with Go logic and Go clients over mTLS: tasks, 16 MiB
// tensors each way byte for byte, metadata, and the federation's end.
func TestFederationMTLS(t *testing.T) {
	down := pattern(16*mib, 7, 3)
	up := pattern(16*mib, 13, 101)
	upSum := sha256.Sum256(up)
	var received sync.Map // collaborator -> error string ("" = ok)
	var served atomic.Int64

	logic := &testLogic{}
	logic.getTasks = func(ctx context.Context, col string) (*openfl.Tasks, error) {
		if logic.quit.Load() {
			return &openfl.Tasks{RoundNumber: 2, Quit: true}, nil
		}
		return &openfl.Tasks{RoundNumber: 1, SleepTime: 3, Tasks: []openfl.Task{
			{Name: "aggregated_model_validation", FunctionName: "validate_task", TaskType: "validate"},
			{Name: "train", FunctionName: "train_task", TaskType: "train"},
			{Name: "locally_tuned_model_validation", FunctionName: "validate_task", TaskType: "validate", ApplyLocal: true},
		}}, nil
	}
	logic.getTensor = func(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error) {
		if req.TensorName != "model" || req.RoundNumber != 1 || !req.RequireLossless ||
			strings.Join(req.Tags, ",") != "model,latest" {
			return nil, openfl.Errorf(openfl.CodeNotFound, "unexpected request %+v", *req)
		}
		served.Add(1)
		return &openfl.TensorView{
			Name: "model", RoundNumber: 1, Lossless: true, Tags: []string{"model"},
			Metadata: []openfl.Metadata{{IntList: []int32{4 * mib, 1}, BoolList: []bool{true, false},
				IntToFloat: map[int32]float32{3: 0.5, 1: 0.25}}},
			Data: down,
		}, nil
	}
	logic.send = func(ctx context.Context, col string, r *openfl.TaskResults) error {
		problem := ""
		switch {
		case r.RoundNumber != 1 || r.TaskName != "train" || r.DataSize != 640:
			problem = fmt.Sprintf("header %d %q %d", r.RoundNumber, r.TaskName, r.DataSize)
		case len(r.Tensors) != 2:
			problem = fmt.Sprintf("%d tensors", len(r.Tensors))
		case r.Tensors[0].Name != "weights" || len(r.Tensors[0].Data) != len(up) || sha256.Sum256(r.Tensors[0].Data) != upSum:
			problem = "weights differ"
		case r.Tensors[1].Name != "accuracy" || !r.Tensors[1].Report || !bytes.Equal(r.Tensors[1].Data, []byte{0, 0, 64, 63}) ||
			strings.Join(r.Tensors[1].Tags, ",") != "metric,validate_local":
			problem = fmt.Sprintf("metric differs: %+v", r.Tensors[1])
		}
		received.Store(col, problem)
		return nil
	}
	server := startServer(t, serverOptions(mutual), logic)
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(context.Background()) }()

	var wg sync.WaitGroup
	for _, col := range []string{"col1", "col2"} {
		col := col
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := newClient(t, clientOptions(server.Port(), mutual, col))
			ctx := ctxTimeout(t, 60*time.Second)
			tasks, err := client.GetTasks(ctx, col)
			if err != nil {
				t.Errorf("%s GetTasks: %v", col, err)
				return
			}
			if tasks.RoundNumber != 1 || len(tasks.Tasks) != 3 || tasks.SleepTime != 3 || tasks.Quit ||
				tasks.Tasks[2] != (openfl.Task{Name: "locally_tuned_model_validation", FunctionName: "validate_task", TaskType: "validate", ApplyLocal: true}) {
				t.Errorf("%s tasks: %+v", col, tasks)
			}
			tensor, err := client.GetAggregatedTensor(ctx, col, openfl.TensorRequest{
				TensorName: "model", RoundNumber: 1, Tags: []string{"model", "latest"}, RequireLossless: true})
			if err != nil {
				t.Errorf("%s GetAggregatedTensor: %v", col, err)
				return
			}
			if !bytes.Equal(tensor.Data, down) {
				t.Errorf("%s: downloaded tensor differs (%d bytes)", col, len(tensor.Data))
			}
			md := tensor.Metadata
			if tensor.Name != "model" || tensor.RoundNumber != 1 || !tensor.Lossless || tensor.Report ||
				len(md) != 1 || fmt.Sprint(md[0].IntList) != fmt.Sprint([]int32{4 * mib, 1}) ||
				fmt.Sprint(md[0].BoolList) != "[true false]" || md[0].IntToFloat[1] != 0.25 || md[0].IntToFloat[3] != 0.5 {
				t.Errorf("%s: tensor fields %+v %+v", col, tensor.TensorView.Name, md)
			}
			kept := tensor.Clone()
			tensor.Close()
			tensor.Close() // idempotent
			if tensor.Data != nil || !bytes.Equal(kept.Data, down) {
				t.Errorf("%s: Close/Clone", col)
			}
			err = client.SendLocalTaskResults(ctx, col, openfl.TaskResults{
				RoundNumber: 1, TaskName: "train", DataSize: 640,
				Tensors: []openfl.TensorView{
					{Name: "weights", RoundNumber: 1, Tags: []string{"trained"}, Data: up},
					{Name: "accuracy", RoundNumber: 1, Report: true, Tags: []string{"metric", "validate_local"}, Data: []byte{0, 0, 64, 63}},
				}})
			if err != nil {
				t.Errorf("%s SendLocalTaskResults: %v", col, err)
			}
		}()
	}
	wg.Wait()
	for _, col := range []string{"col1", "col2"} {
		problem, ok := received.Load(col)
		if !ok || problem != "" {
			t.Errorf("upload of %s: received=%v problem=%v", col, ok, problem)
		}
	}
	if served.Load() != 2 {
		t.Errorf("served %d tensors", served.Load())
	}

	// The federation ends: collaborators are told to quit, Serve returns.
	logic.quit.Store(true)
	client := newClient(t, clientOptions(server.Port(), mutual, "col1"))
	tasks, err := client.GetTasks(ctxTimeout(t, 10*time.Second), "col1")
	if err != nil || !tasks.Quit {
		t.Errorf("quit GetTasks: %+v %v", tasks, err)
	}
	select {
	case err := <-serveErr:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after all quit jobs were sent")
	}
}

// Every way a call or a start can be rejected, with its exact code.
func TestRejections(t *testing.T) {
	logic := &testLogic{}
	mtls := startServer(t, serverOptions(mutual), logic)
	open := startServer(t, serverOptions(insecure), logic)
	ctx := ctxTimeout(t, 120*time.Second)
	small := []openfl.TensorView{{Name: "w", Data: []byte{1, 2, 3}}}

	t.Run("spoofed sender is UNAUTHENTICATED", func(t *testing.T) {
		before := logic.calls.Load()
		c := newClient(t, clientOptions(mtls.Port(), mutual, "col1"))
		_, err := c.GetTasks(ctx, "col2")
		expectCode(t, "GetTasks", err, openfl.CodeUnauthenticated, "col2")
		_, err = c.GetAggregatedTensor(ctx, "col2", openfl.TensorRequest{TensorName: "model"})
		expectCode(t, "GetAggregatedTensor", err, openfl.CodeUnauthenticated, "")
		err = c.SendLocalTaskResults(ctx, "col2", openfl.TaskResults{TaskName: "train", Tensors: small})
		expectCode(t, "SendLocalTaskResults", err, openfl.CodeUnauthenticated, "")
		if n := logic.calls.Load() - before; n != 0 {
			t.Errorf("logic ran %d times for spoofed calls", n)
		}
	})

	tlsCases := []struct {
		name   string
		mutate func(o *openfl.AggregatorClientOptions)
	}{
		{"client certificate from a foreign CA", func(o *openfl.AggregatorClientOptions) {
			o.TLS.Certificate, o.TLS.PrivateKey = cert("foreign.crt"), cert("foreign.key")
		}},
		{"server certificate from an unknown CA", func(o *openfl.AggregatorClientOptions) { o.TLS.RootCertificate = cert("foreign-ca.crt") }},
		{"no client certificate for an mTLS server", func(o *openfl.AggregatorClientOptions) {
			o.TLS.Certificate, o.TLS.PrivateKey, o.TLS.DisableClientAuth = "", "", true
		}},
		{"wrong server name", func(o *openfl.AggregatorClientOptions) { o.Connect.ServerName = "not-the-server.example" }},
	}
	for _, tc := range tlsCases {
		tc := tc
		t.Run("TLS: "+tc.name, func(t *testing.T) {
			o := clientOptions(mtls.Port(), mutual, "col1")
			tc.mutate(&o)
			c := newClient(t, o)
			start := time.Now()
			_, err := c.GetTasks(ctx, "col1")
			expectCode(t, "GetTasks", err, openfl.CodeTLS, "")
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("a TLS failure took %v (retried?)", d)
			}
		})
	}

	t.Run("unauthorized sender is PERMISSION_DENIED", func(t *testing.T) {
		c := newClient(t, clientOptions(open.Port(), insecure, ""))
		_, err := c.GetTasks(ctx, "col3")
		expectCode(t, "GetTasks", err, openfl.CodePermissionDenied, "header.sender")
	})

	headerCases := []struct {
		field string
		fed   openfl.Federation
	}{
		{"header.receiver", openfl.Federation{AggregatorUUID: "other-agg", FederationUUID: fedUUID}},
		{"header.federation_uuid", openfl.Federation{AggregatorUUID: aggUUID, FederationUUID: "other-fed"}},
		{"header.single_col_cert_common_name", openfl.Federation{AggregatorUUID: aggUUID, FederationUUID: fedUUID, SingleColCertCommonName: "one"}},
	}
	for _, hc := range headerCases {
		hc := hc
		t.Run("wrong "+hc.field+" is INVALID_ARGUMENT", func(t *testing.T) {
			o := clientOptions(open.Port(), insecure, "")
			o.Federation = hc.fed
			c := newClient(t, o)
			_, err := c.GetTasks(ctx, "col1")
			expectCode(t, "GetTasks", err, openfl.CodeInvalidArgument, hc.field)
		})
	}

	t.Run("upload above the server's limit is RESOURCE_EXHAUSTED", func(t *testing.T) {
		so := serverOptions(insecure)
		so.MaxMessageSize = 4 * mib
		limited := startServer(t, so, &testLogic{})
		c := newClient(t, clientOptions(limited.Port(), insecure, ""))
		// Each 2 MiB chunk is under the limit; together they are over it.
		err := c.SendLocalTaskResults(ctx, "col1", openfl.TaskResults{TaskName: "train",
			Tensors: []openfl.TensorView{{Name: "big", Data: make([]byte, 6*mib)}}})
		expectCode(t, "SendLocalTaskResults", err, openfl.CodeResourceExhausted, "maximum message size")
	})

	t.Run("logic errors reach the client with their code and message", func(t *testing.T) {
		codeLogic := &testLogic{}
		codeLogic.getTensor = func(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error) {
			var code openfl.Code
			fmt.Sscanf(req.TensorName, "code-%d", &code)
			switch req.TensorName {
			case "plain":
				return nil, errors.New("a plain Go error")
			case "wrapped":
				return nil, fmt.Errorf("context: %w", openfl.NewError(openfl.CodeAborted, "inner"))
			case "panic":
				panic("logic exploded")
			case "nil":
				return nil, nil
			case "nul-name":
				return &openfl.TensorView{Name: "a\x00b"}, nil
			}
			return nil, openfl.Errorf(code, "logic says %v", code)
		}
		codeLogic.getTasks = func(ctx context.Context, col string) (*openfl.Tasks, error) {
			return nil, openfl.CodeFailedPrecondition
		}
		codeLogic.send = func(ctx context.Context, col string, r *openfl.TaskResults) error {
			return openfl.Errorf(openfl.CodeDataLoss, "lost %s", r.TaskName)
		}
		s := startServer(t, serverOptions(insecure), codeLogic)
		c := newClient(t, clientOptions(s.Port(), insecure, ""))
		for code := openfl.CodeCancelled; code <= openfl.CodeUnauthenticated; code++ {
			if code == openfl.CodeUnavailable {
				continue // retried by the client: below
			}
			_, err := c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: fmt.Sprintf("code-%d", code)})
			expectCode(t, code.String(), err, code, "logic says "+code.String())
		}
		_, err := c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "plain"})
		expectCode(t, "plain error", err, openfl.CodeUnknown, "a plain Go error")
		_, err = c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "wrapped"})
		expectCode(t, "wrapped error", err, openfl.CodeAborted, "inner")
		_, err = c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "panic"})
		expectCode(t, "panic", err, openfl.CodeInternal, "logic exploded")
		_, err = c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "nil"})
		expectCode(t, "nil tensor", err, openfl.CodeInternal, "neither")
		_, err = c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "nul-name"})
		expectCode(t, "NUL in a tensor name", err, openfl.CodeInternal, "NUL")
		_, err = c.GetTasks(ctx, "col1")
		expectCode(t, "bare Code", err, openfl.CodeFailedPrecondition, "")
		err = c.SendLocalTaskResults(ctx, "col1", openfl.TaskResults{TaskName: "train"})
		expectCode(t, "upload", err, openfl.CodeDataLoss, "lost train")
		// The server survived the panic.
		_, err = c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "code-5"})
		expectCode(t, "after the panic", err, openfl.CodeNotFound, "")

		// UNAVAILABLE from the logic is retried until the budget is spent.
		o := clientOptions(s.Port(), insecure, "")
		o.Connect.Retry = &openfl.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Deadline: 300 * time.Millisecond}
		quick := newClient(t, o)
		_, err = quick.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: fmt.Sprintf("code-%d", openfl.CodeUnavailable)})
		expectCode(t, "UNAVAILABLE", err, openfl.CodeRetriesExhausted, "")
	})

	t.Run("nobody listening is RETRIES_EXHAUSTED", func(t *testing.T) {
		gone := startServer(t, serverOptions(insecure), &testLogic{})
		port := gone.Port()
		gone.Close()
		o := clientOptions(port, insecure, "")
		o.Connect.Retry = &openfl.RetryPolicy{InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Deadline: 400 * time.Millisecond}
		c := newClient(t, o)
		start := time.Now()
		_, err := c.GetTasks(ctx, "col1")
		expectCode(t, "GetTasks", err, openfl.CodeRetriesExhausted, "")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("retries took %v", d)
		}
	})

	t.Run("a reply from another aggregator is INVALID_RESPONSE", func(t *testing.T) {
		port := startImpostor(t)
		c := newClient(t, clientOptions(port, mutual, "col1"))
		_, err := c.GetTasks(ctx, "col1")
		expectCode(t, "GetTasks", err, openfl.CodeInvalidResponse, "header.sender")
	})

	t.Run("closed client is CANCELLED", func(t *testing.T) {
		c := newClient(t, clientOptions(open.Port(), insecure, ""))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		_, err := c.GetTasks(ctx, "col1")
		expectCode(t, "GetTasks after Close", err, openfl.CodeCancelled, "closed")
		if !errors.Is(err, openfl.ErrClosed) {
			t.Errorf("not ErrClosed: %v", err)
		}
		err = c.SendLocalTaskResults(ctx, "col1", openfl.TaskResults{TaskName: "x"})
		expectCode(t, "Send after Close", err, openfl.CodeCancelled, "closed")
		expectCode(t, "Disconnect after Close", c.Disconnect(), openfl.CodeCancelled, "closed")
	})

	t.Run("contexts: done before, and deadline during a call", func(t *testing.T) {
		release := make(chan struct{})
		slow := &testLogic{}
		slow.getTasks = func(ctx context.Context, col string) (*openfl.Tasks, error) {
			select {
			case <-release:
			case <-ctx.Done(): // the server was stopped
			}
			return &openfl.Tasks{RoundNumber: 9}, nil
		}
		s := startServer(t, serverOptions(insecure), slow)
		c := newClient(t, clientOptions(s.Port(), insecure, ""))
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.GetTasks(cancelled, "col1")
		expectCode(t, "cancelled GetTasks", err, openfl.CodeCancelled, "")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("not context.Canceled: %v", err)
		}
		err = c.SendLocalTaskResults(cancelled, "col1", openfl.TaskResults{TaskName: "t", Tensors: small})
		expectCode(t, "cancelled upload", err, openfl.CodeCancelled, "")

		short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancelShort()
		start := time.Now()
		_, err = c.GetTasks(short, "col1")
		expectCode(t, "GetTasks past its deadline", err, openfl.CodeDeadlineExceeded, "")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("not context.DeadlineExceeded: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("GetTasks returned %v after its deadline", d)
		}
		// The call was cancelled: Close has nothing to wait for.
		c.Close()
		close(release)
		// A later call with a live context gets the real answer.
		c2 := newClient(t, clientOptions(s.Port(), insecure, ""))
		tasks, err := c2.GetTasks(ctxTimeout(t, 10*time.Second), "col1")
		if err != nil || tasks.RoundNumber != 9 {
			t.Errorf("GetTasks: %+v %v", tasks, err)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		_, err := openfl.NewAggregatorClient(openfl.AggregatorClientOptions{Host: "a\x00b", Port: 1})
		expectCode(t, "NUL in Host", err, openfl.CodeInvalidArgument, "Host")
		_, err = openfl.NewAggregatorClient(openfl.AggregatorClientOptions{Host: "", Port: 1, TLS: openfl.TLSConfig{Disabled: true}})
		expectCode(t, "empty host", err, openfl.CodeInvalidArgument, "host")
		_, err = openfl.NewAggregatorClient(openfl.AggregatorClientOptions{Host: "localhost", Port: 1})
		expectCode(t, "TLS without certificates", err, openfl.CodeInvalidArgument, "")
		o := clientOptions(1, mutual, "col1")
		o.TLS.RootCertificate = "/nonexistent/ca.crt"
		_, err = openfl.NewAggregatorClient(o)
		expectCode(t, "missing CA file", err, openfl.CodeIO, "")
		o = clientOptions(1, mutual, "col1")
		o.TLS = openfl.TLSConfig{RootCertificatePEM: []byte("garbage")}
		_, err = openfl.NewAggregatorClient(o)
		expectCode(t, "garbage PEM", err, openfl.CodeTLS, "root_certificate")
		o = clientOptions(1, insecure, "")
		o.Connect.Retry = &openfl.RetryPolicy{InitialBackoff: 0, MaxBackoff: time.Second, Deadline: time.Second}
		_, err = openfl.NewAggregatorClient(o)
		expectCode(t, "zero backoff", err, openfl.CodeInvalidArgument, "")

		c := newClient(t, clientOptions(open.Port(), insecure, ""))
		_, err = c.GetTasks(ctx, "col\x001")
		expectCode(t, "NUL in collaborator", err, openfl.CodeInvalidArgument, "collaborator")
		err = c.SendLocalTaskResults(ctx, "col1", openfl.TaskResults{TaskName: "t", Tensors: []openfl.TensorView{{Name: "ok"}, {Name: "n\x00"}}})
		expectCode(t, "NUL in a tensor name", err, openfl.CodeInvalidArgument, "Tensors[1].Name")
		_, err = c.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "t", Tags: []string{"ok", "b\x00d"}})
		expectCode(t, "NUL in a tag", err, openfl.CodeInvalidArgument, "Tags[1]")

		_, err = openfl.StartAggregatorServer(serverOptions(insecure), nil)
		expectCode(t, "nil logic", err, openfl.CodeInvalidArgument, "logic")
		so := serverOptions(insecure)
		so.Port = open.Port()
		_, err = openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, "port in use", err, openfl.CodeIO, "")
		so = serverOptions(mutual)
		so.TLS.Certificate = "/nonexistent/server.crt"
		_, err = openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, "missing server certificate", err, openfl.CodeIO, "")
		so = serverOptions(mutual)
		so.TLS = openfl.TLSConfig{}
		_, err = openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, "TLS without certificates", err, openfl.CodeInvalidArgument, "")
		so = serverOptions(insecure)
		so.AuthorizedCollaborators = []string{""}
		_, err = openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, "empty collaborator name", err, openfl.CodeInvalidArgument, "collaborator_name")
		so = serverOptions(insecure)
		so.MaxMessageSize = 10
		_, err = openfl.StartAggregatorServer(so, &testLogic{})
		expectCode(t, "tiny max message size", err, openfl.CodeInvalidArgument, "max message size")
	})
}

// Many goroutines over shared clients (run with -race).
func TestConcurrentClients(t *testing.T) {
	const goroutines, iterations = 24, 15
	blob := pattern(256<<10, 3, 1)
	var uploads, bytesUp atomic.Int64
	logic := &testLogic{}
	logic.getTensor = func(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error) {
		return &openfl.TensorView{Name: req.TensorName, RoundNumber: req.RoundNumber, Data: blob}, nil
	}
	logic.send = func(ctx context.Context, col string, r *openfl.TaskResults) error {
		for _, tensor := range r.Tensors {
			if !bytes.Equal(tensor.Data, blob[:len(tensor.Data)]) {
				return openfl.Errorf(openfl.CodeDataLoss, "%s: tensor %s differs", col, tensor.Name)
			}
			bytesUp.Add(int64(len(tensor.Data)))
		}
		uploads.Add(1)
		return nil
	}
	server := startServer(t, serverOptions(mutual), logic)
	clients := map[string]*openfl.AggregatorClient{
		"col1": newClient(t, clientOptions(server.Port(), mutual, "col1")),
		"col2": newClient(t, clientOptions(server.Port(), mutual, "col2")),
	}
	ctx := ctxTimeout(t, 120*time.Second)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for g := 0; g < goroutines; g++ {
		g := g
		col := []string{"col1", "col2"}[g%2]
		c := clients[col]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < iterations; i++ {
				if _, err := c.GetTasks(ctx, col); err != nil {
					t.Errorf("GetTasks: %v", err)
					failures.Add(1)
					return
				}
				tensor, err := c.GetAggregatedTensor(ctx, col, openfl.TensorRequest{TensorName: fmt.Sprintf("t%d", g), RoundNumber: int32(i)})
				if err != nil {
					t.Errorf("GetAggregatedTensor: %v", err)
					failures.Add(1)
					return
				}
				if tensor.RoundNumber != int32(i) || !bytes.Equal(tensor.Data, blob) {
					t.Errorf("tensor %s round %d differs", tensor.Name, tensor.RoundNumber)
				}
				tensor.Close()
				err = c.SendLocalTaskResults(ctx, col, openfl.TaskResults{RoundNumber: int32(i), TaskName: "train", DataSize: 1,
					Tensors: []openfl.TensorView{{Name: "big", Data: blob}, {Name: "small", Data: blob[:100]}}})
				if err != nil {
					t.Errorf("SendLocalTaskResults: %v", err)
					failures.Add(1)
					return
				}
			}
		}()
	}
	// Meanwhile a third client is closed under its own running calls.
	victim := newClient(t, clientOptions(server.Port(), mutual, "col1"))
	wg.Add(4)
	for i := 0; i < 4; i++ {
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, err := victim.GetTasks(ctx, "col1"); err != nil {
					if !errors.Is(err, openfl.CodeCancelled) {
						t.Errorf("victim: %v", err)
					}
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	victim.Close()
	wg.Wait()
	want := int64(goroutines * iterations)
	if failures.Load() == 0 && (uploads.Load() != want || bytesUp.Load() != want*int64(len(blob)+100)) {
		t.Errorf("uploads %d (%d bytes), want %d", uploads.Load(), bytesUp.Load(), want)
	}
}

// Uploads of many tensors: the lending chain at its depth limit, tensors
// copied beyond it, small and empty tensors, metadata.
func TestManyTensorUpload(t *testing.T) {
	restore := openfl.SetBorrowLimits(1, 4096) // lend every non-empty tensor, up to 4096
	defer restore()
	const n = 5000
	tensors := make([]openfl.TensorView, n)
	for i := range tensors {
		size := i % 97
		tensors[i] = openfl.TensorView{Name: fmt.Sprintf("t%05d", i), RoundNumber: int32(i), Data: pattern(size, byte(i), byte(i>>8)),
			Metadata: []openfl.Metadata{{IntList: []int32{int32(size)}}}}
	}
	var problem atomic.Value
	problem.Store("")
	logic := &testLogic{}
	logic.send = func(ctx context.Context, col string, r *openfl.TaskResults) error {
		if len(r.Tensors) != n {
			problem.Store(fmt.Sprintf("%d tensors", len(r.Tensors)))
			return nil
		}
		for i, got := range r.Tensors {
			want := tensors[i]
			if got.Name != want.Name || got.RoundNumber != want.RoundNumber || !bytes.Equal(got.Data, want.Data) ||
				len(got.Metadata) != 1 || got.Metadata[0].IntList[0] != int32(len(want.Data)) {
				problem.Store(fmt.Sprintf("tensor %d differs", i))
				return nil
			}
		}
		return nil
	}
	server := startServer(t, serverOptions(insecure), logic)
	c := newClient(t, clientOptions(server.Port(), insecure, ""))
	if err := c.SendLocalTaskResults(ctxTimeout(t, 60*time.Second), "col1", openfl.TaskResults{TaskName: "many", Tensors: tensors}); err != nil {
		t.Fatal(err)
	}
	if p := problem.Load().(string); p != "" {
		t.Fatal(p)
	}
}

// Server life cycle: Serve(ctx), Stop, Close (idempotent), the logic's
// context, and the release of the logic's handle.
func TestServerLifecycle(t *testing.T) {
	base := openfl.LiveServerStates()
	var sawCancel atomic.Bool
	entered := make(chan struct{}, 1)
	logic := &testLogic{}
	logic.getTasks = func(ctx context.Context, col string) (*openfl.Tasks, error) {
		entered <- struct{}{}
		select {
		case <-ctx.Done():
			sawCancel.Store(true)
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return &openfl.Tasks{}, nil
		}
	}
	s, err := openfl.StartAggregatorServer(serverOptions(insecure), logic)
	if err != nil {
		t.Fatal(err)
	}
	if s.Port() == 0 {
		t.Fatal("no port")
	}
	if openfl.LiveServerStates() != base+1 {
		t.Errorf("live states %d, base %d", openfl.LiveServerStates(), base)
	}
	c := newClient(t, clientOptions(s.Port(), insecure, ""))
	callErr := make(chan error, 1)
	go func() {
		_, err := c.GetTasks(ctxTimeout(t, 30*time.Second), "col1")
		callErr <- err
	}()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-served:
		expectCode(t, "Serve after cancel", err, openfl.CodeCancelled, "")
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	// Stopping cancelled the logic's context: the blocked call ended.
	select {
	case err := <-callErr:
		expectCode(t, "blocked call", err, openfl.CodeCancelled, "")
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked logic call did not end")
	}
	if !sawCancel.Load() {
		t.Error("the logic's context was not cancelled")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.Serve(context.Background()); err != nil {
		t.Errorf("Serve after Stop: %v", err)
	}
	s.Close()
	s.Close()
	expectCode(t, "Serve after Close", s.Serve(context.Background()), openfl.CodeCancelled, "closed")
	if err := s.Stop(); err != nil {
		t.Errorf("Stop after Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for openfl.LiveServerStates() != base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if openfl.LiveServerStates() != base {
		t.Errorf("the logic's handle was not released: %d live", openfl.LiveServerStates())
	}

	// A failed start releases the handle too.
	so := serverOptions(mutual)
	so.TLS.RootCertificate = "/nonexistent"
	if _, err := openfl.StartAggregatorServer(so, &testLogic{}); err == nil {
		t.Fatal("start succeeded")
	}
	deadline = time.Now().Add(5 * time.Second)
	for openfl.LiveServerStates() != base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if openfl.LiveServerStates() != base {
		t.Errorf("a failed start kept the handle: %d live", openfl.LiveServerStates())
	}
}

// Log records reach a Go function.
func TestLogger(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	err := openfl.SetLogger(openfl.LogInfo, func(level openfl.LogLevel, target, message string) {
		mu.Lock()
		lines = append(lines, level.String()+" "+target+": "+message)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer openfl.SetLogger(openfl.LogError, nil)
	s := startServer(t, serverOptions(insecure), &testLogic{})
	s.Close()
	mu.Lock()
	all := strings.Join(lines, "\n")
	mu.Unlock()
	if !strings.Contains(all, "WARN") {
		t.Errorf("no warning about the server without TLS in:\n%s", all)
	}
	expectCode(t, "bad level", openfl.SetLogger(9, nil), openfl.CodeInvalidArgument, "max_level")
}

// mayBlockLogic is testLogic whose MayBlock answers from a set.
type mayBlockLogic struct {
	testLogic
	nonBlocking map[openfl.LogicCall]bool
}

func (l *mayBlockLogic) MayBlock(call openfl.LogicCall) bool { return !l.nonBlocking[call] }

// TestMayBlock: GetTasks of logic whose MayBlock answers false for it runs
// on one of the library's async workers ("ofl-worker"); without MayBlocker
// it runs on the blocking pool ("ofl-blocking"). The callback is locked to
// the library's thread while it runs, so /proc/thread-self names it.
func TestMayBlock(t *testing.T) {
	threadOfGetTasks := func(logic *mayBlockLogic, asLogic openfl.AggregatorLogic) string {
		var thread atomic.Value
		logic.getTasks = func(ctx context.Context, col string) (*openfl.Tasks, error) {
			comm, err := os.ReadFile("/proc/thread-self/comm")
			if err != nil {
				return nil, err
			}
			thread.Store(strings.TrimSpace(string(comm)))
			return &openfl.Tasks{RoundNumber: 6}, nil
		}
		s := startServer(t, serverOptions(mutual), asLogic)
		c := newClient(t, clientOptions(s.Port(), mutual, "col1"))
		tasks, err := c.GetTasks(ctxTimeout(t, 10*time.Second), "col1")
		if err != nil || tasks.RoundNumber != 6 {
			t.Fatalf("GetTasks: %v %+v", err, tasks)
		}
		s.Close()
		name, _ := thread.Load().(string)
		return name
	}
	inline := &mayBlockLogic{nonBlocking: map[openfl.LogicCall]bool{openfl.CallGetTasks: true}}
	if got := threadOfGetTasks(inline, inline); got != "ofl-worker" {
		t.Errorf("GetTasks declared non-blocking ran on thread %q, want ofl-worker", got)
	}
	plain := &mayBlockLogic{}
	if got := threadOfGetTasks(plain, &plain.testLogic); got != "ofl-blocking" {
		t.Errorf("GetTasks of logic without MayBlocker ran on thread %q, want ofl-blocking", got)
	}
}
