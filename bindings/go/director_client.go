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
// Contexts cancel calls and give their deadline, as AggregatorClient's do;
// each call takes optional CallOptions (WithProgress for
// GetExperimentData). Close cancels every call in progress and returns
// once they have all returned.
type EnvoyClient struct {
	core  clientCore[C.ofl_envoy_client]
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
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_director_client_options_free(copts)
	name := C.CString(shardName)
	defer C.free(unsafe.Pointer(name))
	var p *C.ofl_envoy_client
	if err := takeError(C.ofl_envoy_client_new(copts, name, &p)); err != nil {
		return nil, err
	}
	c := &EnvoyClient{shard: shardName}
	c.core.init(p, func(p *C.ofl_envoy_client) { _ = takeError(C.ofl_envoy_client_close(p)) },
		func(p *C.ofl_envoy_client) { C.ofl_envoy_client_free(p) }, opts.Connect.CallTimeout)
	runtime.SetFinalizer(c, (*EnvoyClient).Close)
	return c, nil
}

// ShardName is the envoy's name.
func (c *EnvoyClient) ShardName() string { return c.shard }

// Close cancels the calls in progress (they fail with CodeCancelled
// wrapping ErrClosed), waits until they have all returned and releases
// the client: nothing of a call outlives Close. Later calls fail the same
// way. Idempotent; always returns nil.
func (c *EnvoyClient) Close() error {
	runtime.SetFinalizer(c, nil)
	c.core.close()
	return nil
}

// UpdateShardInfo registers the shard under the client's shard name and
// reports whether the director accepted it (its shapes are the director's).
func (c *EnvoyClient) UpdateShardInfo(ctx context.Context, info ShardInfo, opts ...CallOption) (bool, error) {
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
	return doCall(ctx, &c.core, "UpdateShardInfo", opts, func(p *C.ofl_envoy_client, co *C.ofl_call_options) (bool, error) {
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
		if err := takeError(C.ofl_envoy_client_update_shard_info(p, si, co, &accepted)); err != nil {
			return false, err
		}
		return bool(accepted), nil
	})
}

// WaitExperiment blocks until the director has an experiment for this
// envoy and returns its name. Asking again while that experiment runs
// returns it again (a reconnect). Ends with a context error when ctx is
// done, and CodeCancelled (ErrClosed) when the client is closed.
func (c *EnvoyClient) WaitExperiment(ctx context.Context, opts ...CallOption) (string, error) {
	return doCall(ctx, &c.core, "WaitExperiment", opts, func(p *C.ofl_envoy_client, co *C.ofl_call_options) (string, error) {
		var out *C.ofl_string
		if err := takeError(C.ofl_envoy_client_wait_experiment(p, co, &out)); err != nil {
			return "", err
		}
		defer C.ofl_string_free(out)
		return C.GoStringN(C.ofl_string_get(out), C.int(C.ofl_string_len(out))), nil
	})
}

// GetExperimentData downloads the archive of experiment into the file
// destPath (written as destPath+".part" and renamed when complete; an
// existing file is replaced) and returns its size. Errors:
// CodePermissionDenied when this envoy is not one of its collaborators,
// CodeFailedPrecondition when it is not in progress, CodeResourceExhausted
// beyond DirectorClientOptions.MaxArchiveSize, CodeIO for the file.
// WithProgress follows the download.
func (c *EnvoyClient) GetExperimentData(ctx context.Context, experiment, destPath string, opts ...CallOption) (uint64, error) {
	if err := checkString("experiment", experiment); err != nil {
		return 0, err
	}
	if err := checkString("destPath", destPath); err != nil {
		return 0, err
	}
	return doCall(ctx, &c.core, "GetExperimentData", opts, func(p *C.ofl_envoy_client, co *C.ofl_call_options) (uint64, error) {
		var mem cstrings
		defer mem.free()
		var size C.uint64_t
		if err := takeError(C.ofl_envoy_client_get_experiment_data(p, mem.str(experiment), mem.str(destPath), co, &size)); err != nil {
			return 0, err
		}
		return uint64(size), nil
	})
}

// SendHealthCheck tells the director the envoy is alive, whether an
// experiment runs, and its devices (nil for none; they replace the reported
// ones index by index). It returns the director's health-check period:
// send the next check within it. Errors: CodeNotFound when the director
// does not know this envoy (call UpdateShardInfo again).
func (c *EnvoyClient) SendHealthCheck(ctx context.Context, experimentRunning bool, devices []CUDADevice,
	opts ...CallOption) (time.Duration, error) {
	if err := checkDevices(devices); err != nil {
		return 0, err
	}
	return doCall(ctx, &c.core, "SendHealthCheck", opts, func(p *C.ofl_envoy_client, co *C.ofl_call_options) (time.Duration, error) {
		var mem cstrings
		defer mem.free()
		var period C.uint64_t
		if err := takeError(C.ofl_envoy_client_send_health_check(p, C.bool(experimentRunning),
			cDevices(devices, &mem), C.size_t(len(devices)), co, &period)); err != nil {
			return 0, err
		}
		return time.Duration(period) * time.Millisecond, nil
	})
}

// SetExperimentFailed tells the director this envoy failed experiment with
// errorCode and description (may be ""). Errors: CodePermissionDenied when
// this envoy is not its collaborator, CodeFailedPrecondition when it is not
// in progress, CodeNotFound.
func (c *EnvoyClient) SetExperimentFailed(ctx context.Context, experiment string, errorCode uint32, description string,
	opts ...CallOption) error {
	if err := checkString("experiment", experiment); err != nil {
		return err
	}
	if err := checkString("description", description); err != nil {
		return err
	}
	_, err := doCall(ctx, &c.core, "SetExperimentFailed", opts, func(p *C.ofl_envoy_client, co *C.ofl_call_options) (struct{}, error) {
		var mem cstrings
		defer mem.free()
		return struct{}{}, takeError(C.ofl_envoy_client_set_experiment_failed(p, mem.str(experiment),
			C.uint32_t(errorCode), mem.optStr(description), co))
	})
	return err
}

// ---- frontend ---------------------------------------------------------------

// FrontendClient is a frontend's connection to the director (OpenFL's
// DirectorClient, what a data scientist's program uses). Its methods may be
// called from many goroutines at once. A frontend sees only the experiments
// it submitted (same certificate CN, or ClientID): others are CodeNotFound.
//
// Contexts and Close: as EnvoyClient. WithProgress follows the transfers
// (SetNewExperiment, GetBestModel, GetLastModel).
type FrontendClient struct {
	core clientCore[C.ofl_frontend_client]
}

// NewFrontendClient creates a frontend client. Certificates are read and
// checked now; the connection is made by the first call.
func NewFrontendClient(opts DirectorClientOptions) (*FrontendClient, error) {
	copts, err := opts.build()
	if err != nil {
		return nil, err
	}
	defer C.ofl_director_client_options_free(copts)
	var p *C.ofl_frontend_client
	if err := takeError(C.ofl_frontend_client_new(copts, &p)); err != nil {
		return nil, err
	}
	c := &FrontendClient{}
	c.core.init(p, func(p *C.ofl_frontend_client) { _ = takeError(C.ofl_frontend_client_close(p)) },
		func(p *C.ofl_frontend_client) { C.ofl_frontend_client_free(p) }, opts.Connect.CallTimeout)
	runtime.SetFinalizer(c, (*FrontendClient).Close)
	return c, nil
}

// Close cancels the calls in progress (a metric stream too; they fail
// with CodeCancelled wrapping ErrClosed), waits until they have all
// returned and releases the client. Later calls fail the same way.
// Idempotent; always returns nil. Do not call it from a StreamMetrics or
// progress callback (it would wait for the call that runs it).
func (c *FrontendClient) Close() error {
	runtime.SetFinalizer(c, nil)
	c.core.close()
	return nil
}

// SetNewExperiment submits the experiment name for collaborators (envoy
// names), uploading the archive file archivePath (OpenFL's workspace
// archive, streamed from the file, never whole in memory) and an initial
// model (nil for none; copied by the library, its data read in place as
// AggregatorClient.SendLocalTaskResults does). On success the experiment is pending.
// Errors: CodeInvalidArgument (bad name, no collaborators, empty archive),
// CodeAlreadyExists, CodeResourceExhausted (archive too large), CodeIO (the file).
// WithProgress follows the upload; a cancelled upload leaves no experiment.
func (c *FrontendClient) SetNewExperiment(ctx context.Context, name string, collaborators []string,
	archivePath string, initialModel []TensorView, opts ...CallOption) error {
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
	_, err := doCall(ctx, &c.core, "SetNewExperiment", opts, func(p *C.ofl_frontend_client, co *C.ofl_call_options) (struct{}, error) {
		var mem cstrings
		defer mem.free()
		return struct{}{}, lendTensors(&mem, initialModel, func(s *C.ofl_go_send) {
			s.kind = C.OFL_GO_SET_NEW_EXPERIMENT
			s.frontend = p
			s.call = co
			s.collaborator = mem.str(name)
			s.collaborators = mem.strs(collaborators)
			s.collaborators_len = C.size_t(len(collaborators))
			s.archive_path = mem.str(archivePath)
		})
	})
	return err
}

// frontendName runs a call that takes an experiment name.
func frontendName[T any](ctx context.Context, c *FrontendClient, what, name string, opts []CallOption,
	call func(p *C.ofl_frontend_client, name *C.char, co *C.ofl_call_options) (T, error)) (T, error) {
	if err := checkString("name", name); err != nil {
		var zero T
		return zero, err
	}
	return doCall(ctx, &c.core, what, opts, func(p *C.ofl_frontend_client, co *C.ofl_call_options) (T, error) {
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		return call(p, cname, co)
	})
}

// GetExperimentStatus is the status of the experiment name. Errors:
// CodeNotFound for an experiment this frontend did not submit.
func (c *FrontendClient) GetExperimentStatus(ctx context.Context, name string, opts ...CallOption) (ExperimentStatus, error) {
	return frontendName(ctx, c, "GetExperimentStatus", name, opts, func(p *C.ofl_frontend_client, n *C.char, co *C.ofl_call_options) (ExperimentStatus, error) {
		var st uint32 // enum ofl_experiment_status
		if err := takeError(C.ofl_frontend_client_get_experiment_status(p, n, co, &st)); err != nil {
			return 0, err
		}
		return ExperimentStatus(st), nil
	})
}

// GetDatasetInfo is the director's sample and target shapes.
func (c *FrontendClient) GetDatasetInfo(ctx context.Context, opts ...CallOption) (sampleShape, targetShape []string, err error) {
	type shapes struct{ sample, target []string }
	r, err := doCall(ctx, &c.core, "GetDatasetInfo", opts, func(p *C.ofl_frontend_client, co *C.ofl_call_options) (shapes, error) {
		var sample, target *C.ofl_string_list
		if err := takeError(C.ofl_frontend_client_get_dataset_info(p, co, &sample, &target)); err != nil {
			return shapes{}, err
		}
		defer C.ofl_string_list_free(sample)
		defer C.ofl_string_list_free(target)
		return shapes{goStringList(sample), goStringList(target)}, nil
	})
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
// submit. WithProgress follows the download.
func (c *FrontendClient) GetBestModel(ctx context.Context, name string, opts ...CallOption) (*ReceivedModel, error) {
	return c.getModel(ctx, "GetBestModel", name, true, opts)
}

// GetLastModel downloads the last model, as GetBestModel.
func (c *FrontendClient) GetLastModel(ctx context.Context, name string, opts ...CallOption) (*ReceivedModel, error) {
	return c.getModel(ctx, "GetLastModel", name, false, opts)
}

func (c *FrontendClient) getModel(ctx context.Context, what, name string, best bool, opts []CallOption) (*ReceivedModel, error) {
	return frontendName(ctx, c, what, name, opts, func(p *C.ofl_frontend_client, n *C.char, co *C.ofl_call_options) (*ReceivedModel, error) {
		var out *C.ofl_tensor_list
		var err error
		if best {
			err = takeError(C.ofl_frontend_client_get_best_model(p, n, co, &out))
		} else {
			err = takeError(C.ofl_frontend_client_get_last_model(p, n, co, &out))
		}
		if err != nil {
			return nil, err
		}
		return newReceivedModel(out), nil
	})
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
func (c *FrontendClient) StreamMetrics(ctx context.Context, name string, fn func(DirectorMetric) bool, opts ...CallOption) error {
	if fn == nil {
		return invalidArgument("fn is nil")
	}
	if err := checkString("name", name); err != nil {
		return err
	}
	st := &metricStream{ctx: ctx, fn: fn}
	_, err := doCall(ctx, &c.core, "StreamMetrics", opts, func(p *C.ofl_frontend_client, co *C.ofl_call_options) (struct{}, error) {
		cname := C.CString(name)
		defer C.free(unsafe.Pointer(cname))
		h := cgo.NewHandle(st)
		defer h.Delete()
		return struct{}{}, takeError(C.ofl_go_frontend_stream_metrics(p, cname, C.uintptr_t(h), co))
	})
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
func (c *FrontendClient) RemoveExperiment(ctx context.Context, name string, opts ...CallOption) error {
	_, err := frontendName(ctx, c, "RemoveExperiment", name, opts, func(p *C.ofl_frontend_client, n *C.char, co *C.ofl_call_options) (struct{}, error) {
		return struct{}{}, takeError(C.ofl_frontend_client_remove_experiment(p, n, co))
	})
	return err
}

// GetEnvoys reports every registered envoy, online or not.
func (c *FrontendClient) GetEnvoys(ctx context.Context, opts ...CallOption) ([]EnvoyInfo, error) {
	return doCall(ctx, &c.core, "GetEnvoys", opts, func(p *C.ofl_frontend_client, co *C.ofl_call_options) ([]EnvoyInfo, error) {
		var e *C.ofl_envoys
		if err := takeError(C.ofl_frontend_client_get_envoys(p, co, &e)); err != nil {
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
	})
}

// GetExperimentsList reports the experiments this frontend submitted, in
// submission order.
func (c *FrontendClient) GetExperimentsList(ctx context.Context, opts ...CallOption) ([]ExperimentSummary, error) {
	return doCall(ctx, &c.core, "GetExperimentsList", opts, func(p *C.ofl_frontend_client, co *C.ofl_call_options) ([]ExperimentSummary, error) {
		var l *C.ofl_experiment_list
		if err := takeError(C.ofl_frontend_client_get_experiments_list(p, co, &l)); err != nil {
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
	})
}

// GetExperimentDescription describes the experiment name in detail.
// Errors: CodeNotFound for an experiment this frontend did not submit.
func (c *FrontendClient) GetExperimentDescription(ctx context.Context, name string, opts ...CallOption) (*ExperimentDescription, error) {
	return frontendName(ctx, c, "GetExperimentDescription", name, opts, func(p *C.ofl_frontend_client, n *C.char, co *C.ofl_call_options) (*ExperimentDescription, error) {
		var d *C.ofl_experiment_description
		if err := takeError(C.ofl_frontend_client_get_experiment_description(p, n, co, &d)); err != nil {
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
	})
}
