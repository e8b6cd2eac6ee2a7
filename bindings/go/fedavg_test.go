package openfl_test

// The built-in FedAvg through the Go binding, with the coverage of
// tests/c/test_fedavg.c: bad options and their codes; a fresh and a closed
// FedAvg's accessors; a two-round federation over mTLS whose models and
// metrics are checked against what the collaborators sent; crash recovery
// through a state directory.

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"openfl-transport/openfl"
)

const (
	taskValidate = "aggregated_model_validation"
	taskTrain    = "train"
	taskLocal    = "locally_tuned_model_validation"
	fedRounds    = 2
)

var (
	fedCols    = []string{"col1", "col2"}
	trainSize  = []int32{10, 30}
	validSize  = []int32{8, 4}
	initialW   = []float32{0.5, -1, 2, 0.25, 0, -3}
	initialB   = float32(0.75)
	wShape     = []int{2, 3}
	tagsModel  = []string{"model"}
	tagsTrain  = []string{"compressed", "trained"}
	tagsLoss   = []string{"compressed", "metric"}
	tagsValAgg = []string{"compressed", "metric", "validate_agg"}
	tagsValLoc = []string{"compressed", "metric", "validate_local"}
)

// fedavgOptions: col1 and col2, model w [2, 3] and scalar b, 2 rounds.
func fedavgOptions(stateDir string) openfl.FedAvgOptions {
	return openfl.FedAvgOptions{
		Federation:    openfl.Federation{AggregatorUUID: aggUUID, FederationUUID: fedUUID},
		Collaborators: append([]string(nil), fedCols...),
		RoundsToTrain: fedRounds,
		InitialModel: []openfl.ModelTensor{
			{Name: "w", Shape: wShape, Values: initialW},
			{Name: "b", Values: []float32{initialB}},
		},
		SleepTime:  1,
		TensorWait: 5 * time.Second,
		StateDir:   stateDir,
	}
}

func newFedAvg(t *testing.T, opts openfl.FedAvgOptions) *openfl.FedAvg {
	t.Helper()
	fa, err := openfl.NewFedAvg(opts)
	if err != nil {
		t.Fatalf("NewFedAvg: %v", err)
	}
	t.Cleanup(func() { fa.Close() })
	return fa
}

func f32Bytes(values []float32) []byte {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return data
}

// A tensor as OpenFL's collaborator uploads it (shape in int_list).
func uploadTensor(name string, round int32, report bool, tags []string, values []float32, shape ...int32) openfl.TensorView {
	return openfl.TensorView{Name: name, RoundNumber: round, Lossless: true, Report: report, Tags: tags,
		Metadata: []openfl.Metadata{{IntList: shape}}, Data: f32Bytes(values)}
}

func TestFedAvgOptionsRefused(t *testing.T) {
	type edit func(o *openfl.FedAvgOptions)
	for _, c := range []struct {
		what, needle string
		edit         edit
	}{
		{"no collaborators", "collaborators", func(o *openfl.FedAvgOptions) { o.Collaborators = nil }},
		{"no model", "initial_model", func(o *openfl.FedAvgOptions) { o.InitialModel = nil }},
		{"an empty collaborator", "empty", func(o *openfl.FedAvgOptions) { o.Collaborators = []string{""} }},
		{"a NUL in a collaborator", "Collaborators", func(o *openfl.FedAvgOptions) { o.Collaborators = []string{"c\x00"} }},
		{"a NUL in the federation", "", func(o *openfl.FedAvgOptions) { o.Federation.AggregatorUUID = "a\x00" }},
		{"rounds -5", "-5", func(o *openfl.FedAvgOptions) { o.RoundsToTrain = -5 }},
		{"sleep time -1", "sleep", func(o *openfl.FedAvgOptions) { o.SleepTime = -1 }},
		{"a negative tensor wait", "TensorWait", func(o *openfl.FedAvgOptions) { o.TensorWait = -time.Second }},
		{"a task twice", "already", func(o *openfl.FedAvgOptions) {
			o.Tasks = []openfl.Task{{Name: "t", FunctionName: "train_task", TaskType: "train"},
				{Name: "t", FunctionName: "validate_task", TaskType: "validate"}}
		}},
		{"an unnamed task", "empty", func(o *openfl.FedAvgOptions) {
			o.Tasks = []openfl.Task{{FunctionName: "train_task", TaskType: "train"}}
		}},
		{"a NUL in a task", "Tasks", func(o *openfl.FedAvgOptions) {
			o.Tasks = []openfl.Task{{Name: "t", FunctionName: "x\x00", TaskType: "train"}}
		}},
		{"3 values for [2, 2]", `"v"`, func(o *openfl.FedAvgOptions) {
			o.InitialModel = append(o.InitialModel, openfl.ModelTensor{Name: "v", Shape: []int{2, 2}, Values: []float32{1, 2, 3}})
		}},
		{"2 values for a scalar", `"v"`, func(o *openfl.FedAvgOptions) {
			o.InitialModel = append(o.InitialModel, openfl.ModelTensor{Name: "v", Values: []float32{1, 2}})
		}},
		{"a dimension beyond int32", "int32", func(o *openfl.FedAvgOptions) {
			o.InitialModel = append(o.InitialModel, openfl.ModelTensor{Name: "v", Shape: []int{1 << 31}, Values: []float32{1}})
		}},
		{"a negative dimension", "negative", func(o *openfl.FedAvgOptions) {
			o.InitialModel = append(o.InitialModel, openfl.ModelTensor{Name: "v", Shape: []int{-1}, Values: []float32{1}})
		}},
		{"a model tensor twice", "already", func(o *openfl.FedAvgOptions) {
			o.InitialModel = append(o.InitialModel, openfl.ModelTensor{Name: "w", Values: []float32{1}})
		}},
		{"an unnamed model tensor", "empty", func(o *openfl.FedAvgOptions) {
			o.InitialModel = append(o.InitialModel, openfl.ModelTensor{Values: []float32{1}})
		}},
		{"a NUL in BestModelMetric", "BestModelMetric", func(o *openfl.FedAvgOptions) { o.BestModelMetric = "a\x00" }},
		{"a NUL in StateDir", "StateDir", func(o *openfl.FedAvgOptions) { o.StateDir = "bad\x00dir" }},
	} {
		o := fedavgOptions("")
		c.edit(&o)
		fa, err := openfl.NewFedAvg(o)
		expectCode(t, c.what, err, openfl.CodeInvalidArgument, c.needle)
		if fa != nil {
			t.Errorf("%s: a FedAvg came back with the error", c.what)
		}
	}
	// A collaborator named twice counts once.
	o := fedavgOptions("")
	o.Collaborators = append(o.Collaborators, "col1")
	newFedAvg(t, o)
}

// A fresh FedAvg: round 0, no metrics, no best model, the initial model in
// name order; the server keeps its own reference; a closed FedAvg answers
// zero values and INVALID_ARGUMENT.
func TestFedAvgAccessors(t *testing.T) {
	o := fedavgOptions("")
	o.RoundsToTrain = 3
	fa, err := openfl.NewFedAvg(o)
	if err != nil {
		t.Fatalf("NewFedAvg: %v", err)
	}
	if fa.CurrentRound() != 0 || fa.RoundsToTrain() != 3 || fa.IsFinished() || fa.MetricsLen() != 0 || len(fa.Metrics()) != 0 {
		t.Errorf("fresh FedAvg: round %d of %d, finished %v, %d metrics", fa.CurrentRound(), fa.RoundsToTrain(),
			fa.IsFinished(), fa.MetricsLen())
	}
	_, err = fa.Metric(0)
	expectCode(t, "Metric(0) of none", err, openfl.CodeOutOfRange, "out of range")
	_, err = fa.Metric(-1)
	expectCode(t, "Metric(-1)", err, openfl.CodeOutOfRange, "negative")
	_, err = fa.BestModel()
	expectCode(t, "BestModel before any round", err, openfl.CodeFailedPrecondition, "no best model")
	if r, s, ok := fa.BestModelScore(); ok || r != 0 || s != 0 {
		t.Errorf("BestModelScore before any round: %d, %v, %v", r, s, ok)
	}
	model, err := fa.LastModel()
	want := []openfl.ModelTensor{{Name: "b", Shape: []int{}, Values: []float32{initialB}},
		{Name: "w", Shape: wShape, Values: initialW}}
	if err != nil || !reflect.DeepEqual(model, want) {
		t.Errorf("LastModel: %+v, %v; want %+v", model, err, want)
	}

	_, err = openfl.StartFedAvgServer(serverOptions(insecure), nil)
	expectCode(t, "StartFedAvgServer(nil)", err, openfl.CodeInvalidArgument, "nil")
	server, err := openfl.StartFedAvgServer(serverOptions(insecure), fa)
	if err != nil {
		t.Fatalf("StartFedAvgServer: %v", err)
	}
	defer server.Close()
	fa.Close() // the server keeps its own reference
	fa.Close() // idempotent
	c := newClient(t, clientOptions(server.Port(), insecure, "col1"))
	tasks, err := c.GetTasks(ctxTimeout(t, 10*time.Second), "col1")
	if err != nil || tasks.RoundNumber != 0 || len(tasks.Tasks) != 3 {
		t.Errorf("GetTasks after the FedAvg was closed: %+v, %v", tasks, err)
	}

	if fa.CurrentRound() != 0 || fa.RoundsToTrain() != 0 || fa.IsFinished() || fa.MetricsLen() != 0 {
		t.Error("a closed FedAvg answers non-zero values")
	}
	_, err = fa.LastModel()
	expectCode(t, "LastModel after Close", err, openfl.CodeInvalidArgument, "fedavg")
	_, err = fa.BestModel()
	expectCode(t, "BestModel after Close", err, openfl.CodeInvalidArgument, "fedavg")
	_, err = fa.Metric(0)
	expectCode(t, "Metric after Close", err, openfl.CodeInvalidArgument, "fedavg")
	if _, _, ok := fa.BestModelScore(); ok {
		t.Error("BestModelScore after Close: ok")
	}
	_, err = openfl.StartFedAvgServer(serverOptions(insecure), fa)
	expectCode(t, "StartFedAvgServer with a closed FedAvg", err, openfl.CodeInvalidArgument, "fedavg")
}

// Tasks replace OpenFL's defaults, in the order given.
func TestFedAvgCustomTasks(t *testing.T) {
	o := fedavgOptions("")
	custom := []openfl.Task{{Name: "train", FunctionName: "train_task", TaskType: "train"},
		{Name: "check", FunctionName: "validate_task", TaskType: "validate", ApplyLocal: true}}
	o.Tasks = custom
	fa := newFedAvg(t, o)
	server, err := openfl.StartFedAvgServer(serverOptions(insecure), fa)
	if err != nil {
		t.Fatalf("StartFedAvgServer: %v", err)
	}
	defer server.Close()
	c := newClient(t, clientOptions(server.Port(), insecure, "col2"))
	tasks, err := c.GetTasks(ctxTimeout(t, 10*time.Second), "col2")
	if err != nil || !reflect.DeepEqual(tasks.Tasks, custom) {
		t.Errorf("GetTasks: %+v, %v; want %+v", tasks, err, custom)
	}
}

// ---- a federation -------------------------------------------------------

// fedRecord is what one collaborator saw and sent, per round.
type fedRecord struct {
	gotW                       [fedRounds][]float32
	gotB                       [fedRounds]float32
	downloads, uploads         [fedRounds]int
	sentW                      [fedRounds][]float32
	sentB, loss, score, lscore [fedRounds]float32
	quits                      int
	earlyMetric                *openfl.FedAvgMetric
}

// The model a collaborator "trains" to: a step that depends on who and when.
func trainedValue(col int, round int32, i int, global float32) float32 {
	step := float32(1)
	if col == 1 {
		step = -0.5
	}
	return global + step*float32(i+1) + 0.25*float32(round)
}

// Scores rise per round, so the last round's validation scores best.
func scoreValue(col int, round int32, local bool) float32 {
	s := 0.5 + 0.1*float32(round)
	if col == 0 {
		s += 0.02
	} else {
		s -= 0.01
	}
	if local {
		s += 0.05
	}
	return s
}

type fedCollaborator struct {
	t      *testing.T
	index  int
	client *openfl.AggregatorClient
	fa     *openfl.FedAvg
	rec    fedRecord
}

// fetch downloads a model tensor, checking OpenFL's encoding.
func (c *fedCollaborator) fetch(ctx context.Context, name string, round int32, shape []int32) []float32 {
	t := c.t
	got, err := c.client.GetAggregatedTensor(ctx, fedCols[c.index], openfl.TensorRequest{TensorName: name,
		RoundNumber: round, Tags: tagsModel, RequireLossless: true})
	if err != nil {
		t.Errorf("%s: GetAggregatedTensor(%s, %d): %v", fedCols[c.index], name, round, err)
		return nil
	}
	defer got.Close()
	if got.Name != name || got.RoundNumber != round || !got.Lossless || got.Report ||
		!reflect.DeepEqual(got.Tags, []string{"compressed", "model"}) {
		t.Errorf("%s: tensor %s: %+v", fedCols[c.index], name, got.TensorView)
	}
	if len(got.Metadata) != 1 || !reflect.DeepEqual(append([]int32{}, got.Metadata[0].IntList...), append([]int32{}, shape...)) {
		t.Errorf("%s: tensor %s has metadata %+v, want shape %v", fedCols[c.index], name, got.Metadata, shape)
	}
	values := make([]float32, len(got.Data)/4)
	for i := range values {
		values[i] = math.Float32frombits(binary.LittleEndian.Uint32(got.Data[4*i:]))
	}
	return values
}

func (c *fedCollaborator) fetchModel(ctx context.Context, round int32) {
	if c.rec.downloads[round]++; c.rec.downloads[round] > 1 {
		return
	}
	c.rec.gotW[round] = c.fetch(ctx, "w", round, []int32{2, 3})
	if b := c.fetch(ctx, "b", round, nil); len(b) == 1 {
		c.rec.gotB[round] = b[0]
	} else {
		c.t.Errorf("%s: b has %d values", fedCols[c.index], len(b))
	}
}

func (c *fedCollaborator) runTask(ctx context.Context, round int32, task openfl.Task) {
	t, col, r := c.t, c.index, &c.rec
	results := openfl.TaskResults{RoundNumber: round, TaskName: task.Name}
	switch task.Name {
	case taskTrain:
		c.fetchModel(ctx, round)
		if len(r.gotW[round]) != len(initialW) {
			return
		}
		r.sentW[round] = make([]float32, len(initialW))
		for k, g := range r.gotW[round] {
			r.sentW[round][k] = trainedValue(col, round, k, g)
		}
		r.sentB[round] = trainedValue(col, round, 7, r.gotB[round])
		r.loss[round] = 1/float32(round+2) + 0.1*float32(col)
		results.DataSize = trainSize[col]
		results.Tensors = []openfl.TensorView{
			uploadTensor("train_loss", round, true, tagsLoss, []float32{r.loss[round]}),
			uploadTensor("w", round, false, tagsTrain, r.sentW[round], 2, 3),
			uploadTensor("b", round, false, tagsTrain, []float32{r.sentB[round]}),
		}
	case taskValidate, taskLocal:
		local := task.Name == taskLocal
		if task.FunctionName != "validate_task" || task.ApplyLocal != local {
			t.Errorf("%s: task %+v", fedCols[col], task)
		}
		tags, score := tagsValAgg, &r.score[round]
		if local {
			tags, score = tagsValLoc, &r.lscore[round]
		} else {
			c.fetchModel(ctx, round)
		}
		*score = scoreValue(col, round, local)
		results.DataSize = validSize[col]
		results.Tensors = []openfl.TensorView{uploadTensor("score", round, true, tags, []float32{*score})}
	default:
		t.Errorf("%s: unexpected task %q", fedCols[col], task.Name)
		return
	}
	if err := c.client.SendLocalTaskResults(ctx, fedCols[col], results); err != nil {
		t.Errorf("%s: SendLocalTaskResults(%s, %d): %v", fedCols[col], task.Name, round, err)
		return
	}
	r.uploads[round]++
}

func (c *fedCollaborator) run(ctx context.Context) {
	t := c.t
	if c.index == 0 { // the FedAvg's refusals reach the client with their codes
		_, err := c.client.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "nope", Tags: tagsModel})
		expectCode(t, "an unknown tensor", err, openfl.CodeFailedPrecondition, `"nope"`)
		_, err = c.client.GetAggregatedTensor(ctx, "col1", openfl.TensorRequest{TensorName: "w",
			Tags: []string{"aggregated", "delta"}})
		expectCode(t, "a delta", err, openfl.CodeInvalidArgument, "delta")
	}
	for calls := 0; calls < 100; calls++ {
		tasks, err := c.client.GetTasks(ctx, fedCols[c.index])
		if err != nil {
			t.Errorf("%s: GetTasks: %v", fedCols[c.index], err)
			return
		}
		if tasks.Quit {
			c.rec.quits++
			if tasks.RoundNumber != fedRounds {
				t.Errorf("%s: quit at round %d", fedCols[c.index], tasks.RoundNumber)
			}
			return
		}
		if tasks.RoundNumber < 0 || tasks.RoundNumber >= fedRounds {
			t.Errorf("%s: tasks for round %d", fedCols[c.index], tasks.RoundNumber)
			return
		}
		if len(tasks.Tasks) == 0 {
			if tasks.SleepTime != 1 {
				t.Errorf("%s: sleep time %d", fedCols[c.index], tasks.SleepTime)
			}
			time.Sleep(time.Duration(tasks.SleepTime) * time.Second)
		}
		for _, task := range tasks.Tasks {
			c.runTask(ctx, tasks.RoundNumber, task)
		}
		// Read the FedAvg's metrics while the server runs.
		if c.rec.earlyMetric == nil && c.fa.MetricsLen() > 0 {
			if m, err := c.fa.Metric(0); err == nil {
				c.rec.earlyMetric = &m
			} else {
				t.Errorf("Metric(0) while serving: %v", err)
			}
		}
	}
}

func closeTo(got, want float64) bool { return math.Abs(got-want) <= 1e-5 }

// expectedModel is round's data-size weighted average of the uploads.
func expectedModel(cols []*fedCollaborator, round int) (w []float64, b float64) {
	total := float64(trainSize[0] + trainSize[1])
	w = make([]float64, len(initialW))
	for i, c := range cols {
		weight := float64(trainSize[i]) / total
		for k := range w {
			w[k] += weight * float64(c.rec.sentW[round][k])
		}
		b += weight * float64(c.rec.sentB[round])
	}
	return w, b
}

func expectedMetric(cols []*fedCollaborator, round int, task string) float64 {
	var sum, total float64
	for i, c := range cols {
		size, value := float64(validSize[i]), c.rec.score[round]
		switch task {
		case taskTrain:
			size, value = float64(trainSize[i]), c.rec.loss[round]
		case taskLocal:
			value = c.rec.lscore[round]
		}
		sum += size * float64(value)
		total += size
	}
	return sum / total
}

func checkModel(t *testing.T, what string, model []openfl.ModelTensor, w []float64, b float64) {
	t.Helper()
	if len(model) != 2 || model[0].Name != "b" || model[1].Name != "w" {
		t.Errorf("%s: %+v", what, model)
		return
	}
	if len(model[0].Shape) != 0 || len(model[0].Values) != 1 || !closeTo(float64(model[0].Values[0]), b) {
		t.Errorf("%s: b = %+v, want %v", what, model[0], b)
	}
	if !reflect.DeepEqual(model[1].Shape, wShape) || len(model[1].Values) != len(w) {
		t.Errorf("%s: w = %+v", what, model[1])
		return
	}
	for k, v := range model[1].Values {
		if !closeTo(float64(v), w[k]) {
			t.Errorf("%s: w[%d] = %v, want %v", what, k, v, w[k])
		}
	}
}

func checkFedAvgMetrics(t *testing.T, metrics []openfl.FedAvgMetric, cols []*fedCollaborator) {
	t.Helper()
	if len(metrics) != fedRounds*3*(len(cols)+1) {
		t.Errorf("%d metrics: %+v", len(metrics), metrics)
	}
	seen := map[openfl.FedAvgMetric]int{}
	for _, m := range metrics {
		who := -1
		for i, name := range fedCols {
			if m.Origin == name {
				who = i
			}
		}
		if m.Round < 0 || m.Round >= fedRounds || (who < 0 && m.Origin != "aggregator") || m.Aggregated != (who < 0) {
			t.Errorf("unexpected metric %+v", m)
			continue
		}
		wantName := "score"
		if m.Task == taskTrain {
			wantName = "train_loss"
		}
		var want float64
		switch {
		case who < 0:
			want = expectedMetric(cols, int(m.Round), m.Task)
		case m.Task == taskTrain:
			want = float64(cols[who].rec.loss[m.Round])
		case m.Task == taskLocal:
			want = float64(cols[who].rec.lscore[m.Round])
		default:
			want = float64(cols[who].rec.score[m.Round])
		}
		if m.Name != wantName || !closeTo(m.Value, want) {
			t.Errorf("metric %+v: want name %s, value %v", m, wantName, want)
		}
		seen[openfl.FedAvgMetric{Round: m.Round, Origin: m.Origin, Task: m.Task}]++
	}
	for r := int32(0); r < fedRounds; r++ {
		for _, task := range []string{taskValidate, taskTrain, taskLocal} {
			for _, origin := range append([]string{"aggregator"}, fedCols...) {
				if n := seen[openfl.FedAvgMetric{Round: r, Origin: origin, Task: task}]; n != 1 {
					t.Errorf("round %d %s from %s: %d metrics", r, task, origin, n)
				}
			}
		}
	}
}

// Two collaborators do what OpenFL 1.6's Collaborator does for two rounds
// over mTLS; the FedAvg's models and metrics are then read back and
// compared with what they sent.
func TestFedAvgFederation(t *testing.T) {
	o := fedavgOptions("")
	o.BestModelMetric = "score"
	fa := newFedAvg(t, o)
	server, err := openfl.StartFedAvgServer(serverOptions(mutual), fa)
	if err != nil {
		t.Fatalf("StartFedAvgServer: %v", err)
	}
	defer server.Close()
	ctx := ctxTimeout(t, 60*time.Second)
	cols := make([]*fedCollaborator, len(fedCols))
	var wg sync.WaitGroup
	for i := range cols {
		cols[i] = &fedCollaborator{t: t, index: i, fa: fa,
			client: newClient(t, clientOptions(server.Port(), mutual, fedCols[i]))}
		wg.Add(1)
		go func(c *fedCollaborator) { defer wg.Done(); c.run(ctx) }(cols[i])
	}
	start := time.Now()
	if err := server.Serve(ctx); err != nil { // returns once both were told to quit
		t.Errorf("Serve: %v", err)
	}
	wg.Wait()
	t.Logf("federation done in %v", time.Since(start))
	if t.Failed() {
		return
	}

	for i, c := range cols {
		if c.rec.quits != 1 || c.rec.uploads != [fedRounds]int{3, 3} || c.rec.downloads[0] < 1 || c.rec.downloads[1] < 1 {
			t.Errorf("%s: %d quits, uploads %v, downloads %v", fedCols[i], c.rec.quits, c.rec.uploads, c.rec.downloads)
		}
	}
	if fa.CurrentRound() != fedRounds || fa.RoundsToTrain() != fedRounds || !fa.IsFinished() {
		t.Errorf("after the federation: round %d of %d, finished %v", fa.CurrentRound(), fa.RoundsToTrain(), fa.IsFinished())
	}
	// Round 0's model is the initial one; round r+1's the average of round r.
	for i, c := range cols {
		if !reflect.DeepEqual(c.rec.gotW[0], initialW) || c.rec.gotB[0] != initialB {
			t.Errorf("%s: round 0 model %v, %v", fedCols[i], c.rec.gotW[0], c.rec.gotB[0])
		}
		for round := 1; round < fedRounds; round++ {
			w, b := expectedModel(cols, round-1)
			got := []openfl.ModelTensor{{Name: "b", Values: []float32{c.rec.gotB[round]}, Shape: []int{}},
				{Name: "w", Values: c.rec.gotW[round], Shape: wShape}}
			checkModel(t, fedCols[i]+"'s download", got, w, b)
		}
	}
	last, err := fa.LastModel()
	if err != nil {
		t.Fatalf("LastModel: %v", err)
	}
	w, b := expectedModel(cols, fedRounds-1)
	checkModel(t, "last model", last, w, b)

	// The last round's validation scored best; its model is the one
	// validated then, the previous round's average.
	round, score, ok := fa.BestModelScore()
	if !ok || round != fedRounds-1 || !closeTo(score, expectedMetric(cols, fedRounds-1, taskValidate)) {
		t.Errorf("BestModelScore: %d, %v, %v", round, score, ok)
	}
	best, err := fa.BestModel()
	if err != nil {
		t.Fatalf("BestModel: %v", err)
	}
	w, b = expectedModel(cols, fedRounds-2)
	checkModel(t, "best model", best, w, b)

	metrics := fa.Metrics()
	checkFedAvgMetrics(t, metrics, cols)
	early := 0
	for _, c := range cols {
		if c.rec.earlyMetric != nil {
			early++
			if *c.rec.earlyMetric != metrics[0] {
				t.Errorf("metric 0 read while serving %+v, now %+v", *c.rec.earlyMetric, metrics[0])
			}
		}
	}
	if early == 0 {
		t.Error("no collaborator read a metric while the server ran")
	}
}

// ---- the state directory -------------------------------------------------

// A FedAvg with a state directory: an upload acknowledged by one aggregator
// is there for the next one on the directory, which resumes the round (the
// collaborator owes the two other tasks); a directory in use, and a
// damaged one, are refused.
func TestFedAvgStateDir(t *testing.T) {
	dir := t.TempDir()
	fa, err := openfl.NewFedAvg(fedavgOptions(dir))
	if err != nil {
		t.Fatalf("NewFedAvg: %v", err)
	}
	_, err = openfl.NewFedAvg(fedavgOptions(dir))
	expectCode(t, "a second FedAvg on the directory", err, openfl.CodeFailedPrecondition, "in use")

	server, err := openfl.StartFedAvgServer(serverOptions(mutual), fa)
	if err != nil {
		t.Fatalf("StartFedAvgServer: %v", err)
	}
	c := newClient(t, clientOptions(server.Port(), mutual, "col1"))
	ctx := ctxTimeout(t, 20*time.Second)
	tasks, err := c.GetTasks(ctx, "col1")
	if err != nil || tasks.RoundNumber != 0 || len(tasks.Tasks) != 3 || tasks.Tasks[0].Name != taskValidate {
		t.Fatalf("GetTasks: %+v, %v", tasks, err)
	}
	results := openfl.TaskResults{RoundNumber: 0, TaskName: taskValidate, DataSize: 8,
		Tensors: []openfl.TensorView{uploadTensor("score", 0, true, tagsValAgg, []float32{0.625})}}
	if err := c.SendLocalTaskResults(ctx, "col1", results); err != nil {
		t.Fatalf("SendLocalTaskResults: %v", err)
	}
	server.Close()
	fa.Close() // the aggregator is gone as a crash would leave it; its directory stays

	resumed, err := openfl.NewFedAvg(fedavgOptions(dir))
	if err != nil {
		t.Fatalf("NewFedAvg on the saved directory: %v", err)
	}
	want := []openfl.FedAvgMetric{{Round: 0, Origin: "col1", Task: taskValidate, Name: "score", Value: 0.625}}
	if m := resumed.Metrics(); resumed.CurrentRound() != 0 || !reflect.DeepEqual(m, want) {
		t.Errorf("resumed at round %d with metrics %+v, want round 0 with %+v", resumed.CurrentRound(), m, want)
	}
	model, err := resumed.LastModel()
	if err != nil || len(model) != 2 || model[1].Name != "w" || !reflect.DeepEqual(model[1].Values, initialW) {
		t.Errorf("LastModel: %+v, %v", model, err)
	}
	server, err = openfl.StartFedAvgServer(serverOptions(mutual), resumed)
	if err != nil {
		t.Fatalf("StartFedAvgServer on the resumed FedAvg: %v", err)
	}
	c2 := newClient(t, clientOptions(server.Port(), mutual, "col1"))
	tasks, err = c2.GetTasks(ctx, "col1")
	if err != nil || tasks.RoundNumber != 0 || len(tasks.Tasks) != 2 || tasks.Tasks[0].Name != taskTrain {
		t.Errorf("GetTasks after the restart: %+v, %v (want the 2 tasks col1 still owes)", tasks, err)
	}
	server.Close()
	resumed.Close()

	// A damaged federation.state: DATA_LOSS naming the file.
	manifest := filepath.Join(dir, "federation.state")
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x5a
	if err := os.WriteFile(manifest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = openfl.NewFedAvg(fedavgOptions(dir))
	expectCode(t, "a damaged state directory", err, openfl.CodeDataLoss, "federation.state")
}
