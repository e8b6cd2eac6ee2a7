package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// ExperimentStatus is where an experiment is in its life cycle (OpenFL
// 1.6's Status; the library's ofl_experiment_status).
type ExperimentStatus int32

// The statuses.
const (
	StatusPending    ExperimentStatus = 0 // submitted, waiting for its turn and its review
	StatusInProgress ExperimentStatus = 1 // approved and started: its envoys receive it
	StatusFinished   ExperimentStatus = 2 // the host reported it finished
	StatusFailed     ExperimentStatus = 3 // an envoy or the host reported a failure
	StatusRejected   ExperimentStatus = 4 // the review rejected it; its archive is deleted
)

// String gives the status as the wire carries it: "pending",
// "in_progress", "finished", "failed", "rejected" ("unknown" otherwise).
func (s ExperimentStatus) String() string {
	if s < StatusPending || s > StatusRejected {
		return "unknown(" + strconv.Itoa(int(s)) + ")"
	}
	return C.GoString(C.ofl_experiment_status_name(C.int32_t(s)))
}

// parseStatus reads a wire status name; unknown names give -1.
func parseStatus(name string) ExperimentStatus {
	for s := StatusPending; s <= StatusRejected; s++ {
		if s.String() == name {
			return s
		}
	}
	return -1
}

// Experiment is a submitted experiment as the director's hooks see it.
type Experiment struct {
	Name          string   // what envoys get from WaitExperiment
	Owner         string   // the submitting frontend: certificate CN (TLS) or client_id
	Collaborators []string // the envoys that take part, in submission order
	ArchivePath   string   // the stored archive (gone after a rejection or a removal)
	ArchiveSize   uint64
	// InitialModel is the model sent with the experiment (nil when none).
	// Its tensors' Data views the library's memory and is valid until the
	// hook returns: Clone the tensors you keep.
	InitialModel []TensorView
}

// EnvoyFailure is what an envoy reported with SetExperimentFailed.
type EnvoyFailure struct {
	Collaborator string // the envoy
	ErrorCode    uint32
	Description  string
}

// DirectorHooks is what a director asks and tells its host (OpenFL's
// review_plan_callback and the aggregator launch of its Director).
//
// Implement it on your own type, embedding DirectorHookFuncs{} to keep the
// defaults of the methods you do not write, or fill a DirectorHookFuncs
// with closures. (One interface rather than optional ones: the compiler
// checks every signature.)
//
// Hooks run on library threads, possibly several at once, never before
// StartDirectorServer has returned and never after Close has returned.
// One experiment is reviewed and started at a time; the next is taken once
// it finished or failed. Hooks may block (a review may wait for a human):
// ctx is cancelled when the server is stopped or closed. They may call the
// server's progress methods and Stop, but not Close. A panic in a hook is
// recovered: a review rejects, a start fails with CodeInternal.
type DirectorHooks interface {
	// ReviewExperiment approves (true) or rejects (false) a submitted
	// experiment; a rejected one's archive is deleted.
	ReviewExperiment(ctx context.Context, d *DirectorServer, e *Experiment) bool
	// StartExperiment launches the aggregator of an approved experiment for
	// its collaborators; the envoys receive the experiment once it returns
	// nil. An error marks the experiment failed with its message.
	StartExperiment(ctx context.Context, d *DirectorServer, e *Experiment) error
	// ExperimentFailed says an envoy failed the experiment: stop its aggregator.
	ExperimentFailed(ctx context.Context, d *DirectorServer, e *Experiment, f EnvoyFailure)
}

// DirectorHookFuncs implements DirectorHooks with optional functions; a
// nil function keeps the default: approve every experiment, nothing to
// start (report the end with MarkFinished), nothing to stop. Its zero value
// is the default hooks, and it can be embedded to inherit them.
type DirectorHookFuncs struct {
	Review func(ctx context.Context, d *DirectorServer, e *Experiment) bool
	Start  func(ctx context.Context, d *DirectorServer, e *Experiment) error
	Failed func(ctx context.Context, d *DirectorServer, e *Experiment, f EnvoyFailure)
}

// ReviewExperiment calls Review, or approves.
func (h DirectorHookFuncs) ReviewExperiment(ctx context.Context, d *DirectorServer, e *Experiment) bool {
	if h.Review == nil {
		return true
	}
	return h.Review(ctx, d, e)
}

// StartExperiment calls Start, or returns nil.
func (h DirectorHookFuncs) StartExperiment(ctx context.Context, d *DirectorServer, e *Experiment) error {
	if h.Start == nil {
		return nil
	}
	return h.Start(ctx, d, e)
}

// ExperimentFailed calls Failed, if set.
func (h DirectorHookFuncs) ExperimentFailed(ctx context.Context, d *DirectorServer, e *Experiment, f EnvoyFailure) {
	if h.Failed != nil {
		h.Failed(ctx, d, e, f)
	}
}

// liveDirectorStates counts director hook states the library still holds (tests).
var liveDirectorStates atomic.Int64

// directorState is what the library's hooks reach through a cgo.Handle.
type directorState struct {
	hooks  DirectorHooks
	server *DirectorServer
	ready  chan struct{} // closed once StartDirectorServer has set server up
	ctx    context.Context
	cancel context.CancelFunc
}

// DirectorServer is a running director (OpenFL's Director with its gRPC
// server). It serves in the background from the moment StartDirectorServer
// returns; Serve waits until it is stopped. Methods are safe for concurrent
// use, also from hooks (Close excepted). Close it when done; one that is
// never closed is stopped and released by a finalizer once unreachable.
type DirectorServer struct {
	life       serverLifecycle[C.ofl_director_server]
	port       uint16
	archiveDir string
}

// StartDirectorServer checks the certificates, creates the archive
// directory, binds the port, and starts serving and running experiments
// with hooks; nil hooks means the defaults (see DirectorHookFuncs).
func StartDirectorServer(opts DirectorServerOptions, hooks DirectorHooks) (*DirectorServer, error) {
	if hooks == nil {
		hooks = DirectorHookFuncs{}
	}
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_director_server_options_free(copts)
	ctx, cancel := context.WithCancel(context.Background())
	s := &DirectorServer{}
	s.life.init(serverOps[C.ofl_director_server]{
		serve: func(p *C.ofl_director_server) *C.ofl_error { return C.ofl_director_server_serve(p) },
		stop:  func(p *C.ofl_director_server) *C.ofl_error { return C.ofl_director_server_stop(p) },
		free:  func(p *C.ofl_director_server) { C.ofl_director_server_free(p) },
	}, cancel)
	st := &directorState{hooks: hooks, server: s, ready: make(chan struct{}), ctx: ctx, cancel: cancel}
	// The library owns the handle from here on: free_user_data
	// (oflGoReleaseHandle) deletes it exactly once, also on failure.
	h := cgo.NewHandle(st)
	liveDirectorStates.Add(1)
	var ptr *C.ofl_director_server
	if err := takeError(C.ofl_go_director_server_start(copts, C.uintptr_t(h), &ptr)); err != nil {
		cancel()
		return nil, err
	}
	s.life.ptr = ptr
	s.port = uint16(C.ofl_director_server_port(ptr))
	s.archiveDir = C.GoString(C.ofl_director_server_archive_dir(ptr))
	runtime.SetFinalizer(s, (*DirectorServer).Close)
	// Hooks may run from now on; they wait for this (a happens-before edge
	// the race detector sees, unlike the library's own synchronization).
	close(st.ready)
	return s, nil
}

// Port is the port the server listens on (the chosen one when 0 was asked).
func (s *DirectorServer) Port() uint16 { return s.port }

// ArchiveDir is the directory the experiment archives are stored in.
func (s *DirectorServer) ArchiveDir() string { return s.archiveDir }

// Serve blocks until Stop or Close is called, or ctx is done (which stops
// the server; OpenFL's Director serves until told to stop). The server then
// shuts down: long polls (WaitExperiment, metric streams) end with
// CodeUnavailable, other calls in flight get Limits.ShutdownGrace to
// finish, then are cancelled (CodeUnavailable); it returns within that
// grace plus about half a second whatever the peers do. It returns nil, or a
// context error when ctx ended it.
func (s *DirectorServer) Serve(ctx context.Context) error { return s.life.serve(ctx) }

// Stop asks the server to stop and returns at once; Serve then returns.
// The context passed to the hooks is cancelled. Idempotent; safe from hooks.
func (s *DirectorServer) Stop() error { return s.life.stop() }

// Close stops the server, waits until Serve has returned, the server no
// longer listens and running hooks have returned (their context is
// cancelled first), and releases it; no hook runs after Close returns. Do
// not call it from a hook (use Stop). Idempotent; always returns nil.
func (s *DirectorServer) Close() error {
	runtime.SetFinalizer(s, nil)
	s.life.close()
	return nil
}

// DirectorMetric is one metric of an experiment (OpenFL's metric record), as the
// host pushes it and a frontend's metric stream delivers it.
type DirectorMetric struct {
	Origin     string // a collaborator name, or the aggregator
	TaskName   string // e.g. "aggregated_model_validation"
	MetricName string // e.g. "accuracy"
	Value      float32
	Round      uint32
}

// PushMetric queues a metric of experiment for the frontends' metric
// streams (a streamed metric leaves the queue). Errors: CodeNotFound for an
// unknown experiment.
func (s *DirectorServer) PushMetric(experiment string, m DirectorMetric) error {
	const what = "PushMetric"
	for _, f := range []struct{ what, s string }{{"experiment", experiment}, {"Origin", m.Origin},
		{"TaskName", m.TaskName}, {"MetricName", m.MetricName}} {
		if err := checkString(f.what, f.s); err != nil {
			return err
		}
	}
	return s.call(what, func(p *C.ofl_director_server, mem *cstrings) error {
		cm := (*C.ofl_director_metric)(mem.alloc(unsafe.Sizeof(C.ofl_director_metric{})))
		cm.origin = mem.str(m.Origin)
		cm.task_name = mem.str(m.TaskName)
		cm.metric_name = mem.str(m.MetricName)
		cm.value = C.float(m.Value)
		cm.round = C.uint32_t(m.Round)
		return takeError(C.ofl_director_server_push_metric(p, mem.str(experiment), cm))
	})
}

// SetBestModel sets the model a frontend's GetBestModel returns for
// experiment. The library copies the tensors (their data read in place, as
// AggregatorClient.SendLocalTaskResults does) before this returns. OpenFL's frontend
// expects its uncompressed float32 encoding: little-endian values, the
// shape in the IntList of one Metadata entry. Errors: CodeNotFound.
func (s *DirectorServer) SetBestModel(experiment string, tensors []TensorView) error {
	return s.setModel("SetBestModel", C.OFL_GO_SET_BEST_MODEL, experiment, tensors)
}

// SetLastModel sets the model a frontend's GetLastModel returns, as SetBestModel.
func (s *DirectorServer) SetLastModel(experiment string, tensors []TensorView) error {
	return s.setModel("SetLastModel", C.OFL_GO_SET_LAST_MODEL, experiment, tensors)
}

func (s *DirectorServer) setModel(what string, kind C.int32_t, experiment string, tensors []TensorView) error {
	if err := checkString("experiment", experiment); err != nil {
		return err
	}
	for i := range tensors {
		if err := tensors[i].check("tensors[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	return s.call(what, func(p *C.ofl_director_server, mem *cstrings) error {
		return lendTensors(mem, tensors, func(cs *C.ofl_go_send) {
			cs.kind = kind
			cs.director = p
			cs.collaborator = mem.str(experiment)
		})
	})
}

// SetRound sets the round progress frontends see (GetExperimentsList's
// progress, GetExperimentDescription's rounds). Errors: CodeNotFound.
func (s *DirectorServer) SetRound(experiment string, current, total uint32) error {
	return s.withExperiment("SetRound", experiment, func(p *C.ofl_director_server, name *C.char) error {
		return takeError(C.ofl_director_server_set_round(p, name, C.uint32_t(current), C.uint32_t(total)))
	})
}

// withExperiment runs call, one library call about experiment (checked,
// and passed as a C string), on the acquired server.
func (s *DirectorServer) withExperiment(what, experiment string, call func(p *C.ofl_director_server, name *C.char) error) error {
	if err := checkString("experiment", experiment); err != nil {
		return err
	}
	return s.call(what, func(p *C.ofl_director_server, mem *cstrings) error {
		return call(p, mem.str(experiment))
	})
}

// call runs fn, library calls on the acquired server, with C memory that
// lives until it returns.
func (s *DirectorServer) call(what string, fn func(p *C.ofl_director_server, mem *cstrings) error) error {
	p, err := s.life.acquire(what)
	if err != nil {
		return err
	}
	defer s.life.release()
	var mem cstrings
	defer mem.free()
	return fn(p, &mem)
}

// TaskDescription is a task of an experiment as frontends see it.
type TaskDescription struct {
	Name        string
	Description string
}

// SetTasks replaces the task list frontends see (GetExperimentDescription).
// Errors: CodeNotFound.
func (s *DirectorServer) SetTasks(experiment string, tasks []TaskDescription) error {
	if err := checkString("experiment", experiment); err != nil {
		return err
	}
	names := make([]string, len(tasks))
	descriptions := make([]string, len(tasks))
	for i, t := range tasks {
		names[i], descriptions[i] = t.Name, t.Description
	}
	if err := checkStrings("tasks.Name", names); err != nil {
		return err
	}
	if err := checkStrings("tasks.Description", descriptions); err != nil {
		return err
	}
	return s.call("SetTasks", func(p *C.ofl_director_server, mem *cstrings) error {
		return takeError(C.ofl_director_server_set_tasks(p, mem.str(experiment), mem.strs(names),
			mem.strs(descriptions), C.size_t(len(tasks))))
	})
}

// MarkFinished reports that experiment finished (OpenFL: its aggregator
// sent every quit job): metric streams end once drained, envoys stop
// receiving it, and the next experiment may start. Only from in progress;
// idempotent. Errors: CodeNotFound, CodeFailedPrecondition.
func (s *DirectorServer) MarkFinished(experiment string) error {
	return s.withExperiment("MarkFinished", experiment, func(p *C.ofl_director_server, name *C.char) error {
		return takeError(C.ofl_director_server_mark_finished(p, name))
	})
}

// MarkFailed reports that experiment failed, with a description (may be
// ""). From pending or in progress; idempotent (the first description
// stays). Errors: CodeNotFound, CodeFailedPrecondition.
func (s *DirectorServer) MarkFailed(experiment, description string) error {
	if err := checkString("experiment", experiment); err != nil {
		return err
	}
	if err := checkString("description", description); err != nil {
		return err
	}
	return s.call("MarkFailed", func(p *C.ofl_director_server, mem *cstrings) error {
		return takeError(C.ofl_director_server_mark_failed(p, mem.str(experiment), mem.optStr(description)))
	})
}

// ExperimentStatus is the status of experiment, whoever submitted it.
// Errors: CodeNotFound for an unknown (or removed) experiment.
func (s *DirectorServer) ExperimentStatus(experiment string) (ExperimentStatus, error) {
	var st uint32 // enum ofl_experiment_status
	err := s.withExperiment("ExperimentStatus", experiment, func(p *C.ofl_director_server, name *C.char) error {
		return takeError(C.ofl_director_server_experiment_status(p, name, &st))
	})
	if err != nil {
		return 0, err
	}
	return ExperimentStatus(st), nil
}

// ---- hooks (library threads -> Go) -----------------------------------------

func directorStateOf(h C.uintptr_t) *directorState {
	st := cgo.Handle(h).Value().(*directorState)
	<-st.ready
	return st
}

// readExperiment copies the hook's view; the initial model's data stays a
// view (valid during the hook).
func readExperiment(e *C.ofl_experiment) *Experiment {
	x := &Experiment{
		Name:        C.GoString(C.ofl_experiment_name(e)),
		Owner:       C.GoString(C.ofl_experiment_owner(e)),
		ArchivePath: C.GoString(C.ofl_experiment_archive_path(e)),
		ArchiveSize: uint64(C.ofl_experiment_archive_size(e)),
	}
	n := int(C.ofl_experiment_collaborators_len(e))
	x.Collaborators = make([]string, n)
	for i := range x.Collaborators {
		x.Collaborators[i] = C.GoString(C.ofl_experiment_collaborator(e, C.size_t(i)))
	}
	if model := C.ofl_experiment_initial_model(e); model != nil {
		x.InitialModel = readTensorList(model)
	}
	return x
}

// readTensorList reads every tensor of a list; Data views the list's memory.
func readTensorList(list *C.ofl_tensor_list) []TensorView {
	n := int(C.ofl_tensor_list_len(list))
	out := make([]TensorView, n)
	for i := range out {
		out[i] = readTensor(C.ofl_tensor_list_get(list, C.size_t(i)), true)
	}
	return out
}

//export oflGoReviewExperiment
func oflGoReviewExperiment(h C.uintptr_t, e *C.ofl_experiment) (approve C.int) {
	defer func() {
		if r := recover(); r != nil {
			approve = 0 // a panicking review rejects
		}
	}()
	st := directorStateOf(h)
	if st.hooks.ReviewExperiment(st.ctx, st.server, readExperiment(e)) {
		return 1
	}
	return 0
}

//export oflGoStartExperiment
func oflGoStartExperiment(h C.uintptr_t, e *C.ofl_experiment) (result *C.ofl_error) {
	defer recoverToError("StartExperiment", &result)
	st := directorStateOf(h)
	if err := st.hooks.StartExperiment(st.ctx, st.server, readExperiment(e)); err != nil {
		return callbackError(err)
	}
	return nil
}

//export oflGoExperimentFailed
func oflGoExperimentFailed(h C.uintptr_t, e *C.ofl_experiment, collaborator *C.char, errorCode C.uint32_t, description *C.char) {
	defer func() { _ = recover() }() // nothing to answer; the panic must not unwind into C
	st := directorStateOf(h)
	st.hooks.ExperimentFailed(st.ctx, st.server, readExperiment(e), EnvoyFailure{
		Collaborator: C.GoString(collaborator),
		ErrorCode:    uint32(errorCode),
		Description:  C.GoString(description),
	})
}
