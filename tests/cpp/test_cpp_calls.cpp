// test_cpp_calls: per-call settings of the C++ API (CallOptions,
// CancelToken, close()) end to end, over real sockets.
//
// An aggregator whose get_tasks stalls until released, serving a 24 MiB
// tensor and counting completed uploads: a per-call timeout and a client
// default timeout end a stalled call with DEADLINE_EXCEEDED; a CancelToken
// cancelled from another std::thread ends it with CANCELLED (an already
// cancelled token fails at once); close() from another thread ends a
// blocked call and refuses later ones; progress on a download and on an
// upload is monotonic and ends at the size; returning false aborts with
// CANCELLED (an aborted upload is never counted by the server); an
// exception thrown by a progress function is rethrown by the call. Then a
// director without TLS: wait_experiment past its timeout and cancelled,
// experiment upload and archive download with progress, an aborted
// experiment upload that leaves no experiment behind.
//
// usage: test_cpp_calls CERT_DIR
#include "openfl_transport.hpp"
#include "check.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <stdlib.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using openfl::Code;

namespace {

constexpr const char *kAgg = "agg-uuid-cpp-calls";
constexpr const char *kFed = "fed-uuid-cpp-calls";
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kTensorLen = 24 * kMiB;

static_assert(std::is_copy_constructible_v<openfl::CancelToken> && std::is_copy_assignable_v<openfl::CancelToken>);

fs::path g_work;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Polls `cond` every 10 ms for up to 10 s.
template <class F>
bool eventually(F &&cond) {
    for (auto end = Clock::now() + 10s; Clock::now() < end; std::this_thread::sleep_for(10ms))
        if (cond()) return true;
    return cond();
}

// A progress function recording every report, aborting after `abort_after` reports (0: never).
struct Recorder {
    std::mutex mu;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
    std::size_t abort_after = 0;

    openfl::ProgressFunction fn() {
        return [this](std::uint64_t done, std::uint64_t total) {
            std::lock_guard<std::mutex> lock(mu);
            seen.emplace_back(done, total);
            return abort_after == 0 || seen.size() < abort_after;
        };
    }
    // Several reports, done never decreasing, the total 0 (unknown) or,
    // once known, fixed and never below done, the last report done ==
    // total, at least `size` (messages carry a little more than the data).
    bool monotonic_to(std::uint64_t size) {
        std::lock_guard<std::mutex> lock(mu);
        if (seen.size() < 2) return false;
        for (std::size_t i = 0; i < seen.size(); i++) {
            auto [done, total] = seen[i];
            if (total != 0 && done > total) return false;
            if (i > 0 && (done < seen[i - 1].first || (seen[i - 1].second != 0 && total != seen[i - 1].second)))
                return false;
        }
        auto [done, total] = seen.back();
        return done == total && done >= size && done <= size + (64u << 10);
    }
    std::size_t count() {
        std::lock_guard<std::mutex> lock(mu);
        return seen.size();
    }
};

class StallLogic : public openfl::AggregatorLogic {
public:
    StallLogic() : model_(std::make_shared<std::vector<std::uint8_t>>(kTensorLen, std::uint8_t{7})) {}

    openfl::Tasks get_tasks(std::string_view) override {
        std::unique_lock<std::mutex> lock(mu_);
        stalled_++;
        cv_.wait(lock, [&] { return released_; });
        stalled_--;
        return openfl::Tasks{1, {}, 1, false};
    }
    void get_aggregated_tensor(std::string_view, const openfl::TensorRequest &request,
                               openfl::TensorReply &reply) override {
        openfl::TensorView v;
        v.name = request.tensor_name;
        v.round_number = request.round_number;
        v.data = openfl::Bytes(*model_);
        reply.set_borrowed(v, model_);
    }
    void send_local_task_results(std::string_view, const openfl::TaskResults &) override { uploads++; }

    int stalled() {
        std::lock_guard<std::mutex> lock(mu_);
        return stalled_;
    }
    void release() {
        std::lock_guard<std::mutex> lock(mu_);
        released_ = true;
        cv_.notify_all();
    }

    std::atomic<int> uploads{0};

private:
    std::shared_ptr<std::vector<std::uint8_t>> model_;
    std::mutex mu_;
    std::condition_variable cv_;
    int stalled_ = 0;
    bool released_ = false;
};

openfl::AggregatorClientOptions client_options(std::uint16_t port, std::chrono::milliseconds call_timeout = 0ms) {
    openfl::AggregatorClientOptions o("127.0.0.1", port);
    o.no_tls().federation(kAgg, kFed).connect(
        openfl::ConnectOptions().retry(50ms, 500ms, 5000ms).connect_timeout(5000ms).call_timeout(call_timeout));
    return o;
}

void deadlines_and_cancellation(const openfl::AggregatorServer &server, StallLogic &logic) {
    note("timeouts, cancel tokens, close()");
    openfl::AggregatorClient client(client_options(server.port()));
    openfl::CallOptions call;
    call.timeout = 300ms;
    auto t0 = Clock::now();
    EXPECT_ERROR("get_tasks past its timeout", Code::deadline_exceeded, nullptr, [&] { client.get_tasks("col1", call); });
    double took = seconds_since(t0);
    CHECK_MSG(took >= 0.25 && took < 2.0, std::to_string(took) + " s");

    {
        openfl::AggregatorClient bounded(client_options(server.port(), 300ms));  // the client's default
        t0 = Clock::now();
        EXPECT_ERROR("client call_timeout", Code::deadline_exceeded, nullptr, [&] { bounded.get_tasks("col1"); });
        took = seconds_since(t0);
        CHECK_MSG(took >= 0.25 && took < 2.0, std::to_string(took) + " s");
    }
    EXPECT_ERROR("negative timeout", Code::invalid_argument, "timeout", [&] {
        openfl::CallOptions bad;
        bad.timeout = -1ms;
        client.get_tasks("col1", bad);
    });

    // A token cancelled from another thread; its copies share it.
    openfl::CancelToken token;
    openfl::CallOptions cancellable;
    cancellable.cancel = token;
    CHECK(!token.is_cancelled());
    std::thread canceller([copy = token] {
        std::this_thread::sleep_for(200ms);
        copy.cancel();
        copy.cancel();  // idempotent
    });
    t0 = Clock::now();
    EXPECT_ERROR("get_tasks cancelled from another thread", Code::cancelled, nullptr,
                 [&] { client.get_tasks("col1", cancellable); });
    took = seconds_since(t0);
    canceller.join();
    CHECK_MSG(took >= 0.15 && took < 2.0, std::to_string(took) + " s");
    CHECK(token.is_cancelled());
    t0 = Clock::now();
    EXPECT_ERROR("already cancelled token", Code::cancelled, nullptr, [&] { client.get_tasks("col1", cancellable); });
    CHECK(seconds_since(t0) < 1.0);

    // close() from another thread ends blocked calls, with or without options.
    auto blocked = std::async(std::launch::async, [&] { client.get_tasks("col1"); });
    auto blocked_too = std::async(std::launch::async, [&] { client.get_tasks("col2", openfl::CallOptions{}); });
    CHECK(eventually([&] { return logic.stalled() >= 2; }));
    t0 = Clock::now();
    client.close();
    for (auto *f : {&blocked, &blocked_too}) {
        if (f->wait_for(5s) != std::future_status::ready) {
            fail(__FILE__, __LINE__, "close() did not end a blocked call");
            logic.release();
        }
        EXPECT_ERROR("blocked call ended by close()", Code::cancelled, nullptr, [&] { f->get(); });
    }
    CHECK(seconds_since(t0) < 2.0);
    client.close();  // idempotent
    EXPECT_ERROR("a call after close()", Code::cancelled, nullptr, [&] { client.get_tasks("col1"); });
}

void progress(const openfl::AggregatorServer &server, StallLogic &logic) {
    note("progress: download, upload, abort, exceptions");
    openfl::AggregatorClient client(client_options(server.port()));
    openfl::TensorRequest req;
    req.tensor_name = "model";
    req.round_number = 1;

    Recorder down;
    openfl::CallOptions call;
    call.progress = down.fn();
    call.timeout = 30s;
    openfl::Tensor t = client.get_aggregated_tensor("col1", req, call);
    CHECK(t.data().size() == kTensorLen);
    CHECK_MSG(down.monotonic_to(kTensorLen), std::to_string(down.count()) + " reports");
    CHECK(down.count() <= kTensorLen / (4 * kMiB) + 2);  // at most every 4 MiB, and once at the end

    std::vector<std::uint8_t> weights(kTensorLen, 3);
    std::vector<openfl::TensorView> upload(1);
    upload[0].name = "weights";
    upload[0].data = weights;
    Recorder up;
    call.progress = up.fn();
    client.send_local_task_results("col1", 1, "train", 10, upload, call);
    CHECK(eventually([&] { return logic.uploads == 1; }));
    CHECK_MSG(up.monotonic_to(kTensorLen), std::to_string(up.count()) + " reports");

    // false aborts: CANCELLED, and an aborted upload is never counted.
    Recorder abort_down;
    abort_down.abort_after = 1;
    call.progress = abort_down.fn();
    EXPECT_ERROR("download aborted by progress", Code::cancelled, nullptr,
                 [&] { client.get_aggregated_tensor("col1", req, call); });
    CHECK(abort_down.count() == 1);
    Recorder abort_up;
    abort_up.abort_after = 1;
    call.progress = abort_up.fn();
    EXPECT_ERROR("upload aborted by progress", Code::cancelled, nullptr,
                 [&] { client.send_local_task_results("col1", 1, "train", 10, upload, call); });
    CHECK(abort_up.count() == 1);
    std::this_thread::sleep_for(300ms);
    CHECK(logic.uploads == 1);

    // An exception thrown by the progress function comes back from the call.
    struct Boom {
        int code;
    };
    int calls = 0;
    call.progress = [&](std::uint64_t, std::uint64_t) -> bool {
        calls++;
        throw Boom{42};
    };
    for (int upload_too = 0; upload_too < 2; upload_too++) {
        calls = 0;
        try {
            if (upload_too)
                client.send_local_task_results("col1", 1, "train", 10, upload, call);
            else
                client.get_aggregated_tensor("col1", req, call);
            fail(__FILE__, __LINE__, "no exception from a throwing progress function");
        } catch (const Boom &b) {
            CHECK(b.code == 42 && calls == 1);
        } catch (const std::exception &e) {
            fail(__FILE__, __LINE__, std::string("expected Boom, got ") + e.what());
        }
    }
    std::this_thread::sleep_for(300ms);
    CHECK(logic.uploads == 1);
    // The client still works after all that.
    CHECK(client.get_aggregated_tensor("col1", req).data().size() == kTensorLen);
}

void write_file(const fs::path &path, std::size_t size) {
    std::ofstream out(path, std::ios::binary);
    std::vector<char> block(kMiB, 'a');
    for (std::size_t left = size; left > 0; left -= std::min(left, block.size()))
        out.write(block.data(), static_cast<std::streamsize>(std::min(left, block.size())));
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

void director() {
    note("director: wait timeouts and cancellation, transfer progress");
    const std::vector<std::string> shape{"1"};
    openfl::DirectorServerOptions so;
    so.listen("127.0.0.1", 0).no_tls().sample_shape(shape).target_shape(shape).archive_dir((g_work / "archives").string());
    openfl::DirectorServer server(so);
    openfl::DirectorClientOptions co("127.0.0.1", server.port());
    co.no_tls().connect(openfl::ConnectOptions().retry(50ms, 500ms, 5000ms));
    openfl::EnvoyClient envoy(co, "col1");
    openfl::FrontendClient frontend(co);
    CHECK(envoy.update_shard_info(openfl::ShardInfo{"shard", 10, shape, shape, {}}, openfl::CallOptions{5s, {}, {}}));

    openfl::CallOptions call;
    call.timeout = 300ms;
    auto t0 = Clock::now();
    EXPECT_ERROR("wait_experiment past its timeout", Code::deadline_exceeded, nullptr, [&] { envoy.wait_experiment(call); });
    CHECK(seconds_since(t0) < 2.0);
    openfl::CancelToken token;
    call = openfl::CallOptions{std::nullopt, token, {}};
    auto waiting = std::async(std::launch::async, [&] { return envoy.wait_experiment(call); });
    std::this_thread::sleep_for(200ms);
    token.cancel();
    if (waiting.wait_for(5s) != std::future_status::ready) {
        fail(__FILE__, __LINE__, "cancel did not end wait_experiment");
        envoy.close();
    }
    EXPECT_ERROR("wait_experiment cancelled", Code::cancelled, nullptr, [&] { waiting.get(); });

    const std::size_t archive_len = 10 * kMiB + 5;
    write_file(g_work / "exp.zip", archive_len);
    Recorder abort_up;
    abort_up.abort_after = 1;
    call = openfl::CallOptions{std::nullopt, std::nullopt, abort_up.fn()};
    EXPECT_ERROR("experiment upload aborted", Code::cancelled, nullptr,
                 [&] { frontend.set_new_experiment("aborted", {"col1"}, (g_work / "exp.zip").string(), {}, call); });
    EXPECT_ERROR("no aborted experiment", Code::not_found, nullptr, [&] { frontend.get_experiment_status("aborted"); });

    Recorder up, down;
    call.progress = up.fn();
    frontend.set_new_experiment("exp", {"col1"}, (g_work / "exp.zip").string(), {}, call);
    CHECK_MSG(up.monotonic_to(archive_len), std::to_string(up.count()) + " reports");
    CHECK(envoy.wait_experiment(openfl::CallOptions{10s, {}, {}}) == "exp");
    call.progress = down.fn();
    CHECK(envoy.get_experiment_data("exp", (g_work / "down.zip").string(), call) == archive_len);
    CHECK_MSG(down.monotonic_to(archive_len), std::to_string(down.count()) + " reports");
    CHECK(fs::file_size(g_work / "down.zip") == archive_len);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    const char *tmp = std::getenv("TMPDIR");
    std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/ofl-test-cpp-calls-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) {
        std::perror("mkdtemp");
        return 2;
    }
    g_work = dir;
    auto t0 = Clock::now();
    openfl::set_log_callback(openfl::LogLevel::off, nullptr);  // the expected failures log warnings
    try {
        auto logic = std::make_shared<StallLogic>();
        openfl::AggregatorServerOptions so;
        so.listen("127.0.0.1", 0).no_tls().federation(kAgg, kFed).add_collaborator("col1").add_collaborator("col2");
        openfl::AggregatorServer server(so, logic);
        {
            // Stalled handlers (their calls ended) return before the server goes.
            struct Release {
                StallLogic &logic;
                ~Release() { logic.release(); }
            } release{*logic};
            deadlines_and_cancellation(server, *logic);
            progress(server, *logic);
        }
        director();
    } catch (const std::exception &e) {
        fail(__FILE__, __LINE__, std::string("uncaught: ") + e.what());
    }
    if (g_failures == 0) fs::remove_all(g_work);
    std::printf("test_cpp_calls: %s (%d failures, %.2f s)\n", g_failures ? "FAILED" : "passed", g_failures.load(),
                seconds_since(t0));
    return g_failures ? 1 : 0;
}
