// Consumer of an installed openfl-transport (C++ header, shared library):
// an insecure server on 127.0.0.1 and a client, one round trip each way.
#include <openfl_transport.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace {
class Echo : public openfl::AggregatorLogic {
public:
    openfl::Tasks get_tasks(std::string_view) override { return {4, {{"train", "train_task", "train", false}}, 0, false}; }
    void get_aggregated_tensor(std::string_view, const openfl::TensorRequest &r, openfl::TensorReply &reply) override {
        openfl::TensorView v;
        v.name = r.tensor_name;
        v.data = last_;
        reply.set(v);
    }
    void send_local_task_results(std::string_view, const openfl::TaskResults &results) override {
        last_ = results[0].data().to_vector();
    }
    std::vector<std::uint8_t> last_;
};
}  // namespace

int main() {
    try {
        auto logic = std::make_shared<Echo>();
        openfl::AggregatorServerOptions so;
        so.listen("127.0.0.1", 0).no_tls().federation("a", "f").add_collaborator("col1");
        openfl::AggregatorServer server(so, logic);
        openfl::AggregatorClientOptions co("127.0.0.1", server.port());
        co.no_tls().federation("a", "f").connect(openfl::ConnectOptions().retry(
            std::chrono::milliseconds(50), std::chrono::milliseconds(200), std::chrono::milliseconds(5000)));
        openfl::AggregatorClient client(co);
        openfl::Tasks tasks = client.get_tasks("col1");
        std::vector<std::uint8_t> blob(1 << 20);
        for (std::size_t i = 0; i < blob.size(); i++) blob[i] = static_cast<std::uint8_t>(i * 31);
        openfl::TensorView up;
        up.name = "blob";
        up.data = blob;
        client.send_local_task_results("col1", 4, "train", 1, {up});
        openfl::TensorRequest req;
        req.tensor_name = "blob";
        openfl::Tensor down = client.get_aggregated_tensor("col1", req);
        bool ok = tasks.round_number == 4 && tasks.tasks.size() == 1 && down.data().size() == blob.size() &&
                  std::memcmp(down.data().data(), blob.data(), blob.size()) == 0;
        std::printf("consumer_cpp: openfl_transport %s: %s\n", openfl::version(), ok ? "ok" : "MISMATCH");
        return ok ? 0 : 1;
    } catch (const openfl::Error &e) {
        std::fprintf(stderr, "consumer_cpp: %s\n", e.what());
        return 1;
    }
}
