// test_cpp_fedavg: the built-in FedAvg through the C++ API, with the
// coverage of tests/c/test_fedavg.c.
//
// 1. Options: every bad value throws openfl::Error with the library's code
//    (INVALID_ARGUMENT naming what is wrong), and FedAvg's constructor names
//    what is missing; failed setters change nothing.
// 2. Accessors: a fresh FedAvg (round 0, no metrics, OUT_OF_RANGE metric,
//    FAILED_PRECONDITION best model, no best score, the initial model in name
//    order with a scalar); a moved-from one answers 0/false/INVALID_ARGUMENT;
//    a server keeps its own reference; custom tasks replace the defaults.
// 3. A federation: FedAvg (col1, col2; 2 rounds; OpenFL's default tasks;
//    model "w" [2, 3] and scalar "b") served over mTLS; two collaborator
//    threads do what OpenFL 1.6's Collaborator does (fetch the model with
//    tags {"model"}, checking OpenFL's encoding; validate; train a step away
//    from it; upload with OpenFL's tags and data sizes; sleep; quit). The
//    last model, best model and score and every metric are then compared
//    with what the collaborators sent.
// 4. Crash recovery: a FedAvg with a state directory takes an upload, is
//    destroyed as a crash would leave it, and a new FedAvg on the directory
//    has the upload and resumes round 0 (the collaborator owes the two other
//    tasks); a directory in use is FAILED_PRECONDITION; a damaged
//    federation.state is DATA_LOSS naming the file.
//
// usage: test_cpp_fedavg CERT_DIR
#include "openfl_transport.hpp"
#include "check.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <stdlib.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

constexpr const char *kAgg = "agg-uuid-cpp";
constexpr const char *kFed = "fed-uuid-cpp";
constexpr int kRounds = 2;
constexpr int kCols = 2;
constexpr std::size_t kWLen = 6;
constexpr double kTolerance = 1e-5;
constexpr const char *kValidate = "aggregated_model_validation";
constexpr const char *kTrain = "train";
constexpr const char *kLocal = "locally_tuned_model_validation";

const char *const kColNames[kCols] = {"col1", "col2"};
const std::int32_t kTrainSize[kCols] = {10, 30};
const std::int32_t kValidSize[kCols] = {8, 4};
const std::vector<float> kInitialW = {0.5f, -1.0f, 2.0f, 0.25f, 0.0f, -3.0f};
constexpr float kInitialB = 0.75f;
const char kNotUtf8[] = {static_cast<char>(0xff), static_cast<char>(0xfe), 0};

std::string g_certs;
std::string cert(const std::string &name) { return g_certs + "/" + name; }

bool close_to(double actual, double expected) { return std::fabs(actual - expected) <= kTolerance; }

openfl::AggregatorClientOptions client_options(std::uint16_t port, const std::string &col) {
    openfl::AggregatorClientOptions o("127.0.0.1", port);
    o.tls(openfl::TlsConfig().root_certificate_file(cert("ca.crt")).identity_files(cert(col + ".crt"), cert(col + ".key")))
        .federation(kAgg, kFed)
        .connect(openfl::ConnectOptions().retry(50ms, 500ms, 5000ms).connect_timeout(5000ms));
    return o;
}

openfl::AggregatorServerOptions server_options() {
    openfl::AggregatorServerOptions o;
    o.listen("127.0.0.1", 0).tls(
        openfl::TlsConfig().root_certificate_file(cert("ca.crt")).identity_files(cert("server.crt"), cert("server.key")));
    return o;
}

// Options every test starts from: col1, col2, w [2, 3] and scalar b.
openfl::FedAvgOptions valid_options() {
    openfl::FedAvgOptions o;
    o.federation(kAgg, kFed).add_collaborator("col1").add_collaborator("col2");
    o.add_model_tensor("w", {2, 3}, kInitialW).add_model_tensor("b", {}, {kInitialB});
    return o;
}

// ---- 1. options -------------------------------------------------------------

void test_options() {
    note("FedAvgOptions: bad values throw with the library's code");
    using openfl::Code;
    openfl::FedAvgOptions o = valid_options();
    EXPECT_ERROR("non-UTF-8 aggregator uuid", Code::invalid_argument, "UTF-8",
                 [&] { o.federation(kNotUtf8, kFed); });
    EXPECT_ERROR("NUL in the federation uuid", Code::invalid_argument, "federation_uuid",
                 [&] { o.federation(kAgg, std::string_view("f\0d", 3)); });
    EXPECT_ERROR("empty collaborator", Code::invalid_argument, "empty", [&] { o.add_collaborator(""); });
    EXPECT_ERROR("non-UTF-8 collaborator", Code::invalid_argument, "UTF-8", [&] { o.add_collaborator(kNotUtf8); });
    o.add_collaborator("col1");  // a repeat is added once
    EXPECT_ERROR("0 rounds", Code::invalid_argument, "0", [&] { o.rounds_to_train(0); });
    EXPECT_ERROR("-5 rounds", Code::invalid_argument, "-5", [&] { o.rounds_to_train(-5); });
    o.rounds_to_train(1);
    EXPECT_ERROR("unnamed task", Code::invalid_argument, "empty",
                 [&] { o.add_task("", "train_task", "train", false); });
    EXPECT_ERROR("NUL in a task type", Code::invalid_argument, "task_type",
                 [&] { o.add_task("t", "train_task", std::string_view("tr\0ain", 6), false); });
    EXPECT_ERROR("3 values for [2, 2]", Code::invalid_argument, "\"v\"",
                 [&] { o.add_model_tensor("v", {2, 2}, {1, 2, 3}); });
    EXPECT_ERROR("2 values for a scalar", Code::invalid_argument, "\"v\"", [&] { o.add_model_tensor("v", {}, {1, 2}); });
    EXPECT_ERROR("a dimension beyond int32", Code::invalid_argument, "int32",
                 [&] { o.add_model_tensor("v", {std::size_t{1} << 31}, {1}); });
    EXPECT_ERROR("a model tensor twice", Code::invalid_argument, "already", [&] { o.add_model_tensor("w", {1}, {1}); });
    EXPECT_ERROR("unnamed model tensor", Code::invalid_argument, "empty", [&] { o.add_model_tensor("", {1}, {1}); });
    EXPECT_ERROR("empty best-model metric", Code::invalid_argument, "empty", [&] { o.best_model_metric(""); });
    o.best_model_metric("acc").best_model_metric(std::nullopt);
    EXPECT_ERROR("sleep time 0", Code::invalid_argument, "sleep", [&] { o.sleep_time(0); });
    EXPECT_ERROR("negative tensor wait", Code::invalid_argument, "tensor_wait", [&] { o.tensor_wait(-1ms); });
    o.tensor_wait(0ms).sleep_time(1);
    EXPECT_ERROR("empty state directory", Code::invalid_argument, "empty", [&] { o.state_dir(""); });
    EXPECT_ERROR("non-UTF-8 state directory", Code::invalid_argument, "UTF-8", [&] { o.state_dir(kNotUtf8); });
    o.state_dir(std::nullopt);

    // The failed calls changed nothing: the options still make a FedAvg.
    openfl::FedAvg fa(o);
    CHECK(fa.rounds_to_train() == 1);
    CHECK(fa.last_model().size() == 2);  // "v" was never added

    openfl::FedAvgOptions empty;
    EXPECT_ERROR("no collaborators", Code::invalid_argument, "collaborators", [&] { openfl::FedAvg f(empty); });
    empty.add_collaborator("col1");
    EXPECT_ERROR("no model", Code::invalid_argument, "initial_model", [&] { openfl::FedAvg f(empty); });
    empty.add_task("t", "train_task", "train", false);
    EXPECT_ERROR("a task twice", Code::invalid_argument, "already",
                 [&] { empty.add_task("t", "validate_task", "validate", false); });
}

// ---- 2. accessors -----------------------------------------------------------

void test_accessors() {
    note("FedAvg: a fresh one, a moved-from one, the server's reference, custom tasks");
    using openfl::Code;
    openfl::FedAvgOptions o = valid_options();
    o.rounds_to_train(3);
    openfl::FedAvg fa(o);
    CHECK(fa.current_round() == 0 && fa.rounds_to_train() == 3 && !fa.is_finished());
    CHECK(fa.metrics_size() == 0 && fa.metrics().empty());
    EXPECT_ERROR("metric(0) of none", Code::out_of_range, "out of range", [&] { fa.metric(0); });
    EXPECT_ERROR("metric(SIZE_MAX)", Code::out_of_range, nullptr, [&] { fa.metric(SIZE_MAX); });
    EXPECT_ERROR("best model before any round", Code::failed_precondition, "no best model", [&] { fa.best_model(); });
    CHECK(!fa.best_model_score());

    openfl::Model m = fa.last_model();
    CHECK(m.size() == 2 && m.name(0) == "b" && m.name(1) == "w" && m.name(2).empty());
    CHECK(m.shape(0).empty() && m.shape(0).data() != nullptr);  // a scalar: 0 dimensions, one value
    CHECK(m.values(0).size() == 1 && m.values(0)[0] == kInitialB);
    CHECK(m.shape(1).to_vector() == std::vector<std::size_t>({2, 3}));
    CHECK(m.values(1).to_vector() == kInitialW);
    CHECK(m.find("w") == std::optional<std::size_t>(1) && !m.find("nope") && !m.find(""));
    CHECK(m.values(2).empty() && m.shape(2).empty());

    // The server keeps its own reference: the FedAvg may go first.
    openfl::FedAvg moved(std::move(fa));
    openfl::AggregatorServer server = openfl::start_fedavg_server(server_options(), moved);
    { openfl::FedAvg gone(std::move(moved)); }
    openfl::AggregatorClient client(client_options(server.port(), "col1"));
    openfl::Tasks tasks = client.get_tasks("col1");
    CHECK(tasks.round_number == 0 && tasks.tasks.size() == 3);

    // A moved-from FedAvg: 0, false, INVALID_ARGUMENT.
    const openfl::FedAvg &empty = moved;
    CHECK(empty.current_round() == 0 && empty.rounds_to_train() == 0 && !empty.is_finished());
    CHECK(empty.metrics_size() == 0 && !empty.best_model_score());
    EXPECT_ERROR("last_model of a moved-from FedAvg", Code::invalid_argument, "fedavg", [&] { empty.last_model(); });
    EXPECT_ERROR("best_model of a moved-from FedAvg", Code::invalid_argument, "fedavg", [&] { empty.best_model(); });
    EXPECT_ERROR("metric of a moved-from FedAvg", Code::invalid_argument, "fedavg", [&] { empty.metric(0); });
    EXPECT_ERROR("a server for a moved-from FedAvg", Code::invalid_argument, "fedavg",
                 [&] { openfl::start_fedavg_server(server_options(), empty); });

    // Tasks replace OpenFL's defaults, in the order added.
    openfl::FedAvgOptions custom = valid_options();
    custom.add_task("train", "train_task", "train", false).add_task("check", "validate_task", "validate", true);
    openfl::FedAvg with_tasks(custom);
    openfl::AggregatorServer server2 = openfl::start_fedavg_server(server_options(), with_tasks);
    openfl::AggregatorClient client2(client_options(server2.port(), "col2"));
    tasks = client2.get_tasks("col2");
    CHECK(tasks.tasks.size() == 2);
    if (tasks.tasks.size() == 2) {
        CHECK(tasks.tasks[0].name == "train" && tasks.tasks[0].function_name == "train_task" &&
              tasks.tasks[0].task_type == "train" && !tasks.tasks[0].apply_local);
        CHECK(tasks.tasks[1].name == "check" && tasks.tasks[1].task_type == "validate" && tasks.tasks[1].apply_local);
    }
}

// ---- 3. a federation --------------------------------------------------------

std::vector<std::uint8_t> f32_le(const std::vector<float> &values) {
    std::vector<std::uint8_t> out(4 * values.size());
    for (std::size_t i = 0; i < values.size(); i++) {
        std::uint32_t u = 0;
        std::memcpy(&u, &values[i], 4);
        for (int k = 0; k < 4; k++) out[4 * i + k] = static_cast<std::uint8_t>(u >> (8 * k));
    }
    return out;
}

std::vector<float> from_f32_le(openfl::Bytes data) {
    std::vector<float> out(data.size() / 4);
    for (std::size_t i = 0; i < out.size(); i++) {
        std::uint32_t u = 0;
        for (int k = 0; k < 4; k++) u |= static_cast<std::uint32_t>(data[4 * i + k]) << (8 * k);
        std::memcpy(&out[i], &u, 4);
    }
    return out;
}

// What a collaborator saw and sent, per round.
struct Record {
    std::vector<float> got_w[kRounds];
    float got_b[kRounds] = {};
    int downloads[kRounds] = {};
    std::vector<float> sent_w[kRounds];
    float sent_b[kRounds] = {}, loss[kRounds] = {}, score[kRounds] = {}, local_score[kRounds] = {};
    int uploads[kRounds] = {};
    int quits = 0;
    std::optional<openfl::FedAvgMetric> early_metric;  // read while the server ran
};

// A step away from the global model that depends on who and when.
float trained_value(int col, int round, std::size_t i, float global) {
    return global + (col == 0 ? 1.0f : -0.5f) * static_cast<float>(i + 1) + 0.25f * static_cast<float>(round);
}

// Scores rise per round, so the last round's validation scores best.
float score_value(int col, int round, bool local) {
    return 0.5f + 0.1f * static_cast<float>(round) + (col == 0 ? 0.02f : -0.01f) + (local ? 0.05f : 0.0f);
}

class Collaborator {
public:
    Collaborator(int index, std::uint16_t port, const openfl::FedAvg &fa)
        : index_(index), name_(kColNames[index]), client_(client_options(port, name_)), fa_(fa) {}

    void run() {
        try {
            if (index_ == 0) refusals();
            for (int calls = 0; calls < 100; calls++) {
                openfl::Tasks tasks = client_.get_tasks(name_);
                if (tasks.quit) {
                    rec.quits++;
                    CHECK(tasks.round_number == kRounds);
                    return;
                }
                CHECK(tasks.round_number >= 0 && tasks.round_number < kRounds);
                if (tasks.round_number < 0 || tasks.round_number >= kRounds) return;
                if (tasks.tasks.empty()) {
                    CHECK(tasks.sleep_time == 1);
                    std::this_thread::sleep_for(std::chrono::seconds(tasks.sleep_time));
                }
                for (const openfl::Task &task : tasks.tasks) run_task(tasks.round_number, task);
                if (!rec.early_metric && fa_.metrics_size() > 0) rec.early_metric = fa_.metric(0);
            }
        } catch (const std::exception &e) {
            fail(__FILE__, __LINE__, name_ + ": " + e.what());
        }
    }

    Record rec;

private:
    // The FedAvg's refusals reach the client with their codes.
    void refusals() {
        EXPECT_ERROR("an unknown tensor", openfl::Code::failed_precondition, "\"nope\"",
                     [&] { client_.get_aggregated_tensor(name_, {"nope", 0, false, {"model"}, true}); });
        EXPECT_ERROR("a delta", openfl::Code::invalid_argument, "delta",
                     [&] { client_.get_aggregated_tensor(name_, {"w", 0, false, {"aggregated", "delta"}, true}); });
    }

    // A model tensor, checked against OpenFL's encoding.
    std::vector<float> fetch(const std::string &name, std::int32_t round, const std::vector<std::int32_t> &shape) {
        openfl::Tensor t = client_.get_aggregated_tensor(name_, {name, round, false, {"model"}, true});
        CHECK(t.name() == name && t.round_number() == round && t.lossless() && !t.report());
        CHECK(t.tags() == std::vector<std::string_view>({"compressed", "model"}));
        std::vector<openfl::Metadata> md = t.metadata();
        CHECK_MSG(md.size() == 1 && md[0].int_list == shape, name_ + ": " + name + " has the wrong shape metadata");
        return from_f32_le(t.data());
    }

    void fetch_model(std::int32_t round) {
        if (rec.downloads[round]++ > 0) return;
        rec.got_w[round] = fetch("w", round, {2, 3});
        std::vector<float> b = fetch("b", round, {});
        CHECK(b.size() == 1);
        if (b.size() == 1) rec.got_b[round] = b[0];
    }

    static openfl::TensorView view(const std::string &name, std::int32_t round, bool report,
                                   std::vector<std::string> tags, const std::vector<std::uint8_t> &data,
                                   std::vector<std::int32_t> shape = {}) {
        openfl::TensorView v;
        v.name = name;
        v.round_number = round;
        v.lossless = true;
        v.report = report;
        v.tags = std::move(tags);
        v.metadata = {openfl::Metadata{std::move(shape), {}, {}}};
        v.data = data;
        return v;
    }

    void run_task(std::int32_t round, const openfl::Task &task) {
        std::vector<std::vector<std::uint8_t>> bytes;  // the upload's data, alive during the call
        bytes.reserve(3);
        std::vector<openfl::TensorView> views;
        std::int32_t data_size = 0;
        if (task.name == kTrain) {
            CHECK(task.function_name == "train_task");
            fetch_model(round);
            if (rec.got_w[round].size() != kWLen) return;
            rec.sent_w[round].resize(kWLen);
            for (std::size_t k = 0; k < kWLen; k++)
                rec.sent_w[round][k] = trained_value(index_, round, k, rec.got_w[round][k]);
            rec.sent_b[round] = trained_value(index_, round, 7, rec.got_b[round]);
            rec.loss[round] = 1.0f / static_cast<float>(round + 2) + 0.1f * static_cast<float>(index_);
            views.push_back(view("train_loss", round, true, {"compressed", "metric"},
                                 bytes.emplace_back(f32_le({rec.loss[round]}))));
            views.push_back(view("w", round, false, {"compressed", "trained"},
                                 bytes.emplace_back(f32_le(rec.sent_w[round])), {2, 3}));
            views.push_back(view("b", round, false, {"compressed", "trained"},
                                 bytes.emplace_back(f32_le({rec.sent_b[round]}))));
            data_size = kTrainSize[index_];
        } else if (task.name == kValidate || task.name == kLocal) {
            bool local = task.name == kLocal;
            CHECK(task.function_name == "validate_task" && task.apply_local == local);
            if (!local) fetch_model(round);
            float &score = local ? rec.local_score[round] : rec.score[round];
            score = score_value(index_, round, local);
            std::vector<std::string> tags = {"compressed", "metric", local ? "validate_local" : "validate_agg"};
            views.push_back(view("score", round, true, tags, bytes.emplace_back(f32_le({score}))));
            data_size = kValidSize[index_];
        } else {
            fail(__FILE__, __LINE__, name_ + ": unexpected task " + task.name);
            return;
        }
        client_.send_local_task_results(name_, round, task.name, data_size, views);
        rec.uploads[round]++;
    }

    int index_;
    std::string name_;
    openfl::AggregatorClient client_;
    const openfl::FedAvg &fa_;
};

// Round `round`'s data-size weighted average of the uploads.
void expected_model(const std::vector<Record> &recs, int round, std::vector<double> &w, double &b) {
    double total = kTrainSize[0] + kTrainSize[1];
    w.assign(kWLen, 0.0);
    b = 0;
    for (int c = 0; c < kCols; c++) {
        double weight = kTrainSize[c] / total;
        for (std::size_t k = 0; k < kWLen; k++) w[k] += weight * recs[c].sent_w[round][k];
        b += weight * recs[c].sent_b[round];
    }
}

double expected_metric(const std::vector<Record> &recs, int round, const std::string &task) {
    double sum = 0, total = 0;
    for (int c = 0; c < kCols; c++) {
        bool train = task == kTrain;
        double size = train ? kTrainSize[c] : kValidSize[c];
        double value = train ? recs[c].loss[round] : task == kLocal ? recs[c].local_score[round] : recs[c].score[round];
        sum += size * value;
        total += size;
    }
    return sum / total;
}

void check_model(const char *what, const openfl::Model &m, const std::vector<double> &w, double b) {
    std::optional<std::size_t> iw = m.find("w"), ib = m.find("b");
    CHECK_MSG(m.size() == 2 && iw && ib, what);
    if (!iw || !ib) return;
    CHECK_MSG(m.shape(*iw).to_vector() == std::vector<std::size_t>({2, 3}) && m.shape(*ib).empty(), what);
    openfl::ArrayView<float> values = m.values(*iw);
    CHECK_MSG(values.size() == kWLen, what);
    for (std::size_t k = 0; k < values.size() && k < w.size(); k++)
        CHECK_MSG(close_to(values[k], w[k]), std::string(what) + ": w[" + std::to_string(k) + "] = " +
                                                 std::to_string(values[k]) + ", expected " + std::to_string(w[k]));
    CHECK_MSG(m.values(*ib).size() == 1 && close_to(m.values(*ib)[0], b), what);
}

void check_metrics(const std::vector<openfl::FedAvgMetric> &metrics, const std::vector<Record> &recs) {
    CHECK_MSG(metrics.size() == static_cast<std::size_t>(kRounds * 3 * (kCols + 1)),
              std::to_string(metrics.size()) + " metrics");
    std::map<std::tuple<int, std::string, std::string>, int> seen;
    for (const openfl::FedAvgMetric &m : metrics) {
        int who = m.origin == "col1" ? 0 : m.origin == "col2" ? 1 : m.origin == "aggregator" ? kCols : -1;
        bool known_task = m.task == kValidate || m.task == kTrain || m.task == kLocal;
        if (who < 0 || !known_task || m.round < 0 || m.round >= kRounds) {
            fail(__FILE__, __LINE__, "unexpected metric " + m.origin + "/" + m.task + "/" + m.name);
            continue;
        }
        seen[{m.round, m.origin, m.task}]++;
        CHECK(m.aggregated == (who == kCols));
        CHECK(m.name == (m.task == kTrain ? "train_loss" : "score"));
        double expected;
        if (who == kCols) {
            expected = expected_metric(recs, m.round, m.task);
        } else {
            const Record &r = recs[who];
            expected = m.task == kTrain ? r.loss[m.round] : m.task == kLocal ? r.local_score[m.round] : r.score[m.round];
        }
        CHECK_MSG(close_to(m.value, expected), m.origin + "/" + m.task + " round " + std::to_string(m.round) + " = " +
                                                   std::to_string(m.value) + ", expected " + std::to_string(expected));
    }
    for (int r = 0; r < kRounds; r++)
        for (const char *task : {kValidate, kTrain, kLocal})
            for (const char *origin : {"col1", "col2", "aggregator"})
                CHECK_MSG((seen[{r, origin, task}] == 1), std::string(origin) + "/" + task + " round " + std::to_string(r));
}

void test_federation() {
    note("FedAvg federation: 2 collaborators, 2 rounds, mTLS");
    const int failures_before = g_failures;
    openfl::FedAvgOptions o = valid_options();
    o.rounds_to_train(kRounds).sleep_time(1).tensor_wait(5000ms).best_model_metric("score");
    openfl::FedAvg fa(o);
    openfl::AggregatorServer server = openfl::start_fedavg_server(server_options(), fa);
    std::vector<std::unique_ptr<Collaborator>> cols;
    for (int c = 0; c < kCols; c++) cols.push_back(std::make_unique<Collaborator>(c, server.port(), fa));
    std::vector<std::thread> threads;
    auto start = std::chrono::steady_clock::now();
    for (auto &c : cols) threads.emplace_back([&c] { c->run(); });
    server.serve();  // returns once both were told to quit
    for (std::thread &t : threads) t.join();
    std::printf("federation done in %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::vector<Record> recs;
    for (auto &c : cols) recs.push_back(c->rec);

    for (int c = 0; c < kCols; c++) {
        const Record &r = recs[c];
        CHECK_MSG(r.quits == 1, kColNames[c]);
        for (int round = 0; round < kRounds; round++)
            CHECK_MSG(r.uploads[round] == 3 && r.downloads[round] >= 1, kColNames[c]);
    }
    if (g_failures > failures_before) return;  // the comparisons below need complete records
    CHECK(fa.current_round() == kRounds && fa.rounds_to_train() == kRounds && fa.is_finished());

    // Round 0's model is the initial one; round r+1's the average of round r.
    std::vector<double> w;
    double b = 0;
    for (const Record &r : recs) {
        CHECK(r.got_w[0] == kInitialW && r.got_b[0] == kInitialB);
        for (int round = 1; round < kRounds; round++) {
            expected_model(recs, round - 1, w, b);
            for (std::size_t k = 0; k < kWLen; k++) CHECK(close_to(r.got_w[round][k], w[k]));
            CHECK(close_to(r.got_b[round], b));
        }
    }
    expected_model(recs, kRounds - 1, w, b);
    check_model("last model", fa.last_model(), w, b);

    // The last round's validation scored best; its model is the one
    // validated then, the previous round's average.
    std::optional<openfl::FedAvgScore> best = fa.best_model_score();
    CHECK(best && best->round == kRounds - 1 && close_to(best->score, expected_metric(recs, kRounds - 1, kValidate)));
    expected_model(recs, kRounds - 2, w, b);
    check_model("best model", fa.best_model(), w, b);

    std::vector<openfl::FedAvgMetric> metrics = fa.metrics();
    check_metrics(metrics, recs);
    bool early = false;
    for (const Record &r : recs) {
        if (!r.early_metric) continue;
        early = true;
        const openfl::FedAvgMetric &e = *r.early_metric;
        CHECK(e.round == metrics[0].round && e.origin == metrics[0].origin && e.task == metrics[0].task &&
              e.name == metrics[0].name && e.value == metrics[0].value && !e.aggregated);
    }
    CHECK_MSG(early, "no collaborator read a metric while the server ran");
}

// ---- 4. crash recovery --------------------------------------------------------

openfl::FedAvgOptions state_options(const std::string &dir) {
    openfl::FedAvgOptions o = valid_options();
    o.rounds_to_train(2).sleep_time(1).state_dir(dir);
    return o;
}

void test_state_dir() {
    note("FedAvg state directory: resume after a crash, refusals");
    char dir[] = "/tmp/ofl_cpp_fedavg_state_XXXXXX";
    if (mkdtemp(dir) == nullptr) {
        fail(__FILE__, __LINE__, "mkdtemp");
        return;
    }
    {
        openfl::FedAvg fa(state_options(dir));
        EXPECT_ERROR("directory in use", openfl::Code::failed_precondition, "in use",
                     [&] { openfl::FedAvg second(state_options(dir)); });
        openfl::AggregatorServer server = openfl::start_fedavg_server(server_options(), fa);
        openfl::AggregatorClient c(client_options(server.port(), "col1"));
        openfl::Tasks tasks = c.get_tasks("col1");
        CHECK(tasks.round_number == 0 && tasks.tasks.size() == 3);
        std::vector<std::uint8_t> score = f32_le({0.625f});
        openfl::TensorView v;
        v.name = "score";
        v.lossless = v.report = true;
        v.tags = {"compressed", "metric", "validate_agg"};
        v.metadata = {openfl::Metadata{}};
        v.data = score;
        c.send_local_task_results("col1", 0, kValidate, 8, {v});
    }  // the aggregator is gone as a crash would leave it; its directory stays
    {
        openfl::FedAvg resumed(state_options(dir));
        CHECK(resumed.current_round() == 0);
        std::vector<openfl::FedAvgMetric> metrics = resumed.metrics();
        CHECK(metrics.size() == 1);
        if (metrics.size() == 1)
            CHECK(metrics[0].origin == "col1" && metrics[0].task == kValidate && metrics[0].name == "score" &&
                  metrics[0].value == 0.625 && !metrics[0].aggregated && metrics[0].round == 0);
        openfl::AggregatorServer server = openfl::start_fedavg_server(server_options(), resumed);
        openfl::AggregatorClient c(client_options(server.port(), "col1"));
        openfl::Tasks tasks = c.get_tasks("col1");  // col1 owes the other two tasks
        CHECK(tasks.round_number == 0 && tasks.tasks.size() == 2);
        if (tasks.tasks.size() == 2) CHECK(tasks.tasks[0].name == kTrain && tasks.tasks[1].name == kLocal);
    }

    // A damaged federation.state: DATA_LOSS naming the file.
    std::string manifest = std::string(dir) + "/federation.state";
    {
        std::fstream f(manifest, std::ios::in | std::ios::out | std::ios::binary);
        CHECK(f.good());
        f.seekg(60);
        char byte = 0;
        f.get(byte);
        f.seekp(60);
        f.put(static_cast<char>(byte ^ 0x5a));
    }
    EXPECT_ERROR("a damaged state directory", openfl::Code::data_loss, "federation.state",
                 [&] { openfl::FedAvg damaged(state_options(dir)); });

    unlink(manifest.c_str());
    unlink((std::string(dir) + "/lock").c_str());
    for (int seq = 0; seq < 4; seq++) {
        char name[64];
        std::snprintf(name, sizeof name, "/result-%020d.state", seq);
        unlink((std::string(dir) + name).c_str());
    }
    CHECK_MSG(rmdir(dir) == 0, std::string("could not remove ") + dir);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    g_certs = argv[1];
    openfl::set_log_callback(openfl::LogLevel::error, nullptr);
    test_options();
    test_accessors();
    test_federation();
    test_state_dir();
    if (g_failures > 0) {
        std::fprintf(stderr, "test_cpp_fedavg: %d failure(s)\n", g_failures.load());
        return 1;
    }
    std::printf("test_cpp_fedavg: passed\n");
    return 0;
}
