package openfl_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"openfl-transport/openfl"
)

// Per-call behaviour: contexts that really cancel calls (uploads and
// downloads included), deadlines, Close that cancels and waits, progress.

const bigLen = 24 * mib

// stallLogic stalls GetTasks (and uploads named "stall") until release is
// closed, serves a bigLen tensor, and counts the uploads it received.
type stallLogic struct {
	testLogic
	release          chan struct{}
	stalled, uploads atomic.Int64
}

func newStallLogic() *stallLogic {
	l := &stallLogic{release: make(chan struct{})}
	blob := pattern(bigLen, 5, 3)
	l.getTasks = func(ctx context.Context, col string) (*openfl.Tasks, error) {
		l.stalled.Add(1)
		defer l.stalled.Add(-1)
		select {
		case <-l.release:
		case <-ctx.Done():
		}
		return &openfl.Tasks{RoundNumber: 1, SleepTime: 1}, nil
	}
	l.getTensor = func(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error) {
		return &openfl.TensorView{Name: req.TensorName, RoundNumber: req.RoundNumber, Data: blob}, nil
	}
	l.send = func(ctx context.Context, col string, r *openfl.TaskResults) error {
		if r.TaskName == "stall" { // never counted
			l.stalled.Add(1)
			defer l.stalled.Add(-1)
			select {
			case <-l.release:
			case <-ctx.Done():
			}
			return openfl.NewError(openfl.CodeUnavailable, "stalled")
		}
		l.uploads.Add(1)
		return nil
	}
	return l
}

// startStallServer starts an insecure server with logic l; its stalled
// handlers are released at the end of the test.
func startStallServer(t *testing.T, l *stallLogic) *openfl.AggregatorServer {
	t.Helper()
	s := startServer(t, serverOptions(insecure), l)
	t.Cleanup(func() {
		select {
		case <-l.release:
		default:
			close(l.release)
		}
	})
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// progressLog records progress reports; abortAfter > 0 aborts at that report.
type progressLog struct {
	mu         sync.Mutex
	seen       [][2]uint64
	abortAfter int
	onReport   func() // called at each report (e.g. to cancel a context)
}

func (p *progressLog) fn(done, total uint64) bool {
	p.mu.Lock()
	p.seen = append(p.seen, [2]uint64{done, total})
	n := len(p.seen)
	p.mu.Unlock()
	if p.onReport != nil {
		p.onReport()
	}
	return p.abortAfter == 0 || n < p.abortAfter
}

func (p *progressLog) reports() [][2]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][2]uint64(nil), p.seen...)
}

// checkMonotonic: several reports, done never decreasing, the total 0
// (unknown) or, once known, fixed and never below done, the last report
// done == total, at least size (messages carry a little more than the
// data), and no more reports than one per 4 MiB plus the last.
func checkMonotonic(t *testing.T, what string, p *progressLog, size uint64) {
	t.Helper()
	seen := p.reports()
	if len(seen) < 2 || uint64(len(seen)) > size/(4*mib)+2 {
		t.Errorf("%s: %d progress reports for %d bytes: %v", what, len(seen), size, seen)
		return
	}
	for i, r := range seen {
		if i > 0 && (r[0] < seen[i-1][0] || (seen[i-1][1] != 0 && r[1] != seen[i-1][1])) || (r[1] != 0 && r[0] > r[1]) {
			t.Errorf("%s: report %d of %v is out of order", what, i, seen)
			return
		}
	}
	if last := seen[len(seen)-1]; last[0] != last[1] || last[0] < size || last[0] > size+64<<10 {
		t.Errorf("%s: progress ended at %v for %d bytes", what, last, size)
	}
}

func bigUpload(task string) openfl.TaskResults {
	return openfl.TaskResults{RoundNumber: 1, TaskName: task, DataSize: 10,
		Tensors: []openfl.TensorView{{Name: "weights", Data: pattern(bigLen, 7, 1)}}}
}

func TestCallDeadlines(t *testing.T) {
	l := newStallLogic()
	s := startStallServer(t, l)
	c := newClient(t, clientOptions(s.Port(), insecure, ""))

	elapsed := func(f func() error) (time.Duration, error) {
		start := time.Now()
		err := f()
		return time.Since(start), err
	}
	// The context's deadline is the call's time limit.
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	d, err := elapsed(func() error { _, err := c.GetTasks(short, "col1"); return err })
	expectCode(t, "GetTasks past its context deadline", err, openfl.CodeDeadlineExceeded, "")
	if !errors.Is(err, context.DeadlineExceeded) || d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("GetTasks: %v after %v", err, d)
	}

	// Connect.CallTimeout bounds calls without a deadline, and those whose
	// context ends later; an earlier context deadline wins over it.
	o := clientOptions(s.Port(), insecure, "")
	o.Connect.CallTimeout = 300 * time.Millisecond
	bounded := newClient(t, o)
	for _, ctx := range []context.Context{context.Background(), ctxTimeout(t, time.Minute)} {
		d, err = elapsed(func() error { _, err := bounded.GetTasks(ctx, "col1"); return err })
		expectCode(t, "GetTasks past the client's call timeout", err, openfl.CodeDeadlineExceeded, "")
		if errors.Is(err, context.DeadlineExceeded) || d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("GetTasks with Connect.CallTimeout: %v after %v", err, d)
		}
	}
	shorter, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	d, err = elapsed(func() error { _, err := bounded.GetTasks(shorter, "col1"); return err })
	if !errors.Is(err, context.DeadlineExceeded) || d > 250*time.Millisecond {
		t.Errorf("GetTasks with an earlier context deadline: %v after %v", err, d)
	}
	o.Connect.CallTimeout = time.Microsecond
	_, err = openfl.NewAggregatorClient(o)
	expectCode(t, "CallTimeout below 1 ms", err, openfl.CodeInvalidArgument, "CallTimeout")

	// Cancelled from another goroutine while it waits.
	cancellable, cancel3 := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel3)
	d, err = elapsed(func() error { _, err := c.GetTasks(cancellable, "col1"); return err })
	expectCode(t, "GetTasks cancelled", err, openfl.CodeCancelled, "")
	if !errors.Is(err, context.Canceled) || d > 2*time.Second {
		t.Errorf("GetTasks cancelled: %v after %v", err, d)
	}
}

func TestCancelTransfers(t *testing.T) {
	l := newStallLogic()
	s := startStallServer(t, l)
	c := newClient(t, clientOptions(s.Port(), insecure, ""))
	req := openfl.TensorRequest{TensorName: "model", RoundNumber: 1}

	// Cancelled by the context at the first progress report: mid-transfer.
	for _, upload := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		p := &progressLog{onReport: cancel}
		var err error
		if upload {
			err = c.SendLocalTaskResults(ctx, "col1", bigUpload("train"), openfl.WithProgress(p.fn))
		} else {
			var tensor *openfl.Tensor
			tensor, err = c.GetAggregatedTensor(ctx, "col1", req, openfl.WithProgress(p.fn))
			if tensor != nil {
				tensor.Close()
			}
		}
		expectCode(t, "transfer cancelled mid-way", err, openfl.CodeCancelled, "")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("upload %v: not context.Canceled: %v", upload, err)
		}
		if seen := p.reports(); len(seen) == 0 || seen[0][0] >= bigLen {
			t.Errorf("upload %v: not cancelled mid-way: %v", upload, seen)
		}
		cancel()
	}
	// Past the context's deadline, mid-upload (the server stalls it).
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.SendLocalTaskResults(short, "col1", bigUpload("stall"))
	expectCode(t, "upload past its deadline", err, openfl.CodeDeadlineExceeded, "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("not context.DeadlineExceeded: %v", err)
	}
	// A cancelled upload is never counted; the client still works.
	time.Sleep(300 * time.Millisecond)
	if n := l.uploads.Load(); n != 0 {
		t.Errorf("the aggregator counted %d cancelled uploads", n)
	}
	if err := c.SendLocalTaskResults(ctxTimeout(t, 30*time.Second), "col1", bigUpload("train")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the upload", func() bool { return l.uploads.Load() == 1 })
}

func TestProgress(t *testing.T) {
	l := newStallLogic()
	s := startStallServer(t, l)
	c := newClient(t, clientOptions(s.Port(), insecure, ""))
	ctx := ctxTimeout(t, 60*time.Second)
	req := openfl.TensorRequest{TensorName: "model", RoundNumber: 1}

	down := &progressLog{}
	tensor, err := c.GetAggregatedTensor(ctx, "col1", req, openfl.WithProgress(down.fn))
	if err != nil {
		t.Fatal(err)
	}
	if len(tensor.Data) != bigLen {
		t.Errorf("downloaded %d bytes", len(tensor.Data))
	}
	tensor.Close()
	checkMonotonic(t, "download", down, bigLen)
	up := &progressLog{}
	if err := c.SendLocalTaskResults(ctx, "col1", bigUpload("train"), openfl.WithProgress(up.fn)); err != nil {
		t.Fatal(err)
	}
	checkMonotonic(t, "upload", up, bigLen)
	waitFor(t, "the upload", func() bool { return l.uploads.Load() == 1 })

	// false aborts with CodeCancelled (no context error); an aborted upload is not counted.
	abort := &progressLog{abortAfter: 1}
	_, err = c.GetAggregatedTensor(ctx, "col1", req, openfl.WithProgress(abort.fn))
	expectCode(t, "download aborted", err, openfl.CodeCancelled, "")
	if errors.Is(err, context.Canceled) || len(abort.reports()) != 1 {
		t.Errorf("aborted download: %v after %v", err, abort.reports())
	}
	abort = &progressLog{abortAfter: 1}
	err = c.SendLocalTaskResults(ctx, "col1", bigUpload("train"), openfl.WithProgress(abort.fn))
	expectCode(t, "upload aborted", err, openfl.CodeCancelled, "")

	// A panic in the progress function aborts the call and is re-raised
	// on the caller's goroutine.
	for _, upload := range []bool{false, true} {
		func() {
			defer func() {
				if r := recover(); r != "progress exploded" {
					t.Errorf("upload %v: recovered %v", upload, r)
				}
			}()
			boom := openfl.WithProgress(func(done, total uint64) bool { panic("progress exploded") })
			if upload {
				_ = c.SendLocalTaskResults(ctx, "col1", bigUpload("train"), boom)
			} else {
				_, _ = c.GetAggregatedTensor(ctx, "col1", req, boom)
			}
			t.Errorf("upload %v: returned after its progress function panicked", upload)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if n := l.uploads.Load(); n != 1 {
		t.Errorf("uploads counted: %d, want 1", n)
	}
	// The client still works; a nil CallOption is ignored.
	tensor, err = c.GetAggregatedTensor(ctx, "col1", req, nil)
	if err != nil || len(tensor.Data) != bigLen {
		t.Errorf("GetAggregatedTensor after the aborted calls: %v", err)
	} else {
		tensor.Close()
	}
}

// goroutines waits (bounded) until at most want goroutines run, and
// returns how many do.
func goroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	return n
}

func TestCloseCancelsAndWaits(t *testing.T) {
	l := newStallLogic()
	s := startStallServer(t, l)
	time.Sleep(100 * time.Millisecond) // the server settled
	base := runtime.NumGoroutine()
	c, err := openfl.NewAggregatorClient(clientOptions(s.Port(), insecure, ""))
	if err != nil {
		t.Fatal(err)
	}
	// Blocked calls with and without a context that can end (a watcher
	// goroutine each), an upload among them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan error, 5)
	var calls sync.WaitGroup
	for _, f := range []func() error{
		func() error { _, err := c.GetTasks(context.Background(), "col1"); return err },
		func() error { _, err := c.GetTasks(ctx, "col1"); return err },
		func() error {
			_, err := c.GetTasks(ctx, "col2", openfl.WithProgress(func(uint64, uint64) bool { return true }))
			return err
		},
		func() error { return c.SendLocalTaskResults(ctx, "col1", bigUpload("stall")) },
		func() error { return c.SendLocalTaskResults(context.Background(), "col2", bigUpload("stall")) },
	} {
		f := f
		calls.Add(1)
		go func() { defer calls.Done(); results <- f() }()
	}
	waitFor(t, "5 calls at the aggregator", func() bool { return l.stalled.Load() == 5 })
	if n := openfl.CallsInProgress(c); n != 5 {
		t.Errorf("calls in progress before Close: %d", n)
	}

	closed := make(chan time.Duration)
	go func() { start := time.Now(); c.Close(); closed <- time.Since(start) }()
	select {
	case d := <-closed:
		// Every library call has returned, its watcher gone.
		if n := openfl.CallsInProgress(c); n != 0 {
			t.Errorf("Close returned with %d calls in progress", n)
		}
		if d > 2*time.Second {
			t.Errorf("Close took %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	calls.Wait()
	close(results)
	for err := range results {
		expectCode(t, "a call ended by Close", err, openfl.CodeCancelled, "closed")
		if !errors.Is(err, openfl.ErrClosed) {
			t.Errorf("not ErrClosed: %v", err)
		}
	}
	c.Close() // idempotent
	_, err = c.GetTasks(ctx, "col1")
	expectCode(t, "a call after Close", err, openfl.CodeCancelled, "closed")

	// Nothing of the client outlives Close: the goroutine count is back to
	// where it was (the server's handlers released first: each is a cgo
	// callback, counted while it runs).
	close(l.release)
	waitFor(t, "the handlers", func() bool { return l.stalled.Load() == 0 })
	if n := goroutines(base); n > base {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before the client:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// Close racing with calls that start and end (run with -race): Close
// returns with no call in progress and every call ends.
func TestCloseRacingCalls(t *testing.T) {
	s := startServer(t, serverOptions(insecure), &testLogic{})
	for round := 0; round < 5; round++ {
		c, err := openfl.NewAggregatorClient(clientOptions(s.Port(), insecure, ""))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var calls sync.WaitGroup
		var bad atomic.Value
		for g := 0; g < 6; g++ {
			calls.Add(1)
			go func(g int) {
				defer calls.Done()
				for {
					var err error
					if g%2 == 0 {
						_, err = c.GetTasks(ctx, "col1")
					} else {
						_, err = c.GetTasks(context.Background(), "col1")
					}
					if err != nil {
						if !errors.Is(err, openfl.ErrClosed) {
							bad.Store(err)
						}
						return
					}
				}
			}(g)
		}
		time.Sleep(time.Duration(20+round*15) * time.Millisecond)
		c.Close()
		if n := openfl.CallsInProgress(c); n != 0 {
			t.Errorf("round %d: Close returned with %d calls in progress", round, n)
		}
		calls.Wait()
		cancel()
		if err, ok := bad.Load().(error); ok {
			t.Errorf("round %d: a call failed with %v", round, err)
		}
	}
}

func TestDirectorCalls(t *testing.T) {
	d := startDirector(t, directorOptions(t, insecure), nil)
	envoy := newEnvoy(t, dirClientOptions(d.Port(), ""), "col1")
	o := dirClientOptions(d.Port(), "")
	o.ClientID = "alice"
	f := newFrontend(t, o)
	ctx := ctxTimeout(t, 60*time.Second)
	if ok, err := envoy.UpdateShardInfo(ctx, openfl.ShardInfo{SampleShape: sampleShape, TargetShape: targetShape}); err != nil || !ok {
		t.Fatalf("UpdateShardInfo: %v %v", ok, err)
	}
	archive := filepath.Join(t.TempDir(), "exp.zip")
	const archiveLen = 10*mib + 5
	writeFile(t, archive, pattern(archiveLen, 3, 1))

	// An experiment upload cancelled mid-way leaves no experiment.
	cancelled, cancel := context.WithCancel(ctx)
	p := &progressLog{onReport: cancel}
	err := f.SetNewExperiment(cancelled, "gone", []string{"col1"}, archive, nil, openfl.WithProgress(p.fn))
	expectCode(t, "SetNewExperiment cancelled mid-way", err, openfl.CodeCancelled, "")
	if !errors.Is(err, context.Canceled) || len(p.reports()) == 0 {
		t.Errorf("SetNewExperiment: %v after %v", err, p.reports())
	}
	_, err = f.GetExperimentStatus(ctx, "gone")
	expectCode(t, "the cancelled experiment", err, openfl.CodeNotFound, "gone")

	// Progress on the experiment upload and on the archive download.
	up, down := &progressLog{}, &progressLog{}
	if err := f.SetNewExperiment(ctx, "exp", []string{"col1"}, archive, nil, openfl.WithProgress(up.fn)); err != nil {
		t.Fatal(err)
	}
	checkMonotonic(t, "experiment upload", up, archiveLen)
	if name, err := envoy.WaitExperiment(ctx); err != nil || name != "exp" {
		t.Fatalf("WaitExperiment: %q %v", name, err)
	}
	dest := filepath.Join(t.TempDir(), "down.zip")
	if size, err := envoy.GetExperimentData(ctx, "exp", dest, openfl.WithProgress(down.fn)); err != nil || size != archiveLen {
		t.Fatalf("GetExperimentData: %d %v", size, err)
	}
	checkMonotonic(t, "archive download", down, archiveLen)
	if err := d.MarkFinished("exp"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dest); err != nil || st.Size() != archiveLen {
		t.Errorf("downloaded archive: %v %v", st, err)
	}

	// Close ends a blocked WaitExperiment and waits for it.
	waited := make(chan error, 1)
	go func() { _, err := envoy.WaitExperiment(ctx); waited <- err }()
	waitFor(t, "the wait to start", func() bool { return openfl.CallsInProgress(envoy) == 1 })
	time.Sleep(100 * time.Millisecond)
	envoy.Close()
	if n := openfl.CallsInProgress(envoy); n != 0 {
		t.Errorf("EnvoyClient.Close returned with %d calls in progress", n)
	}
	select {
	case err := <-waited:
		expectCode(t, "WaitExperiment ended by Close", err, openfl.CodeCancelled, "closed")
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end WaitExperiment")
	}
}
