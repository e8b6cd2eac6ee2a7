package openfl

// #include "shim.h"
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// ---- the connection both director clients share -------------------------------

// dirOps are the library functions of one client type (envoy or frontend).
type dirOps[H any] struct {
	create func(opts *C.ofl_director_client_options) (*H, error)
	close  func(h *H)
	free   func(h *H)
}

// dirConn is a director client: a shared library client for short calls,
// and the options to make a dedicated one for each long call (long poll,
// stream, upload, download) whose context can be cancelled. The library
// cancels calls only by closing a whole client (ofl_*_client_close), so a
// dedicated client is what lets a context cancel one call and nothing else.
type dirConn[H any] struct {
	guarded[H] // ptr: the shared client; users: calls in progress (they use ptr and opts)
	ops        dirOps[H]
	opts       *C.ofl_director_client_options // kept to make dedicated clients
	private    map[*H]struct{}                // dedicated clients of calls in progress
}

func (c *dirConn[H]) init(opts DirectorClientOptions, ops dirOps[H]) error {
	copts, err := opts.build()
	if err != nil {
		return err
	}
	p, err := ops.create(copts)
	if err != nil {
		C.ofl_director_client_options_free(copts)
		return err
	}
	c.ops, c.opts, c.ptr, c.private = ops, copts, p, map[*H]struct{}{}
	return nil
}

// release ends a call; the last one after Close frees the client.
func (c *dirConn[H]) release() {
	c.mu.Lock()
	c.users--
	p, opts := c.takeIfDone()
	c.mu.Unlock()
	c.freeAll(p, opts)
}

// takeIfDone hands out what is to be freed once closed and idle (c.mu held).
func (c *dirConn[H]) takeIfDone() (*H, *C.ofl_director_client_options) {
	if !c.closed || c.users != 0 || c.ptr == nil {
		return nil, nil
	}
	p, opts := c.ptr, c.opts
	c.ptr, c.opts = nil, nil
	return p, opts
}

func (c *dirConn[H]) freeAll(p *H, opts *C.ofl_director_client_options) {
	if p != nil {
		c.ops.free(p)
		C.ofl_director_client_options_free(opts)
	}
}

// Close cancels the calls in progress (they return CodeCancelled wrapping
// ErrClosed) and refuses new ones; the library client is freed once the
// last call has returned. Idempotent.
func (c *dirConn[H]) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	// Under the lock: no handle is freed while it is being closed.
	c.ops.close(c.ptr)
	for h := range c.private {
		c.ops.close(h)
	}
	p, opts := c.takeIfDone()
	c.mu.Unlock()
	c.freeAll(p, opts)
}

func (c *dirConn[H]) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// outcome names the cause of a call's failure: the context, or Close.
func (c *dirConn[H]) outcome(ctx context.Context, what string, err error) error {
	if err == nil || CodeOf(err) != CodeCancelled {
		return err
	}
	if cerr := contextError(ctx, what); cerr != nil {
		return cerr
	}
	if c.isClosed() {
		return closedError(what)
	}
	return err
}

// dirCall makes one library call. Short calls use the shared client and
// return as soon as ctx is done (the call finishes in the background and
// discard cleans up its result, as AggregatorClient's calls do). Long calls with a
// cancellable ctx get a dedicated client that ctx closes: they end when ctx
// is done, with nothing left running.
func dirCall[H, T any](ctx context.Context, c *dirConn[H], what string, long bool,
	call func(h *H) (T, error), discard func(T)) (T, error) {
	var zero T
	if err := contextError(ctx, what); err != nil {
		return zero, err
	}
	p, err := c.acquire(what)
	if err != nil {
		return zero, err
	}
	if long && ctx.Done() != nil {
		defer c.release()
		v, err := dedicatedCall(ctx, c, what, call)
		return v, c.outcome(ctx, what, err)
	}
	v, err := runAbandonable(ctx, what, c.release, func() (T, error) { return call(p) }, discard)
	return v, c.outcome(ctx, what, err)
}

func dedicatedCall[H, T any](ctx context.Context, c *dirConn[H], what string, call func(h *H) (T, error)) (T, error) {
	var zero T
	h, err := c.ops.create(c.opts) // opts stay alive: this call is counted
	if err != nil {
		return zero, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.ops.free(h)
		return zero, closedError(what)
	}
	c.private[h] = struct{}{}
	c.mu.Unlock()

	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			c.ops.close(h) // the call returns CodeCancelled
		case <-stop:
		}
	}()
	v, err := call(h)
	close(stop)
	<-watched
	c.mu.Lock()
	delete(c.private, h)
	c.mu.Unlock()
	c.ops.free(h)
	return v, err
}

// ---- value types ------------------------------------------------------------

// CUDADevice is one CUDA device of an envoy's node (OpenFL's CudaDeviceInfo).
type CUDADevice struct {
	Index             uint64
	MemoryTotal       uint64 // bytes
	MemoryUtilized    uint64 // bytes
	DeviceUtilization string // as the envoy reports it, e.g. "35%"
	CUDADriverVersion string
	CUDAVersion       string
	Name              string
}

func (d *CUDADevice) check(what string) error {
	for _, f := range []struct{ what, s string }{{".DeviceUtilization", d.DeviceUtilization},
		{".CUDADriverVersion", d.CUDADriverVersion}, {".CUDAVersion", d.CUDAVersion}, {".Name", d.Name}} {
		if err := checkString(what+f.what, f.s); err != nil {
			return err
		}
	}
	return nil
}

func checkDevices(devices []CUDADevice) error {
	for i := range devices {
		if err := devices[i].check("CUDADevices[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	return nil
}

// cDevices copies devices into C memory (NULL for none).
func cDevices(devices []CUDADevice, mem *cstrings) *C.ofl_cuda_device {
	if len(devices) == 0 {
		return nil
	}
	out := unsafe.Slice((*C.ofl_cuda_device)(mem.alloc(uintptr(len(devices))*unsafe.Sizeof(C.ofl_cuda_device{}))), len(devices))
	for i, d := range devices {
		out[i].index = C.uint64_t(d.Index)
		out[i].memory_total = C.uint64_t(d.MemoryTotal)
		out[i].memory_utilized = C.uint64_t(d.MemoryUtilized)
		out[i].device_utilization = mem.str(d.DeviceUtilization)
		out[i].cuda_driver_version = mem.str(d.CUDADriverVersion)
		out[i].cuda_version = mem.str(d.CUDAVersion)
		out[i].name = mem.str(d.Name)
	}
	return &out[0]
}

func goDevice(d *C.ofl_cuda_device) CUDADevice {
	return CUDADevice{
		Index:             uint64(d.index),
		MemoryTotal:       uint64(d.memory_total),
		MemoryUtilized:    uint64(d.memory_utilized),
		DeviceUtilization: C.GoString(d.device_utilization),
		CUDADriverVersion: C.GoString(d.cuda_driver_version),
		CUDAVersion:       C.GoString(d.cuda_version),
		Name:              C.GoString(d.name),
	}
}

// ShardInfo is what an envoy reports about its shard (OpenFL's ShardInfo).
type ShardInfo struct {
	Description string
	NSamples    uint64
	// SampleShape and TargetShape as OpenFL writes them ("28", "28"); they
	// must equal the director's for the shard to be accepted.
	SampleShape, TargetShape []string
	CUDADevices              []CUDADevice
}

// EnvoyInfo is an envoy as GetEnvoys reports it.
type EnvoyInfo struct {
	Name                     string // its shard name
	ShardDescription         string
	NSamples                 uint64
	SampleShape, TargetShape []string
	// IsOnline: a health check (or the registration) arrived within the
	// last two health-check periods (ValidDuration).
	IsOnline            bool
	IsExperimentRunning bool          // as it last reported
	LastUpdated         time.Time     // its last health check; zero when unknown
	ValidDuration       time.Duration // how long it stays online after LastUpdated
	ExperimentName      string        // the in-progress experiment it was last given ("" for none)
	CUDADevices         []CUDADevice
}

// ExperimentSummary is one experiment of GetExperimentsList.
type ExperimentSummary struct {
	Name                string
	Status              ExperimentStatus
	CollaboratorsAmount uint32
	TasksAmount         uint32
	Progress            float32 // 0 to 1
}

// CollaboratorDescription is one collaborator of an ExperimentDescription.
type CollaboratorDescription struct {
	Name        string
	Status      string // "pending", "running" once it downloaded the archive, "finished", "failed"
	Progress    float32
	Round       uint32
	CurrentTask string
	NextTask    string
}

// DownloadStatus is whether a model or a log of an experiment can be
// downloaded: Name "best", "last" or "init" (models), "aggregator" (logs);
// Status "ready" or "pending".
type DownloadStatus struct {
	Name   string
	Status string
}

// ExperimentDescription is one experiment in detail (GetExperimentDescription).
type ExperimentDescription struct {
	Name          string
	Status        ExperimentStatus
	Progress      float32 // 0 to 1
	TotalRounds   uint32
	CurrentRound  uint32
	Collaborators []CollaboratorDescription
	Tasks         []TaskDescription
	Models        []DownloadStatus
	Logs          []DownloadStatus
}

// ReceivedModel is a model downloaded by FrontendClient.GetBestModel or
// GetLastModel. Like Tensor, its tensors' Data point into the
// library's receive buffer (no copy), valid until Close; keep the
// ReceivedModel reachable while using them, and Clone what you keep.
type ReceivedModel struct {
	Tensors []TensorView // in the order they were sent
	mu      sync.Mutex
	c       *C.ofl_tensor_list
}

func newReceivedModel(c *C.ofl_tensor_list) *ReceivedModel {
	m := &ReceivedModel{Tensors: readTensorList(c), c: c}
	runtime.SetFinalizer(m, (*ReceivedModel).Close)
	return m
}

// Close frees the receive buffer; the tensors' Data must not be used
// afterwards (Tensors is set to nil). Idempotent; always returns nil.
func (m *ReceivedModel) Close() error {
	m.mu.Lock()
	c := m.c
	m.c = nil
	m.Tensors = nil
	m.mu.Unlock()
	if c != nil {
		C.ofl_tensor_list_free(c)
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// ---- envoy ------------------------------------------------------------------

// EnvoyClient is an envoy's connection to the director (OpenFL's
// ShardDirectorClient). Its methods may be called from many goroutines at
// once (e.g. health checks while another goroutine waits for an experiment).
//
// Contexts: a context that is already done fails a call at once.
// WaitExperiment and GetExperimentData end as soon as their context is done
// (each runs on a connection of its own, closed by the context, so nothing
// is left running). The short calls (UpdateShardInfo, SendHealthCheck,
// SetExperimentFailed) return when their context is done, and the
// abandoned RPC finishes in the background within the retry budget, as
// AggregatorClient's calls do. Close cancels every call in progress.
type EnvoyClient struct {
	conn  dirConn[C.ofl_envoy_client]
	shard string
}

// NewEnvoyClient creates an envoy client for the shard shardName (OpenFL's
// shard_name: its collaborator name in experiments; under mTLS the
// certificate CN must be it). Certificates are read and checked now; the
// connection is made by the first call.
func NewEnvoyClient(opts DirectorClientOptions, shardName string) (*EnvoyClient, error) {
	if err := checkString("shardName", shardName); err != nil {
		return nil, err
	}
	c := &EnvoyClient{shard: shardName}
	err := c.conn.init(opts, dirOps[C.ofl_envoy_client]{
		create: func(o *C.ofl_director_client_options) (*C.ofl_envoy_client, error) {
			name := C.CString(shardName)
			defer C.free(unsafe.Pointer(name))
			var p *C.ofl_envoy_client
			if err := takeError(C.ofl_envoy_client_new(o, name, &p)); err != nil {
				return nil, err
			}
			return p, nil
		},
		close: func(p *C.ofl_envoy_client) { _ = takeError(C.ofl_envoy_client_close(p)) },
		free:  func(p *C.ofl_envoy_client) { C.ofl_envoy_client_free(p) },
	})
	if err != nil {
		return nil, err
	}
	runtime.SetFinalizer(c, (*EnvoyClient).Close)
	return c, nil
}

// ShardName is the envoy's name.
func (c *EnvoyClient) ShardName() string { return c.shard }

// Close cancels the calls in progress (they fail with CodeCancelled
// wrapping ErrClosed) and releases the client once they have returned.
// Later calls fail the same way. Idempotent; always returns nil.
func (c *EnvoyClient) Close() error {
	runtime.SetFinalizer(c, nil)
	c.conn.Close()
	return nil
}

// UpdateShardInfo registers the shard under the client's shard name and
// reports whether the director accepted it (its shapes are the director's).
func (c *EnvoyClient) UpdateShardInfo(ctx context.Context, info ShardInfo) (bool, error) {
	if err := checkString("Description", info.Description); err != nil {
		return false, err
	}
	if err := checkStrings("SampleShape", info.SampleShape); err != nil {
		return false, err
	}
	if err := checkStrings("TargetShape", info.TargetShape); err != nil {
		return false, err
	}
	if err := checkDevices(info.CUDADevices); err != nil {
		return false, err
	}
	return dirCall(ctx, &c.conn, "UpdateShardInfo", false, func(p *C.ofl_envoy_client) (bool, error) {
		var mem cstrings
		defer mem.free()
		si := (*C.ofl_shard_info)(mem.alloc(unsafe.Sizeof(C.ofl_shard_info{})))
		si.shard_description = mem.str(info.Description)
		si.n_samples = C.uint64_t(info.NSamples)
		si.sample_shape = mem.strs(info.SampleShape)
		si.sample_shape_len = C.size_t(len(info.SampleShape))
		si.target_shape = mem.strs(info.TargetShape)
		si.target_shape_len = C.size_t(len(info.TargetShape))
		si.cuda_devices = cDevices(info.CUDADevices, &mem)
		si.cuda_devices_len = C.size_t(len(info.CUDADevices))
		var accepted C.bool
		if err := takeError(C.ofl_envoy_client_update_shard_info(p, si, nil, &accepted)); err != nil {
			return false, err
		}
		return bool(accepted), nil
	}, func(bool) {})
}

// WaitExperiment blocks until the director has an experiment for this
// envoy and returns its name. Asking again while that experiment runs
// returns it again (a reconnect). Ends with a context error when ctx is
// done, and CodeCancelled (ErrClosed) when the client is closed.
func (c *EnvoyClient) WaitExperiment(ctx context.Context) (string, error) {
	return dirCall(ctx, &c.conn, "WaitExperiment", true, func(p *C.ofl_envoy_client) (string, error) {
		var out *C.ofl_string
		if err := takeError(C.ofl_envoy_client_wait_experiment(p, nil, &out)); err != nil {
			return "", err
		}
		defer C.ofl_string_free(out)
		return C.GoStringN(C.ofl_string_get(out), C.int(C.ofl_string_len(out))), nil
	}, func(string) {})
}

// GetExperimentData downloads the archive of experiment into the file
// destPath (written as destPath+".part" and renamed when complete; an
// existing file is replaced) and returns its size. Errors:
// CodePermissionDenied when this envoy is not one of its collaborators,
// CodeFailedPrecondition when it is not in progress, CodeResourceExhausted
// beyond DirectorClientOptions.MaxArchiveSize, CodeIO for the file.
func (c *EnvoyClient) GetExperimentData(ctx context.Context, experiment, destPath string) (uint64, error) {
	if err := checkString("experiment", experiment); err != nil {
		return 0, err
	}
	if err := checkString("destPath", destPath); err != nil {
		return 0, err
	}
	return dirCall(ctx, &c.conn, "GetExperimentData", true, func(p *C.ofl_envoy_client) (uint64, error) {
		var mem cstrings
		defer mem.free()
		var size C.uint64_t
		if err := takeError(C.ofl_envoy_client_get_experiment_data(p, mem.str(experiment), mem.str(destPath), nil, &size)); err != nil {
			return 0, err
		}
		return uint64(size), nil
	}, func(uint64) {})
}

// SendHealthCheck tells the director the envoy is alive, whether an
// experiment runs, and its devices (nil for none; they replace the reported
// ones index by index). It returns the director's health-check period:
// send the next check within it. Errors: CodeNotFound when the director
// does not know this envoy (call UpdateShardInfo again).
func (c *EnvoyClient) SendHealthCheck(ctx context.Context, experimentRunning bool, devices []CUDADevice) (time.Duration, error) {
	if err := checkDevices(devices); err != nil {
		return 0, err
	}
	return dirCall(ctx, &c.conn, "SendHealthCheck", false, func(p *C.ofl_envoy_client) (time.Duration, error) {
		var mem cstrings
		defer mem.free()
		var period C.uint64_t
		if err := takeError(C.ofl_envoy_client_send_health_check(p, C.bool(experimentRunning),
			cDevices(devices, &mem), C.size_t(len(devices)), nil, &period)); err != nil {
			return 0, err
		}
		return time.Duration(period) * time.Millisecond, nil
	}, func(time.Duration) {})
}

// SetExperimentFailed tells the director this envoy failed experiment with
// errorCode and description (may be ""). Errors: CodePermissionDenied when
// this envoy is not its collaborator, CodeFailedPrecondition when it is not
// in progress, CodeNotFound.
func (c *EnvoyClient) SetExperimentFailed(ctx context.Context, experiment string, errorCode uint32, description string) error {
	if err := checkString("experiment", experiment); err != nil {
		return err
	}
	if err := checkString("description", description); err != nil {
		return err
	}
	_, err := dirCall(ctx, &c.conn, "SetExperimentFailed", false, func(p *C.ofl_envoy_client) (struct{}, error) {
		var mem cstrings
		defer mem.free()
		return struct{}{}, takeError(C.ofl_envoy_client_set_experiment_failed(p, mem.str(experiment),
			C.uint32_t(errorCode), mem.optStr(description), nil))
	}, func(struct{}) {})
	return err
}

// ---- frontend ---------------------------------------------------------------

// FrontendClient is a frontend's connection to the director (OpenFL's
// DirectorClient, what a data scientist's program uses). Its methods may be
// called from many goroutines at once. A frontend sees only the experiments
// it submitted (same certificate CN, or ClientID): others are CodeNotFound.
//
// Contexts: as EnvoyClient. SetNewExperiment and StreamMetrics are the long
// calls (a connection of their own, closed when the context is done); the
// others return when their context is done and finish in the background.
type FrontendClient struct {
	conn dirConn[C.ofl_frontend_client]
}

// NewFrontendClient creates a frontend client. Certificates are read and
// checked now; the connection is made by the first call.
func NewFrontendClient(opts DirectorClientOptions) (*FrontendClient, error) {
	c := &FrontendClient{}
	err := c.conn.init(opts, dirOps[C.ofl_frontend_client]{
		create: func(o *C.ofl_director_client_options) (*C.ofl_frontend_client, error) {
			var p *C.ofl_frontend_client
			if err := takeError(C.ofl_frontend_client_new(o, &p)); err != nil {
				return nil, err
			}
			return p, nil
		},
		close: func(p *C.ofl_frontend_client) { _ = takeError(C.ofl_frontend_client_close(p)) },
		free:  func(p *C.ofl_frontend_client) { C.ofl_frontend_client_free(p) },
	})
	if err != nil {
		return nil, err
	}
	runtime.SetFinalizer(c, (*FrontendClient).Close)
	return c, nil
}

// Close cancels the calls in progress (they fail with CodeCancelled
// wrapping ErrClosed) and releases the client once they have returned.
// Later calls fail the same way. Idempotent; always returns nil.
func (c *FrontendClient) Close() error {
	runtime.SetFinalizer(c, nil)
	c.conn.Close()
	return nil
}

// SetNewExperiment submits the experiment name for collaborators (envoy
// names), uploading the archive file archivePath (OpenFL's workspace
// archive, streamed from the file, never whole in memory) and an initial
// model (nil for none; copied by the library, its data read in place as
// AggregatorClient.SendLocalTaskResults does). On success the experiment is pending.
// Errors: CodeInvalidArgument (bad name, no collaborators, empty archive),
// CodeAlreadyExists, CodeResourceExhausted (archive too large), CodeIO (the file).
func (c *FrontendClient) SetNewExperiment(ctx context.Context, name string, collaborators []string,
	archivePath string, initialModel []TensorView) error {
	if err := checkString("name", name); err != nil {
		return err
	}
	if err := checkStrings("collaborators", collaborators); err != nil {
		return err
	}
	if err := checkString("archivePath", archivePath); err != nil {
		return err
	}
	for i := range initialModel {
		if err := initialModel[i].check("initialModel[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	_, err := dirCall(ctx, &c.conn, "SetNewExperiment", true, func(p *C.ofl_frontend_client) (struct{}, error) {
		var mem cstrings
		defer mem.free()
		return struct{}{}, lendTensors(&mem, initialModel, func(s *C.ofl_go_send) {
			s.kind = C.OFL_GO_SET_NEW_EXPERIMENT
			s.frontend = p
			s.collaborator = mem.str(name)
			s.collaborators = mem.strs(collaborators)
			s.collaborators_len = C.size_t(len(collaborators))
			s.archive_path = mem.str(archivePath)
		})
	}, func(struct{}) {})
	return err
}

// frontendName runs a short call that takes an experiment name.
func frontendName[T any](ctx context.Context, c *FrontendClient, what, name string,
	call func(p *C.ofl_frontend_client, name *C.char) (T, error), discard func(T)) (T, error) {
	if err := checkString("name", name); err != nil {
		var zero T
		return zero, err
	}
	return dirCall(ctx, &c.conn, what, false, func(p *C.ofl_frontend_client) (T, error) {
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		return call(p, cname)
	}, discard)
}

// GetExperimentStatus is the status of the experiment name. Errors:
// CodeNotFound for an experiment this frontend did not submit.
func (c *FrontendClient) GetExperimentStatus(ctx context.Context, name string) (ExperimentStatus, error) {
	return frontendName(ctx, c, "GetExperimentStatus", name, func(p *C.ofl_frontend_client, n *C.char) (ExperimentStatus, error) {
		var st uint32 // enum ofl_experiment_status
		if err := takeError(C.ofl_frontend_client_get_experiment_status(p, n, nil, &st)); err != nil {
			return 0, err
		}
		return ExperimentStatus(st), nil
	}, func(ExperimentStatus) {})
}

// GetDatasetInfo is the director's sample and target shapes.
func (c *FrontendClient) GetDatasetInfo(ctx context.Context) (sampleShape, targetShape []string, err error) {
	type shapes struct{ sample, target []string }
	r, err := dirCall(ctx, &c.conn, "GetDatasetInfo", false, func(p *C.ofl_frontend_client) (shapes, error) {
		var sample, target *C.ofl_string_list
		if err := takeError(C.ofl_frontend_client_get_dataset_info(p, nil, &sample, &target)); err != nil {
			return shapes{}, err
		}
		defer C.ofl_string_list_free(sample)
		defer C.ofl_string_list_free(target)
		return shapes{goStringList(sample), goStringList(target)}, nil
	}, func(shapes) {})
	return r.sample, r.target, err
}

func goStringList(l *C.ofl_string_list) []string {
	out := make([]string, int(C.ofl_string_list_len(l)))
	for i := range out {
		out[i] = C.GoString(C.ofl_string_list_get(l, C.size_t(i)))
	}
	return out
}

// GetBestModel downloads the best model of the experiment name, as the
// director's host set it; Close the result. Errors: CodeFailedPrecondition
// while there is none, CodeNotFound for an experiment this frontend did not
// submit.
func (c *FrontendClient) GetBestModel(ctx context.Context, name string) (*ReceivedModel, error) {
	return c.getModel(ctx, "GetBestModel", name, true)
}

// GetLastModel downloads the last model, as GetBestModel.
func (c *FrontendClient) GetLastModel(ctx context.Context, name string) (*ReceivedModel, error) {
	return c.getModel(ctx, "GetLastModel", name, false)
}

func (c *FrontendClient) getModel(ctx context.Context, what, name string, best bool) (*ReceivedModel, error) {
	return frontendName(ctx, c, what, name, func(p *C.ofl_frontend_client, n *C.char) (*ReceivedModel, error) {
		var out *C.ofl_tensor_list
		var err error
		if best {
			err = takeError(C.ofl_frontend_client_get_best_model(p, n, nil, &out))
		} else {
			err = takeError(C.ofl_frontend_client_get_last_model(p, n, nil, &out))
		}
		if err != nil {
			return nil, err
		}
		return newReceivedModel(out), nil
	}, func(m *ReceivedModel) { m.Close() })
}

// metricStream is the Go side of one StreamMetrics call.
type metricStream struct {
	ctx      context.Context
	fn       func(DirectorMetric) bool
	panicked any
	didPanic bool
}

// StreamMetrics calls fn with each metric of the experiment name until the
// experiment is over and every metric was delivered, then returns nil.
// fn runs on the calling goroutine, one metric at a time; when it returns
// false the stream ends and StreamMetrics returns nil (metrics the director
// had already sent are dropped: a streamed metric leaves its queue). A
// panic in fn ends the stream and is re-raised here. Ends with a context
// error when ctx is done. Errors: CodeNotFound for an experiment this
// frontend did not submit.
func (c *FrontendClient) StreamMetrics(ctx context.Context, name string, fn func(DirectorMetric) bool) error {
	if fn == nil {
		return invalidArgument("fn is nil")
	}
	if err := checkString("name", name); err != nil {
		return err
	}
	st := &metricStream{ctx: ctx, fn: fn}
	_, err := dirCall(ctx, &c.conn, "StreamMetrics", true, func(p *C.ofl_frontend_client) (struct{}, error) {
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		h := cgo.NewHandle(st)
		defer h.Delete()
		return struct{}{}, takeError(C.ofl_go_frontend_stream_metrics(p, cname, C.uintptr_t(h)))
	}, func(struct{}) {})
	if st.didPanic {
		panic(st.panicked) // after the C frames are gone
	}
	if err == nil {
		err = contextError(ctx, "StreamMetrics") // fn was not called once ctx was done
	}
	return err
}

//export oflGoMetric
func oflGoMetric(h C.uintptr_t, m *C.ofl_director_metric) (more C.int) {
	st := cgo.Handle(h).Value().(*metricStream)
	if st.ctx.Err() != nil {
		return 0
	}
	defer func() {
		if r := recover(); r != nil {
			st.panicked, st.didPanic = r, true
			more = 0
		}
	}()
	if st.fn(DirectorMetric{
		Origin:     C.GoString(m.origin),
		TaskName:   C.GoString(m.task_name),
		MetricName: C.GoString(m.metric_name),
		Value:      float32(m.value),
		Round:      uint32(m.round),
	}) {
		return 1
	}
	return 0
}

// RemoveExperiment forgets a finished, failed, rejected or pending
// experiment and deletes its archive. Errors: CodeFailedPrecondition while
// it is being reviewed or run. An experiment this frontend did not submit
// (or an unknown one) is left alone and the call succeeds, as with OpenFL
// 1.6's director.
func (c *FrontendClient) RemoveExperiment(ctx context.Context, name string) error {
	_, err := frontendName(ctx, c, "RemoveExperiment", name, func(p *C.ofl_frontend_client, n *C.char) (struct{}, error) {
		return struct{}{}, takeError(C.ofl_frontend_client_remove_experiment(p, n, nil))
	}, func(struct{}) {})
	return err
}

// GetEnvoys reports every registered envoy, online or not.
func (c *FrontendClient) GetEnvoys(ctx context.Context) ([]EnvoyInfo, error) {
	return dirCall(ctx, &c.conn, "GetEnvoys", false, func(p *C.ofl_frontend_client) ([]EnvoyInfo, error) {
		var e *C.ofl_envoys
		if err := takeError(C.ofl_frontend_client_get_envoys(p, nil, &e)); err != nil {
			return nil, err
		}
		defer C.ofl_envoys_free(e)
		out := make([]EnvoyInfo, int(C.ofl_envoys_len(e)))
		for i := range out {
			k := C.size_t(i)
			info := EnvoyInfo{
				Name:                C.GoString(C.ofl_envoys_name(e, k)),
				ShardDescription:    C.GoString(C.ofl_envoys_shard_description(e, k)),
				NSamples:            uint64(C.ofl_envoys_n_samples(e, k)),
				IsOnline:            bool(C.ofl_envoys_is_online(e, k)),
				IsExperimentRunning: bool(C.ofl_envoys_is_experiment_running(e, k)),
				ValidDuration:       time.Duration(C.ofl_envoys_valid_duration_ms(e, k)) * time.Millisecond,
				ExperimentName:      C.GoString(C.ofl_envoys_experiment_name(e, k)),
			}
			if ms := int64(C.ofl_envoys_last_updated_ms(e, k)); ms != 0 {
				info.LastUpdated = time.UnixMilli(ms)
			}
			info.SampleShape = make([]string, int(C.ofl_envoys_sample_shape_len(e, k)))
			for j := range info.SampleShape {
				info.SampleShape[j] = C.GoString(C.ofl_envoys_sample_shape(e, k, C.size_t(j)))
			}
			info.TargetShape = make([]string, int(C.ofl_envoys_target_shape_len(e, k)))
			for j := range info.TargetShape {
				info.TargetShape[j] = C.GoString(C.ofl_envoys_target_shape(e, k, C.size_t(j)))
			}
			if n := int(C.ofl_envoys_cuda_devices_len(e, k)); n > 0 {
				var d C.ofl_cuda_device
				for j := 0; j < n; j++ {
					if C.ofl_envoys_cuda_device(e, k, C.size_t(j), &d) {
						info.CUDADevices = append(info.CUDADevices, goDevice(&d))
					}
				}
			}
			out[i] = info
		}
		return out, nil
	}, func([]EnvoyInfo) {})
}

// GetExperimentsList reports the experiments this frontend submitted, in
// submission order.
func (c *FrontendClient) GetExperimentsList(ctx context.Context) ([]ExperimentSummary, error) {
	return dirCall(ctx, &c.conn, "GetExperimentsList", false, func(p *C.ofl_frontend_client) ([]ExperimentSummary, error) {
		var l *C.ofl_experiment_list
		if err := takeError(C.ofl_frontend_client_get_experiments_list(p, nil, &l)); err != nil {
			return nil, err
		}
		defer C.ofl_experiment_list_free(l)
		out := make([]ExperimentSummary, int(C.ofl_experiment_list_len(l)))
		for i := range out {
			k := C.size_t(i)
			out[i] = ExperimentSummary{
				Name:                C.GoString(C.ofl_experiment_list_name(l, k)),
				Status:              parseStatus(C.GoString(C.ofl_experiment_list_status(l, k))),
				CollaboratorsAmount: uint32(C.ofl_experiment_list_collaborators_amount(l, k)),
				TasksAmount:         uint32(C.ofl_experiment_list_tasks_amount(l, k)),
				Progress:            float32(C.ofl_experiment_list_progress(l, k)),
			}
		}
		return out, nil
	}, func([]ExperimentSummary) {})
}

// GetExperimentDescription describes the experiment name in detail.
// Errors: CodeNotFound for an experiment this frontend did not submit.
func (c *FrontendClient) GetExperimentDescription(ctx context.Context, name string) (*ExperimentDescription, error) {
	return frontendName(ctx, c, "GetExperimentDescription", name, func(p *C.ofl_frontend_client, n *C.char) (*ExperimentDescription, error) {
		var d *C.ofl_experiment_description
		if err := takeError(C.ofl_frontend_client_get_experiment_description(p, n, nil, &d)); err != nil {
			return nil, err
		}
		defer C.ofl_experiment_description_free(d)
		out := &ExperimentDescription{
			Name:         C.GoString(C.ofl_experiment_description_name(d)),
			Status:       parseStatus(C.GoString(C.ofl_experiment_description_status(d))),
			Progress:     float32(C.ofl_experiment_description_progress(d)),
			TotalRounds:  uint32(C.ofl_experiment_description_total_rounds(d)),
			CurrentRound: uint32(C.ofl_experiment_description_current_round(d)),
		}
		out.Collaborators = make([]CollaboratorDescription, int(C.ofl_experiment_description_collaborators_len(d)))
		for i := range out.Collaborators {
			k := C.size_t(i)
			out.Collaborators[i] = CollaboratorDescription{
				Name:        C.GoString(C.ofl_experiment_description_collaborator_name(d, k)),
				Status:      C.GoString(C.ofl_experiment_description_collaborator_status(d, k)),
				Progress:    float32(C.ofl_experiment_description_collaborator_progress(d, k)),
				Round:       uint32(C.ofl_experiment_description_collaborator_round(d, k)),
				CurrentTask: C.GoString(C.ofl_experiment_description_collaborator_current_task(d, k)),
				NextTask:    C.GoString(C.ofl_experiment_description_collaborator_next_task(d, k)),
			}
		}
		out.Tasks = make([]TaskDescription, int(C.ofl_experiment_description_tasks_len(d)))
		for i := range out.Tasks {
			k := C.size_t(i)
			out.Tasks[i] = TaskDescription{
				Name:        C.GoString(C.ofl_experiment_description_task_name(d, k)),
				Description: C.GoString(C.ofl_experiment_description_task_description(d, k)),
			}
		}
		out.Models = make([]DownloadStatus, int(C.ofl_experiment_description_models_len(d)))
		for i := range out.Models {
			k := C.size_t(i)
			out.Models[i] = DownloadStatus{
				Name:   C.GoString(C.ofl_experiment_description_model_name(d, k)),
				Status: C.GoString(C.ofl_experiment_description_model_status(d, k)),
			}
		}
		out.Logs = make([]DownloadStatus, int(C.ofl_experiment_description_logs_len(d)))
		for i := range out.Logs {
			k := C.size_t(i)
			out.Logs[i] = DownloadStatus{
				Name:   C.GoString(C.ofl_experiment_description_log_name(d, k)),
				Status: C.GoString(C.ofl_experiment_description_log_status(d, k)),
			}
		}
		return out, nil
	}, func(*ExperimentDescription) {})
}
