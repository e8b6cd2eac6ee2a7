/*
 * openfl_transport.hpp: header-only C++17 API of openfl-transport, over the
 * C API of openfl_transport.h (link libopenfl_transport as for C).
 *
 * Conventions:
 *  - Errors are exceptions: every failing call throws openfl::Error, which
 *    carries the library's code (openfl::Code) and message. (C++17 has no
 *    std::expected; the C API reports failures on every call, so exceptions
 *    keep call sites short.) Nothing throws across the C boundary: logic
 *    callbacks that throw are answered with an error code (see
 *    AggregatorLogic).
 *  - Handles (ClientOptions, Client, ServerOptions, AggregatorServer, Tensor)
 *    are RAII, move-only; a moved-from handle may only be destroyed or
 *    assigned to.
 *  - Tensor data crosses without copies: TensorView borrows the caller's
 *    bytes for the duration of a call (uploads are serialized straight from
 *    them); openfl::Tensor points into the library's receive buffer until it
 *    is destroyed; TaskResults (in a callback) are views valid during the
 *    callback. Bytes is the span-like byte view used for all of them.
 *  - Strings go in as std::string_view (copied with a terminating NUL; an
 *    embedded NUL throws INVALID_ARGUMENT) and come out as std::string_view
 *    into the owning object, or as std::string in value types.
 *  - Thread safety is the C API's: Client and AggregatorServer may be used
 *    from several threads; logic callbacks run on library threads,
 *    concurrently.
 */
#ifndef OPENFL_TRANSPORT_HPP
#define OPENFL_TRANSPORT_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "openfl_transport.h"

namespace openfl {

/** What kind of failure an Error is: the library's ofl_code. */
enum class Code : int32_t {
    ok = OFL_CODE_OK,
    cancelled = OFL_CODE_CANCELLED,
    unknown = OFL_CODE_UNKNOWN,
    invalid_argument = OFL_CODE_INVALID_ARGUMENT,
    deadline_exceeded = OFL_CODE_DEADLINE_EXCEEDED,
    not_found = OFL_CODE_NOT_FOUND,
    already_exists = OFL_CODE_ALREADY_EXISTS,
    permission_denied = OFL_CODE_PERMISSION_DENIED,
    resource_exhausted = OFL_CODE_RESOURCE_EXHAUSTED,
    failed_precondition = OFL_CODE_FAILED_PRECONDITION,
    aborted = OFL_CODE_ABORTED,
    out_of_range = OFL_CODE_OUT_OF_RANGE,
    unimplemented = OFL_CODE_UNIMPLEMENTED,
    internal = OFL_CODE_INTERNAL,
    unavailable = OFL_CODE_UNAVAILABLE,
    data_loss = OFL_CODE_DATA_LOSS,
    unauthenticated = OFL_CODE_UNAUTHENTICATED,
    tls = OFL_CODE_TLS,
    io = OFL_CODE_IO,
    panic = OFL_CODE_PANIC,
    invalid_response = OFL_CODE_INVALID_RESPONSE,
    retries_exhausted = OFL_CODE_RETRIES_EXHAUSTED,
};

/** The code's name, e.g. "UNAUTHENTICATED" (static string). */
inline const char *code_name(Code code) noexcept { return ofl_code_name(static_cast<int32_t>(code)); }

/** The library version, e.g. "0.1.0". */
inline const char *version() noexcept { return ofl_version(); }

/** A failure: a code and a message naming the cause. what() is
 *  "CODE: message". Logic callbacks throw it to answer with that code. */
class Error : public std::runtime_error {
public:
    Error(Code code, std::string message)
        : std::runtime_error(std::string(code_name(code)) + ": " + message),
          code_(code),
          message_(std::move(message)) {}
    Code code() const noexcept { return code_; }
    /** The message without the code prefix. */
    const std::string &message() const noexcept { return message_; }

private:
    Code code_;
    std::string message_;
};

/** A read-only byte view (pointer + length; C++17 has no std::span). */
class Bytes {
public:
    constexpr Bytes() noexcept = default;
    Bytes(const void *data, std::size_t size) noexcept
        : data_(static_cast<const std::uint8_t *>(data)), size_(size) {}
    /** Views any contiguous container of trivially copyable values
     *  (std::vector<float>, std::string, std::array, ...) as its bytes. */
    template <class Container,
              class T = std::remove_cv_t<std::remove_pointer_t<decltype(std::data(std::declval<const Container &>()))>>,
              class = std::enable_if_t<std::is_trivially_copyable_v<T> && !std::is_same_v<Container, Bytes>>>
    Bytes(const Container &c) noexcept  // NOLINT(google-explicit-constructor): a view, like std::span
        : data_(reinterpret_cast<const std::uint8_t *>(std::data(c))), size_(std::size(c) * sizeof(T)) {}

    const std::uint8_t *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const std::uint8_t *begin() const noexcept { return data_; }
    const std::uint8_t *end() const noexcept { return data_ + size_; }
    std::uint8_t operator[](std::size_t i) const noexcept { return data_[i]; }
    /** A copy of the bytes. */
    std::vector<std::uint8_t> to_vector() const { return std::vector<std::uint8_t>(begin(), end()); }

private:
    const std::uint8_t *data_ = nullptr;
    std::size_t size_ = 0;
};

/** One transformer-metadata entry (OpenFL's MetadataProto); for OpenFL's
 *  uncompressed pipeline, int_list is the tensor's shape. */
struct Metadata {
    std::vector<std::int32_t> int_list;
    std::vector<bool> bool_list;
    std::map<std::int32_t, float> int_to_float;
};

/** A tensor to send: everything is copied but `data`, which is borrowed
 *  for the duration of the call it is passed to. */
struct TensorView {
    std::string name;
    std::int32_t round_number = 0;
    bool lossless = false;
    bool report = false;
    std::vector<std::string> tags;
    std::vector<Metadata> metadata;
    Bytes data;
};

/** One task of a GetTasks answer (OpenFL's Task). */
struct Task {
    std::string name;
    std::string function_name;  // e.g. "train_task"
    std::string task_type;      // e.g. "train"
    bool apply_local = false;
};

/** The answer to GetTasks. */
struct Tasks {
    std::int32_t round_number = 0;
    std::vector<Task> tasks;
    std::int32_t sleep_time = 0;  // seconds before asking again (when there are no tasks)
    bool quit = false;
};

/** What GetAggregatedTensor asks for. */
struct TensorRequest {
    std::string tensor_name;
    std::int32_t round_number = 0;
    bool report = false;
    std::vector<std::string> tags;
    bool require_lossless = false;
};

namespace detail {

inline void check(ofl_error *error) {
    if (error == nullptr) return;
    Code code = static_cast<Code>(ofl_error_code(error));
    std::string message = ofl_error_message(error);
    ofl_error_free(error);
    throw Error(code, std::move(message));
}

/** A NUL-terminated copy of `s`; an embedded NUL is INVALID_ARGUMENT. */
inline std::string z(std::string_view s, const char *what) {
    if (s.find('\0') != std::string_view::npos)
        throw Error(Code::invalid_argument, std::string(what) + " contains a NUL byte");
    return std::string(s);
}

inline std::string_view sv(const char *s) noexcept { return s ? std::string_view(s) : std::string_view(); }

template <class T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T *)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

/** ofl_tensor_view arrays built from TensorViews, with their storage. */
class Views {
public:
    Views(const TensorView *tensors, std::size_t n) {
        views_.resize(n);
        for (std::size_t i = 0; i < n; i++) fill(views_[i], tensors[i], i);
    }
    const ofl_tensor_view *data() const noexcept { return views_.empty() ? nullptr : views_.data(); }
    std::size_t size() const noexcept { return views_.size(); }

private:
    void fill(ofl_tensor_view &v, const TensorView &t, std::size_t index) {
        std::string what = "tensor[" + std::to_string(index) + "]";
        const std::string &name = keep(z(t.name, (what + ".name").c_str()));
        std::vector<const char *> &tags = tag_ptrs_.emplace_back();
        for (const std::string &tag : t.tags) tags.push_back(keep(z(tag, (what + ".tags").c_str())).c_str());
        std::vector<ofl_metadata_view> &md = metadata_.emplace_back();
        for (const Metadata &m : t.metadata) {
            ofl_metadata_view mv{};
            mv.int_list = m.int_list.empty() ? nullptr : m.int_list.data();
            mv.int_list_len = m.int_list.size();
            if (!m.bool_list.empty()) {
                auto &bools = bools_.emplace_back(new bool[m.bool_list.size()]);
                for (std::size_t j = 0; j < m.bool_list.size(); j++) bools[j] = m.bool_list[j];
                mv.bool_list = bools.get();
                mv.bool_list_len = m.bool_list.size();
            }
            if (!m.int_to_float.empty()) {
                auto &keys = keys_.emplace_back();
                auto &values = values_.emplace_back();
                for (const auto &[k, value] : m.int_to_float) {
                    keys.push_back(k);
                    values.push_back(value);
                }
                mv.int_to_float_keys = keys.data();
                mv.int_to_float_values = values.data();
                mv.int_to_float_len = keys.size();
            }
            md.push_back(mv);
        }
        v.name = name.c_str();
        v.round_number = t.round_number;
        v.lossless = t.lossless;
        v.report = t.report;
        v.tags = tags.empty() ? nullptr : tags.data();
        v.tags_len = tags.size();
        v.metadata = md.empty() ? nullptr : md.data();
        v.metadata_len = md.size();
        v.data = t.data.data();
        v.data_len = t.data.size();
    }
    const std::string &keep(std::string s) { return *strings_.emplace_back(std::make_unique<std::string>(std::move(s))); }

    std::vector<ofl_tensor_view> views_;
    // Stable addresses: vectors of vectors are only appended to, and the
    // inner vectors' buffers do not move when the outer vector grows.
    std::vector<std::unique_ptr<std::string>> strings_;
    std::vector<std::vector<const char *>> tag_ptrs_;
    std::vector<std::vector<ofl_metadata_view>> metadata_;
    std::vector<std::unique_ptr<bool[]>> bools_;
    std::vector<std::vector<std::int32_t>> keys_;
    std::vector<std::vector<float>> values_;
};

}  // namespace detail

/** A non-owning view of a library tensor (see Tensor and TaskResults). */
class TensorRef {
public:
    explicit TensorRef(const ofl_tensor *tensor) noexcept : t_(tensor) {}

    std::string_view name() const noexcept { return ofl_tensor_name(t_); }
    std::int32_t round_number() const noexcept { return ofl_tensor_round_number(t_); }
    bool lossless() const noexcept { return ofl_tensor_lossless(t_); }
    bool report() const noexcept { return ofl_tensor_report(t_); }
    std::vector<std::string_view> tags() const {
        std::vector<std::string_view> out(ofl_tensor_tags_len(t_));
        for (std::size_t i = 0; i < out.size(); i++) out[i] = detail::sv(ofl_tensor_tag(t_, i));
        return out;
    }
    /** The bytes: no copy, valid as long as the tensor. */
    Bytes data() const noexcept { return Bytes(ofl_tensor_data(t_), ofl_tensor_data_len(t_)); }
    /** The metadata entries (copied). */
    std::vector<Metadata> metadata() const {
        std::vector<Metadata> out(ofl_tensor_metadata_len(t_));
        for (std::size_t i = 0; i < out.size(); i++) {
            std::size_t n = 0;
            const std::int32_t *ints = ofl_tensor_metadata_int_list(t_, i, &n);
            if (ints) out[i].int_list.assign(ints, ints + n);
            const bool *bools = ofl_tensor_metadata_bool_list(t_, i, &n);
            if (bools) out[i].bool_list.assign(bools, bools + n);
            std::size_t entries = ofl_tensor_metadata_int_to_float_len(t_, i);
            for (std::size_t j = 0; j < entries; j++) {
                std::int32_t key = 0;
                float value = 0;
                if (ofl_tensor_metadata_int_to_float_entry(t_, i, j, &key, &value)) out[i].int_to_float[key] = value;
            }
        }
        return out;
    }
    const ofl_tensor *get() const noexcept { return t_; }

protected:
    const ofl_tensor *t_;
};

/** A tensor received from the aggregator (owns the library's receive
 *  buffer; data() points into it without a copy). Move-only. */
class Tensor : public TensorRef {
public:
    explicit Tensor(ofl_tensor *owned) noexcept : TensorRef(owned) {}
    Tensor(Tensor &&other) noexcept : TensorRef(std::exchange(other.t_, nullptr)) {}
    Tensor &operator=(Tensor &&other) noexcept {
        if (this != &other) {
            ofl_tensor_free(const_cast<ofl_tensor *>(t_));
            t_ = std::exchange(other.t_, nullptr);
        }
        return *this;
    }
    Tensor(const Tensor &) = delete;
    Tensor &operator=(const Tensor &) = delete;
    ~Tensor() { ofl_tensor_free(const_cast<ofl_tensor *>(t_)); }
};

/** Settings for Client (setters chain; each throws Error on a bad value). */
class ClientOptions {
public:
    /** The aggregator's address (OpenFL's agg_addr, agg_port). */
    ClientOptions(std::string_view host, std::uint16_t port) {
        ofl_client_options *o = nullptr;
        detail::check(ofl_client_options_new(detail::z(host, "host").c_str(), port, &o));
        p_.reset(o);
    }
    /** TLS on (default, with client authentication) or off. */
    ClientOptions &tls(bool enabled) {
        detail::check(ofl_client_options_set_tls(p_.get(), enabled));
        return *this;
    }
    /** Certificate files; certificate and private_key may be empty for one-way TLS. */
    ClientOptions &tls_files(std::string_view root_certificate, std::string_view certificate = {},
                             std::string_view private_key = {}) {
        std::string root = detail::z(root_certificate, "root_certificate");
        std::string crt = detail::z(certificate, "certificate");
        std::string key = detail::z(private_key, "private_key");
        detail::check(ofl_client_options_set_tls_files(p_.get(), root.c_str(), crt.empty() ? nullptr : crt.c_str(),
                                                       key.empty() ? nullptr : key.c_str()));
        return *this;
    }
    /** Certificates as PEM bytes (copied). */
    ClientOptions &tls_pem(Bytes root_certificate, Bytes certificate = {}, Bytes private_key = {}) {
        detail::check(ofl_client_options_set_tls_pem(p_.get(), root_certificate.data(), root_certificate.size(),
                                                     certificate.data(), certificate.size(), private_key.data(),
                                                     private_key.size()));
        return *this;
    }
    /** One-way TLS: present no client certificate. */
    ClientOptions &disable_client_auth(bool disable = true) {
        detail::check(ofl_client_options_set_disable_client_auth(p_.get(), disable));
        return *this;
    }
    /** The name the server certificate must carry (default: the host). */
    ClientOptions &server_name(std::string_view name) {
        detail::check(ofl_client_options_set_server_name(p_.get(), detail::z(name, "server_name").c_str()));
        return *this;
    }
    /** The identity requests carry and replies must match; an empty
     *  single_col_cert_common_name means none. */
    ClientOptions &federation(std::string_view aggregator_uuid, std::string_view federation_uuid,
                              std::string_view single_col_cert_common_name = {}) {
        std::string scn = detail::z(single_col_cert_common_name, "single_col_cert_common_name");
        detail::check(ofl_client_options_set_federation(
            p_.get(), detail::z(aggregator_uuid, "aggregator_uuid").c_str(),
            detail::z(federation_uuid, "federation_uuid").c_str(), scn.empty() ? nullptr : scn.c_str()));
        return *this;
    }
    /** Retries while the aggregator is unreachable: backoff from `initial`
     *  up to `max` with jitter, giving up after `deadline` (RETRIES_EXHAUSTED);
     *  a negative deadline retries forever (the default). */
    ClientOptions &retry(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                         std::chrono::milliseconds deadline) {
        detail::check(ofl_client_options_set_retry(p_.get(), static_cast<std::uint64_t>(initial.count()),
                                                   static_cast<std::uint64_t>(max.count()),
                                                   deadline.count() < 0 ? -1 : deadline.count()));
        return *this;
    }
    ClientOptions &connect_timeout(std::chrono::milliseconds timeout) {
        detail::check(ofl_client_options_set_connect_timeout_ms(p_.get(), static_cast<std::uint64_t>(timeout.count())));
        return *this;
    }
    ClientOptions &max_message_size(std::uint64_t bytes) {
        detail::check(ofl_client_options_set_max_message_size(p_.get(), bytes));
        return *this;
    }
    ClientOptions &reconnect_every_call(bool enabled = true) {
        detail::check(ofl_client_options_set_reconnect_every_call(p_.get(), enabled));
        return *this;
    }
    const ofl_client_options *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_client_options, ofl_client_options_free> p_;
};

/** A collaborator's connection to an aggregator (OpenFL's
 *  AggregatorGRPCClient). Thread-safe; move-only. Destroying it cancels
 *  calls in progress on other threads (they throw CANCELLED). */
class Client {
public:
    explicit Client(const ClientOptions &options) {
        ofl_client *c = nullptr;
        detail::check(ofl_client_new(options.get(), &c));
        p_.reset(c);
    }

    Tasks get_tasks(std::string_view collaborator) const {
        ofl_tasks *raw = nullptr;
        detail::check(ofl_client_get_tasks(p_.get(), detail::z(collaborator, "collaborator").c_str(), &raw));
        detail::Handle<ofl_tasks, ofl_tasks_free> t(raw);
        Tasks out;
        out.round_number = ofl_tasks_round_number(raw);
        out.sleep_time = ofl_tasks_sleep_time(raw);
        out.quit = ofl_tasks_quit(raw);
        out.tasks.resize(ofl_tasks_len(raw));
        for (std::size_t i = 0; i < out.tasks.size(); i++) {
            out.tasks[i].name = detail::sv(ofl_tasks_name(raw, i));
            out.tasks[i].function_name = detail::sv(ofl_tasks_function_name(raw, i));
            out.tasks[i].task_type = detail::sv(ofl_tasks_task_type(raw, i));
            out.tasks[i].apply_local = ofl_tasks_apply_local(raw, i);
        }
        return out;
    }

    /** The tensor's data points into the receive buffer (no copy). */
    Tensor get_aggregated_tensor(std::string_view collaborator, const TensorRequest &request) const {
        std::string col = detail::z(collaborator, "collaborator");
        std::string name = detail::z(request.tensor_name, "tensor_name");
        std::vector<std::string> tags;
        std::vector<const char *> tag_ptrs;
        tags.reserve(request.tags.size());
        for (const std::string &t : request.tags) tag_ptrs.push_back(tags.emplace_back(detail::z(t, "tags")).c_str());
        ofl_tensor *out = nullptr;
        detail::check(ofl_client_get_aggregated_tensor(p_.get(), col.c_str(), name.c_str(), request.round_number,
                                                       request.report, tag_ptrs.empty() ? nullptr : tag_ptrs.data(),
                                                       tag_ptrs.size(), request.require_lossless, &out));
        return Tensor(out);
    }

    /** Uploads results; tensor data is serialized straight from the views. */
    void send_local_task_results(std::string_view collaborator, std::int32_t round_number, std::string_view task_name,
                                 std::int32_t data_size, const TensorView *tensors, std::size_t count) const {
        detail::Views views(tensors, count);
        detail::check(ofl_client_send_local_task_results(p_.get(), detail::z(collaborator, "collaborator").c_str(),
                                                         round_number, detail::z(task_name, "task_name").c_str(),
                                                         data_size, views.data(), views.size()));
    }
    void send_local_task_results(std::string_view collaborator, std::int32_t round_number, std::string_view task_name,
                                 std::int32_t data_size, const std::vector<TensorView> &tensors) const {
        send_local_task_results(collaborator, round_number, task_name, data_size, tensors.data(), tensors.size());
    }

    /** Closes the connection (OpenFL's disconnect); the next call reconnects. */
    void disconnect() const { detail::check(ofl_client_disconnect(p_.get())); }
    /** Replaces the connection with a new one (OpenFL's reconnect). */
    void reconnect() const { detail::check(ofl_client_reconnect(p_.get())); }

    ofl_client *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_client, ofl_client_free> p_;
};

/** Settings for AggregatorServer (setters chain; each throws Error). */
class ServerOptions {
public:
    ServerOptions() {
        ofl_aggregator_server_options *o = nullptr;
        detail::check(ofl_aggregator_server_options_new(&o));
        p_.reset(o);
    }
    /** Address and port (default "[::]", 0 = any free port). */
    ServerOptions &listen(std::string_view host, std::uint16_t port) {
        detail::check(ofl_aggregator_server_options_set_listen(p_.get(), detail::z(host, "host").c_str(), port));
        return *this;
    }
    ServerOptions &tls(bool enabled) {
        detail::check(ofl_aggregator_server_options_set_tls(p_.get(), enabled));
        return *this;
    }
    ServerOptions &tls_files(std::string_view root_certificate, std::string_view certificate,
                             std::string_view private_key) {
        detail::check(ofl_aggregator_server_options_set_tls_files(
            p_.get(), detail::z(root_certificate, "root_certificate").c_str(),
            detail::z(certificate, "certificate").c_str(), detail::z(private_key, "private_key").c_str()));
        return *this;
    }
    ServerOptions &tls_pem(Bytes root_certificate, Bytes certificate, Bytes private_key) {
        detail::check(ofl_aggregator_server_options_set_tls_pem(p_.get(), root_certificate.data(),
                                                               root_certificate.size(), certificate.data(),
                                                               certificate.size(), private_key.data(),
                                                               private_key.size()));
        return *this;
    }
    /** One-way TLS: client certificates become optional. */
    ServerOptions &disable_client_auth(bool disable = true) {
        detail::check(ofl_aggregator_server_options_set_disable_client_auth(p_.get(), disable));
        return *this;
    }
    ServerOptions &federation(std::string_view aggregator_uuid, std::string_view federation_uuid,
                              std::string_view single_col_cert_common_name = {}) {
        std::string scn = detail::z(single_col_cert_common_name, "single_col_cert_common_name");
        detail::check(ofl_aggregator_server_options_set_federation(
            p_.get(), detail::z(aggregator_uuid, "aggregator_uuid").c_str(),
            detail::z(federation_uuid, "federation_uuid").c_str(), scn.empty() ? nullptr : scn.c_str()));
        return *this;
    }
    /** Authorizes a collaborator (OpenFL's authorized_cols). */
    ServerOptions &add_collaborator(std::string_view name) {
        detail::check(
            ofl_aggregator_server_options_add_collaborator(p_.get(), detail::z(name, "collaborator_name").c_str()));
        return *this;
    }
    /** Upper bound of the random delay before UNAUTHENTICATED (default 5 s; 0 = none). */
    ServerOptions &auth_failure_max_delay(std::chrono::milliseconds delay) {
        detail::check(ofl_aggregator_server_options_set_auth_failure_max_delay_ms(
            p_.get(), static_cast<std::uint64_t>(delay.count())));
        return *this;
    }
    ServerOptions &max_message_size(std::uint64_t bytes) {
        detail::check(ofl_aggregator_server_options_set_max_message_size(p_.get(), bytes));
        return *this;
    }
    const ofl_aggregator_server_options *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_aggregator_server_options, ofl_aggregator_server_options_free> p_;
};

/** Task results as the send_local_task_results callback sees them: views
 *  into the library's buffer, valid during the callback only. */
class TaskResults {
public:
    explicit TaskResults(const ofl_task_results *results) noexcept : r_(results) {}
    std::int32_t round_number() const noexcept { return ofl_task_results_round_number(r_); }
    std::string_view task_name() const noexcept { return detail::sv(ofl_task_results_task_name(r_)); }
    std::int32_t data_size() const noexcept { return ofl_task_results_data_size(r_); }
    std::size_t size() const noexcept { return ofl_task_results_tensors_len(r_); }
    TensorRef operator[](std::size_t i) const noexcept { return TensorRef(ofl_task_results_tensor(r_, i)); }

    class iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = TensorRef;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = TensorRef;
        iterator(const TaskResults *r, std::size_t i) noexcept : r_(r), i_(i) {}
        TensorRef operator*() const noexcept { return (*r_)[i_]; }
        iterator &operator++() noexcept {
            ++i_;
            return *this;
        }
        iterator operator++(int) noexcept {
            iterator old = *this;
            ++i_;
            return old;
        }
        bool operator==(const iterator &o) const noexcept { return i_ == o.i_; }
        bool operator!=(const iterator &o) const noexcept { return i_ != o.i_; }

    private:
        const TaskResults *r_;
        std::size_t i_;
    };
    iterator begin() const noexcept { return iterator(this, 0); }
    iterator end() const noexcept { return iterator(this, size()); }

private:
    const ofl_task_results *r_;
};

/** Where get_aggregated_tensor puts its answer. */
class TensorReply {
public:
    explicit TensorReply(ofl_reply *reply) noexcept : reply_(reply) {}
    /** Sends `tensor`, copying it (data included) before this returns. */
    void set(const TensorView &tensor) {
        detail::Views views(&tensor, 1);
        detail::check(ofl_reply_set_tensor(reply_, views.data()));
    }
    /** Sends `tensor` without copying its data: the library reads it until
     *  the reply is sent, then releases `keep_alive` (the owner of the data,
     *  e.g. a shared_ptr to the buffer) from one of its threads. */
    void set_borrowed(const TensorView &tensor, std::shared_ptr<const void> keep_alive) {
        detail::Views views(&tensor, 1);
        auto *holder = new std::shared_ptr<const void>(std::move(keep_alive));
        // release runs exactly once, also when this call fails.
        detail::check(ofl_reply_set_tensor_borrowed(reply_, views.data(), &TensorReply::release, holder));
    }
    ofl_reply *get() const noexcept { return reply_; }

private:
    static void release(void *holder) noexcept { delete static_cast<std::shared_ptr<const void> *>(holder); }
    ofl_reply *reply_;
};

/** An aggregator's logic. Methods run on library threads, concurrently
 *  (make them thread-safe) and may block. Throwing openfl::Error answers
 *  the call with its code and message; any other std::exception answers
 *  UNKNOWN with what(); anything else INTERNAL. */
class AggregatorLogic {
public:
    virtual ~AggregatorLogic() = default;
    virtual Tasks get_tasks(std::string_view collaborator) = 0;
    virtual void get_aggregated_tensor(std::string_view collaborator, const TensorRequest &request,
                                       TensorReply &reply) = 0;
    /** Tensor data is valid during the call only: copy what you keep. */
    virtual void send_local_task_results(std::string_view collaborator, const TaskResults &results) = 0;
    /** AggregatorServer::serve returns once this answers true (polled). */
    virtual bool all_quit_jobs_sent() { return false; }
};

/** Implemented by logic that replaces OpenFL 1.6's certificate-CN rule
 *  (valid_collaborator_cn_and_id); found with dynamic_cast. */
class CollaboratorValidator {
public:
    virtual ~CollaboratorValidator() = default;
    virtual bool valid_collaborator_cn_and_id(std::string_view common_name, std::string_view sender) = 0;
};

namespace detail {

struct LogicHolder {
    std::shared_ptr<AggregatorLogic> logic;
    CollaboratorValidator *validator;
};

inline int32_t answer_exception(ofl_reply *reply) noexcept {
    Code code = Code::internal;
    std::string message = "unknown exception in aggregator logic";
    try {
        throw;
    } catch (const Error &e) {
        code = e.code() == Code::ok ? Code::unknown : e.code();
        message = e.message();
    } catch (const std::exception &e) {
        code = Code::unknown;
        message = e.what();
    } catch (...) {
    }
    ofl_error_free(ofl_reply_set_error_message(reply, message.c_str()));
    return static_cast<int32_t>(code);
}

inline LogicHolder &holder(void *user_data) noexcept { return *static_cast<LogicHolder *>(user_data); }

inline int32_t get_tasks(void *user_data, const char *collaborator, ofl_reply *reply) noexcept {
    try {
        Tasks t = holder(user_data).logic->get_tasks(sv(collaborator));
        check(ofl_reply_set_round_number(reply, t.round_number));
        check(ofl_reply_set_sleep_time(reply, t.sleep_time));
        check(ofl_reply_set_quit(reply, t.quit));
        for (const Task &task : t.tasks)
            check(ofl_reply_add_task(reply, z(task.name, "task.name").c_str(),
                                     z(task.function_name, "task.function_name").c_str(),
                                     z(task.task_type, "task.task_type").c_str(), task.apply_local));
        return OFL_CODE_OK;
    } catch (...) {
        return answer_exception(reply);
    }
}

inline int32_t get_aggregated_tensor(void *user_data, const char *collaborator, const ofl_tensor_request *request,
                                     ofl_reply *reply) noexcept {
    try {
        TensorRequest r;
        r.tensor_name = sv(request->tensor_name);
        r.round_number = request->round_number;
        r.report = request->report;
        r.require_lossless = request->require_lossless;
        for (std::size_t i = 0; i < request->tags_len; i++) r.tags.emplace_back(sv(request->tags[i]));
        TensorReply tensor_reply(reply);
        holder(user_data).logic->get_aggregated_tensor(sv(collaborator), r, tensor_reply);
        return OFL_CODE_OK;
    } catch (...) {
        return answer_exception(reply);
    }
}

inline int32_t send_local_task_results(void *user_data, const char *collaborator, const ofl_task_results *results,
                                       ofl_reply *reply) noexcept {
    try {
        holder(user_data).logic->send_local_task_results(sv(collaborator), TaskResults(results));
        return OFL_CODE_OK;
    } catch (...) {
        return answer_exception(reply);
    }
}

inline bool all_quit_jobs_sent(void *user_data) noexcept {
    try {
        return holder(user_data).logic->all_quit_jobs_sent();
    } catch (...) {
        return false;
    }
}

inline bool valid_collaborator(void *user_data, const char *cn, const char *sender) noexcept {
    try {
        return holder(user_data).validator->valid_collaborator_cn_and_id(sv(cn), sv(sender));
    } catch (...) {
        return false;  // a failing check rejects
    }
}

inline void free_holder(void *user_data) noexcept { delete static_cast<LogicHolder *>(user_data); }

}  // namespace detail

/** A running aggregator server (OpenFL's AggregatorGRPCServer): serving in
 *  the background once constructed. Move-only; the destructor stops it,
 *  waits until it no longer listens and releases the logic once the calls
 *  in flight have finished. Do not destroy it from a logic callback. */
class AggregatorServer {
public:
    AggregatorServer(const ServerOptions &options, std::shared_ptr<AggregatorLogic> logic) {
        if (!logic) throw Error(Code::invalid_argument, "logic is null");
        auto *h = new detail::LogicHolder{logic, dynamic_cast<CollaboratorValidator *>(logic.get())};
        ofl_aggregator_callbacks cb{};
        cb.user_data = h;
        cb.free_user_data = detail::free_holder;  // called exactly once, also on failure
        cb.get_tasks = detail::get_tasks;
        cb.get_aggregated_tensor = detail::get_aggregated_tensor;
        cb.send_local_task_results = detail::send_local_task_results;
        cb.all_quit_jobs_sent = detail::all_quit_jobs_sent;
        cb.valid_collaborator_cn_and_id = h->validator ? detail::valid_collaborator : nullptr;
        ofl_aggregator_server *s = nullptr;
        detail::check(ofl_aggregator_server_start(options.get(), &cb, &s));
        p_.reset(s);
    }

    /** The port listened on (the chosen one when 0 was asked). */
    std::uint16_t port() const noexcept { return ofl_aggregator_server_port(p_.get()); }
    /** Blocks until the logic reports all quit jobs sent, or stop(). */
    void serve() const { detail::check(ofl_aggregator_server_serve(p_.get())); }
    /** Asks the server to stop; returns at once. Safe from callbacks. */
    void stop() const { detail::check(ofl_aggregator_server_stop(p_.get())); }
    ofl_aggregator_server *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_aggregator_server, ofl_aggregator_server_free> p_;
};

/** Severity of a log record. */
enum class LogLevel : int32_t {
    off = OFL_LOG_LEVEL_OFF,
    error = OFL_LOG_LEVEL_ERROR,
    warn = OFL_LOG_LEVEL_WARN,
    info = OFL_LOG_LEVEL_INFO,
    debug = OFL_LOG_LEVEL_DEBUG,
    trace = OFL_LOG_LEVEL_TRACE,
};

/** Receives log records on library threads, concurrently; must not call
 *  into the library. */
using LogFunction = std::function<void(LogLevel level, std::string_view target, std::string_view message)>;

namespace detail {
struct LogState {
    std::mutex mutex;
    std::unique_ptr<LogFunction> current;
};
inline LogState &log_state() {
    static LogState state;  // outlives every call: the library drops it on replacement
    return state;
}
inline void log_trampoline(void *user_data, ofl_log_level level, const char *target, const char *message) noexcept {
    try {
        (*static_cast<LogFunction *>(user_data))(static_cast<LogLevel>(level), sv(target), sv(message));
    } catch (...) {
    }
}
}  // namespace detail

/** Sends the library's log records up to `max_level` to `fn` (process-wide);
 *  an empty `fn` writes them to stderr (the default, for warnings and errors). */
inline void set_log_callback(LogLevel max_level, LogFunction fn) {
    auto &state = detail::log_state();
    std::lock_guard<std::mutex> lock(state.mutex);
    std::unique_ptr<LogFunction> next = fn ? std::make_unique<LogFunction>(std::move(fn)) : nullptr;
    detail::check(ofl_set_log_callback(static_cast<int32_t>(max_level), next ? detail::log_trampoline : nullptr,
                                       next.get()));
    // The previous function is no longer used once the call returned.
    state.current = std::move(next);
}

}  // namespace openfl

#endif /* OPENFL_TRANSPORT_HPP */
