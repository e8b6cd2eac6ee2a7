package openfl_test

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"openfl-transport/openfl"
)

func fedavgOptions(stateDir string) openfl.FedAvgOptions {
	return openfl.FedAvgOptions{
		Federation:    openfl.Federation{AggregatorUUID: aggUUID, FederationUUID: fedUUID},
		Collaborators: []string{"col1", "col2"},
		RoundsToTrain: 2,
		InitialModel:  []openfl.ModelTensor{{Name: "w", Shape: []int{2}, Values: []float32{0.5, -1}}},
		SleepTime:     1,
		TensorWait:    5 * time.Second,
		StateDir:      stateDir,
	}
}

// A metric as OpenFL's collaborator uploads it: one little-endian float32.
func metricTensor(name string, value float32, tags ...string) openfl.TensorView {
	data := make([]byte, 4)
	binary.LittleEndian.PutUint32(data, math.Float32bits(value))
	return openfl.TensorView{Name: name, Lossless: true, Report: true, Tags: append([]string{"compressed"}, tags...),
		Metadata: []openfl.Metadata{{}}, Data: data}
}

// The built-in FedAvg with a state directory: an upload acknowledged by one
// aggregator is there for the next one on the directory, which resumes the
// round; a directory in use, and a damaged one, are refused.
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
	if err != nil || tasks.RoundNumber != 0 || len(tasks.Tasks) != 3 {
		t.Fatalf("GetTasks: %+v, %v", tasks, err)
	}
	results := openfl.TaskResults{RoundNumber: 0, TaskName: tasks.Tasks[0].Name, DataSize: 8,
		Tensors: []openfl.TensorView{metricTensor("acc", 0.625, "metric", "validate_agg")}}
	if err := c.SendLocalTaskResults(ctx, "col1", results); err != nil {
		t.Fatalf("SendLocalTaskResults: %v", err)
	}
	server.Close()
	fa.Close() // the aggregator is gone; its directory stays

	resumed, err := openfl.NewFedAvg(fedavgOptions(dir))
	if err != nil {
		t.Fatalf("NewFedAvg on the saved directory: %v", err)
	}
	if resumed.CurrentRound() != 0 || resumed.MetricsLen() != 1 {
		t.Errorf("resumed at round %d with %d metrics, want round 0 with col1's metric", resumed.CurrentRound(),
			resumed.MetricsLen())
	}
	model, err := resumed.LastModel()
	if err != nil || len(model) != 1 || model[0].Name != "w" || model[0].Values[1] != -1 {
		t.Errorf("LastModel: %+v, %v", model, err)
	}
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

	_, err = openfl.NewFedAvg(fedavgOptions("bad\x00dir"))
	expectCode(t, "a StateDir with NUL", err, openfl.CodeInvalidArgument, "StateDir")
}
