package openfl_test

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// startImpostor serves GetTasks over TLS + HTTP/2 with net/http (gRPC
// framing written by hand) and answers with a header whose sender is not
// the aggregator the client expects: the client must reject the reply
// (INVALID_RESPONSE). Our own server never sends such a reply.
func startImpostor(t *testing.T) uint16 {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert("server.crt"), cert("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/openfl.aggregator.Aggregator/GetTasks", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		header := concat(
			protoString(1, "impostor-aggregator"), // sender
			protoString(2, "col1"),                // receiver
			protoString(3, fedUUID),               // federation_uuid
		)
		msg := concat(protoBytes(1, header), []byte{2 << 3, 1}) // header, round_number = 1
		frame := make([]byte, 5, 5+len(msg))
		binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
		frame = append(frame, msg...)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(frame)
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientAuth:   tls.RequestClientCert,
			NextProtos:   []string{"h2"},
		},
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func protoBytes(field int, b []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(field<<3|2))
	out = binary.AppendUvarint(out, uint64(len(b)))
	return append(out, b...)
}

func protoString(field int, s string) []byte { return protoBytes(field, []byte(s)) }
