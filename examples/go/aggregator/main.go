// Command aggregator is an aggregator in Go (package openfl): federated
// averaging of one float32 tensor "weights" over a few rounds, over mTLS.
// It speaks the same protocol as examples/cpp, so Go and C++ collaborators
// can join it.
//
//	aggregator CERT_DIR [PORT [ROUNDS [COLLABORATOR...]]]
//
// CERT_DIR holds ca.crt, server.crt, server.key (tests/certs/make_certs.sh
// writes them). PORT 0 (the default) picks a free port, printed as
// "aggregator listening on port N". Defaults: 3 rounds, col1 and col2.
// Exits 0 once every collaborator was told to quit.
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"

	"openfl-transport/openfl"
)

const weights = 8

// fedAvg is the aggregation logic; the server calls it concurrently.
type fedAvg struct {
	collaborators []string
	rounds        int32

	mu       sync.Mutex
	round    int32
	model    []float32
	reported map[string]bool
	quitSent map[string]bool
	sum      []float64
	samples  int64
}

func (f *fedAvg) GetTasks(ctx context.Context, col string) (*openfl.Tasks, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &openfl.Tasks{RoundNumber: f.round}
	switch {
	case f.round > f.rounds:
		f.quitSent[col] = true
		t.Quit = true
	case f.reported[col]:
		t.SleepTime = 1 // done with this round: ask again later
	default:
		t.Tasks = []openfl.Task{{Name: "train", FunctionName: "train_task", TaskType: "train"}}
	}
	return t, nil
}

func (f *fedAvg) GetAggregatedTensor(ctx context.Context, col string, req *openfl.TensorRequest) (*openfl.TensorView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.TensorName != "weights" {
		return nil, openfl.Errorf(openfl.CodeNotFound, "no tensor named %s", req.TensorName)
	}
	if req.RoundNumber != f.round {
		return nil, openfl.Errorf(openfl.CodeFailedPrecondition, "round %d is not the current round %d", req.RoundNumber, f.round)
	}
	data := make([]byte, 4*weights)
	for i, w := range f.model {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(w))
	}
	// The library copies the tensor before this returns.
	return &openfl.TensorView{
		Name: "weights", RoundNumber: f.round, Lossless: true, Tags: []string{"model"},
		Metadata: []openfl.Metadata{{IntList: []int32{weights}}},
		Data:     data,
	}, nil
}

func (f *fedAvg) SendLocalTaskResults(ctx context.Context, col string, r *openfl.TaskResults) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.RoundNumber != f.round {
		return openfl.Errorf(openfl.CodeFailedPrecondition, "results for round %d, the round is %d", r.RoundNumber, f.round)
	}
	if len(r.Tensors) != 1 || r.Tensors[0].Name != "weights" || len(r.Tensors[0].Data) != 4*weights {
		return openfl.NewError(openfl.CodeInvalidArgument, `expected one tensor "weights" of 8 float32`)
	}
	if f.reported[col] {
		return openfl.Errorf(openfl.CodeAlreadyExists, "%s already reported", col)
	}
	f.reported[col] = true
	data := r.Tensors[0].Data // valid during this call only: read it now
	for i := range f.sum {
		f.sum[i] += float64(math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))) * float64(r.DataSize)
	}
	f.samples += int64(r.DataSize)
	if len(f.reported) == len(f.collaborators) {
		f.finishRound()
	}
	return nil
}

func (f *fedAvg) finishRound() {
	for i := range f.model {
		f.model[i] = float32(f.sum[i] / float64(f.samples))
		f.sum[i] = 0
	}
	fmt.Printf("round %d: weights[0] = %.4f, weights[7] = %.4f (%d samples)\n", f.round, f.model[0], f.model[7], f.samples)
	f.round++
	f.samples = 0
	f.reported = map[string]bool{}
}

func (f *fedAvg) AllQuitJobsSent() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.quitSent) == len(f.collaborators)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s CERT_DIR [PORT [ROUNDS [COLLABORATOR...]]]\n", os.Args[0])
		os.Exit(2)
	}
	certs := os.Args[1]
	port, rounds := 0, 3
	if len(os.Args) > 2 {
		port, _ = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		rounds, _ = strconv.Atoi(os.Args[3])
	}
	collaborators := []string{"col1", "col2"}
	if len(os.Args) > 4 {
		collaborators = os.Args[4:]
	}

	logic := &fedAvg{
		collaborators: collaborators, rounds: int32(rounds), round: 1,
		model: make([]float32, weights), sum: make([]float64, weights),
		reported: map[string]bool{}, quitSent: map[string]bool{},
	}
	server, err := openfl.StartAggregatorServer(openfl.ServerOptions{
		Host: "127.0.0.1", Port: uint16(port),
		TLS: openfl.TLS{
			RootCertificate: filepath.Join(certs, "ca.crt"),
			Certificate:     filepath.Join(certs, "server.crt"),
			PrivateKey:      filepath.Join(certs, "server.key"),
		},
		Federation:              openfl.Federation{AggregatorUUID: "example-aggregator", FederationUUID: "example-federation"},
		AuthorizedCollaborators: collaborators,
	}, logic)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
	defer server.Close()
	fmt.Printf("aggregator listening on port %d\n", server.Port())

	// Ctrl-C stops the server; otherwise Serve returns when all quit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := server.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
	fmt.Printf("aggregator: federation finished after %d rounds\n", rounds)
}
