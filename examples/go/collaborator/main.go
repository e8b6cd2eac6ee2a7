// Command collaborator is a collaborator in Go (package openfl) for the
// example aggregator (examples/go/aggregator or examples/cpp): it asks for
// tasks until told to quit; for "train" it fetches the round's "weights",
// moves them halfway towards its own target and uploads them and its loss
// with its sample count, each call bounded by a context deadline, the
// upload's progress followed.
//
//	collaborator CERT_DIR NAME PORT [HOST]
//
// CERT_DIR holds ca.crt, NAME.crt, NAME.key (tests/certs/make_certs.sh).
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"openfl-transport/openfl"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintf(os.Stderr, "usage: %s CERT_DIR NAME PORT [HOST]\n", os.Args[0])
		os.Exit(2)
	}
	certs, name := os.Args[1], os.Args[2]
	port, _ := strconv.Atoi(os.Args[3])
	host := "127.0.0.1"
	if len(os.Args) > 4 {
		host = os.Args[4]
	}
	if err := run(certs, name, host, uint16(port)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		var e *openfl.Error
		if errors.As(err, &e) && e.Code == openfl.CodeTLS {
			fmt.Fprintln(os.Stderr, "check the certificates in", certs)
		}
		os.Exit(1)
	}
}

func run(certs, name, host string, port uint16) error {
	// This collaborator's "data": a target the weights move towards, and
	// how many samples it has (its weight in the average).
	digit := float32(name[len(name)-1] - '0')
	samples := int32(100 * digit)

	client, err := openfl.NewAggregatorClient(openfl.AggregatorClientOptions{
		Host: host, Port: port,
		TLS: openfl.TLSConfig{
			RootCertificate: filepath.Join(certs, "ca.crt"),
			Certificate:     filepath.Join(certs, name+".crt"),
			PrivateKey:      filepath.Join(certs, name+".key"),
		},
		Federation: openfl.Federation{AggregatorUUID: "example-aggregator", FederationUUID: "example-federation"},
		// Give up if the aggregator stays away for 30 s (the default retries forever).
		Connect: openfl.ConnectOptions{Retry: &openfl.RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Deadline: 30 * time.Second}},
	})
	if err != nil {
		return err
	}
	defer client.Close()
	ctx := context.Background()

	for {
		tasks, err := client.GetTasks(ctx, name)
		if err != nil {
			return err
		}
		if tasks.Quit {
			fmt.Printf("%s: told to quit\n", name)
			return nil
		}
		if len(tasks.Tasks) == 0 {
			time.Sleep(time.Duration(tasks.SleepTime) * time.Second)
			continue
		}
		for _, task := range tasks.Tasks {
			if task.Name != "train" {
				continue
			}
			if err := train(ctx, client, name, tasks.RoundNumber, digit, samples); err != nil {
				return err
			}
		}
	}
}

func train(ctx context.Context, client *openfl.AggregatorClient, name string, round int32, target float32, samples int32) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute) // the calls' time limit; cancel() would end them
	defer cancel()
	model, err := client.GetAggregatedTensor(ctx, name, openfl.TensorRequest{TensorName: "weights", RoundNumber: round, Tags: []string{"model"}})
	if err != nil {
		return err
	}
	defer model.Close() // model.Data is the library's buffer until then
	trained := make([]byte, len(model.Data))
	var loss float32 // mean squared distance to the target, before training
	n := float32(len(model.Data) / 4)
	for i := 0; i+4 <= len(model.Data); i += 4 {
		w := math.Float32frombits(binary.LittleEndian.Uint32(model.Data[i:]))
		loss += (target - w) * (target - w) / n
		w += 0.5 * (target - w) // "training"
		binary.LittleEndian.PutUint32(trained[i:], math.Float32bits(w))
	}
	lossBytes := binary.LittleEndian.AppendUint32(nil, math.Float32bits(loss))
	var sent uint64
	progress := openfl.WithProgress(func(done, total uint64) bool {
		sent = done // every 4 MiB at most, and once at the end
		return true // false would abort the upload
	})
	err = client.SendLocalTaskResults(ctx, name, openfl.TaskResults{
		RoundNumber: round, TaskName: "train", DataSize: samples,
		Tensors: []openfl.TensorView{
			// The trained model, as the FedAvg expects it.
			{Name: "weights", RoundNumber: round, Lossless: true, Tags: []string{"trained"}, Metadata: model.Metadata, Data: trained},
			// A metric: one value, Report true, a scalar.
			{Name: "loss", RoundNumber: round, Lossless: true, Report: true, Tags: []string{"metric"}, Metadata: []openfl.Metadata{{}}, Data: lossBytes},
		},
	}, progress)
	if err != nil {
		return err
	}
	fmt.Printf("%s: round %d trained, weights[0] = %.4f, %d bytes sent\n", name, round,
		math.Float32frombits(binary.LittleEndian.Uint32(trained)), sent)
	return nil
}
