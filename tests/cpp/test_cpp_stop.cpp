// test_cpp_stop: the shutdown grace and the quit-poll interval from C++.
//
// ServerLimits::shutdown_grace and AggregatorServerOptions::quit_poll_interval
// refuse bad values; a server whose client stalled an upload (a raw socket:
// HTTP/2 preface, request head, part of a message, then nothing) returns
// from serve() within its grace + 1 s of stop() (not before the grace), and
// with a grace of 0 at once; the cut upload never reaches the logic.
//
// usage: test_cpp_stop CERT_DIR
#include "openfl_transport.hpp"
#include "check.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

class Logic : public openfl::AggregatorLogic {
public:
    openfl::Tasks get_tasks(std::string_view) override { return openfl::Tasks(); }
    void get_aggregated_tensor(std::string_view, const openfl::TensorRequest &, openfl::TensorReply &) override {
        throw openfl::Error(openfl::Code::unimplemented, "no tensors here");
    }
    void send_local_task_results(std::string_view, const openfl::TaskResults &) override { uploads++; }
    std::atomic<int> uploads{0};
};

void frame(std::vector<std::uint8_t> &out, std::uint8_t type, std::uint8_t flags, const std::vector<std::uint8_t> &payload) {
    std::size_t n = payload.size();
    std::uint8_t head[9] = {std::uint8_t(n >> 16), std::uint8_t(n >> 8), std::uint8_t(n), type, flags, 0, 0, 0, 1};
    if (type == 0x4) head[8] = 0;  // SETTINGS: stream 0
    out.insert(out.end(), head, head + 9);
    out.insert(out.end(), payload.begin(), payload.end());
}

void literal(std::vector<std::uint8_t> &out, const std::string &s) {
    out.push_back(std::uint8_t(s.size()));
    out.insert(out.end(), s.begin(), s.end());
}

// A client that starts an upload, sends 100 bytes of a 4096-byte message and stalls.
int stalled_upload(std::uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        fail(__FILE__, __LINE__, "connecting the stalled client");
        return -1;
    }
    const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    std::vector<std::uint8_t> out(preface.begin(), preface.end());
    frame(out, 0x4, 0, {});
    std::vector<std::uint8_t> head = {0x83, 0x86, 0x04};  // POST, http, :path literal
    literal(head, "/openfl.aggregator.Aggregator/SendLocalTaskResults");
    head.push_back(0x01);
    literal(head, "127.0.0.1");
    head.push_back(0x0f), head.push_back(0x10);  // content-type
    literal(head, "application/grpc");
    head.push_back(0x00);
    literal(head, "te");
    literal(head, "trailers");
    frame(out, 0x1, 0x4, head);
    std::vector<std::uint8_t> body = {0, 0, 0, 0x10, 0x00};
    body.resize(105, 0x0a);
    frame(out, 0x0, 0, body);
    if (send(fd, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
        fail(__FILE__, __LINE__, "sending the stalled request");
    return fd;
}

void stop_with_stalled_client(std::chrono::milliseconds grace) {
    note(("stop with a stalled upload, grace " + std::to_string(grace.count()) + " ms").c_str());
    openfl::AggregatorServerOptions o;
    o.listen("127.0.0.1", 0).federation("agg", "fed").add_collaborator("col1").no_tls();
    o.quit_poll_interval(20ms).limits(openfl::ServerLimits().shutdown_grace(grace));
    auto logic = std::make_shared<Logic>();
    openfl::AggregatorServer server(o, logic);
    std::thread serving([&] { server.serve(); });
    int fd = stalled_upload(server.port());
    std::this_thread::sleep_for(300ms);
    auto started = std::chrono::steady_clock::now();
    server.stop();
    serving.join();
    auto took = std::chrono::steady_clock::now() - started;
    std::printf("   serve returned %.3f s after stop\n", std::chrono::duration<double>(took).count());
    CHECK_MSG(took <= grace + 1s, "serve returned after more than the grace + 1 s");
    CHECK_MSG(took + 50ms >= grace, "serve returned before the grace was over");
    CHECK(logic->uploads == 0);
    if (fd >= 0) close(fd);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    note("bad values");
    EXPECT_ERROR("negative grace", openfl::Code::invalid_argument, "shutdown_grace",
                 [] { openfl::ServerLimits().shutdown_grace(-1ms); });
    EXPECT_ERROR("grace over a year", openfl::Code::invalid_argument, "shutdown_grace",
                 [] { openfl::ServerLimits().shutdown_grace(std::chrono::hours(24 * 366)); });
    EXPECT_ERROR("zero quit poll interval", openfl::Code::invalid_argument, "quit_poll_interval",
                 [] { openfl::AggregatorServerOptions().quit_poll_interval(0ms); });
    openfl::ServerLimits().shutdown_grace(0ms).shutdown_grace(5000ms);

    stop_with_stalled_client(800ms);
    stop_with_stalled_client(0ms);

    if (g_failures) {
        std::printf("test_cpp_stop: %d FAILED\n", g_failures.load());
        return 1;
    }
    std::printf("test_cpp_stop: PASS\n");
    return 0;
}
