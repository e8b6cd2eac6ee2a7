// A collaborator in C++ (include/openfl_transport.hpp) for the example
// aggregator (aggregator.cpp, or examples/go/aggregator): asks for tasks
// until told to quit; for "train" it fetches the round's "weights", moves
// them halfway towards its own target and uploads them and its loss with
// its sample count, each call bounded by a time limit, the upload's
// progress followed.
//
//   collaborator CERT_DIR NAME PORT [HOST]
//
// CERT_DIR holds ca.crt, NAME.crt, NAME.key (tests/certs/make_certs.sh).
#include <openfl_transport.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s CERT_DIR NAME PORT [HOST]\n", argv[0]);
        return 2;
    }
    std::string certs = argv[1], name = argv[2];
    auto port = static_cast<std::uint16_t>(std::atoi(argv[3]));
    std::string host = argc > 4 ? argv[4] : "127.0.0.1";

    // This collaborator's "data": a target the weights move towards, and
    // how many samples it has (its weight in the average).
    float target = static_cast<float>(name.back() - '0');
    std::int32_t samples = 100 * (name.back() - '0');

    try {
        openfl::AggregatorClientOptions options(host, port);
        options
            .tls(openfl::TlsConfig()
                     .root_certificate_file(certs + "/ca.crt")
                     .identity_files(certs + "/" + name + ".crt", certs + "/" + name + ".key"))
            .federation("example-aggregator", "example-federation")
            .connect(openfl::ConnectOptions().retry(std::chrono::milliseconds(100), std::chrono::milliseconds(2000),
                                                    std::chrono::milliseconds(30000)));
        openfl::AggregatorClient client(options);

        for (;;) {
            openfl::Tasks tasks = client.get_tasks(name);
            if (tasks.quit) break;
            if (tasks.tasks.empty()) {
                std::this_thread::sleep_for(std::chrono::seconds(tasks.sleep_time > 0 ? tasks.sleep_time : 1));
                continue;
            }
            for (const openfl::Task &task : tasks.tasks) {
                if (task.name != "train") continue;
                openfl::TensorRequest request;
                request.tensor_name = "weights";
                request.round_number = tasks.round_number;
                request.tags = {"model"};
                openfl::Tensor model = client.get_aggregated_tensor(name, request);
                std::vector<float> weights(model.data().size() / sizeof(float));
                std::memcpy(weights.data(), model.data().data(), weights.size() * sizeof(float));
                float loss = 0;  // mean squared distance to the target, before training
                for (float w : weights) loss += (target - w) * (target - w) / static_cast<float>(weights.size());
                for (float &w : weights) w += 0.5f * (target - w);  // "training"

                openfl::TensorView trained;  // the trained model, as the FedAvg expects it
                trained.name = "weights";
                trained.round_number = tasks.round_number;
                trained.lossless = true;
                trained.tags = {"trained"};
                trained.metadata = model.metadata();  // the shape
                trained.data = weights;               // borrowed for the call, not copied
                openfl::TensorView metric;            // a metric: one value, report = true
                metric.name = "loss";
                metric.round_number = tasks.round_number;
                metric.lossless = metric.report = true;
                metric.tags = {"metric"};
                metric.metadata = {openfl::Metadata{}};  // a scalar
                metric.data = openfl::Bytes(&loss, sizeof loss);
                std::uint64_t sent = 0;
                openfl::CallOptions call;  // per call: a time limit, and the upload's progress
                call.timeout = std::chrono::minutes(1);
                call.progress = [&sent](std::uint64_t done, std::uint64_t /*total*/) {
                    sent = done;  // every 4 MiB at most, and once at the end
                    return true;  // false would abort the upload
                };
                client.send_local_task_results(name, tasks.round_number, task.name, samples, {trained, metric}, call);
                std::printf("%s: round %d trained, weights[0] = %.4f, %llu bytes sent\n", name.c_str(),
                            tasks.round_number, weights[0], static_cast<unsigned long long>(sent));
                std::fflush(stdout);
            }
        }
        std::printf("%s: told to quit\n", name.c_str());
        return 0;
    } catch (const openfl::Error &e) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
        return 1;
    }
}
