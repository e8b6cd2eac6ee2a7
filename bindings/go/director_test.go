package openfl_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"openfl-transport/openfl"
)

const healthPeriod = 2 * time.Second

var (
	sampleShape = []string{"28", "28"}
	targetShape = []string{"1"}
	bothCols    = []string{"col1", "col2"}
)

// ---- helpers ------------------------------------------------------------------

func directorOptions(t *testing.T, mode tlsMode) openfl.DirectorServerOptions {
	o := openfl.DirectorServerOptions{
		Host:                   "127.0.0.1",
		SampleShape:            sampleShape,
		TargetShape:            targetShape,
		EnvoyHealthCheckPeriod: healthPeriod,
		ArchiveDir:             filepath.Join(t.TempDir(), "archives"),
		MaxArchiveSize:         64 * mib,
		MaxMessageSize:         64 * mib,
		MaxQueuedMetrics:       1000,
	}
	if mode == insecure {
		o.TLS.Disabled = true
	} else {
		o.TLS = openfl.TLSConfig{RootCertificate: cert("ca.crt"), Certificate: cert("server.crt"), PrivateKey: cert("server.key")}
	}
	return o
}

// dirClientOptions: mTLS as `identity` (a certificate name), or no TLS
// when identity is "".
func dirClientOptions(port uint16, identity string) openfl.DirectorClientOptions {
	o := openfl.DirectorClientOptions{
		Host: "127.0.0.1", Port: port,
		Connect: openfl.ConnectOptions{
			Retry:          &openfl.RetryPolicy{InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Deadline: 5 * time.Second},
			ConnectTimeout: 5 * time.Second,
			MaxMessageSize: 64 * mib,
		},
		MaxArchiveSize: 64 * mib,
	}
	if identity == "" {
		o.TLS.Disabled = true
	} else {
		o.TLS = openfl.TLSConfig{RootCertificate: cert("ca.crt"), Certificate: cert(identity + ".crt"), PrivateKey: cert(identity + ".key")}
		o.Connect.ServerName = "localhost"
	}
	return o
}

func startDirector(t *testing.T, opts openfl.DirectorServerOptions, hooks openfl.DirectorHooks) *openfl.DirectorServer {
	t.Helper()
	d, err := openfl.StartDirectorServer(opts, hooks)
	if err != nil {
		t.Fatalf("StartDirectorServer: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newEnvoy(t *testing.T, opts openfl.DirectorClientOptions, name string) *openfl.EnvoyClient {
	t.Helper()
	e, err := openfl.NewEnvoyClient(opts, name)
	if err != nil {
		t.Fatalf("NewEnvoyClient(%s): %v", name, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func newFrontend(t *testing.T, opts openfl.DirectorClientOptions) *openfl.FrontendClient {
	t.Helper()
	f, err := openfl.NewFrontendClient(opts)
	if err != nil {
		t.Fatalf("NewFrontendClient: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// f32Tensor encodes values as OpenFL's uncompressed pipeline does:
// little-endian float32, the shape in IntList.
func f32Tensor(name string, shape []int32, values []float32) openfl.TensorView {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return openfl.TensorView{Name: name, Lossless: true, Tags: []string{"model"},
		Metadata: []openfl.Metadata{{IntList: shape}}, Data: data}
}

// model is a two-tensor model: "w" (256 x 128, 128 KiB: lent in place on
// upload) and the scalar "b", its values derived from seed.
func model(seed float32) []openfl.TensorView {
	w := make([]float32, 256*128)
	for i := range w {
		w[i] = seed * float32(i%1000)
	}
	return []openfl.TensorView{f32Tensor("w", []int32{256, 128}, w), f32Tensor("b", nil, []float32{seed / 2})}
}

// sameModel compares names, metadata shapes and bytes.
func sameModel(got, want []openfl.TensorView) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d tensors, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		var gs, ws []int32
		if len(g.Metadata) > 0 {
			gs = g.Metadata[0].IntList
		}
		if len(w.Metadata) > 0 {
			ws = w.Metadata[0].IntList
		}
		if g.Name != w.Name || !bytes.Equal(g.Data, w.Data) || fmt.Sprint(gs) != fmt.Sprint(ws) {
			return fmt.Errorf("tensor %d: %q (%d bytes, shape %v), want %q (%d bytes, shape %v)",
				i, g.Name, len(g.Data), gs, w.Name, len(w.Data), ws)
		}
	}
	return nil
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// waitStatus polls the frontend's view of name until it is want (10 s at most).
func waitStatus(t *testing.T, f *openfl.FrontendClient, name string, want openfl.ExperimentStatus) {
	t.Helper()
	var st openfl.ExperimentStatus
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, err = f.GetExperimentStatus(context.Background(), name)
		if err == nil && st == want {
			return
		}
	}
	t.Fatalf("experiment %s: status %v (%v), want %v", name, st, err, want)
}

func waitCount(t *testing.T, what string, n *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n.Load() >= want {
			return
		}
	}
	t.Fatalf("%s: %d, want %d", what, n.Load(), want)
}

// ---- the host's hooks ------------------------------------------------------------

type startRecord struct {
	owner, archivePath string
	collaborators      []string
	archiveSize        uint64
	archiveOnDisk      int64
	modelProblem       error
	setRound           error
}

type testHost struct {
	reviews, starts, failures atomic.Int64
	initial                   []openfl.TensorView

	mu      sync.Mutex
	started map[string]startRecord
	failed  []string // "experiment/collaborator/code/description"
}

func (h *testHost) ReviewExperiment(ctx context.Context, d *openfl.DirectorServer, e *openfl.Experiment) bool {
	h.reviews.Add(1)
	return !strings.HasPrefix(e.Name, "reject")
}

func (h *testHost) StartExperiment(ctx context.Context, d *openfl.DirectorServer, e *openfl.Experiment) error {
	defer h.starts.Add(1)
	if strings.HasPrefix(e.Name, "nostart") {
		return openfl.NewError(openfl.CodeUnavailable, "no aggregator for you")
	}
	r := startRecord{owner: e.Owner, collaborators: e.Collaborators, archivePath: e.ArchivePath,
		archiveSize: e.ArchiveSize, archiveOnDisk: -1}
	if fi, err := os.Stat(e.ArchivePath); err == nil {
		r.archiveOnDisk = fi.Size()
	}
	if e.Name == "mnist" {
		r.modelProblem = sameModel(e.InitialModel, h.initial)
		// A hook reports progress at once: the server it is given is ready.
		r.setRound = d.SetRound(e.Name, 0, 2)
	} else if e.InitialModel != nil {
		r.modelProblem = errors.New("an initial model nobody sent")
	}
	h.mu.Lock()
	h.started[e.Name] = r
	h.mu.Unlock()
	return nil
}

func (h *testHost) ExperimentFailed(ctx context.Context, d *openfl.DirectorServer, e *openfl.Experiment, f openfl.EnvoyFailure) {
	h.mu.Lock()
	h.failed = append(h.failed, fmt.Sprintf("%s/%s/%d/%s", e.Name, f.Collaborator, f.ErrorCode, f.Description))
	h.mu.Unlock()
	h.failures.Add(1)
}

// ---- envoys -------------------------------------------------------------------------

var gpu = openfl.CUDADevice{Index: 0, MemoryTotal: 16 << 30, MemoryUtilized: 1 << 30, DeviceUtilization: "35%",
	CUDADriverVersion: "535.54", CUDAVersion: "12.2", Name: "gpu0"}

type envoyRun struct {
	name, dest      string
	experiment      string
	size            uint64
	period          time.Duration
	refusedBadShape bool
}

// runEnvoy registers (col1 first with a wrong shape), reports its GPU,
// waits for an experiment and downloads its archive.
func runEnvoy(t *testing.T, port uint16, r *envoyRun) {
	ctx := ctxTimeout(t, 60*time.Second)
	e, err := openfl.NewEnvoyClient(dirClientOptions(port, r.name), r.name)
	if err != nil {
		t.Errorf("%s: NewEnvoyClient: %v", r.name, err)
		return
	}
	defer e.Close()
	if r.name == "col1" {
		ok, err := e.UpdateShardInfo(ctx, openfl.ShardInfo{Description: "mnist shard", NSamples: 6000,
			SampleShape: []string{"32", "32"}, TargetShape: targetShape})
		r.refusedBadShape = err == nil && !ok
	}
	ok, err := e.UpdateShardInfo(ctx, openfl.ShardInfo{Description: "mnist shard", NSamples: 6000,
		SampleShape: sampleShape, TargetShape: targetShape})
	if err != nil || !ok {
		t.Errorf("%s: UpdateShardInfo: %v %v", r.name, ok, err)
		return
	}
	if r.period, err = e.SendHealthCheck(ctx, false, []openfl.CUDADevice{gpu}); err != nil {
		t.Errorf("%s: SendHealthCheck: %v", r.name, err)
	}
	if r.experiment, err = e.WaitExperiment(ctx); err != nil {
		t.Errorf("%s: WaitExperiment: %v", r.name, err)
		return
	}
	if r.size, err = e.GetExperimentData(ctx, r.experiment, r.dest); err != nil {
		t.Errorf("%s: GetExperimentData: %v", r.name, err)
	}
	if _, err := e.SendHealthCheck(ctx, true, nil); err != nil {
		t.Errorf("%s: SendHealthCheck: %v", r.name, err)
	}
}

// waitEnvoys polls GetEnvoys until both envoys reported their GPU.
func waitEnvoys(t *testing.T, f *openfl.FrontendClient, experiment string) []openfl.EnvoyInfo {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		envoys, err := f.GetEnvoys(context.Background())
		if err != nil {
			t.Fatalf("GetEnvoys: %v", err)
		}
		ready := 0
		for _, e := range envoys {
			if len(e.CUDADevices) == 1 && e.ExperimentName == experiment {
				ready++
			}
		}
		if ready == 2 || time.Now().After(deadline) {
			return envoys
		}
	}
}

func checkEnvoys(t *testing.T, envoys []openfl.EnvoyInfo, experiment string) {
	t.Helper()
	if len(envoys) != 2 {
		t.Fatalf("%d envoys: %+v", len(envoys), envoys)
	}
	for _, e := range envoys {
		if e.Name != "col1" && e.Name != "col2" {
			t.Errorf("envoy %q", e.Name)
		}
		if e.ShardDescription != "mnist shard" || e.NSamples != 6000 || !reflect.DeepEqual(e.SampleShape, sampleShape) ||
			!reflect.DeepEqual(e.TargetShape, targetShape) || !e.IsOnline || e.ValidDuration != 2*healthPeriod ||
			e.ExperimentName != experiment || time.Since(e.LastUpdated) > time.Minute ||
			!reflect.DeepEqual(e.CUDADevices, []openfl.CUDADevice{gpu}) {
			t.Errorf("envoy %+v", e)
		}
	}
}

// ---- tests ------------------------------------------------------------------------------

// A whole experiment over mTLS: a Go director with Go hooks, two Go envoys,
// Go frontends; then every rejection with its code.
func TestDirectorLifecycleMTLS(t *testing.T) {
	work := t.TempDir()
	archive := filepath.Join(work, "mnist-workspace.zip")
	archiveData := pattern(5*mib+123, 13, 5) // three chunks of at most 2 MiB
	writeFile(t, archive, archiveData)
	base := openfl.LiveDirectorStates()
	host := &testHost{started: map[string]startRecord{}, initial: model(1)}
	opts := directorOptions(t, mutual)
	d := startDirector(t, opts, host)
	if d.Port() == 0 || d.ArchiveDir() != opts.ArchiveDir || !exists(opts.ArchiveDir) {
		t.Fatalf("port %d, archive dir %q", d.Port(), d.ArchiveDir())
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(context.Background()) }()
	port := d.Port()
	ctx := ctxTimeout(t, 120*time.Second)

	// Envoys register, report a GPU and wait for an experiment.
	runs := []*envoyRun{{name: "col1"}, {name: "col2"}}
	var envoys sync.WaitGroup
	for _, r := range runs {
		r := r
		r.dest = filepath.Join(work, r.name+"-download.zip")
		envoys.Add(1)
		go func() { defer envoys.Done(); runEnvoy(t, port, r) }()
	}
	f := newFrontend(t, dirClientOptions(port, "frontend"))
	checkEnvoys(t, waitEnvoys(t, f, ""), "")
	sample, target, err := f.GetDatasetInfo(ctx)
	if err != nil || !reflect.DeepEqual(sample, sampleShape) || !reflect.DeepEqual(target, targetShape) {
		t.Errorf("GetDatasetInfo: %v %v %v", sample, target, err)
	}

	// Submit: the hooks see it; the envoys get it and download the archive.
	if err := f.SetNewExperiment(ctx, "mnist", bothCols, archive, host.initial); err != nil {
		t.Fatalf("SetNewExperiment: %v", err)
	}
	waitCount(t, "starts", &host.starts, 1)
	host.mu.Lock()
	r := host.started["mnist"]
	host.mu.Unlock()
	if r.owner != "frontend" || !reflect.DeepEqual(r.collaborators, bothCols) || r.archiveSize != uint64(len(archiveData)) ||
		r.archiveOnDisk != int64(len(archiveData)) || !strings.Contains(r.archivePath, "mnist") || r.setRound != nil {
		t.Errorf("start hook saw %+v", r)
	}
	if r.modelProblem != nil {
		t.Errorf("initial model in the start hook: %v", r.modelProblem)
	}
	envoys.Wait()
	for _, r := range runs {
		got, _ := os.ReadFile(r.dest)
		if r.experiment != "mnist" || r.size != uint64(len(archiveData)) || !bytes.Equal(got, archiveData) ||
			r.period != healthPeriod {
			t.Errorf("%s: experiment %q, %d bytes (file %d), period %v", r.name, r.experiment, r.size, len(got), r.period)
		}
	}
	if !runs[0].refusedBadShape {
		t.Error("a shard with the wrong shape was accepted")
	}
	if st, err := f.GetExperimentStatus(ctx, "mnist"); err != nil || st != openfl.StatusInProgress {
		t.Errorf("frontend status %v %v", st, err)
	}
	if st, err := d.ExperimentStatus("mnist"); err != nil || st != openfl.StatusInProgress || st.String() != "in_progress" {
		t.Errorf("director status %v %v", st, err)
	}
	list := waitEnvoys(t, f, "mnist")
	checkEnvoys(t, list, "mnist")
	for _, e := range list {
		if !e.IsExperimentRunning {
			t.Errorf("%s: no experiment running", e.Name)
		}
	}

	// The host reports progress; the frontend reads it.
	if err := d.SetRound("mnist", 1, 2); err != nil {
		t.Error(err)
	}
	tasks := []openfl.TaskDescription{{Name: "train", Description: "train the model"}, {Name: "validate", Description: "validate it"}}
	if err := d.SetTasks("mnist", tasks); err != nil {
		t.Error(err)
	}
	desc, err := f.GetExperimentDescription(ctx, "mnist")
	if err != nil {
		t.Fatalf("GetExperimentDescription: %v", err)
	}
	if desc.Name != "mnist" || desc.Status != openfl.StatusInProgress || desc.CurrentRound != 1 || desc.TotalRounds != 2 ||
		desc.Progress != 0.5 || !reflect.DeepEqual(desc.Tasks, tasks) || len(desc.Collaborators) != 2 ||
		!reflect.DeepEqual(desc.Models, []openfl.DownloadStatus{{"best", "pending"}, {"last", "pending"}, {"init", "ready"}}) ||
		len(desc.Logs) != 1 || desc.Logs[0].Name != "aggregator" {
		t.Errorf("description %+v", desc)
	}
	for i, c := range desc.Collaborators {
		want := openfl.CollaboratorDescription{Name: bothCols[i], Status: "running", Progress: 0.5, Round: 1}
		if c != want {
			t.Errorf("collaborator %+v, want %+v", c, want)
		}
	}
	summaries, err := f.GetExperimentsList(ctx)
	if err != nil || len(summaries) != 1 || summaries[0] != (openfl.ExperimentSummary{Name: "mnist",
		Status: openfl.StatusInProgress, CollaboratorsAmount: 2, TasksAmount: 2, Progress: 0.5}) {
		t.Errorf("GetExperimentsList: %+v %v", summaries, err)
	}
	_, err = f.GetBestModel(ctx, "mnist")
	expectCode(t, "GetBestModel before any", err, openfl.CodeFailedPrecondition, "best")

	// A stream stopped by its function after the first metric.
	push := func(origin, name string, value float32, round uint32) {
		t.Helper()
		if err := d.PushMetric("mnist", openfl.DirectorMetric{Origin: origin, TaskName: "aggregated_model_validation",
			MetricName: name, Value: value, Round: round}); err != nil {
			t.Error(err)
		}
	}
	// A live stream until the experiment finishes (the first stream of
	// "mnist": every metric pushed reaches it).
	var live []openfl.DirectorMetric
	streamed := make(chan error, 1)
	go func() {
		streamed <- f.StreamMetrics(ctx, "mnist", func(m openfl.DirectorMetric) bool { live = append(live, m); return true })
	}()
	time.Sleep(100 * time.Millisecond)
	push("aggregator", "accuracy", 0.5, 1)
	push("col2", "loss", 1.5, 1)
	time.Sleep(50 * time.Millisecond)
	push("aggregator", "accuracy", 0.75, 2)
	best, last := model(10), model(-1)
	if err := d.SetBestModel("mnist", best); err != nil {
		t.Error(err)
	}
	if err := d.SetLastModel("mnist", last); err != nil {
		t.Error(err)
	}
	if err := d.SetRound("mnist", 2, 2); err != nil {
		t.Error(err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := d.MarkFinished("mnist"); err != nil {
			t.Error(err)
		}
	}
	expectCode(t, "MarkFailed after finished", d.MarkFailed("mnist", "late"), openfl.CodeFailedPrecondition, "finished")
	select {
	case err := <-streamed:
		if err != nil {
			t.Errorf("live StreamMetrics: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the live stream did not end with the experiment")
	}
	if len(live) != 3 || live[0].Value != 0.5 || live[0].Origin != "aggregator" || live[1].MetricName != "loss" ||
		live[2].Value != 0.75 || live[2].Round != 2 {
		t.Errorf("live stream %+v", live)
	}

	// The frontend reads the outcome.
	waitStatus(t, f, "mnist", openfl.StatusFinished)
	for _, m := range []struct {
		what string
		get  func(context.Context, string, ...openfl.CallOption) (*openfl.ReceivedModel, error)
		want []openfl.TensorView
	}{{"best", f.GetBestModel, best}, {"last", f.GetLastModel, last}} {
		got, err := m.get(ctx, "mnist")
		if err != nil {
			t.Errorf("%s model: %v", m.what, err)
			continue
		}
		if err := sameModel(got.Tensors, m.want); err != nil {
			t.Errorf("%s model: %v", m.what, err)
		}
		got.Close()
		got.Close() // idempotent
		if got.Tensors != nil {
			t.Errorf("%s model: Tensors after Close", m.what)
		}
	}
	if desc, err := f.GetExperimentDescription(ctx, "mnist"); err != nil || desc.Status != openfl.StatusFinished ||
		desc.Progress != 1 || desc.Collaborators[0].Status != "finished" || desc.Models[0].Status != "ready" || desc.Models[1].Status != "ready" {
		t.Errorf("finished description %+v %v", desc, err)
	}
	// Nothing left: the stream of a finished experiment ends at once.
	n := 0
	if err := f.StreamMetrics(ctx, "mnist", func(openfl.DirectorMetric) bool { n++; return true }); err != nil || n != 0 {
		t.Errorf("stream after the end: %d metrics, %v", n, err)
	}

	t.Run("another frontend sees none of it (NOT_FOUND)", func(t *testing.T) {
		f2 := newFrontend(t, dirClientOptions(port, "frontend2"))
		_, err := f2.GetExperimentStatus(ctx, "mnist")
		expectCode(t, "GetExperimentStatus", err, openfl.CodeNotFound, "mnist")
		_, err = f2.GetExperimentDescription(ctx, "mnist")
		expectCode(t, "GetExperimentDescription", err, openfl.CodeNotFound, "mnist")
		_, err = f2.GetBestModel(ctx, "mnist")
		expectCode(t, "GetBestModel", err, openfl.CodeNotFound, "mnist")
		_, err = f2.GetLastModel(ctx, "mnist")
		expectCode(t, "GetLastModel", err, openfl.CodeNotFound, "mnist")
		err = f2.StreamMetrics(ctx, "mnist", func(openfl.DirectorMetric) bool { t.Error("metric for a stranger"); return false })
		expectCode(t, "StreamMetrics", err, openfl.CodeNotFound, "mnist")
		// As OpenFL: removing another's experiment is a no-op that succeeds.
		if err := f2.RemoveExperiment(ctx, "mnist"); err != nil {
			t.Errorf("RemoveExperiment of another's experiment: %v (OpenFL acknowledges it)", err)
		}
		if st, err := f.GetExperimentStatus(ctx, "mnist"); err != nil || st != openfl.StatusFinished {
			t.Errorf("after a stranger's RemoveExperiment: %v %v", st, err)
		}
		if l, err := f2.GetExperimentsList(ctx); err != nil || len(l) != 0 {
			t.Errorf("GetExperimentsList: %+v %v", l, err)
		}
	})

	t.Run("bad submissions", func(t *testing.T) {
		empty := filepath.Join(work, "empty.zip")
		writeFile(t, empty, nil)
		expectCode(t, "same name", f.SetNewExperiment(ctx, "mnist", bothCols, archive, nil), openfl.CodeAlreadyExists, "mnist")
		expectCode(t, "archive name with a path separator", f.SetNewExperiment(ctx, "../escape", bothCols, archive, nil),
			openfl.CodeInvalidArgument, "path separator")
		expectCode(t, "no collaborators", f.SetNewExperiment(ctx, "nocols", nil, archive, nil), openfl.CodeInvalidArgument, "collaborators")
		expectCode(t, "empty archive", f.SetNewExperiment(ctx, "empty", bothCols, empty, nil), openfl.CodeInvalidArgument, "empty")
		expectCode(t, "missing archive", f.SetNewExperiment(ctx, "missing", bothCols, filepath.Join(work, "missing.zip"), nil),
			openfl.CodeIO, "missing.zip")
		expectCode(t, "NUL in the name", f.SetNewExperiment(ctx, "a\x00b", bothCols, archive, nil), openfl.CodeInvalidArgument, "name")
		if exists(filepath.Join(d.ArchiveDir(), "..", "escape.archive")) {
			t.Error("an archive escaped its directory")
		}
	})

	col1 := newEnvoy(t, dirClientOptions(port, "col1"), "col1")
	col2 := newEnvoy(t, dirClientOptions(port, "col2"), "col2")
	t.Run("an envoy fails an experiment; the hook hears of it", func(t *testing.T) {
		if err := f.SetNewExperiment(ctx, "exp-fail", []string{"col1"}, archive, nil); err != nil {
			t.Fatal(err)
		}
		if name, err := col1.WaitExperiment(ctx); err != nil || name != "exp-fail" {
			t.Fatalf("WaitExperiment: %q %v", name, err)
		}
		dest := filepath.Join(work, "col2-exp-fail.zip")
		_, err := col2.GetExperimentData(ctx, "exp-fail", dest)
		expectCode(t, "download by a non-collaborator", err, openfl.CodePermissionDenied, "col2")
		if exists(dest) {
			t.Error("a refused download left a file")
		}
		expectCode(t, "failure by a non-collaborator", col2.SetExperimentFailed(ctx, "exp-fail", 1, "not mine"),
			openfl.CodePermissionDenied, "col2")
		expectCode(t, "remove while running", f.RemoveExperiment(ctx, "exp-fail"), openfl.CodeFailedPrecondition, "exp-fail")
		if err := col1.SetExperimentFailed(ctx, "exp-fail", 7, "out of memory"); err != nil {
			t.Fatal(err)
		}
		waitCount(t, "failure hooks", &host.failures, 1)
		host.mu.Lock()
		failed := strings.Join(host.failed, ";")
		host.mu.Unlock()
		if failed != "exp-fail/col1/7/out of memory" {
			t.Errorf("experiment_failed hook saw %q", failed)
		}
		waitStatus(t, f, "exp-fail", openfl.StatusFailed)
		expectCode(t, "MarkFinished after failed", d.MarkFinished("exp-fail"), openfl.CodeFailedPrecondition, "failed")
		if err := d.MarkFailed("exp-fail", "again"); err != nil { // idempotent
			t.Error(err)
		}
	})

	t.Run("an envoy certificate cannot act for another envoy (PERMISSION_DENIED)", func(t *testing.T) {
		impostor := newEnvoy(t, dirClientOptions(port, "col1"), "col2")
		_, err := impostor.UpdateShardInfo(ctx, openfl.ShardInfo{SampleShape: sampleShape, TargetShape: targetShape})
		expectCode(t, "UpdateShardInfo", err, openfl.CodePermissionDenied, "col1")
	})

	t.Run("the review rejects: archive deleted, nothing starts", func(t *testing.T) {
		starts := host.starts.Load()
		if err := f.SetNewExperiment(ctx, "reject-me", bothCols, archive, nil); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, f, "reject-me", openfl.StatusRejected)
		if stored := filepath.Join(d.ArchiveDir(), "reject-me.archive"); exists(stored) {
			t.Errorf("%s still exists", stored)
		}
		if host.starts.Load() != starts || host.reviews.Load() != 3 {
			t.Errorf("starts %d (before %d), reviews %d", host.starts.Load(), starts, host.reviews.Load())
		}
		if err := f.RemoveExperiment(ctx, "reject-me"); err != nil {
			t.Error(err)
		}
	})

	t.Run("the start hook fails: the experiment fails", func(t *testing.T) {
		starts := host.starts.Load()
		if err := f.SetNewExperiment(ctx, "nostart-1", bothCols, archive, nil); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, f, "nostart-1", openfl.StatusFailed)
		if host.starts.Load() != starts+1 {
			t.Errorf("starts %d, want %d", host.starts.Load(), starts+1)
		}
		// The source archive was streamed, not consumed.
		if got, _ := os.ReadFile(archive); !bytes.Equal(got, archiveData) {
			t.Error("the source archive changed")
		}
	})

	t.Run("removal", func(t *testing.T) {
		stored := filepath.Join(d.ArchiveDir(), "mnist.archive")
		if !exists(stored) {
			t.Fatalf("%s missing", stored)
		}
		if err := f.RemoveExperiment(ctx, "mnist"); err != nil {
			t.Fatal(err)
		}
		if exists(stored) {
			t.Error("archive kept after removal")
		}
		_, err := f.GetExperimentStatus(ctx, "mnist")
		expectCode(t, "frontend status after removal", err, openfl.CodeNotFound, "mnist")
		_, err = d.ExperimentStatus("mnist")
		expectCode(t, "director status after removal", err, openfl.CodeNotFound, "mnist")
		expectCode(t, "PushMetric for a removed experiment", d.PushMetric("mnist", openfl.DirectorMetric{Origin: "a", TaskName: "t", MetricName: "m"}),
			openfl.CodeNotFound, "mnist")
	})

	t.Run("contexts and Close end long calls", func(t *testing.T) {
		// WaitExperiment (col2 has nothing coming): cancelled, past its deadline, closed.
		cancelled, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := col2.WaitExperiment(cancelled)
		expectCode(t, "WaitExperiment cancelled", err, openfl.CodeCancelled, "")
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Errorf("WaitExperiment: %v after %v", err, time.Since(start))
		}
		short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancelShort()
		_, err = col2.WaitExperiment(short)
		expectCode(t, "WaitExperiment past its deadline", err, openfl.CodeDeadlineExceeded, "")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("not context.DeadlineExceeded: %v", err)
		}
		// The client still works after its calls were cancelled.
		if _, err := col2.SendHealthCheck(ctx, false, nil); err != nil {
			t.Errorf("SendHealthCheck after cancelled waits: %v", err)
		}
		waited := make(chan error, 2)
		for _, c := range []context.Context{context.Background(), ctx} { // without and with a watcher
			c := c
			go func() { _, err := col2.WaitExperiment(c); waited <- err }()
		}
		time.Sleep(200 * time.Millisecond)
		col2.Close()
		for i := 0; i < 2; i++ {
			select {
			case err := <-waited:
				expectCode(t, "WaitExperiment on a closed client", err, openfl.CodeCancelled, "closed")
				if !errors.Is(err, openfl.ErrClosed) {
					t.Errorf("not ErrClosed: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not end WaitExperiment")
			}
		}
		_, err = col2.SendHealthCheck(ctx, false, nil)
		expectCode(t, "call after Close", err, openfl.CodeCancelled, "closed")

		if err := f.SetNewExperiment(ctx, "quiet", []string{"col1"}, archive, nil); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, f, "quiet", openfl.StatusInProgress)
		// A stream stopped by its function after one metric, and one whose
		// function panics. A metric pushed after a stream ended may still go
		// to that stream until the director notices (at most once delivery):
		// metrics are pushed until the stream ends.
		streamWhilePushing := func(fn func(openfl.DirectorMetric) bool) error {
			stop := make(chan struct{})
			var pushing sync.WaitGroup
			pushing.Add(1)
			go func() {
				defer pushing.Done()
				for {
					if err := d.PushMetric("quiet", openfl.DirectorMetric{Origin: "col1", TaskName: "train", MetricName: "loss", Value: 0.25, Round: 3}); err != nil {
						t.Error(err)
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			defer pushing.Wait()
			defer close(stop)
			return f.StreamMetrics(ctx, "quiet", fn)
		}
		var early []openfl.DirectorMetric
		if err := streamWhilePushing(func(m openfl.DirectorMetric) bool { early = append(early, m); return false }); err != nil {
			t.Errorf("StreamMetrics stopped early: %v", err)
		}
		if len(early) != 1 || early[0] != (openfl.DirectorMetric{Origin: "col1", TaskName: "train", MetricName: "loss", Value: 0.25, Round: 3}) {
			t.Errorf("stream stopped early got %+v", early)
		}
		// A panic in the stream's function reaches the caller, not C.
		func() {
			defer func() {
				if r := recover(); r != "metric exploded" {
					t.Errorf("recovered %v", r)
				}
			}()
			_ = streamWhilePushing(func(openfl.DirectorMetric) bool { panic("metric exploded") })
			t.Error("StreamMetrics returned after its function panicked")
		}()
		// A stream ends with its context.
		short2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel2()
		err = f.StreamMetrics(short2, "quiet", func(openfl.DirectorMetric) bool { return true })
		expectCode(t, "stream past its deadline", err, openfl.CodeDeadlineExceeded, "")
		if err := d.MarkFinished("quiet"); err != nil {
			t.Error(err)
		}
	})

	// Serve returns after Stop; Close releases the hooks.
	if err := d.Stop(); err != nil {
		t.Error(err)
	}
	if err := d.Stop(); err != nil { // idempotent
		t.Error(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Stop")
	}
	d.Close()
	d.Close()
	if openfl.LiveDirectorStates() != base {
		t.Errorf("hook handles alive after Close: %d, base %d", openfl.LiveDirectorStates(), base)
	}
	expectCode(t, "Serve after Close", d.Serve(context.Background()), openfl.CodeCancelled, "closed")
	expectCode(t, "SetRound after Close", d.SetRound("x", 1, 1), openfl.CodeCancelled, "closed")
}

// Without TLS and with nil hooks (the defaults): client_id names the
// frontend, experiments are approved and started at once.
func TestDirectorInsecureDefaults(t *testing.T) {
	work := t.TempDir()
	archive := filepath.Join(work, "plain.zip")
	data := pattern(4096, 3, 1)
	writeFile(t, archive, data)
	d := startDirector(t, directorOptions(t, insecure), nil)
	ctx := ctxTimeout(t, 60*time.Second)
	envoy := newEnvoy(t, dirClientOptions(d.Port(), ""), "col1")
	if ok, err := envoy.UpdateShardInfo(ctx, openfl.ShardInfo{SampleShape: sampleShape, TargetShape: targetShape}); err != nil || !ok {
		t.Fatalf("UpdateShardInfo: %v %v", ok, err)
	}
	aliceOpts := dirClientOptions(d.Port(), "")
	aliceOpts.ClientID = "alice"
	bobOpts := aliceOpts
	bobOpts.ClientID = "bob"
	alice, bob := newFrontend(t, aliceOpts), newFrontend(t, bobOpts)
	if err := alice.SetNewExperiment(ctx, "plain", []string{"col1"}, archive, nil); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, alice, "plain", openfl.StatusInProgress)
	_, err := bob.GetExperimentStatus(ctx, "plain")
	expectCode(t, "another client_id", err, openfl.CodeNotFound, "plain")
	if name, err := envoy.WaitExperiment(ctx); err != nil || name != "plain" {
		t.Fatalf("WaitExperiment: %q %v", name, err)
	}
	dest := filepath.Join(work, "download.zip")
	if size, err := envoy.GetExperimentData(ctx, "plain", dest); err != nil || size != 4096 {
		t.Fatalf("GetExperimentData: %d %v", size, err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Error("downloaded archive differs")
	}
	if period, err := envoy.SendHealthCheck(ctx, true, nil); err != nil || period != healthPeriod {
		t.Errorf("SendHealthCheck: %v %v", period, err)
	}
	if err := d.MarkFinished("plain"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, alice, "plain", openfl.StatusFinished)
	_, err = alice.GetLastModel(ctx, "plain")
	expectCode(t, "no model set", err, openfl.CodeFailedPrecondition, "last")
}

// Hooks that panic or block, bad options, failed starts.
func TestDirectorHooksAndOptions(t *testing.T) {
	base := openfl.LiveDirectorStates()
	work := t.TempDir()
	archive := filepath.Join(work, "a.zip")
	writeFile(t, archive, []byte("workspace"))
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("panicking hooks: the review rejects, the start fails INTERNAL", func(t *testing.T) {
		var hookCtxDone atomic.Bool
		blocked := make(chan struct{})
		hooks := openfl.DirectorHookFuncs{
			Review: func(ctx context.Context, d *openfl.DirectorServer, e *openfl.Experiment) bool {
				switch e.Name {
				case "review-panics":
					panic("review exploded")
				case "review-blocks":
					close(blocked)
					<-ctx.Done() // a human who never answers: Close cancels
					hookCtxDone.Store(true)
					return false
				}
				return true
			},
			Start: func(ctx context.Context, d *openfl.DirectorServer, e *openfl.Experiment) error {
				panic("start exploded")
			},
		}
		d, err := openfl.StartDirectorServer(directorOptions(t, insecure), hooks)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		fo := dirClientOptions(d.Port(), "")
		fo.ClientID = "panics"
		f := newFrontend(t, fo)
		if err := f.SetNewExperiment(ctx, "review-panics", []string{"col1"}, archive, nil); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, f, "review-panics", openfl.StatusRejected)
		if err := f.SetNewExperiment(ctx, "start-panics", []string{"col1"}, archive, nil); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, f, "start-panics", openfl.StatusFailed)
		if err := f.SetNewExperiment(ctx, "review-blocks", []string{"col1"}, archive, nil); err != nil {
			t.Fatal(err)
		}
		<-blocked
		closed := make(chan struct{})
		go func() { d.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not end a blocked review")
		}
		if !hookCtxDone.Load() {
			t.Error("the hook's context was not cancelled")
		}
	})

	t.Run("bad options", func(t *testing.T) {
		o := directorOptions(t, insecure)
		o.Host = "a\x00b"
		_, err := openfl.StartDirectorServer(o, nil)
		expectCode(t, "NUL in Host", err, openfl.CodeInvalidArgument, "Host")
		o = directorOptions(t, mutual)
		o.TLS = openfl.TLSConfig{}
		_, err = openfl.StartDirectorServer(o, nil)
		expectCode(t, "TLS without certificates", err, openfl.CodeInvalidArgument, "")
		co0 := dirClientOptions(1, "")
		co0.TLS = openfl.TLSConfig{}
		_, err = openfl.NewFrontendClient(co0)
		expectCode(t, "client TLS without settings", err, openfl.CodeInvalidArgument, "")
		o = directorOptions(t, mutual)
		o.TLS.RootCertificate = "/nonexistent/ca.crt"
		_, err = openfl.StartDirectorServer(o, &testHost{})
		expectCode(t, "missing CA file", err, openfl.CodeIO, "/nonexistent/ca.crt")
		o = directorOptions(t, insecure)
		o.MaxQueuedMetrics = -1
		_, err = openfl.StartDirectorServer(o, nil)
		expectCode(t, "negative MaxQueuedMetrics", err, openfl.CodeInvalidArgument, "MaxQueuedMetrics")
		o = directorOptions(t, insecure)
		o.SampleShape = []string{"28", "2\x008"}
		_, err = openfl.StartDirectorServer(o, nil)
		expectCode(t, "NUL in a shape", err, openfl.CodeInvalidArgument, "SampleShape[1]")
		running := startDirector(t, directorOptions(t, insecure), nil)
		o = directorOptions(t, insecure)
		o.Port = running.Port()
		_, err = openfl.StartDirectorServer(o, nil)
		expectCode(t, "port in use", err, openfl.CodeIO, "")

		co := dirClientOptions(1, "")
		co.ClientID = "tab\there"
		_, err = openfl.NewFrontendClient(co)
		expectCode(t, "client_id not printable", err, openfl.CodeInvalidArgument, "client_id")
		_, err = openfl.NewEnvoyClient(dirClientOptions(1, ""), "")
		expectCode(t, "empty shard name", err, openfl.CodeInvalidArgument, "shard_name")
		co = dirClientOptions(1, "col1")
		co.TLS.RootCertificatePEM = []byte("garbage")
		_, err = openfl.NewEnvoyClient(co, "col1")
		expectCode(t, "garbage PEM", err, openfl.CodeTLS, "root_certificate")
		e := newEnvoy(t, dirClientOptions(1, ""), "col1")
		_, err = e.GetExperimentData(ctx, "x", "")
		expectCode(t, "empty destination", err, openfl.CodeInvalidArgument, "dest_path")
		_, err = e.SendHealthCheck(ctx, false, []openfl.CUDADevice{{Name: "g\x00"}})
		expectCode(t, "NUL in a device", err, openfl.CodeInvalidArgument, "CUDADevices[0].Name")
		f := newFrontend(t, dirClientOptions(1, ""))
		expectCode(t, "nil stream function", f.StreamMetrics(ctx, "x", nil), openfl.CodeInvalidArgument, "fn")
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = f.GetEnvoys(cancelled)
		expectCode(t, "done context", err, openfl.CodeCancelled, "")
	})

	// Every hook handle was released: by Close, and by the failed starts.
	if n := openfl.LiveDirectorStates(); n != base {
		t.Errorf("live hook handles %d, want %d", n, base)
	}
}

// One-way TLS: clients without a certificate (root only, DisableClientAuth),
// the frontend named by its client_id; ServerName is what the director's
// certificate is checked against.
func TestDirectorOneWayTLSAndServerName(t *testing.T) {
	o := directorOptions(t, mutual)
	o.TLS.DisableClientAuth = true
	d := startDirector(t, o, nil)
	ctx := ctxTimeout(t, 60*time.Second)
	co := dirClientOptions(d.Port(), "")
	co.TLS = openfl.TLSConfig{RootCertificate: cert("ca.crt"), DisableClientAuth: true}
	co.Connect.ServerName = "localhost"
	co.ClientID = "carol"
	f := newFrontend(t, co)
	sample, _, err := f.GetDatasetInfo(ctx)
	if err != nil || len(sample) != len(sampleShape) || sample[0] != sampleShape[0] {
		t.Fatalf("GetDatasetInfo over one-way TLS: %v %v", sample, err)
	}
	envoy := newEnvoy(t, co, "col1")
	if ok, err := envoy.UpdateShardInfo(ctx, openfl.ShardInfo{SampleShape: sampleShape, TargetShape: targetShape}); err != nil || !ok {
		t.Fatalf("UpdateShardInfo over one-way TLS: %v %v", ok, err)
	}
	co.Connect.ServerName = "not-the-director.example"
	wrong := newFrontend(t, co)
	_, _, err = wrong.GetDatasetInfo(ctx)
	expectCode(t, "wrong server name", err, openfl.CodeTLS, "")
}
