// An aggregator in C++ (include/openfl_transport.hpp): the library's
// built-in FedAvg over one float32 tensor "weights", a few rounds, mTLS.
//
//   aggregator CERT_DIR [PORT [ROUNDS [COLLABORATOR...]]]
//
// CERT_DIR holds ca.crt, server.crt, server.key (tests/certs/make_certs.sh
// writes them). PORT 0 (the default) picks a free port; the port is printed
// as "aggregator listening on port N". Defaults: 3 rounds, col1 and col2.
// Every round each collaborator runs the one task "train": it fetches
// "weights", trains on it and uploads the result and its loss with its
// sample count; the FedAvg averages them weighted by those counts. Exits 0
// once every collaborator was told to quit.
#include <openfl_transport.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
        openfl::FedAvgOptions plan;
        plan.federation("example-aggregator", "example-federation")
            .rounds_to_train(rounds)
            .add_task("train", "train_task", "train", false)  // replaces OpenFL's three default tasks
            .add_model_tensor("weights", {8}, std::vector<float>(8, 0.0f))
            .sleep_time(1);  // seconds a collaborator done with the round waits
        for (const std::string &c : collaborators) plan.add_collaborator(c);
        openfl::FedAvg fedavg(plan);

        openfl::AggregatorServerOptions options;
        options.listen("127.0.0.1", port)
            .tls(openfl::TlsConfig()
                     .root_certificate_file(certs + "/ca.crt")
                     .identity_files(certs + "/server.crt", certs + "/server.key"));
        openfl::AggregatorServer server = openfl::start_fedavg_server(options, fedavg);
        std::printf("aggregator listening on port %u\n", static_cast<unsigned>(server.port()));
        std::fflush(stdout);
        server.serve();  // returns once every collaborator was told to quit

        for (const openfl::FedAvgMetric &m : fedavg.metrics())
            if (m.aggregated) std::printf("round %d: average %s = %.4f\n", m.round, m.name.c_str(), m.value);
        openfl::Model model = fedavg.last_model();
        std::printf("final weights[0] = %.4f\n", model.values(*model.find("weights"))[0]);
        std::printf("aggregator: federation finished after %d rounds\n", fedavg.current_round());
        return 0;
    } catch (const openfl::Error &e) {
        std::fprintf(stderr, "aggregator: %s\n", e.what());
        return 1;
    }
}
