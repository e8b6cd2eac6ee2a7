// test_cpp_director: the director part of the C++ API
// (include/openfl_transport.hpp) end to end.
//
// A C++ director with C++ hooks (a DirectorHooks subclass), two C++ envoys
// on threads and C++ frontends over mTLS: registration (a wrong shape
// refused), health checks with a CUDA device, the submission of a 5 MiB
// archive with an initial model (seen by the review and start hooks, which
// report progress through the server they are given), the download by both
// envoys, progress and task reports, a live metric stream, best and last
// models decoded with to_model(), and removal. Then the rejections with
// their codes: another frontend (NOT_FOUND), a bad archive name
// (INVALID_ARGUMENT), a review that rejects (archive deleted), a start hook
// that throws (the experiment fails), an envoy failing an experiment (the
// experiment_failed hook hears it) and acting for another (PERMISSION_DENIED);
// close() cancelling a wait (CANCELLED), an exception from a metric
// callback rethrown, serve/stop, move-only handles, hooks released by the
// destructor; and a director without TLS with the default hooks.
//
// usage: test_cpp_director CERT_DIR
#include "openfl_transport.hpp"
#include "check.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using openfl::Code;
using openfl::ExperimentStatus;

namespace {

// Handles are RAII and move-only.
static_assert(!std::is_copy_constructible_v<openfl::DirectorServer> &&
              std::is_nothrow_move_constructible_v<openfl::DirectorServer> &&
              std::is_nothrow_move_assignable_v<openfl::DirectorServer>);
static_assert(!std::is_copy_constructible_v<openfl::EnvoyClient> &&
              std::is_nothrow_move_constructible_v<openfl::EnvoyClient>);
static_assert(!std::is_copy_constructible_v<openfl::FrontendClient> &&
              std::is_nothrow_move_constructible_v<openfl::FrontendClient>);
static_assert(!std::is_copy_constructible_v<openfl::TensorList> &&
              std::is_nothrow_move_constructible_v<openfl::TensorList>);
static_assert(!std::is_copy_constructible_v<openfl::Model> && std::is_nothrow_move_constructible_v<openfl::Model>);
static_assert(!std::is_copy_constructible_v<openfl::DirectorServerOptions> &&
              !std::is_copy_constructible_v<openfl::DirectorClientOptions>);

constexpr std::size_t kArchiveLen = (std::size_t{5} << 20) + 123;  // three chunks of at most 2 MiB
const std::vector<std::string> kSampleShape{"28", "28"};
const std::vector<std::string> kTargetShape{"1"};
const std::vector<std::string> kBothCols{"col1", "col2"};

std::string g_certs;
fs::path g_work;
std::string cert(const std::string &name) { return g_certs + "/" + name; }
std::string work(const std::string &name) { return (g_work / name).string(); }

std::vector<char> pattern(std::size_t n, unsigned mul, unsigned add) {
    std::vector<char> v(n);
    for (std::size_t i = 0; i < n; i++) v[i] = static_cast<char>(static_cast<unsigned char>(i * mul + add));
    return v;
}

void write_file(const std::string &path, const std::vector<char> &data) {
    std::ofstream out(path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::vector<char> read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A model as OpenFL's uncompressed pipeline encodes it: "w" (2 x 3) and
// the scalar "b", float32 little-endian (this host's order), the shape in
// int_list. `w` and `b` must outlive the views.
std::vector<openfl::TensorView> model_views(const std::vector<float> &w, const std::vector<float> &b) {
    std::vector<openfl::TensorView> m(2);
    m[0].name = "w";
    m[0].lossless = true;
    m[0].tags = {"model"};
    m[0].metadata = {openfl::Metadata{{2, 3}, {}, {}}};
    m[0].data = w;
    m[1].name = "b";
    m[1].lossless = true;
    m[1].tags = {"model"};
    m[1].metadata = {openfl::Metadata{}};
    m[1].data = b;
    return m;
}

const std::vector<float> kInitW{1, 2, 3, 4, 5, 6}, kInitB{0.5f};
const std::vector<float> kBestW{10, 20, 30, 40, 50, 60}, kBestB{1.5f};
const std::vector<float> kLastW{-1, -2, -3, -4, -5, -6}, kLastB{-0.5f};

// Whether `list` decodes to w (2 x 3) and the scalar b.
bool model_is(const openfl::TensorListRef &list, const std::vector<float> &w, const std::vector<float> &b) {
    if (list.size() != 2 || list[0].name() != "w" || list[1].name() != "b") return false;
    openfl::Model m = list.to_model();
    auto wi = m.find("w"), bi = m.find("b");
    if (!wi || !bi || m.find("nope")) return false;
    return m.shape(*wi).to_vector() == std::vector<std::size_t>{2, 3} && m.values(*wi).to_vector() == w &&
           m.shape(*bi).empty() && m.values(*bi).to_vector() == b;
}

// ---- the host ----------------------------------------------------------------------

class Host : public openfl::DirectorHooks {
public:
    bool review_experiment(openfl::DirectorServerRef, const openfl::Experiment &e) override {
        reviews++;
        return e.name().substr(0, 6) != "reject";
    }

    void start_experiment(openfl::DirectorServerRef server, const openfl::Experiment &e) override {
        starts++;
        if (e.name().substr(0, 7) == "nostart") throw openfl::Error(Code::unavailable, "no aggregator for you");
        if (e.name() == "mnist") {
            std::lock_guard<std::mutex> lock(mu);
            owner = e.owner();
            for (std::string_view c : e.collaborators()) collaborators.emplace_back(c);
            std::error_code ec;
            archive_ok = e.archive_size() == kArchiveLen && fs::file_size(std::string(e.archive_path()), ec) == kArchiveLen;
            auto init = e.initial_model();
            init_ok = init && model_is(*init, kInitW, kInitB);
            server.set_round(e.name(), 0, 2);  // the server is set when hooks run
        }
    }

    void experiment_failed(openfl::DirectorServerRef, const openfl::Experiment &e,
                           const openfl::EnvoyFailure &f) override {
        std::lock_guard<std::mutex> lock(mu);
        failed = std::string(e.name()) + "/" + std::string(f.collaborator) + "/" + std::to_string(f.error_code) + "/" +
                 std::string(f.description);
        failures++;
    }

    std::atomic<int> reviews{0}, starts{0}, failures{0};
    std::mutex mu;
    std::string owner, failed;
    std::vector<std::string> collaborators;
    bool archive_ok = false, init_ok = false;
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
    for (auto deadline = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(20ms))
        if (pred()) return true;
    return pred();
}

bool wait_status(const openfl::FrontendClient &f, const std::string &name, ExperimentStatus want) {
    return eventually([&] {
        try {
            return f.get_experiment_status(name) == want;
        } catch (const openfl::Error &) {
            return false;
        }
    });
}

// TLS settings: ca.crt as root, `identity` (a certificate name; empty:
// none) as identity, mutual or one-way.
openfl::TlsConfig tls_config(const std::string &identity, bool one_way) {
    openfl::TlsConfig t;
    t.root_certificate_file(cert("ca.crt")).client_auth(!one_way);
    if (!identity.empty()) t.identity_files(cert(identity + ".crt"), cert(identity + ".key"));
    return t;
}

// A 5 s retry deadline and connect timeout, 64 MiB messages, `server_name`
// (empty: the host).
openfl::ConnectOptions connect_options(const std::string &server_name) {
    openfl::ConnectOptions c;
    c.retry(50ms, 500ms, 5000ms).connect_timeout(5000ms).max_message_size(64u << 20);
    if (!server_name.empty()) c.server_name(server_name);
    return c;
}

openfl::DirectorServerOptions director_options(bool tls, const std::string &archives) {
    openfl::DirectorServerOptions o;
    o.listen("127.0.0.1", 0)
        .sample_shape(kSampleShape)
        .target_shape(kTargetShape)
        .envoy_health_check_period(2000ms)
        .archive_dir(archives)
        .max_archive_size(64u << 20)
        .max_message_size(64u << 20)
        .max_queued_metrics(1000);
    if (tls)
        o.tls(tls_config("server", false));
    else
        o.no_tls();
    return o;
}

// mTLS as `identity` (a certificate name), or no TLS when it is empty.
openfl::DirectorClientOptions client_options(std::uint16_t port, const std::string &identity) {
    openfl::DirectorClientOptions o("127.0.0.1", port);
    o.connect(connect_options(identity.empty() ? "" : "localhost")).max_archive_size(64u << 20);
    if (identity.empty())
        o.no_tls();
    else
        o.tls(tls_config(identity, false));
    return o;
}

const openfl::CudaDevice kGpu{0, 16ull << 30, 1ull << 30, "35%", "535.54", "12.2", "gpu0"};

openfl::ShardInfo shard(const std::vector<std::string> &sample_shape) {
    return openfl::ShardInfo{"mnist shard", 6000, sample_shape, kTargetShape, {}};
}

struct EnvoyRun {
    std::string name;
    std::string experiment;
    std::uint64_t size = 0;
    std::chrono::milliseconds period{0};
    bool refused_wrong_shape = false;
};

void envoy_main(std::uint16_t port, EnvoyRun &r) {
    try {
        openfl::EnvoyClient envoy(client_options(port, r.name), r.name);
        if (r.name == "col1") r.refused_wrong_shape = !envoy.update_shard_info(shard({"32", "32"}));
        CHECK(envoy.update_shard_info(shard(kSampleShape)));
        r.period = envoy.send_health_check(false, {kGpu});
        r.experiment = envoy.wait_experiment();
        r.size = envoy.get_experiment_data(r.experiment, work(r.name + "-download.zip"));
        envoy.send_health_check(true);
    } catch (const std::exception &e) {
        fail(__FILE__, __LINE__, r.name + ": " + e.what());
    }
}

void life_cycle() {
    note("life cycle over mTLS");
    const std::string archive = work("mnist-workspace.zip");
    const std::vector<char> archive_data = pattern(kArchiveLen, 13, 5);
    write_file(archive, archive_data);
    const std::string archives = work("archives");

    auto host = std::make_shared<Host>();
    openfl::DirectorServer started(director_options(true, archives), host);
    openfl::DirectorServer server = std::move(started);  // move-only; hooks keep the library's handle
    CHECK(started.get() == nullptr);
    const std::uint16_t port = server.port();
    CHECK(port != 0 && server.archive_dir() == archives && fs::is_directory(archives));
    auto serving = std::async(std::launch::async, [&] { server.serve(); });

    EnvoyRun runs[2] = {{"col1", {}, 0, {}, false}, {"col2", {}, 0, {}, false}};
    std::thread envoys[2] = {std::thread(envoy_main, port, std::ref(runs[0])),
                             std::thread(envoy_main, port, std::ref(runs[1]))};

    openfl::FrontendClient frontend(client_options(port, "frontend"));
    auto registered = [&](const std::string &experiment) {
        std::vector<openfl::EnvoyInfo> e = frontend.get_envoys();
        int ready = 0;
        for (const auto &x : e) ready += x.cuda_devices.size() == 1 && x.experiment_name == experiment;
        return ready == 2;
    };
    CHECK(eventually([&] { return registered(""); }));
    for (const openfl::EnvoyInfo &e : frontend.get_envoys()) {
        CHECK(e.name == "col1" || e.name == "col2");
        CHECK(e.shard_description == "mnist shard" && e.n_samples == 6000 && e.sample_shape == kSampleShape &&
              e.target_shape == kTargetShape && e.is_online && !e.is_experiment_running &&
              e.valid_duration == 4000ms && e.experiment_name.empty());
        CHECK(std::chrono::system_clock::now() - e.last_updated < 1min);
        CHECK(e.cuda_devices.size() == 1 && e.cuda_devices[0].name == "gpu0" &&
              e.cuda_devices[0].memory_total == kGpu.memory_total && e.cuda_devices[0].device_utilization == "35%" &&
              e.cuda_devices[0].cuda_driver_version == "535.54" && e.cuda_devices[0].cuda_version == "12.2");
    }
    openfl::DatasetInfo info = frontend.get_dataset_info();
    CHECK(info.sample_shape == kSampleShape && info.target_shape == kTargetShape);

    // Submit: the hooks see it; the envoys get it and download the archive.
    frontend.set_new_experiment("mnist", kBothCols, archive, model_views(kInitW, kInitB));
    CHECK(eventually([&] { return host->starts == 1; }));
    {
        std::lock_guard<std::mutex> lock(host->mu);
        CHECK(host->reviews == 1 && host->owner == "frontend" && host->collaborators == kBothCols);
        CHECK(host->archive_ok && host->init_ok);
    }
    for (auto &t : envoys) t.join();
    for (const EnvoyRun &r : runs) {
        CHECK(r.experiment == "mnist" && r.size == kArchiveLen && r.period == 2000ms);
        CHECK(read_file(work(r.name + "-download.zip")) == archive_data);
    }
    CHECK(runs[0].refused_wrong_shape);
    CHECK(frontend.get_experiment_status("mnist") == ExperimentStatus::in_progress);
    CHECK(server.experiment_status("mnist") == ExperimentStatus::in_progress);
    CHECK(std::string(openfl::status_name(ExperimentStatus::in_progress)) == "in_progress");
    CHECK(eventually([&] { return registered("mnist"); }));

    // The host reports progress; the frontend reads it.
    server.set_round("mnist", 1, 2);
    server.set_tasks("mnist", {{"train", "train the model"}, {"validate", "validate it"}});
    openfl::ExperimentDescription d = frontend.get_experiment_description("mnist");
    CHECK(d.name == "mnist" && d.status == ExperimentStatus::in_progress && d.current_round == 1 &&
          d.total_rounds == 2 && d.progress == 0.5f);
    CHECK(d.collaborators.size() == 2);
    for (std::size_t i = 0; i < d.collaborators.size() && i < 2; i++)
        CHECK(d.collaborators[i].name == kBothCols[i] && d.collaborators[i].status == "running" &&
              d.collaborators[i].round == 1 && d.collaborators[i].progress == 0.5f);
    CHECK(d.tasks.size() == 2 && d.tasks[1].name == "validate" && d.tasks[1].description == "validate it");
    CHECK(d.models.size() == 3 && d.models[0].name == "best" && d.models[0].status == "pending" &&
          d.models[2].name == "init" && d.models[2].status == "ready");
    CHECK(d.logs.size() == 1 && d.logs[0].name == "aggregator");
    std::vector<openfl::ExperimentSummary> list = frontend.get_experiments_list();
    CHECK(list.size() == 1 && list[0].name == "mnist" && list[0].status == ExperimentStatus::in_progress &&
          list[0].collaborators_amount == 2 && list[0].tasks_amount == 2 && list[0].progress == 0.5f);
    EXPECT_ERROR("best model before any", Code::failed_precondition, "best",
                 [&] { frontend.get_best_model("mnist"); });

    // A live stream (the first of "mnist") until the experiment finishes.
    std::vector<openfl::DirectorMetric> live;
    std::thread::id stream_thread;
    auto streamed = std::async(std::launch::async, [&] {
        frontend.stream_metrics("mnist", [&](const openfl::DirectorMetric &m) {
            stream_thread = std::this_thread::get_id();
            live.push_back(m);
            return true;
        });
        return std::this_thread::get_id();
    });
    std::this_thread::sleep_for(100ms);
    server.push_metric("mnist", {"aggregator", "aggregated_model_validation", "accuracy", 0.5f, 1});
    server.push_metric("mnist", {"col2", "aggregated_model_validation", "loss", 1.5f, 1});
    server.push_metric("mnist", {"aggregator", "aggregated_model_validation", "accuracy", 0.75f, 2});
    server.set_best_model("mnist", model_views(kBestW, kBestB));
    server.set_last_model("mnist", model_views(kLastW, kLastB));
    server.set_round("mnist", 2, 2);
    server.mark_finished("mnist");
    server.mark_finished("mnist");  // idempotent
    EXPECT_ERROR("mark_failed after finished", Code::failed_precondition, "finished",
                 [&] { server.mark_failed("mnist", "late"); });
    if (streamed.wait_for(20s) != std::future_status::ready) {
        fail(__FILE__, __LINE__, "the live stream did not end with the experiment");
        frontend.close();
    }
    std::thread::id caller = streamed.get();
    CHECK(stream_thread == caller);  // the callback ran on the calling thread
    CHECK(live.size() == 3);
    if (live.size() == 3)
        CHECK(live[0].origin == "aggregator" && live[0].value == 0.5f && live[0].round == 1 &&
              live[1].metric_name == "loss" && live[1].task_name == "aggregated_model_validation" &&
              live[2].value == 0.75f && live[2].round == 2);

    // The frontend reads the outcome.
    CHECK(wait_status(frontend, "mnist", ExperimentStatus::finished));
    openfl::TensorList best = frontend.get_best_model("mnist");
    CHECK(model_is(best, kBestW, kBestB));
    openfl::TensorList last = frontend.get_last_model("mnist");
    openfl::TensorList moved_last = std::move(last);
    CHECK(last.get() == nullptr && model_is(moved_last, kLastW, kLastB));
    int tensors = 0;
    for (openfl::TensorRef t : best) tensors += t.tags() == std::vector<std::string_view>{"model"};
    CHECK(tensors == 2);
    d = frontend.get_experiment_description("mnist");
    CHECK(d.status == ExperimentStatus::finished && d.progress == 1.0f && d.models[0].status == "ready" &&
          d.collaborators[0].status == "finished");
    int after = 0;
    frontend.stream_metrics("mnist", [&](const openfl::DirectorMetric &) { return ++after > 0; });
    CHECK(after == 0);  // nothing left: the stream of a finished experiment ends at once

    note("rejections");
    {
        openfl::FrontendClient stranger(client_options(port, "frontend2"));
        EXPECT_ERROR("another frontend: status", Code::not_found, "mnist", [&] { stranger.get_experiment_status("mnist"); });
        EXPECT_ERROR("another frontend: description", Code::not_found, "mnist",
                     [&] { stranger.get_experiment_description("mnist"); });
        EXPECT_ERROR("another frontend: model", Code::not_found, "mnist", [&] { stranger.get_best_model("mnist"); });
        EXPECT_ERROR("another frontend: stream", Code::not_found, "mnist", [&] {
            stranger.stream_metrics("mnist", [](const openfl::DirectorMetric &) { return false; });
        });
        stranger.remove_experiment("mnist");  // as OpenFL: a no-op that succeeds
        CHECK(frontend.get_experiment_status("mnist") == ExperimentStatus::finished);
        CHECK(stranger.get_experiments_list().empty());
    }
    write_file(work("empty.zip"), {});
    EXPECT_ERROR("same name", Code::already_exists, "mnist", [&] { frontend.set_new_experiment("mnist", kBothCols, archive); });
    EXPECT_ERROR("archive name with a path separator", Code::invalid_argument, "path separator",
                 [&] { frontend.set_new_experiment("../escape", kBothCols, archive); });
    EXPECT_ERROR("no collaborators", Code::invalid_argument, "collaborators",
                 [&] { frontend.set_new_experiment("nocols", {}, archive); });
    EXPECT_ERROR("empty archive", Code::invalid_argument, "empty",
                 [&] { frontend.set_new_experiment("empty", kBothCols, work("empty.zip")); });
    EXPECT_ERROR("missing archive", Code::io, "missing.zip",
                 [&] { frontend.set_new_experiment("missing", kBothCols, work("missing.zip")); });
    EXPECT_ERROR("NUL in a name", Code::invalid_argument, "name",
                 [&] { frontend.set_new_experiment(std::string_view("a\0b", 3), kBothCols, archive); });

    // An envoy fails an experiment; the hook hears of it.
    openfl::EnvoyClient col1(client_options(port, "col1"), "col1");
    openfl::EnvoyClient col2(client_options(port, "col2"), "col2");
    frontend.set_new_experiment("exp-fail", {"col1"}, archive);
    CHECK(col1.wait_experiment() == "exp-fail");
    EXPECT_ERROR("download by a non-collaborator", Code::permission_denied, "col2",
                 [&] { col2.get_experiment_data("exp-fail", work("col2-exp-fail.zip")); });
    CHECK(!fs::exists(work("col2-exp-fail.zip")));
    EXPECT_ERROR("failure by a non-collaborator", Code::permission_denied, "col2",
                 [&] { col2.set_experiment_failed("exp-fail", 1, "not mine"); });
    EXPECT_ERROR("remove while running", Code::failed_precondition, "exp-fail",
                 [&] { frontend.remove_experiment("exp-fail"); });
    col1.set_experiment_failed("exp-fail", 7, "out of memory");
    CHECK(eventually([&] { return host->failures == 1; }));
    {
        std::lock_guard<std::mutex> lock(host->mu);
        CHECK(host->failed == "exp-fail/col1/7/out of memory");
    }
    CHECK(wait_status(frontend, "exp-fail", ExperimentStatus::failed));
    EXPECT_ERROR("mark_finished after failed", Code::failed_precondition, "failed",
                 [&] { server.mark_finished("exp-fail"); });

    {
        openfl::EnvoyClient impostor(client_options(port, "col1"), "col2");
        EXPECT_ERROR("an envoy certificate acting for another", Code::permission_denied, "col1",
                     [&] { impostor.update_shard_info(shard(kSampleShape)); });
    }

    // The review rejects: the archive is deleted, nothing starts.
    int starts = host->starts;
    frontend.set_new_experiment("reject-me", kBothCols, archive);
    CHECK(wait_status(frontend, "reject-me", ExperimentStatus::rejected));
    CHECK(!fs::exists(archives + "/reject-me.archive"));
    CHECK(host->starts == starts && host->reviews == 3);
    frontend.remove_experiment("reject-me");

    // The start hook throws: the experiment fails.
    frontend.set_new_experiment("nostart-1", kBothCols, archive);
    CHECK(wait_status(frontend, "nostart-1", ExperimentStatus::failed));
    CHECK(host->starts == starts + 1);
    CHECK(read_file(archive) == archive_data);  // streamed, not consumed

    // Removal.
    CHECK(fs::exists(archives + "/mnist.archive"));
    frontend.remove_experiment("mnist");
    CHECK(!fs::exists(archives + "/mnist.archive"));
    EXPECT_ERROR("status after removal", Code::not_found, "mnist", [&] { frontend.get_experiment_status("mnist"); });
    EXPECT_ERROR("host status after removal", Code::not_found, "mnist", [&] { server.experiment_status("mnist"); });

    note("close, exceptions, stop");
    // close() cancels a wait in progress (col2 has nothing coming).
    auto waiting = std::async(std::launch::async, [&] { col2.wait_experiment(); });
    std::this_thread::sleep_for(200ms);
    col2.close();
    EXPECT_ERROR("wait_experiment cancelled by close", Code::cancelled, nullptr, [&] { waiting.get(); });
    EXPECT_ERROR("a call after close", Code::cancelled, "closed", [&] { col2.send_health_check(false); });

    // An exception from a metric callback ends the stream and is rethrown.
    // (A metric pushed as a stream ends may still go to that stream: push
    // until the callback has run.)
    frontend.set_new_experiment("quiet", {"col1"}, archive);
    CHECK(wait_status(frontend, "quiet", ExperimentStatus::in_progress));
    std::atomic<bool> stop_pushing{false};
    std::thread pusher([&] {
        while (!stop_pushing) {
            server.push_metric("quiet", {"col1", "train", "loss", 0.25f, 3});
            std::this_thread::sleep_for(20ms);
        }
    });
    EXPECT_ERROR("callback exception rethrown", Code::data_loss, "callback says no", [&] {
        frontend.stream_metrics("quiet", [](const openfl::DirectorMetric &m) -> bool {
            if (m.metric_name == "loss" && m.value == 0.25f) throw openfl::Error(Code::data_loss, "callback says no");
            return true;
        });
    });
    stop_pushing = true;
    pusher.join();
    server.mark_finished("quiet");

    server.stop();
    server.stop();  // idempotent
    if (serving.wait_for(10s) != std::future_status::ready) fail(__FILE__, __LINE__, "serve() did not return after stop()");
    serving.get();
    CHECK(host.use_count() == 2);  // ours and the server's
    { openfl::DirectorServer gone = std::move(server); }
    CHECK(host.use_count() == 1);  // released by the destructor
}

void insecure_defaults() {
    note("no TLS, default hooks, client_id");
    const std::string archive = work("plain.zip");
    const std::vector<char> data = pattern(4096, 3, 1);
    write_file(archive, data);
    openfl::DirectorServer server(director_options(false, work("plain-archives")));
    openfl::EnvoyClient envoy(client_options(server.port(), ""), "col1");
    CHECK(envoy.update_shard_info(shard(kSampleShape)));
    openfl::DirectorClientOptions alice_options = client_options(server.port(), "");
    alice_options.client_id("alice");
    openfl::FrontendClient alice(alice_options);
    openfl::DirectorClientOptions bob_options = client_options(server.port(), "");
    bob_options.client_id("bob");
    openfl::FrontendClient bob(bob_options);
    alice.set_new_experiment("plain", {"col1"}, archive);
    CHECK(wait_status(alice, "plain", ExperimentStatus::in_progress));  // approved and started at once
    EXPECT_ERROR("another client_id", Code::not_found, "plain", [&] { bob.get_experiment_status("plain"); });
    CHECK(envoy.wait_experiment() == "plain");
    CHECK(envoy.get_experiment_data("plain", work("plain-download.zip")) == data.size());
    CHECK(read_file(work("plain-download.zip")) == data);
    CHECK(envoy.send_health_check(true) == 2000ms);
    server.mark_finished("plain");
    CHECK(wait_status(alice, "plain", ExperimentStatus::finished));
    EXPECT_ERROR("no model set", Code::failed_precondition, "last", [&] { alice.get_last_model("plain"); });

    EXPECT_ERROR("client_id not printable", Code::invalid_argument, "client_id",
                 [] { openfl::DirectorClientOptions("127.0.0.1", 1).client_id("tab\there"); });
    EXPECT_ERROR("empty shard name", Code::invalid_argument, "shard_name", [] {
        openfl::DirectorClientOptions o("127.0.0.1", 1);
        o.no_tls();
        openfl::EnvoyClient e(o, "");
    });
    EXPECT_ERROR("port in use", Code::io, nullptr, [&] {
        openfl::DirectorServerOptions o = director_options(false, work("plain-archives"));
        o.listen("127.0.0.1", server.port());
        openfl::DirectorServer s(o, std::make_shared<Host>());
    });
    EXPECT_ERROR("client TLS not attached", Code::invalid_argument, "ofl_director_client_options_set_tls", [] {
        openfl::DirectorClientOptions o("127.0.0.1", 1);
        openfl::FrontendClient f(o);
    });
    // One-way TLS: a frontend without a certificate, named by its client_id.
    {
        openfl::DirectorServerOptions so = director_options(false, work("oneway-archives"));
        so.tls(tls_config("server", true));
        openfl::DirectorServer oneway(so);
        openfl::DirectorClientOptions co("127.0.0.1", oneway.port());
        co.tls(tls_config("", true)).connect(connect_options("localhost")).client_id("carol");
        openfl::FrontendClient carol(co);
        CHECK(carol.get_dataset_info().sample_shape == kSampleShape);
        // The connect options' server name is checked against the certificate.
        co.connect(connect_options("not-the-director.example"));
        openfl::FrontendClient wrong(co);
        EXPECT_ERROR("wrong server name", Code::tls, nullptr, [&] { wrong.get_dataset_info(); });
    }
    EXPECT_ERROR("TLS without certificates", Code::invalid_argument, "ofl_director_server_options_set_tls", [] {
        openfl::DirectorServerOptions o;
        o.listen("127.0.0.1", 0).archive_dir(work("no-tls-archives"));
        openfl::DirectorServer s(o);
    });
    EXPECT_ERROR("empty stream callback", Code::invalid_argument, "fn",
                 [&] { alice.stream_metrics("plain", nullptr); });
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    g_certs = argv[1];
    const char *tmp = std::getenv("TMPDIR");
    std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/ofl-test-cpp-director-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) {
        std::perror("mkdtemp");
        return 2;
    }
    g_work = dir;
    auto t0 = std::chrono::steady_clock::now();
    // Quiet: the expected failures log errors.
    openfl::set_log_callback(openfl::LogLevel::off, nullptr);
    try {
        life_cycle();
        insecure_defaults();
    } catch (const std::exception &e) {
        fail(__FILE__, __LINE__, std::string("uncaught: ") + e.what());
    }
    if (g_failures == 0) fs::remove_all(g_work);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("test_cpp_director: %s (%d failures, %.2f s)\n", g_failures ? "FAILED" : "passed", g_failures.load(), s);
    return g_failures ? 1 : 0;
}
