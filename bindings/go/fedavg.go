package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// ModelTensor is one float32 tensor of a FedAvg model: Shape (empty for a
// scalar) and Values in row-major order, len(Values) the product of Shape.
type ModelTensor struct {
	Name   string
	Shape  []int
	Values []float32
}

// FedAvgOptions configures NewFedAvg, the library's built-in federated
// averaging aggregator (OpenFL 1.6's Aggregator with its default plan; see
// ofl_fedavg_new in the C header for the round semantics). Zero fields keep
// the library defaults noted on each field.
type FedAvgOptions struct {
	// Federation is the aggregator's identity, checked on every request.
	Federation Federation
	// Collaborators take part in every round (at least one).
	Collaborators []string
	// RoundsToTrain; 0 means 10.
	RoundsToTrain int32
	// Tasks of every round; nil means OpenFL's three default tasks.
	Tasks []Task
	// InitialModel is the round-0 model (at least one tensor).
	InitialModel []ModelTensor
	// BestModelMetric picks the best model; "" means the aggregated-model
	// validation's first metric.
	BestModelMetric string
	// TensorWait bounds how long a request for a tensor that is not ready
	// yet waits; 0 means 30 s.
	TensorWait time.Duration
	// SleepTime (seconds) a collaborator that finished the round is told
	// to wait; 0 means 10.
	SleepTime int32
	// StateDir, when set, is where the aggregator saves what it needs to
	// resume after a crash: every upload is saved before it is
	// acknowledged, and a FedAvg created again with the same directory and
	// configuration resumes the saved round (no acknowledged upload lost,
	// none counted twice). One aggregator may use a directory at a time.
	StateDir string
}

func (o *FedAvgOptions) build() (*C.ofl_fedavg_options, error) {
	var opts *C.ofl_fedavg_options
	if err := takeError(C.ofl_fedavg_options_new(&opts)); err != nil {
		return nil, err
	}
	var mem cstrings
	defer mem.free()
	if err := o.apply(opts, &mem); err != nil {
		C.ofl_fedavg_options_free(opts)
		return nil, err
	}
	return opts, nil
}

func (o *FedAvgOptions) check() error {
	if err := o.Federation.check(); err != nil {
		return err
	}
	if err := checkStrings("Collaborators", o.Collaborators); err != nil {
		return err
	}
	if o.TensorWait < 0 {
		return invalidArgument("TensorWait is negative (%v)", o.TensorWait)
	}
	for _, s := range []struct{ what, value string }{{"BestModelMetric", o.BestModelMetric}, {"StateDir", o.StateDir}} {
		if err := checkString(s.what, s.value); err != nil {
			return err
		}
	}
	for _, t := range o.Tasks {
		for _, s := range []string{t.Name, t.FunctionName, t.TaskType} {
			if err := checkString("Tasks", s); err != nil {
				return err
			}
		}
	}
	for _, t := range o.InitialModel {
		if err := checkString("InitialModel name", t.Name); err != nil {
			return err
		}
		for _, d := range t.Shape {
			if d < 0 {
				return invalidArgument("InitialModel %q: negative dimension %d", t.Name, d)
			}
		}
	}
	return nil
}

func (o *FedAvgOptions) apply(opts *C.ofl_fedavg_options, mem *cstrings) error {
	if err := o.check(); err != nil {
		return err
	}
	f := &o.Federation
	calls := []func() *C.ofl_error{func() *C.ofl_error {
		return C.ofl_fedavg_options_set_federation(opts, mem.str(f.AggregatorUUID), mem.str(f.FederationUUID),
			mem.optStr(f.SingleColCertCommonName))
	}}
	for _, name := range o.Collaborators {
		name := name
		calls = append(calls, func() *C.ofl_error { return C.ofl_fedavg_options_add_collaborator(opts, mem.str(name)) })
	}
	if o.RoundsToTrain != 0 {
		calls = append(calls, func() *C.ofl_error {
			return C.ofl_fedavg_options_set_rounds_to_train(opts, C.int32_t(o.RoundsToTrain))
		})
	}
	for _, t := range o.Tasks {
		t := t
		calls = append(calls, func() *C.ofl_error {
			return C.ofl_fedavg_options_add_task(opts, mem.str(t.Name), mem.str(t.FunctionName), mem.str(t.TaskType),
				C.bool(t.ApplyLocal))
		})
	}
	for _, t := range o.InitialModel {
		t := t
		calls = append(calls, func() *C.ofl_error { return addModelTensor(opts, mem, &t) })
	}
	if o.BestModelMetric != "" {
		calls = append(calls, func() *C.ofl_error {
			return C.ofl_fedavg_options_set_best_model_metric(opts, mem.str(o.BestModelMetric))
		})
	}
	if o.TensorWait != 0 {
		calls = append(calls, func() *C.ofl_error {
			return C.ofl_fedavg_options_set_tensor_wait_ms(opts, C.uint64_t(millis(o.TensorWait)))
		})
	}
	if o.SleepTime != 0 {
		calls = append(calls, func() *C.ofl_error { return C.ofl_fedavg_options_set_sleep_time(opts, C.int32_t(o.SleepTime)) })
	}
	if o.StateDir != "" {
		calls = append(calls, func() *C.ofl_error { return C.ofl_fedavg_options_set_state_dir(opts, mem.str(o.StateDir)) })
	}
	for _, call := range calls {
		if err := takeError(call()); err != nil {
			return err
		}
	}
	return nil
}

// addModelTensor copies the tensor's shape into C memory and lends its
// values (Go memory without Go pointers) for the call.
func addModelTensor(opts *C.ofl_fedavg_options, mem *cstrings, t *ModelTensor) *C.ofl_error {
	var shape *C.size_t
	if len(t.Shape) > 0 {
		dims := make([]C.size_t, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = C.size_t(d)
		}
		shape = &dims[0]
		defer runtime.KeepAlive(dims)
	}
	var values *C.float
	if len(t.Values) > 0 {
		values = (*C.float)(unsafe.Pointer(&t.Values[0]))
	}
	return C.ofl_fedavg_options_add_model_tensor(opts, mem.str(t.Name), shape, C.size_t(len(t.Shape)), values,
		C.size_t(len(t.Values)))
}

// FedAvg is the built-in federated averaging aggregation logic. Serve it
// with StartFedAvgServer; read its progress from any goroutine, also while
// a server runs it. Close it when done (a server started with it keeps its
// own reference).
type FedAvg struct {
	mu  sync.Mutex
	ptr *C.ofl_fedavg
}

// NewFedAvg creates the aggregator at round 0, or, with a StateDir that
// holds a saved federation, at the saved round. Errors: INVALID_ARGUMENT
// for bad options; with a StateDir, IO, FAILED_PRECONDITION (in use by
// another aggregator, or another federation's directory) or DATA_LOSS (a
// damaged state file).
func NewFedAvg(opts FedAvgOptions) (*FedAvg, error) {
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_fedavg_options_free(copts)
	f := &FedAvg{}
	if err := takeError(C.ofl_fedavg_new(copts, &f.ptr)); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(f, (*FedAvg).Close)
	return f, nil
}

// Close releases the handle. Idempotent; always returns nil.
func (f *FedAvg) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	runtime.SetFinalizer(f, nil)
	C.ofl_fedavg_free(f.ptr)
	f.ptr = nil
	return nil
}

func (f *FedAvg) with(fn func(p *C.ofl_fedavg)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.ptr) // the library answers zero values for a closed (NULL) handle
}

// CurrentRound is 0 at the start, RoundsToTrain once training is over.
func (f *FedAvg) CurrentRound() (round int32) {
	f.with(func(p *C.ofl_fedavg) { round = int32(C.ofl_fedavg_current_round(p)) })
	return
}

// RoundsToTrain is the number of rounds the federation trains.
func (f *FedAvg) RoundsToTrain() (rounds int32) {
	f.with(func(p *C.ofl_fedavg) { rounds = int32(C.ofl_fedavg_rounds_to_train(p)) })
	return
}

// IsFinished reports whether every round has been trained (collaborators
// are now told to quit).
func (f *FedAvg) IsFinished() (done bool) {
	f.with(func(p *C.ofl_fedavg) { done = bool(C.ofl_fedavg_is_finished(p)) })
	return
}

// FedAvgMetric is one metric (OpenFL's metric record): reported by a
// collaborator, or a round's data_size-weighted average computed by the
// aggregator.
type FedAvgMetric struct {
	// Round the metric belongs to (0 = the initial model's round).
	Round int32
	// Origin is the collaborator that reported it, or "aggregator".
	Origin string
	// Aggregated is true for the average over all collaborators.
	Aggregated bool
	// Task that produced it (e.g. "aggregated_model_validation").
	Task string
	// Name of the metric's tensor (e.g. "accuracy").
	Name  string
	Value float64
}

// MetricsLen is the number of metrics recorded so far.
func (f *FedAvg) MetricsLen() (n int) {
	f.with(func(p *C.ofl_fedavg) { n = int(C.ofl_fedavg_metrics_len(p)) })
	return
}

// Metric is metric i (below MetricsLen): each collaborator's as they
// arrived, then each round's averages when the round ends; indices stay
// stable. Errors: OUT_OF_RANGE for an index not recorded yet.
func (f *FedAvg) Metric(i int) (FedAvgMetric, error) {
	if i < 0 {
		return FedAvgMetric{}, &Error{Code: CodeOutOfRange, Message: fmt.Sprintf("metric index %d is negative", i)}
	}
	var out FedAvgMetric
	var err error
	f.with(func(p *C.ofl_fedavg) {
		var m C.ofl_fedavg_metric
		if err = takeError(C.ofl_fedavg_get_metric(p, C.size_t(i), &m)); err != nil {
			return
		}
		// The strings are owned by the FedAvg: copy them before Close may run.
		out = FedAvgMetric{Round: int32(m.round), Origin: C.GoString(m.origin), Aggregated: bool(m.aggregated),
			Task: C.GoString(m.task), Name: C.GoString(m.name), Value: float64(m.value)}
	})
	return out, err
}

// Metrics are all metrics recorded so far, in the order of Metric.
func (f *FedAvg) Metrics() []FedAvgMetric {
	n := f.MetricsLen()
	out := make([]FedAvgMetric, 0, n)
	for i := 0; i < n; i++ {
		m, err := f.Metric(i)
		if err != nil {
			break // closed meanwhile
		}
		out = append(out, m)
	}
	return out
}

// LastModel is the newest model: the initial one before the first round
// ends, the final aggregate after the last.
func (f *FedAvg) LastModel() ([]ModelTensor, error) {
	return f.model(func(p *C.ofl_fedavg, m **C.ofl_model) *C.ofl_error { return C.ofl_fedavg_last_model(p, m) })
}

// BestModel is the model that scored best in the aggregated-model
// validation (FedAvgOptions.BestModelMetric). Errors: FAILED_PRECONDITION
// until a round with that metric has ended.
func (f *FedAvg) BestModel() ([]ModelTensor, error) {
	return f.model(func(p *C.ofl_fedavg, m **C.ofl_model) *C.ofl_error { return C.ofl_fedavg_best_model(p, m) })
}

// BestModelScore is the round whose model is BestModel and its score; ok
// is false while there is no best model yet.
func (f *FedAvg) BestModelScore() (round int32, score float64, ok bool) {
	var r C.int32_t
	var s C.double
	f.with(func(p *C.ofl_fedavg) { ok = bool(C.ofl_fedavg_best_model_score(p, &r, &s)) })
	if !ok {
		return 0, 0, false
	}
	return int32(r), float64(s), true
}

func (f *FedAvg) model(get func(*C.ofl_fedavg, **C.ofl_model) *C.ofl_error) ([]ModelTensor, error) {
	var m *C.ofl_model
	var err error
	f.with(func(p *C.ofl_fedavg) { err = takeError(get(p, &m)) })
	if err != nil {
		return nil, err
	}
	defer C.ofl_model_free(m)
	return readModel(m), nil
}

// readModel copies a library model into Go memory.
func readModel(m *C.ofl_model) []ModelTensor {
	model := make([]ModelTensor, int(C.ofl_model_len(m)))
	for i := range model {
		ci := C.size_t(i)
		var ndim, n C.size_t
		dims := C.ofl_model_tensor_shape(m, ci, &ndim)
		values := C.ofl_model_tensor_values(m, ci, &n)
		t := ModelTensor{Name: C.GoString(C.ofl_model_tensor_name(m, ci)), Shape: make([]int, int(ndim))}
		for k, d := range unsafe.Slice(dims, int(ndim)) {
			t.Shape[k] = int(d)
		}
		t.Values = make([]float32, int(n))
		for k, v := range unsafe.Slice(values, int(n)) {
			t.Values[k] = float32(v)
		}
		model[i] = t
	}
	return model
}

// StartFedAvgServer starts an aggregator server whose logic is fa. The
// identity and collaborators come from fa's options (those in opts are not
// used); listen address, TLS and limits from opts. Serve returns once every
// collaborator was told to quit after the last round.
func StartFedAvgServer(opts AggregatorServerOptions, fa *FedAvg) (*AggregatorServer, error) {
	if fa == nil {
		return nil, invalidArgument("fa is nil")
	}
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_aggregator_server_options_free(copts)
	_, cancel := context.WithCancel(context.Background())
	s := &AggregatorServer{}
	s.life.init(aggregatorServerOps, cancel)
	fa.with(func(p *C.ofl_fedavg) {
		err = takeError(C.ofl_aggregator_server_start_fedavg(copts, p, &s.life.ptr))
	})
	if err != nil {
		cancel()
		return nil, err
	}
	s.port = uint16(C.ofl_aggregator_server_port(s.life.ptr))
	runtime.SetFinalizer(s, (*AggregatorServer).Close)
	return s, nil
}
