// Package openfl is the Go binding of openfl-transport, an OpenFL 1.6
// wire-compatible federated-learning transport (gRPC with mutual TLS)
// implemented in Rust with a C ABI. It links libopenfl_transport through
// cgo and uses only the standard library.
//
// A collaborator:
//
//	client, err := openfl.NewAggregatorClient(openfl.AggregatorClientOptions{
//		Host: "localhost", Port: 50051,
//		TLS: openfl.TLSConfig{RootCertificate: "ca.crt", Certificate: "col1.crt", PrivateKey: "col1.key"},
//		Federation: openfl.Federation{AggregatorUUID: "agg", FederationUUID: "fed"},
//	})
//	if err != nil { ... }
//	defer client.Close()
//	tasks, err := client.GetTasks(ctx, "col1")
//
// An aggregator: implement AggregatorLogic and call StartAggregatorServer,
// then Serve.
//
// The director (OpenFL's Director service): StartDirectorServer with
// DirectorHooks (review, start, failure; DirectorHookFuncs fills them from
// closures) reports progress with PushMetric, SetBestModel, MarkFinished and
// so on; envoys use EnvoyClient (UpdateShardInfo, WaitExperiment,
// GetExperimentData, SendHealthCheck), data scientists FrontendClient
// (SetNewExperiment, GetExperimentStatus, StreamMetrics, GetBestModel, ...).
//
// Calls: a context cancels the call in the library (uploads included) and
// its deadline is the call's time limit; WithProgress follows a transfer;
// Close cancels a client's calls and waits until they have all returned.
//
// Errors are *Error values carrying the library's code: test them with
// errors.Is(err, openfl.CodeUnauthenticated) or read them with errors.As.
//
// Memory: tensor data crosses the boundary without copies where the cgo
// pointer rules allow. Uploads (AggregatorClient.SendLocalTaskResults) are
// serialized by the library straight from the caller's slices; downloads
// (AggregatorClient.GetAggregatedTensor) expose the library's receive buffer (see
// Tensor for its lifetime); results handed to
// AggregatorLogic.SendLocalTaskResults are views valid during the call.
// Tensors returned by AggregatorLogic.GetAggregatedTensor are copied once
// by the library.
//
// Threads: the library runs all network I/O on its own threads. Logic
// callbacks and director hooks arrive on those threads through exported
// trampolines holding a runtime/cgo.Handle, which is deleted when the
// library releases it.
package openfl
