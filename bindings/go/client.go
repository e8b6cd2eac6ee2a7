package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"strconv"
	"unsafe"
)

// AggregatorClient is a collaborator's connection to an aggregator (OpenFL's
// AggregatorGRPCClient). Its methods may be called from many goroutines at
// once; they share one connection.
//
// Contexts cancel calls: a context that is already done fails a call at
// once; one done while the call runs cancels it in the library (an upload
// in flight is reset, the aggregator never counts it) and the call returns
// an error with CodeCancelled or CodeDeadlineExceeded that wraps ctx.Err()
// (errors.Is(err, context.Canceled)). A context deadline is the call's
// time limit, all attempts and retries included; Connect.CallTimeout
// bounds calls whose context has none (or a later one). Each call takes
// optional CallOptions (WithProgress).
//
// Close cancels the calls in progress and returns once they have all
// returned; an AggregatorClient that is never closed is released by a
// finalizer once unreachable.
type AggregatorClient struct {
	core clientCore[C.ofl_aggregator_client]
}

// NewAggregatorClient creates a client. Certificates are read and checked now; the
// connection is made by the first call.
func NewAggregatorClient(opts AggregatorClientOptions) (*AggregatorClient, error) {
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_aggregator_client_options_free(copts)
	var p *C.ofl_aggregator_client
	if err := takeError(C.ofl_aggregator_client_new(copts, &p)); err != nil {
		return nil, err
	}
	c := &AggregatorClient{}
	c.core.init(p, func(p *C.ofl_aggregator_client) { _ = takeError(C.ofl_aggregator_client_close(p)) },
		func(p *C.ofl_aggregator_client) { C.ofl_aggregator_client_free(p) }, opts.Connect.CallTimeout)
	runtime.SetFinalizer(c, (*AggregatorClient).Close)
	return c, nil
}

// Close cancels the calls in progress (they fail with CodeCancelled
// wrapping ErrClosed), waits until they have all returned, and releases
// the client: no call, nor goroutine of one, outlives Close. Later calls
// fail the same way. Idempotent; always returns nil. Do not call it from
// a progress callback (it would wait for itself).
func (c *AggregatorClient) Close() error {
	runtime.SetFinalizer(c, nil)
	c.core.close()
	return nil
}

// Disconnect closes the connection (OpenFL's disconnect); the next call
// reconnects.
func (c *AggregatorClient) Disconnect() error {
	p, err := c.core.acquire("Disconnect")
	if err != nil {
		return err
	}
	defer c.core.release()
	return takeError(C.ofl_aggregator_client_disconnect(p))
}

// Reconnect replaces the connection with a new one (OpenFL's reconnect).
func (c *AggregatorClient) Reconnect() error {
	p, err := c.core.acquire("Reconnect")
	if err != nil {
		return err
	}
	defer c.core.release()
	return takeError(C.ofl_aggregator_client_reconnect(p))
}

// Task is one task of a GetTasks answer (OpenFL's Task).
type Task struct {
	Name         string
	FunctionName string // e.g. "train_task"
	TaskType     string // e.g. "train"
	ApplyLocal   bool
}

// Tasks is the answer to GetTasks.
type Tasks struct {
	RoundNumber int32
	Tasks       []Task
	SleepTime   int32 // seconds to wait before asking again (when there are no tasks)
	Quit        bool
}

// GetTasks asks the aggregator for collaborator's tasks.
func (c *AggregatorClient) GetTasks(ctx context.Context, collaborator string, opts ...CallOption) (*Tasks, error) {
	if err := checkString("collaborator", collaborator); err != nil {
		return nil, err
	}
	return doCall(ctx, &c.core, "GetTasks", opts, func(p *C.ofl_aggregator_client, co *C.ofl_call_options) (*Tasks, error) {
		name := C.CString(collaborator)
		defer C.free(unsafe.Pointer(name))
		var out *C.ofl_tasks
		if err := takeError(C.ofl_aggregator_client_get_tasks(p, name, co, &out)); err != nil {
			return nil, err
		}
		defer C.ofl_tasks_free(out)
		return readTasks(out), nil
	})
}

func readTasks(t *C.ofl_tasks) *Tasks {
	r := &Tasks{
		RoundNumber: int32(C.ofl_tasks_round_number(t)),
		SleepTime:   int32(C.ofl_tasks_sleep_time(t)),
		Quit:        bool(C.ofl_tasks_quit(t)),
	}
	n := int(C.ofl_tasks_len(t))
	r.Tasks = make([]Task, n)
	for i := range r.Tasks {
		k := C.size_t(i)
		r.Tasks[i] = Task{
			Name:         C.GoString(C.ofl_tasks_name(t, k)),
			FunctionName: C.GoString(C.ofl_tasks_function_name(t, k)),
			TaskType:     C.GoString(C.ofl_tasks_task_type(t, k)),
			ApplyLocal:   bool(C.ofl_tasks_apply_local(t, k)),
		}
	}
	return r
}

// GetAggregatedTensor fetches a tensor of the aggregated model. The
// result's Data is the library's receive buffer, not a copy: see
// Tensor for its lifetime, and Close it when done. WithProgress follows
// the download.
func (c *AggregatorClient) GetAggregatedTensor(ctx context.Context, collaborator string, req TensorRequest,
	opts ...CallOption) (*Tensor, error) {
	if err := checkString("collaborator", collaborator); err != nil {
		return nil, err
	}
	if err := checkString("TensorName", req.TensorName); err != nil {
		return nil, err
	}
	if err := checkStrings("Tags", req.Tags); err != nil {
		return nil, err
	}
	return doCall(ctx, &c.core, "GetAggregatedTensor", opts, func(p *C.ofl_aggregator_client, co *C.ofl_call_options) (*Tensor, error) {
		var mem cstrings
		defer mem.free()
		var tags **C.char
		if len(req.Tags) > 0 {
			arr := unsafe.Slice((**C.char)(mem.alloc(uintptr(len(req.Tags))*unsafe.Sizeof((*C.char)(nil)))), len(req.Tags))
			for i, tag := range req.Tags {
				arr[i] = mem.str(tag)
			}
			tags = &arr[0]
		}
		var out *C.ofl_tensor
		if err := takeError(C.ofl_aggregator_client_get_aggregated_tensor(p, mem.str(collaborator), mem.str(req.TensorName),
			C.int32_t(req.RoundNumber), C.bool(req.Report), tags, C.size_t(len(req.Tags)),
			C.bool(req.RequireLossless), co, &out)); err != nil {
			return nil, err
		}
		return newTensor(out), nil
	})
}

// TaskResults are the results of one task: what a collaborator sends with
// SendLocalTaskResults and what aggregator logic receives.
type TaskResults struct {
	RoundNumber int32
	TaskName    string
	DataSize    int32 // number of samples the results were computed on
	Tensors     []TensorView
}

// Tensors at least this large are lent to the library in place; smaller
// ones are copied into one C buffer (cheaper than a cgo call each).
// Variables for tests only.
var borrowMinBytes = 64 << 10

// At most this many tensors are lent in place per upload (each batch of
// OFL_GO_SEND_BATCH costs one nested cgo call, 256 nested calls at most);
// the rest are copied.
var borrowMaxTensors = 4096

// sendState is the Go side of one upload in progress.
type sendState struct {
	data [][]byte // data of the borrowed tensors, in the order of ofl_go_send.borrowed
}

// SendLocalTaskResults uploads results for collaborator. TensorView data is
// not copied (tensors under 64 KiB excepted): the library serializes it
// straight from the slices while the call runs, so do not modify them
// until it returns. A cancelled upload is reset: the aggregator never
// counts it. WithProgress follows the upload.
func (c *AggregatorClient) SendLocalTaskResults(ctx context.Context, collaborator string, results TaskResults,
	opts ...CallOption) error {
	if err := checkString("collaborator", collaborator); err != nil {
		return err
	}
	if err := checkString("TaskName", results.TaskName); err != nil {
		return err
	}
	for i := range results.Tensors {
		if err := results.Tensors[i].check("Tensors[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	_, err := doCall(ctx, &c.core, "SendLocalTaskResults", opts, func(p *C.ofl_aggregator_client, co *C.ofl_call_options) (struct{}, error) {
		var mem cstrings
		defer mem.free()
		return struct{}{}, lendTensors(&mem, results.Tensors, func(s *C.ofl_go_send) {
			s.kind = C.OFL_GO_SEND_TASK_RESULTS
			s.client = p
			s.call = co
			s.collaborator = mem.str(collaborator)
			s.round_number = C.int32_t(results.RoundNumber)
			s.task_name = mem.str(results.TaskName)
			s.data_size = C.int32_t(results.DataSize)
		})
	})
	return err
}

// lendTensors makes one library call that reads tensors (the kind and
// arguments set by setup) with their data lent in place where the cgo
// rules allow, and copied into C memory (owned by mem) otherwise. The
// tensors must have passed TensorView.check.
func lendTensors(mem *cstrings, tensors []TensorView, setup func(s *C.ofl_go_send)) error {
	n := len(tensors)
	s := (*C.ofl_go_send)(mem.alloc(unsafe.Sizeof(C.ofl_go_send{})))
	setup(s)
	st := &sendState{}
	var borrowed []C.size_t
	if n > 0 {
		views := unsafe.Slice((*C.ofl_tensor_view)(mem.alloc(uintptr(n)*unsafe.Sizeof(C.ofl_tensor_view{}))), n)
		for i := range tensors {
			t := &tensors[i]
			fillView(&views[i], t, mem)
			if len(t.Data) >= borrowMinBytes && len(st.data) < borrowMaxTensors {
				borrowed = append(borrowed, C.size_t(i))
				st.data = append(st.data, t.Data)
				views[i].data_len = C.size_t(len(t.Data))
			} else if len(t.Data) > 0 {
				views[i].data = mem.bytes(t.Data)
				views[i].data_len = C.size_t(len(t.Data))
			}
		}
		s.views = &views[0]
		s.len = C.size_t(n)
	}
	if len(borrowed) > 0 {
		b := unsafe.Slice((*C.size_t)(mem.alloc(uintptr(len(borrowed))*unsafe.Sizeof(C.size_t(0)))), len(borrowed))
		copy(b, borrowed)
		s.borrowed = &b[0]
		s.borrowed_len = C.size_t(len(borrowed))
	}
	h := cgo.NewHandle(st)
	defer h.Delete()
	s.handle = C.uintptr_t(h)
	sendStep(s, st, 0)
	runtime.KeepAlive(tensors)
	return takeError(s.error)
}

// sendStep lends the data pointers of st.data[first:first+batch] to C as
// call arguments (the only way cgo lets C hold several Go pointers at once:
// Go may not store them in C memory itself) and C continues the chain.
func sendStep(s *C.ofl_go_send, st *sendState, first int) {
	var p [C.OFL_GO_SEND_BATCH]unsafe.Pointer
	count := len(st.data) - first
	if count > len(p) {
		count = len(p)
	}
	for i := 0; i < count; i++ {
		p[i] = unsafe.Pointer(&st.data[first+i][0])
	}
	C.ofl_go_send_step(s, C.size_t(first), C.size_t(count),
		p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
		p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15])
}
