package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync/atomic"
	"unsafe"
)

// AggregatorLogic is an aggregator's business logic, called by an
// AggregatorServer for every accepted request (after the identity and
// header checks).
//
// Methods run on library threads, several at once (one per concurrent
// call): make them safe for concurrent use. They may block (e.g. until a
// tensor is ready), unless the logic says otherwise (see MayBlocker); ctx
// is cancelled when the server is stopped or closed.
// A returned error answers the call: its code (see CodeOf; an *Error or
// Code keeps its own, other errors give UNKNOWN) and message go to the
// collaborator. A panic answers INTERNAL and the server keeps serving.
type AggregatorLogic interface {
	// GetTasks answers collaborator's GetTasks.
	GetTasks(ctx context.Context, collaborator string) (*Tasks, error)
	// GetAggregatedTensor returns the tensor asked for. The library copies
	// it before this returns: the TensorView (its Data included) may be reused.
	GetAggregatedTensor(ctx context.Context, collaborator string, req *TensorRequest) (*TensorView, error)
	// SendLocalTaskResults takes collaborator's results. The tensors' Data
	// point into the library's receive buffer (no copy) and are valid
	// until this returns: copy what you keep (TensorView.Clone).
	SendLocalTaskResults(ctx context.Context, collaborator string, results *TaskResults) error
	// AllQuitJobsSent reports whether every collaborator has been told to
	// quit; Serve returns once it does. Polled periodically.
	AllQuitJobsSent() bool
}

// CollaboratorValidator, when the logic also implements it, replaces
// OpenFL 1.6's rule for which certificate Common Name may speak for which
// header sender (valid_collaborator_cn_and_id). Without it: the CN equals
// the sender (or the single collaborator certificate CN), and the sender is
// authorized.
type CollaboratorValidator interface {
	ValidCollaboratorCNAndID(commonName, sender string) bool
}

// LogicCall names the AggregatorLogic methods a MayBlocker answers for
// (the C API's ofl_logic_call).
type LogicCall int32

// The AggregatorLogic methods, as LogicCall values.
const (
	CallGetTasks             LogicCall = C.OFL_LOGIC_CALL_GET_TASKS
	CallGetAggregatedTensor  LogicCall = C.OFL_LOGIC_CALL_GET_AGGREGATED_TENSOR
	CallSendLocalTaskResults LogicCall = C.OFL_LOGIC_CALL_SEND_LOCAL_TASK_RESULTS
	CallAllQuitJobsSent      LogicCall = C.OFL_LOGIC_CALL_ALL_QUIT_JOBS_SENT
)

// logicCalls are every LogicCall, in order.
var logicCalls = [...]LogicCall{CallGetTasks, CallGetAggregatedTensor, CallSendLocalTaskResults, CallAllQuitJobsSent}

// MayBlocker, when the logic also implements it, says which of its methods
// may block (the C API's ofl_aggregator_callbacks_set_may_block); it is
// asked once per LogicCall by StartAggregatorServer. Logic without it may
// block in every method (safe): each call then runs on a thread of the
// library's blocking pool, within the 8-per-collaborator and 256-in-all
// bounds. A method for which MayBlock answers false is called directly on
// one of the library's async worker threads, saving a thread hand-off per
// call. Entering Go from that (non-Go) thread is fine, but the Go code
// itself must return promptly (brief mutexes, computation): while it blocks
// (waits on a channel, a long-held mutex, I/O, time.Sleep) the worker
// thread stays inside the call and every connection that worker serves
// stalls. Such calls are not bounded by the 8-per-collaborator/256 limits.
type MayBlocker interface {
	MayBlock(call LogicCall) bool
}

// nonBlockingMask has bit c set for every LogicCall c that logic declares
// non-blocking through MayBlocker.
func nonBlockingMask(logic AggregatorLogic) C.uint32_t {
	m, ok := logic.(MayBlocker)
	if !ok {
		return 0
	}
	var mask C.uint32_t
	for _, call := range logicCalls {
		if !m.MayBlock(call) {
			mask |= 1 << uint(call)
		}
	}
	return mask
}

// liveServerStates counts server states the library still holds (tests).
var liveServerStates atomic.Int64

// serverState is what the library's callbacks reach through a cgo.Handle.
type serverState struct {
	logic     AggregatorLogic
	validator CollaboratorValidator
	ctx       context.Context
	cancel    context.CancelFunc
}

// AggregatorServer is a running aggregator server (OpenFL's
// AggregatorGRPCServer). It serves in the background from the moment
// StartAggregatorServer returns; Serve waits for the federation's end.
// Methods are safe for concurrent use. Close it when done; one that is
// never closed is stopped and released by a finalizer once unreachable.
type AggregatorServer struct {
	life serverLifecycle[C.ofl_aggregator_server]
	port uint16
}

// aggregatorServerOps drives an ofl_aggregator_server through its life
// cycle (StartAggregatorServer and StartFedAvgServer).
var aggregatorServerOps = serverOps[C.ofl_aggregator_server]{
	serve: func(p *C.ofl_aggregator_server) *C.ofl_error { return C.ofl_aggregator_server_serve(p) },
	stop:  func(p *C.ofl_aggregator_server) *C.ofl_error { return C.ofl_aggregator_server_stop(p) },
	free:  func(p *C.ofl_aggregator_server) { C.ofl_aggregator_server_free(p) },
}

// StartAggregatorServer checks the certificates, binds the port and starts
// serving with logic behind it.
func StartAggregatorServer(opts AggregatorServerOptions, logic AggregatorLogic) (*AggregatorServer, error) {
	if logic == nil {
		return nil, invalidArgument("logic is nil")
	}
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_aggregator_server_options_free(copts)
	ctx, cancel := context.WithCancel(context.Background())
	st := &serverState{logic: logic, ctx: ctx, cancel: cancel}
	st.validator, _ = logic.(CollaboratorValidator)
	nonBlocking := nonBlockingMask(logic)
	// The library owns the handle from here on: free_user_data
	// (oflGoReleaseHandle) deletes it exactly once, also on failure.
	h := cgo.NewHandle(st)
	liveServerStates.Add(1)
	s := &AggregatorServer{}
	s.life.init(aggregatorServerOps, cancel)
	if err := takeError(C.ofl_go_server_start(copts, C.uintptr_t(h), C.bool(st.validator != nil), nonBlocking, &s.life.ptr)); err != nil {
		cancel()
		return nil, err
	}
	s.port = uint16(C.ofl_aggregator_server_port(s.life.ptr))
	runtime.SetFinalizer(s, (*AggregatorServer).Close)
	return s, nil
}

// Port is the port the server listens on (the chosen one when 0 was asked).
func (s *AggregatorServer) Port() uint16 { return s.port }

// Serve blocks until the logic reports all quit jobs sent (OpenFL's
// serve; asked every QuitPollInterval), Stop or Close is called, or ctx is
// done (which stops the server); then the server stops: calls in flight
// get Limits.ShutdownGrace to finish, then are cancelled (CodeUnavailable)
// and their connections reset, so it returns within that grace plus about
// half a second whatever the peers do. It returns nil, or a context error
// when ctx ended it.
func (s *AggregatorServer) Serve(ctx context.Context) error { return s.life.serve(ctx) }

// Stop asks the server to stop and returns at once; Serve then returns.
// The context passed to the logic is cancelled. Idempotent; safe from
// logic callbacks.
func (s *AggregatorServer) Stop() error { return s.life.stop() }

// Close stops the server, waits until Serve has returned and the server
// wound down (at most Limits.ShutdownGrace plus about half a second), and
// releases it; no logic call starts after it returns, and one still running
// is abandoned (its answer is dropped). Do not call it from logic callbacks
// (use Stop). Idempotent; always returns nil.
func (s *AggregatorServer) Close() error {
	runtime.SetFinalizer(s, nil)
	s.life.close()
	return nil
}

// ---- callbacks (library threads -> Go) ------------------------------------

func stateOf(h C.uintptr_t) *serverState {
	return cgo.Handle(h).Value().(*serverState)
}

// callbackError is what a callback returns for err: an ofl_error with
// err's code (UNKNOWN for an error that has none) and message, which the
// library takes and sends to the peer as the gRPC status.
func callbackError(err error) *C.ofl_error {
	code := CodeOf(err)
	msg := err.Error()
	if e, ok := err.(*Error); ok && e.Message != "" {
		msg = e.Message
	}
	if code == CodeOK {
		code = CodeUnknown
	}
	cmsg := C.CString(strings.ReplaceAll(msg, "\x00", "\\0"))
	defer C.free(unsafe.Pointer(cmsg))
	return C.ofl_error_new(C.int32_t(code), cmsg)
}

// recoverToError turns a panic in logic into an INTERNAL answer: a Go
// panic must never unwind into the library's C frames.
func recoverToError(method string, out **C.ofl_error) {
	if r := recover(); r != nil {
		*out = callbackError(Errorf(CodeInternal, "%s panicked: %v", method, r))
	}
}

//export oflGoGetTasks
func oflGoGetTasks(h C.uintptr_t, collaborator *C.char, reply *C.ofl_reply) (out *C.ofl_error) {
	defer recoverToError("GetTasks", &out)
	st := stateOf(h)
	tasks, err := st.logic.GetTasks(st.ctx, C.GoString(collaborator))
	if err != nil {
		return callbackError(err)
	}
	if tasks == nil {
		return callbackError(NewError(CodeInternal, "GetTasks returned neither tasks nor an error"))
	}
	if err := takeError(C.ofl_reply_set_round_number(reply, C.int32_t(tasks.RoundNumber))); err != nil {
		return callbackError(err)
	}
	if err := takeError(C.ofl_reply_set_sleep_time(reply, C.int32_t(tasks.SleepTime))); err != nil {
		return callbackError(err)
	}
	if err := takeError(C.ofl_reply_set_quit(reply, C.bool(tasks.Quit))); err != nil {
		return callbackError(err)
	}
	var mem cstrings
	defer mem.free()
	for i, t := range tasks.Tasks {
		for _, f := range []struct{ what, s string }{{"Name", t.Name}, {"FunctionName", t.FunctionName}, {"TaskType", t.TaskType}} {
			if err := checkString(fmt.Sprintf("Tasks[%d].%s", i, f.what), f.s); err != nil {
				return callbackError(Errorf(CodeInternal, "GetTasks: %v", err))
			}
		}
		if err := takeError(C.ofl_reply_add_task(reply, mem.str(t.Name), mem.str(t.FunctionName),
			mem.str(t.TaskType), C.bool(t.ApplyLocal))); err != nil {
			return callbackError(err)
		}
	}
	return nil
}

//export oflGoGetAggregatedTensor
func oflGoGetAggregatedTensor(h C.uintptr_t, collaborator *C.char, req *C.ofl_tensor_request, reply *C.ofl_reply) (out *C.ofl_error) {
	defer recoverToError("GetAggregatedTensor", &out)
	st := stateOf(h)
	r := &TensorRequest{
		TensorName:      C.GoString(req.tensor_name),
		RoundNumber:     int32(req.round_number),
		Report:          bool(req.report),
		RequireLossless: bool(req.require_lossless),
	}
	if n := int(req.tags_len); n > 0 && req.tags != nil {
		tags := unsafe.Slice(req.tags, n)
		r.Tags = make([]string, n)
		for i, t := range tags {
			r.Tags[i] = C.GoString(t)
		}
	}
	t, err := st.logic.GetAggregatedTensor(st.ctx, C.GoString(collaborator), r)
	if err != nil {
		return callbackError(err)
	}
	if t == nil {
		return callbackError(NewError(CodeInternal, "GetAggregatedTensor returned neither a tensor nor an error"))
	}
	if err := t.check("GetAggregatedTensor: tensor"); err != nil {
		return callbackError(Errorf(CodeInternal, "%v", err))
	}
	var mem cstrings
	defer mem.free()
	view := (*C.ofl_tensor_view)(mem.alloc(unsafe.Sizeof(C.ofl_tensor_view{})))
	fillView(view, t, &mem)
	var data unsafe.Pointer
	if len(t.Data) > 0 {
		data = unsafe.Pointer(&t.Data[0])
	}
	// The Go data pointer is an argument: C stores it in the view for the
	// duration of this call only, and the library copies the data.
	err = takeError(C.ofl_go_reply_set_tensor(reply, view, data, C.size_t(len(t.Data))))
	runtime.KeepAlive(t)
	if err != nil {
		return callbackError(err)
	}
	return nil
}

//export oflGoSendLocalTaskResults
func oflGoSendLocalTaskResults(h C.uintptr_t, collaborator *C.char, results *C.ofl_task_results) (out *C.ofl_error) {
	defer recoverToError("SendLocalTaskResults", &out)
	st := stateOf(h)
	r := &TaskResults{
		RoundNumber: int32(C.ofl_task_results_round_number(results)),
		TaskName:    C.GoString(C.ofl_task_results_task_name(results)),
		DataSize:    int32(C.ofl_task_results_data_size(results)),
	}
	if n := int(C.ofl_task_results_tensors_len(results)); n > 0 {
		r.Tensors = make([]TensorView, n)
		for i := range r.Tensors {
			r.Tensors[i] = readTensor(C.ofl_task_results_tensor(results, C.size_t(i)), true)
		}
	}
	if err := st.logic.SendLocalTaskResults(st.ctx, C.GoString(collaborator), r); err != nil {
		return callbackError(err)
	}
	return nil
}

//export oflGoAllQuitJobsSent
func oflGoAllQuitJobsSent(h C.uintptr_t) (done C.int) {
	defer func() {
		if r := recover(); r != nil {
			done = 0
		}
	}()
	if stateOf(h).logic.AllQuitJobsSent() {
		return 1
	}
	return 0
}

//export oflGoValidCollaborator
func oflGoValidCollaborator(h C.uintptr_t, commonName, sender *C.char) (ok C.int) {
	defer func() {
		if r := recover(); r != nil {
			ok = 0 // a panicking check rejects
		}
	}()
	if stateOf(h).validator.ValidCollaboratorCNAndID(C.GoString(commonName), C.GoString(sender)) {
		return 1
	}
	return 0
}

//export oflGoReleaseHandle
func oflGoReleaseHandle(h C.uintptr_t) {
	handle := cgo.Handle(h)
	switch st := handle.Value().(type) {
	case *serverState:
		st.cancel()
		liveServerStates.Add(-1)
	case *directorState:
		st.cancel()
		liveDirectorStates.Add(-1)
	}
	handle.Delete()
}

//export oflGoSendNext
func oflGoSendNext(s *C.ofl_go_send, next C.size_t) {
	st := cgo.Handle(s.handle).Value().(*sendState)
	sendStep(s, st, int(next))
}
