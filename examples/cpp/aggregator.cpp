// An aggregator in C++ (include/openfl_transport.hpp): federated averaging
// of one float32 tensor "weights" over a few rounds, over mTLS.
//
//   aggregator CERT_DIR [PORT [ROUNDS [COLLABORATOR...]]]
//
// CERT_DIR holds ca.crt, server.crt, server.key (tests/certs/make_certs.sh
// writes them). PORT 0 (the default) picks a free port; the port is printed
// as "aggregator listening on port N". Defaults: 3 rounds, col1 and col2.
// Every round each collaborator fetches "weights", trains on it and uploads
// the result with its sample count; the round's model is the average
// weighted by those counts. Exits 0 once every collaborator was told to quit.
#include <openfl_transport.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace {

constexpr const char *kAggregatorUuid = "example-aggregator";
constexpr const char *kFederationUuid = "example-federation";
constexpr std::size_t kWeights = 8;

class FedAvg : public openfl::AggregatorLogic {
public:
    FedAvg(std::vector<std::string> collaborators, int rounds)
        : collaborators_(std::move(collaborators)), rounds_(rounds), model_(std::make_shared<std::vector<float>>(kWeights, 0.0f)) {}

    openfl::Tasks get_tasks(std::string_view collaborator) override {
        std::lock_guard<std::mutex> lock(mu_);
        openfl::Tasks t;
        t.round_number = round_;
        if (round_ > rounds_) {
            quit_sent_.insert(std::string(collaborator));
            t.quit = true;
        } else if (reported_.count(std::string(collaborator))) {
            t.sleep_time = 1;  // done with this round: ask again later
        } else {
            t.tasks.push_back({"train", "train_task", "train", false});
        }
        return t;
    }

    void get_aggregated_tensor(std::string_view, const openfl::TensorRequest &request,
                               openfl::TensorReply &reply) override {
        std::lock_guard<std::mutex> lock(mu_);
        if (request.tensor_name != "weights")
            throw openfl::Error(openfl::Code::not_found, "no tensor named " + request.tensor_name);
        if (request.round_number != round_)
            throw openfl::Error(openfl::Code::failed_precondition,
                                "round " + std::to_string(request.round_number) + " is not the current round " +
                                    std::to_string(round_));
        openfl::TensorView v;
        v.name = "weights";
        v.round_number = round_;
        v.lossless = true;
        v.tags = {"model"};
        v.metadata = {openfl::Metadata{{static_cast<std::int32_t>(kWeights)}, {}, {}}};
        v.data = openfl::Bytes(*model_);
        // No copy: the library reads the round's model until the reply is
        // sent; the shared_ptr keeps it alive even after the round moves on.
        reply.set_borrowed(v, model_);
    }

    void send_local_task_results(std::string_view collaborator, const openfl::TaskResults &results) override {
        std::lock_guard<std::mutex> lock(mu_);
        std::string col(collaborator);
        if (results.round_number() != round_)
            throw openfl::Error(openfl::Code::failed_precondition, "results for another round");
        if (results.size() != 1 || results[0].name() != "weights" || results[0].data().size() != kWeights * sizeof(float))
            throw openfl::Error(openfl::Code::invalid_argument, "expected one tensor \"weights\" of 8 float32");
        if (!reported_.insert(col).second) throw openfl::Error(openfl::Code::already_exists, col + " already reported");
        std::vector<float> local(kWeights);
        std::memcpy(local.data(), results[0].data().data(), kWeights * sizeof(float));  // valid during the call only
        for (std::size_t i = 0; i < kWeights; i++) sum_[i] += static_cast<double>(local[i]) * results.data_size();
        samples_ += results.data_size();
        if (reported_.size() == collaborators_.size()) finish_round();
    }

    bool all_quit_jobs_sent() override {
        std::lock_guard<std::mutex> lock(mu_);
        return quit_sent_.size() == collaborators_.size();
    }

private:
    void finish_round() {
        auto next = std::make_shared<std::vector<float>>(kWeights);
        for (std::size_t i = 0; i < kWeights; i++) (*next)[i] = static_cast<float>(sum_[i] / samples_);
        model_ = next;  // replies still sending the old model keep their own reference
        std::printf("round %d: weights[0] = %.4f, weights[7] = %.4f (%lld samples)\n", round_, (*next)[0], (*next)[7],
                    static_cast<long long>(samples_));
        std::fflush(stdout);
        round_++;
        reported_.clear();
        sum_.assign(kWeights, 0.0);
        samples_ = 0;
    }

    std::mutex mu_;
    const std::vector<std::string> collaborators_;
    const int rounds_;
    int round_ = 1;
    std::shared_ptr<std::vector<float>> model_;
    std::set<std::string> reported_;
    std::set<std::string> quit_sent_;
    std::vector<double> sum_ = std::vector<double>(kWeights, 0.0);
    std::int64_t samples_ = 0;
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s CERT_DIR [PORT [ROUNDS [COLLABORATOR...]]]\n", argv[0]);
        return 2;
    }
    std::string certs = argv[1];
    auto port = static_cast<std::uint16_t>(argc > 2 ? std::atoi(argv[2]) : 0);
    int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
    std::vector<std::string> collaborators;
    for (int i = 4; i < argc; i++) collaborators.emplace_back(argv[i]);
    if (collaborators.empty()) collaborators = {"col1", "col2"};

    try {
        openfl::ServerOptions options;
        options.listen("127.0.0.1", port)
            .tls_files(certs + "/ca.crt", certs + "/server.crt", certs + "/server.key")
            .federation(kAggregatorUuid, kFederationUuid);
        for (const std::string &c : collaborators) options.add_collaborator(c);

        openfl::AggregatorServer server(options, std::make_shared<FedAvg>(collaborators, rounds));
        std::printf("aggregator listening on port %u\n", static_cast<unsigned>(server.port()));
        std::fflush(stdout);
        server.serve();  // returns once every collaborator was told to quit
        std::printf("aggregator: federation finished after %d rounds\n", rounds);
        return 0;
    } catch (const openfl::Error &e) {
        std::fprintf(stderr, "aggregator: %s\n", e.what());
        return 1;
    }
}
