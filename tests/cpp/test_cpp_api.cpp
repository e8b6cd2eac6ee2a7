// test_cpp_api: the C++ API (include/openfl_transport.hpp) end to end.
//
// A C++ aggregator server with C++ logic and two C++ collaborator clients
// over mTLS: tasks, 16 MiB tensors each way byte for byte (download served
// zero-copy with set_borrowed, upload serialized from the caller's memory),
// metadata, exceptions with the library's codes (from the peer, from the
// logic, from bad options), move-only handles, logging, logic declared
// non-blocking (may_block) running on an async worker, and the end of the
// federation (serve returns once every collaborator was told to quit).
//
// usage: test_cpp_api CERT_DIR
#include "openfl_transport.hpp"
#include "check.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

constexpr const char *kAgg = "agg-uuid-cpp";
constexpr const char *kFed = "fed-uuid-cpp";
constexpr std::size_t kMiB = 1u << 20;

std::vector<std::uint8_t> pattern(std::size_t n, unsigned mul, unsigned add) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; i++) v[i] = static_cast<std::uint8_t>(i * mul + add);
    return v;
}

std::string g_certs;
std::string cert(const char *name) { return g_certs + "/" + name; }

// Handles are RAII and move-only.
static_assert(!std::is_copy_constructible_v<openfl::AggregatorClient> && std::is_nothrow_move_constructible_v<openfl::AggregatorClient>);
static_assert(!std::is_copy_assignable_v<openfl::AggregatorClient> && std::is_nothrow_move_assignable_v<openfl::AggregatorClient>);
static_assert(!std::is_copy_constructible_v<openfl::Tensor> && std::is_nothrow_move_constructible_v<openfl::Tensor>);
static_assert(!std::is_copy_constructible_v<openfl::AggregatorServer> &&
              std::is_nothrow_move_constructible_v<openfl::AggregatorServer>);
static_assert(!std::is_copy_constructible_v<openfl::AggregatorClientOptions> &&
              std::is_nothrow_move_constructible_v<openfl::AggregatorClientOptions>);
static_assert(!std::is_copy_constructible_v<openfl::AggregatorServerOptions> &&
              std::is_nothrow_move_constructible_v<openfl::AggregatorServerOptions>);

class FedLogic : public openfl::AggregatorLogic {
public:
    FedLogic()
        : down_(std::make_shared<std::vector<std::uint8_t>>(pattern(16 * kMiB, 7, 3))), up_(pattern(16 * kMiB, 13, 101)) {}

    openfl::Tasks get_tasks(std::string_view collaborator) override {
        openfl::Tasks t;
        if (quitting_) {
            std::lock_guard<std::mutex> lock(mu_);
            told_to_quit_.insert(std::string(collaborator));
            t.round_number = 2;
            t.quit = true;
            return t;
        }
        t.round_number = 1;
        t.sleep_time = 3;
        t.tasks = {{"aggregated_model_validation", "validate_task", "validate", false},
                   {"train", "train_task", "train", false},
                   {"locally_tuned_model_validation", "validate_task", "validate", true}};
        return t;
    }

    void get_aggregated_tensor(std::string_view, const openfl::TensorRequest &request,
                               openfl::TensorReply &reply) override {
        const std::string &name = request.tensor_name;
        openfl::TensorView v;
        v.name = name;
        v.round_number = request.round_number;
        v.lossless = true;
        v.tags = {"model"};
        if (name == "model") {
            if (request.tags != std::vector<std::string>{"model", "latest"} || !request.require_lossless)
                throw openfl::Error(openfl::Code::invalid_argument, "unexpected request");
            v.metadata = {openfl::Metadata{{4 * static_cast<std::int32_t>(kMiB), 1}, {true, false}, {{3, 0.5f}, {1, 0.25f}}}};
            v.data = openfl::Bytes(*down_);
            reply.set_borrowed(v, down_);  // zero-copy; down_ stays alive until sent
            served_++;
        } else if (name == "copy") {
            std::vector<float> values{1.5f, -2.0f, 3.25f};
            v.data = values;  // copied by set(): the vector may go away
            reply.set(v);
        } else if (name == "missing") {
            throw openfl::Error(openfl::Code::not_found, "no tensor named missing");
        } else if (name == "std") {
            throw std::runtime_error("boom from std::runtime_error");
        } else {
            throw 42;
        }
    }

    void send_local_task_results(std::string_view collaborator, const openfl::TaskResults &results) override {
        std::string problem;
        if (results.round_number() != 1 || results.task_name() != "train" || results.data_size() != 640 ||
            results.size() != 2) {
            problem = "header or count";
        } else {
            openfl::TensorRef w = results[0];
            openfl::Bytes d = w.data();
            if (w.name() != "weights" || d.size() != up_.size() || std::memcmp(d.data(), up_.data(), d.size()) != 0)
                problem = "weights differ";
            openfl::TensorRef m = results[1];
            float acc = 0;
            if (m.data().size() == sizeof acc) std::memcpy(&acc, m.data().data(), sizeof acc);
            if (m.name() != "accuracy" || !m.report() || acc != 0.75f ||
                m.tags() != std::vector<std::string_view>{"metric", "validate_local"})
                problem = "metric differs";
            int n = 0;
            for (openfl::TensorRef t : results) n += !t.name().empty();
            if (n != 2) problem = "iteration";
        }
        std::lock_guard<std::mutex> lock(mu_);
        uploads_[std::string(collaborator)] = problem.empty() ? "ok" : problem;
    }

    bool all_quit_jobs_sent() override {
        std::lock_guard<std::mutex> lock(mu_);
        return quitting_ && told_to_quit_.size() == 2;
    }

    std::shared_ptr<std::vector<std::uint8_t>> down_;
    std::vector<std::uint8_t> up_;
    std::atomic<bool> quitting_{false};
    std::atomic<int> served_{0};
    std::mutex mu_;
    std::set<std::string> told_to_quit_;
    std::map<std::string, std::string> uploads_;
};

openfl::AggregatorClientOptions client_options(std::uint16_t port, const std::string &col) {
    openfl::AggregatorClientOptions o("127.0.0.1", port);
    o.tls(openfl::TlsConfig()
              .root_certificate_file(cert("ca.crt"))
              .identity_files(cert((col + ".crt").c_str()), cert((col + ".key").c_str())))
        .federation(kAgg, kFed)
        .connect(openfl::ConnectOptions().retry(50ms, 500ms, 5000ms).connect_timeout(5000ms));
    return o;
}

openfl::AggregatorServerOptions server_options(bool tls) {
    openfl::AggregatorServerOptions o;
    o.listen("127.0.0.1", 0).federation(kAgg, kFed).add_collaborator("col1").add_collaborator("col2").auth_failure_max_delay(0ms);
    if (tls)
        o.tls(openfl::TlsConfig().root_certificate_file(cert("ca.crt")).identity_files(cert("server.crt"), cert("server.key")));
    else
        o.no_tls();
    return o;
}

void collaborator(std::uint16_t port, const std::string &col, const FedLogic &logic) {
    openfl::AggregatorClient client(client_options(port, col));
    openfl::Tasks tasks = client.get_tasks(col);
    CHECK(tasks.round_number == 1 && tasks.sleep_time == 3 && !tasks.quit && tasks.tasks.size() == 3);
    CHECK(tasks.tasks.size() == 3 && tasks.tasks[2].name == "locally_tuned_model_validation" &&
          tasks.tasks[2].function_name == "validate_task" && tasks.tasks[2].task_type == "validate" &&
          tasks.tasks[2].apply_local);

    openfl::TensorRequest req;
    req.tensor_name = "model";
    req.round_number = 1;
    req.tags = {"model", "latest"};
    req.require_lossless = true;
    openfl::Tensor received = client.get_aggregated_tensor(col, req);
    openfl::Tensor model = std::move(received);  // move-only handle
    CHECK(received.get() == nullptr);
    openfl::Bytes d = model.data();
    CHECK(d.size() == logic.down_->size() && std::memcmp(d.data(), logic.down_->data(), d.size()) == 0);
    CHECK(model.name() == "model" && model.round_number() == 1 && model.lossless() && !model.report());
    std::vector<openfl::Metadata> md = model.metadata();
    CHECK(md.size() == 1 && md[0].int_list == (std::vector<std::int32_t>{4 * static_cast<std::int32_t>(kMiB), 1}) &&
          md[0].bool_list == (std::vector<bool>{true, false}) && md[0].int_to_float.at(1) == 0.25f &&
          md[0].int_to_float.at(3) == 0.5f);

    req.tensor_name = "copy";
    req.tags.clear();
    openfl::Tensor small = client.get_aggregated_tensor(col, req);
    float values[3] = {};
    CHECK(small.data().size() == sizeof values);
    if (small.data().size() == sizeof values) std::memcpy(values, small.data().data(), sizeof values);
    CHECK(values[0] == 1.5f && values[1] == -2.0f && values[2] == 3.25f);

    std::vector<float> accuracy{0.75f};
    std::vector<openfl::TensorView> upload(2);
    upload[0].name = "weights";
    upload[0].round_number = 1;
    upload[0].tags = {"trained"};
    upload[0].data = openfl::Bytes(logic.up_);
    upload[1].name = "accuracy";
    upload[1].round_number = 1;
    upload[1].report = true;
    upload[1].tags = {"metric", "validate_local"};
    upload[1].metadata = {openfl::Metadata{{1}, {}, {}}};
    upload[1].data = accuracy;
    client.send_local_task_results(col, 1, "train", 640, upload);

    // The client's metrics count what it did, bytes in framing included.
    openfl::Metrics m = client.metrics();
    CHECK(m.role() == openfl::MetricsRole::aggregator_client);
    CHECK(m.rpcs().size() == 7 && m.rpcs()[0] == "GetTasks" && m.rpcs()[6] == "unknown");
    CHECK(m.calls("GetTasks", openfl::Code::ok) == 1);
    CHECK(m.calls("GetAggregatedTensor", openfl::Code::ok) == 2);
    CHECK(m.calls("SendLocalTaskResults", openfl::Code::ok) == 1);
    CHECK(m.calls(openfl::Code::ok) == 4 && m.calls_total() == 4 && m.calls_total("GetTasks") == 1);
    CHECK(m.bytes_in("GetAggregatedTensor") > logic.down_->size() &&
          m.bytes_in("GetAggregatedTensor") < logic.down_->size() + 1024);
    CHECK(m.bytes_out("SendLocalTaskResults") > logic.up_.size() &&
          m.bytes_out("SendLocalTaskResults") < logic.up_.size() + 1024);
    CHECK(m.bytes_in() >= m.bytes_in("GetAggregatedTensor") && m.bytes_out() >= m.bytes_out("SendLocalTaskResults"));
    CHECK(m.active_connections() == 1 && m.connections() == 1 && m.in_flight() == 0 && m.retries() == 0);
    CHECK(m.auth_failures(openfl::AuthFailure::tls_handshake) == 0 && m.rejected(openfl::Rejection::identity) == 0);
    CHECK(m.prometheus().find("openfl_transport_calls_total{role=\"aggregator_client\",rpc=\"GetTasks\",code=\"OK\"} 1\n") !=
          std::string::npos);
    EXPECT_ERROR("rpc name with a NUL", openfl::Code::invalid_argument, "rpc",
                 [&] { (void)m.calls(std::string_view("Get\0Tasks", 9), openfl::Code::ok); });
}

void negative_checks(std::uint16_t port) {
    openfl::AggregatorClient client(client_options(port, "col1"));
    openfl::TensorRequest req;
    req.tensor_name = "missing";
    EXPECT_ERROR("logic throws openfl::Error", openfl::Code::not_found, "no tensor named missing",
                 [&] { client.get_aggregated_tensor("col1", req); });
    req.tensor_name = "std";
    EXPECT_ERROR("logic throws std::exception", openfl::Code::unknown, "boom",
                 [&] { client.get_aggregated_tensor("col1", req); });
    req.tensor_name = "int";
    EXPECT_ERROR("logic throws an int", openfl::Code::internal, nullptr,
                 [&] { client.get_aggregated_tensor("col1", req); });
    EXPECT_ERROR("spoofed sender", openfl::Code::unauthenticated, "col2", [&] { client.get_tasks("col2"); });
    EXPECT_ERROR("NUL in a name", openfl::Code::invalid_argument, "collaborator",
                 [&] { client.get_tasks(std::string_view("co\0l1", 5)); });

    openfl::AggregatorClientOptions foreign = client_options(port, "col1");
    foreign.tls(openfl::TlsConfig().root_certificate_file(cert("ca.crt")).identity_files(cert("foreign.crt"), cert("foreign.key")));
    openfl::AggregatorClient stranger(foreign);
    EXPECT_ERROR("client certificate from a foreign CA", openfl::Code::tls, nullptr,
                 [&] { stranger.get_tasks("col1"); });

    EXPECT_ERROR("empty host", openfl::Code::invalid_argument, "host", [] { openfl::AggregatorClientOptions("", 1); });
    EXPECT_ERROR("zero backoff", openfl::Code::invalid_argument, nullptr,
                 [] { openfl::ConnectOptions().retry(0ms, 10ms, 10ms); });
    EXPECT_ERROR("TLS neither attached nor turned off", openfl::Code::invalid_argument,
                 "ofl_aggregator_client_options_set_tls",
                 [] { openfl::AggregatorClient c(openfl::AggregatorClientOptions("localhost", 1)); });
    EXPECT_ERROR("server TLS neither attached nor turned off", openfl::Code::invalid_argument,
                 "ofl_aggregator_server_options_set_tls", [] {
                     openfl::AggregatorServerOptions o;
                     o.listen("127.0.0.1", 0);
                     openfl::AggregatorServer s(o, std::make_shared<FedLogic>());
                 });
    EXPECT_ERROR("empty CRL path", openfl::Code::invalid_argument, "path is empty",
                 [] { openfl::TlsConfig().crl_file(""); });
    EXPECT_ERROR("empty root PEM", openfl::Code::invalid_argument, "empty",
                 [] { openfl::TlsConfig().root_certificate_pem(openfl::Bytes()); });
    EXPECT_ERROR("missing CA file", openfl::Code::io, nullptr, [] {
        openfl::AggregatorClientOptions o("localhost", 1);
        o.tls(openfl::TlsConfig().root_certificate_file("/nonexistent/ca.crt").identity_files("/nonexistent/c.crt", "/nonexistent/c.key"));
        openfl::AggregatorClient c(o);
    });
    EXPECT_ERROR("port in use", openfl::Code::io, nullptr, [&] {
        openfl::AggregatorServerOptions o = server_options(false);
        o.listen("127.0.0.1", port);
        openfl::AggregatorServer s(o, std::make_shared<FedLogic>());
    });
    EXPECT_ERROR("null logic", openfl::Code::invalid_argument, "logic",
                 [] { openfl::AggregatorServer s(server_options(false), nullptr); });
    // Server bounds: each bad value is refused by its setter.
    EXPECT_ERROR("zero streams per connection", openfl::Code::invalid_argument, "max_concurrent_streams",
                 [] { openfl::ServerLimits().max_concurrent_streams(0); });
    EXPECT_ERROR("zero connections", openfl::Code::invalid_argument, "max_connections",
                 [] { openfl::ServerLimits().max_connections(0); });
    EXPECT_ERROR("negative handshake timeout", openfl::Code::invalid_argument, "handshake_timeout",
                 [] { openfl::ServerLimits().handshake_timeout(-1ms); });
    EXPECT_ERROR("zero idle timeout", openfl::Code::invalid_argument, "idle_timeout",
                 [] { openfl::ServerLimits().idle_timeout(0ms); });
    EXPECT_ERROR("tiny unary request size", openfl::Code::invalid_argument, "max_unary_request_size",
                 [] { openfl::ServerLimits().max_unary_request_size(10); });
    EXPECT_ERROR("tiny upload budget", openfl::Code::invalid_argument, "upload_memory_budget",
                 [] { openfl::AggregatorServerOptions().upload_memory_budget(1000); });
    EXPECT_ERROR("zero tensors per upload", openfl::Code::invalid_argument, "max_tensors_per_upload",
                 [] { openfl::AggregatorServerOptions().max_tensors_per_upload(0); });
    openfl::AggregatorServerOptions bounded = server_options(false);
    bounded.limits(openfl::ServerLimits()
                       .max_concurrent_streams(8)
                       .max_connections(16)
                       .handshake_timeout(2000ms)
                       .idle_timeout(5000ms)
                       .max_unary_request_size(64 << 10));
    bounded.upload_memory_budget(64 << 20).max_tensors_per_upload(1000);
    openfl::AggregatorServer bounded_server(bounded, std::make_shared<FedLogic>());
}

// Logic whose get_tasks says it never blocks (may_block), and records the
// name of the thread each get_tasks ran on.
class InlineLogic : public openfl::AggregatorLogic {
public:
    explicit InlineLogic(bool get_tasks_may_block) : get_tasks_may_block_(get_tasks_may_block) {}
    bool may_block(openfl::LogicCall call) const override {
        return call == openfl::LogicCall::get_tasks ? get_tasks_may_block_ : true;
    }
    openfl::Tasks get_tasks(std::string_view) override {
        char name[32] = {0};
        pthread_getname_np(pthread_self(), name, sizeof name);
        std::lock_guard<std::mutex> lock(mu_);
        thread_ = name;
        openfl::Tasks t;
        t.round_number = 5;
        return t;
    }
    void get_aggregated_tensor(std::string_view, const openfl::TensorRequest &, openfl::TensorReply &) override {
        throw openfl::Error(openfl::Code::unimplemented, "not in this test");
    }
    void send_local_task_results(std::string_view, const openfl::TaskResults &) override {}
    std::string thread() {
        std::lock_guard<std::mutex> lock(mu_);
        return thread_;
    }

private:
    bool get_tasks_may_block_;
    std::mutex mu_;
    std::string thread_;
};

// One GetTasks round trip over mTLS; the thread get_tasks ran on.
std::string get_tasks_thread(bool get_tasks_may_block) {
    auto logic = std::make_shared<InlineLogic>(get_tasks_may_block);
    openfl::AggregatorServer server(server_options(true), logic);
    openfl::AggregatorClient client(client_options(server.port(), "col1"));
    CHECK(client.get_tasks("col1").round_number == 5);
    return logic->thread();
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    g_certs = argv[1];
    auto t0 = std::chrono::steady_clock::now();
    std::printf("openfl-transport %s\n", openfl::version());

    note("log callback");
    {
        std::mutex mu;
        std::vector<std::string> lines;
        openfl::set_log_callback(openfl::LogLevel::info,
                                 [&](openfl::LogLevel level, std::string_view target, std::string_view message) {
                                     std::lock_guard<std::mutex> lock(mu);
                                     lines.push_back(std::to_string(static_cast<int>(level)) + " " +
                                                     std::string(target) + ": " + std::string(message));
                                 });
        { openfl::AggregatorServer plain(server_options(false), std::make_shared<FedLogic>()); }
        openfl::set_log_callback(openfl::LogLevel::error, nullptr);
        std::lock_guard<std::mutex> lock(mu);
        bool warned = std::any_of(lines.begin(), lines.end(),
                                  [](const std::string &l) { return l.find("without TLS") != std::string::npos; });
        CHECK(warned);
        EXPECT_ERROR("bad log level", openfl::Code::invalid_argument, "max_level",
                     [] { openfl::set_log_callback(static_cast<openfl::LogLevel>(9), nullptr); });
    }

    note("mTLS federation: 2 collaborators, 16 MiB each way");
    auto logic = std::make_shared<FedLogic>();
    openfl::AggregatorServer server(server_options(true), logic);
    openfl::AggregatorServer moved = std::move(server);  // move-only handle
    std::uint16_t port = moved.port();
    CHECK(port != 0);
    auto serving = std::async(std::launch::async, [&] { moved.serve(); });

    std::vector<std::thread> cols;
    for (const char *col : {"col1", "col2"}) {
        cols.emplace_back([&, col] {
            try {
                collaborator(port, col, *logic);
            } catch (const std::exception &e) {
                fail(__FILE__, __LINE__, std::string(col) + ": " + e.what());
            }
        });
    }
    for (auto &t : cols) t.join();
    {
        std::lock_guard<std::mutex> lock(logic->mu_);
        CHECK(logic->uploads_.size() == 2 && logic->uploads_["col1"] == "ok" && logic->uploads_["col2"] == "ok");
    }
    CHECK(logic->served_ == 2);
    {
        // The server counted both collaborators' calls, and nothing refused.
        openfl::Metrics m = moved.metrics();
        CHECK(m.role() == openfl::MetricsRole::aggregator_server);
        CHECK(m.calls("GetTasks", openfl::Code::ok) == 2);
        CHECK(m.calls("GetAggregatedTensor", openfl::Code::ok) == 4);
        CHECK(m.calls("SendLocalTaskResults", openfl::Code::ok) == 2);
        CHECK(m.calls_total() == 8 && m.in_flight() == 0);
        CHECK(m.bytes_in("SendLocalTaskResults") > 2 * logic->up_.size());
        CHECK(m.rejected(openfl::Rejection::identity) == 0 && m.rejected(openfl::Rejection::limits) == 0);
        CHECK(m.prometheus().find("# TYPE openfl_transport_calls_total counter\n") != std::string::npos);
    }

    note("errors");
    negative_checks(port);

    note("may_block: get_tasks declared non-blocking runs on an async worker");
    {
        std::string inline_thread = get_tasks_thread(false), blocking_thread = get_tasks_thread(true);
        CHECK_MSG(inline_thread == "ofl-worker", "ran on " + inline_thread);
        CHECK_MSG(blocking_thread == "ofl-blocking", "ran on " + blocking_thread);
    }

    note("FedAvg with a state directory");

    note("end of the federation");
    logic->quitting_ = true;
    for (const char *col : {"col1", "col2"}) {
        openfl::AggregatorClient c(client_options(port, col));
        CHECK(c.get_tasks(col).quit);
    }
    if (serving.wait_for(20s) != std::future_status::ready) {
        fail(__FILE__, __LINE__, "serve() did not return after all quit jobs were sent");
        moved.stop();
    }
    serving.get();

    // Every borrowed download was released (the reply holds no reference).
    for (int i = 0; i < 200 && logic->down_.use_count() != 1; i++) std::this_thread::sleep_for(10ms);
    CHECK(logic->down_.use_count() == 1);

    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("test_cpp_api: %s (%d failures, %.2f s)\n", g_failures ? "FAILED" : "passed", g_failures.load(), s);
    return g_failures ? 1 : 0;
}
