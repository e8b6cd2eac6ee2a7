// Command aggregator is an aggregator in Go (package openfl): the library's
// built-in FedAvg over one float32 tensor "weights", a few rounds, mTLS.
// It speaks the same protocol as examples/cpp, so Go and C++ collaborators
// can join it.
//
//	aggregator CERT_DIR [PORT [ROUNDS [COLLABORATOR...]]]
//
// CERT_DIR holds ca.crt, server.crt, server.key (tests/certs/make_certs.sh
// writes them). PORT 0 (the default) picks a free port, printed as
// "aggregator listening on port N". Defaults: 3 rounds, col1 and col2.
// Every round each collaborator runs the one task "train": it fetches
// "weights", trains on it and uploads the result and its loss with its
// sample count; the FedAvg averages them weighted by those counts. Exits 0
// once every collaborator was told to quit.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"

	"openfl-transport/openfl"
)

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
	if err := run(certs, uint16(port), int32(rounds), collaborators); err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
}

func run(certs string, port uint16, rounds int32, collaborators []string) error {
	fedavg, err := openfl.NewFedAvg(openfl.FedAvgOptions{
		Federation:    openfl.Federation{AggregatorUUID: "example-aggregator", FederationUUID: "example-federation"},
		Collaborators: collaborators,
		RoundsToTrain: rounds,
		// One task per round (replaces OpenFL's three default tasks).
		Tasks:        []openfl.Task{{Name: "train", FunctionName: "train_task", TaskType: "train"}},
		InitialModel: []openfl.ModelTensor{{Name: "weights", Shape: []int{8}, Values: make([]float32, 8)}},
		SleepTime:    1, // seconds a collaborator done with the round waits
	})
	if err != nil {
		return err
	}
	defer fedavg.Close()
	server, err := openfl.StartFedAvgServer(openfl.AggregatorServerOptions{
		Host: "127.0.0.1", Port: port,
		TLS: openfl.TLSConfig{
			RootCertificate: filepath.Join(certs, "ca.crt"),
			Certificate:     filepath.Join(certs, "server.crt"),
			PrivateKey:      filepath.Join(certs, "server.key"),
		},
	}, fedavg)
	if err != nil {
		return err
	}
	defer server.Close()
	fmt.Printf("aggregator listening on port %d\n", server.Port())

	// Ctrl-C stops the server; otherwise Serve returns when all quit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := server.Serve(ctx); err != nil {
		return err
	}
	for _, m := range fedavg.Metrics() {
		if m.Aggregated {
			fmt.Printf("round %d: average %s = %.4f\n", m.Round, m.Name, m.Value)
		}
	}
	model, err := fedavg.LastModel()
	if err != nil {
		return err
	}
	fmt.Printf("final weights[0] = %.4f\n", model[0].Values[0])
	fmt.Printf("aggregator: federation finished after %d rounds\n", fedavg.CurrentRound())
	return nil
}
