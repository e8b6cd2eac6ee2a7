package openfl

// #include "shim.h"
import "C"

import (
	"runtime"
	"sort"
	"sync"
	"unsafe"
)

// TensorView is a named tensor (OpenFL's NamedTensor) as plain Go values:
// bytes plus what OpenFL sends with them. It is what the host sends (the
// library reads Data during the call only) and what aggregator logic is
// shown (Data valid during the callback); Tensor is a received one the host
// owns. For OpenFL's uncompressed pipeline, Data holds little-endian float32
// values and Metadata one entry whose IntList is the shape.
//
// A received tensor's Data (download, an upload shown to aggregator logic,
// director models) is the library's buffer and starts on a 64-byte boundary,
// so viewing it as floats in place is safe:
// unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), len(t.Data)/4)
// (valid as long as Data is; Clone first to keep it).
type TensorView struct {
	Name        string
	RoundNumber int32
	Lossless    bool
	Report      bool
	Tags        []string
	Metadata    []Metadata
	Data        []byte
}

// Metadata is one transformer-metadata entry (OpenFL's MetadataProto).
type Metadata struct {
	IntList    []int32
	BoolList   []bool
	IntToFloat map[int32]float32
}

// Clone returns a deep copy of t whose Data is Go memory: use it to keep a
// tensor handed to aggregator logic beyond the callback.
func (t TensorView) Clone() TensorView {
	c := t
	c.Tags = append([]string(nil), t.Tags...)
	c.Metadata = make([]Metadata, len(t.Metadata))
	for i, m := range t.Metadata {
		c.Metadata[i] = m.clone()
	}
	if t.Metadata == nil {
		c.Metadata = nil
	}
	if t.Data != nil {
		c.Data = append(make([]byte, 0, len(t.Data)), t.Data...)
	}
	return c
}

func (m Metadata) clone() Metadata {
	c := Metadata{
		IntList:  append([]int32(nil), m.IntList...),
		BoolList: append([]bool(nil), m.BoolList...),
	}
	if m.IntToFloat != nil {
		c.IntToFloat = make(map[int32]float32, len(m.IntToFloat))
		for k, v := range m.IntToFloat {
			c.IntToFloat[k] = v
		}
	}
	return c
}

func (t *TensorView) check(what string) error {
	if err := checkString(what+".Name", t.Name); err != nil {
		return err
	}
	return checkStrings(what+".Tags", t.Tags)
}

// TensorRequest is what GetAggregatedTensor asks for.
type TensorRequest struct {
	TensorName      string
	RoundNumber     int32
	Report          bool
	Tags            []string
	RequireLossless bool
}

// Tensor is a tensor received by AggregatorClient.GetAggregatedTensor. Its
// Data is not a copy: it points into the library's receive buffer, which
// Go's garbage collector does not know about. The buffer stays valid until
// Close; keep the Tensor itself reachable for as long as you use
// Data (the usual `defer t.Close()` does that). A Tensor that is
// never closed is freed by a finalizer once unreachable, so a Data slice
// used after its Tensor became unreachable is a use-after-free.
// To keep the bytes, Clone the TensorView (one copy) and Close.
type Tensor struct {
	TensorView
	mu sync.Mutex
	c  *C.ofl_tensor
}

func newTensor(c *C.ofl_tensor) *Tensor {
	t := &Tensor{TensorView: readTensor(c, true), c: c}
	runtime.SetFinalizer(t, (*Tensor).Close)
	return t
}

// Close frees the receive buffer; Data must not be used afterwards (it is
// set to nil). Idempotent; always returns nil.
func (t *Tensor) Close() error {
	t.mu.Lock()
	c := t.c
	t.c = nil
	t.Data = nil
	t.mu.Unlock()
	if c != nil {
		C.ofl_tensor_free(c)
		runtime.SetFinalizer(t, nil)
	}
	return nil
}

// readTensor reads a library tensor. Strings, tags and metadata are
// copied; Data views the tensor's buffer (valid as long as the tensor).
func readTensor(c *C.ofl_tensor, withData bool) TensorView {
	t := TensorView{
		Name:        C.GoString(C.ofl_tensor_name(c)),
		RoundNumber: int32(C.ofl_tensor_round_number(c)),
		Lossless:    bool(C.ofl_tensor_lossless(c)),
		Report:      bool(C.ofl_tensor_report(c)),
	}
	if n := int(C.ofl_tensor_tags_len(c)); n > 0 {
		t.Tags = make([]string, n)
		for i := range t.Tags {
			t.Tags[i] = C.GoString(C.ofl_tensor_tag(c, C.size_t(i)))
		}
	}
	if n := int(C.ofl_tensor_metadata_len(c)); n > 0 {
		t.Metadata = make([]Metadata, n)
		for i := range t.Metadata {
			t.Metadata[i] = readMetadata(c, C.size_t(i))
		}
	}
	if withData {
		t.Data = goBytes(C.ofl_tensor_data(c), C.ofl_tensor_data_len(c))
	}
	return t
}

func readMetadata(c *C.ofl_tensor, i C.size_t) Metadata {
	var m Metadata
	var n C.size_t
	if p := C.ofl_tensor_metadata_int_list(c, i, &n); p != nil && n > 0 {
		m.IntList = append([]int32(nil), unsafe.Slice((*int32)(unsafe.Pointer(p)), int(n))...)
	}
	n = 0
	if p := C.ofl_tensor_metadata_bool_list(c, i, &n); p != nil && n > 0 {
		src := unsafe.Slice((*C.bool)(unsafe.Pointer(p)), int(n))
		m.BoolList = make([]bool, n)
		for j, b := range src {
			m.BoolList[j] = bool(b)
		}
	}
	if k := int(C.ofl_tensor_metadata_int_to_float_len(c, i)); k > 0 {
		m.IntToFloat = make(map[int32]float32, k)
		for j := 0; j < k; j++ {
			var key C.int32_t
			var value C.float
			if C.ofl_tensor_metadata_int_to_float_entry(c, i, C.size_t(j), &key, &value) {
				m.IntToFloat[int32(key)] = float32(value)
			}
		}
	}
	return m
}

// fillView writes everything of t but its data into the C view v; strings
// and metadata go to C memory owned by mem.
func fillView(v *C.ofl_tensor_view, t *TensorView, mem *cstrings) {
	v.name = mem.str(t.Name)
	v.round_number = C.int32_t(t.RoundNumber)
	v.lossless = C.bool(t.Lossless)
	v.report = C.bool(t.Report)
	if len(t.Tags) > 0 {
		tags := unsafe.Slice((**C.char)(mem.alloc(uintptr(len(t.Tags))*unsafe.Sizeof((*C.char)(nil)))), len(t.Tags))
		for i, tag := range t.Tags {
			tags[i] = mem.str(tag)
		}
		v.tags = &tags[0]
		v.tags_len = C.size_t(len(t.Tags))
	}
	if len(t.Metadata) > 0 {
		md := unsafe.Slice((*C.ofl_metadata_view)(mem.alloc(uintptr(len(t.Metadata))*unsafe.Sizeof(C.ofl_metadata_view{}))), len(t.Metadata))
		for i := range t.Metadata {
			fillMetadata(&md[i], &t.Metadata[i], mem)
		}
		v.metadata = &md[0]
		v.metadata_len = C.size_t(len(t.Metadata))
	}
	v.data = nil
	v.data_len = 0
}

func fillMetadata(v *C.ofl_metadata_view, m *Metadata, mem *cstrings) {
	if n := len(m.IntList); n > 0 {
		ints := unsafe.Slice((*C.int32_t)(mem.alloc(uintptr(n)*4)), n)
		for i, x := range m.IntList {
			ints[i] = C.int32_t(x)
		}
		v.int_list = &ints[0]
		v.int_list_len = C.size_t(n)
	}
	if n := len(m.BoolList); n > 0 {
		bools := unsafe.Slice((*C.bool)(mem.alloc(uintptr(n)*unsafe.Sizeof(C.bool(false)))), n)
		for i, x := range m.BoolList {
			bools[i] = C.bool(x)
		}
		v.bool_list = &bools[0]
		v.bool_list_len = C.size_t(n)
	}
	if n := len(m.IntToFloat); n > 0 {
		keys := make([]int32, 0, n)
		for k := range m.IntToFloat {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		ck := unsafe.Slice((*C.int32_t)(mem.alloc(uintptr(n)*4)), n)
		cv := unsafe.Slice((*C.float)(mem.alloc(uintptr(n)*4)), n)
		for i, k := range keys {
			ck[i] = C.int32_t(k)
			cv[i] = C.float(m.IntToFloat[k])
		}
		v.int_to_float_keys = &ck[0]
		v.int_to_float_values = &cv[0]
		v.int_to_float_len = C.size_t(n)
	}
}
