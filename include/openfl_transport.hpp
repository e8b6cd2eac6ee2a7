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
 *  - Handles (AggregatorClientOptions, AggregatorClient, AggregatorServerOptions, AggregatorServer,
 *    TlsConfig, ConnectOptions, ServerLimits, Tensor,
 *    FedAvgOptions, FedAvg; for the director: DirectorServerOptions, DirectorServer,
 *    DirectorClientOptions, EnvoyClient, FrontendClient, TensorList, Model)
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
 *  - Thread safety is the C API's: clients and servers may be used from
 *    several threads; logic callbacks and director hooks (DirectorHooks)
 *    run on library threads, concurrently.
 *  - Every client call takes an optional last CallOptions: a time limit
 *    (DEADLINE_EXCEEDED), a CancelToken (cancel() from any thread:
 *    CANCELLED) and, on transfers, a progress function. Each client's
 *    close() cancels all its calls from another thread.
 */
#ifndef OPENFL_TRANSPORT_HPP
#define OPENFL_TRANSPORT_HPP

#include <algorithm>
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
#include <optional>
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
    protocol_mismatch = OFL_CODE_PROTOCOL_MISMATCH,
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

/** The iterator of an indexed sequence of Value (TaskResults, TensorListRef). */
template <class Container, class Value>
class IndexIterator {
public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Value;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Value;
    IndexIterator(const Container *c, std::size_t i) noexcept : c_(c), i_(i) {}
    Value operator*() const noexcept { return (*c_)[i_]; }
    IndexIterator &operator++() noexcept {
        ++i_;
        return *this;
    }
    IndexIterator operator++(int) noexcept {
        IndexIterator old = *this;
        ++i_;
        return old;
    }
    bool operator==(const IndexIterator &o) const noexcept { return i_ == o.i_; }
    bool operator!=(const IndexIterator &o) const noexcept { return i_ != o.i_; }

private:
    const Container *c_;
    std::size_t i_;
};

}  // namespace detail

/** TLS settings (ofl_tls_config): root CA(s), own identity, client-auth
 *  mode, CRLs; attached (copied) to any options object with tls(). Setters
 *  chain and throw Error on a bad value; files are read when a server
 *  starts or a client is created. Move-only. */
class TlsConfig {
public:
    TlsConfig() {
        ofl_tls_config *t = nullptr;
        detail::check(ofl_tls_config_new(&t));
        p_.reset(t);
    }
    /** The CA certificate(s) peers must chain to, as a PEM file. */
    TlsConfig &root_certificate_file(std::string_view path) {
        return set(ofl_tls_config_set_root_certificate_file, detail::z(path, "path").c_str());
    }
    /** The CA certificate(s) as PEM bytes (copied). */
    TlsConfig &root_certificate_pem(Bytes pem) { return set(ofl_tls_config_set_root_certificate_pem, pem.data(), pem.size()); }
    /** Own certificate chain and private key, as PEM files. */
    TlsConfig &identity_files(std::string_view certificate, std::string_view private_key) {
        return set(ofl_tls_config_set_identity_files, detail::z(certificate, "certificate").c_str(),
                   detail::z(private_key, "private_key").c_str());
    }
    /** Own certificate chain and private key as PEM bytes (copied). */
    TlsConfig &identity_pem(Bytes certificate, Bytes private_key) {
        return set(ofl_tls_config_set_identity_pem, certificate.data(), certificate.size(), private_key.data(),
                   private_key.size());
    }
    /** Mutual TLS (default) or one-way (OpenFL's disable_client_auth): a
     *  client presents no certificate; a server makes them optional. */
    TlsConfig &client_auth(bool mutual) {
        return set(ofl_tls_config_set_client_auth, mutual ? OFL_CLIENT_AUTH_MUTUAL : OFL_CLIENT_AUTH_NONE);
    }
    /** Adds a certificate revocation list (PEM file): a peer certificate it
     *  revokes is refused at the handshake. */
    TlsConfig &crl_file(std::string_view path) { return set(ofl_tls_config_add_crl_file, detail::z(path, "path").c_str()); }
    /** Adds a certificate revocation list as PEM bytes (copied). */
    TlsConfig &crl_pem(Bytes pem) { return set(ofl_tls_config_add_crl_pem, pem.data(), pem.size()); }
    const ofl_tls_config *get() const noexcept { return p_.get(); }

private:
    template <class Setter, class... Args>
    TlsConfig &set(Setter setter, Args... args) {
        detail::check(setter(p_.get(), args...));
        return *this;
    }
    detail::Handle<ofl_tls_config, ofl_tls_config_free> p_;
};

/** How a client reaches its server (ofl_connect_options); what is not set
 *  keeps the client's default. Attached (copied) with connect(). */
class ConnectOptions {
public:
    ConnectOptions() {
        ofl_connect_options *c = nullptr;
        detail::check(ofl_connect_options_new(&c));
        p_.reset(c);
    }
    /** The name the server certificate must carry (default: the host). */
    ConnectOptions &server_name(std::string_view name) {
        return set(ofl_connect_options_set_server_name, detail::z(name, "server_name").c_str());
    }
    /** Time allowed for TCP + TLS set-up (default 10 s). */
    ConnectOptions &connect_timeout(std::chrono::milliseconds timeout) {
        return set(ofl_connect_options_set_connect_timeout_ms, static_cast<std::uint64_t>(std::max<std::int64_t>(0, timeout.count())));
    }
    /** Retries while the server is unreachable: backoff from `initial` up to
     *  `max` with jitter, giving up after `deadline` (RETRIES_EXHAUSTED); a
     *  negative deadline retries forever (the default). */
    ConnectOptions &retry(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                          std::chrono::milliseconds deadline) {
        return set(ofl_connect_options_set_retry, static_cast<std::uint64_t>(std::max<std::int64_t>(0, initial.count())),
                   static_cast<std::uint64_t>(std::max<std::int64_t>(0, max.count())),
                   static_cast<std::int64_t>(deadline.count() < 0 ? -1 : deadline.count()));
    }
    /** The largest message sent or received (default 1 GiB, as OpenFL). */
    ConnectOptions &max_message_size(std::uint64_t bytes) { return set(ofl_connect_options_set_max_message_size, bytes); }
    /** Default time limit of every call of the client, all attempts and
     *  retries included (DEADLINE_EXCEEDED when it passes); 0 = none (the
     *  default, like OpenFL). CallOptions::timeout overrides it per call. */
    ConnectOptions &call_timeout(std::chrono::milliseconds timeout) {
        if (timeout.count() < 0) throw Error(Code::invalid_argument, "call_timeout is negative");
        return set(ofl_connect_options_set_call_timeout_ms, static_cast<std::uint64_t>(timeout.count()));
    }
    const ofl_connect_options *get() const noexcept { return p_.get(); }

private:
    template <class Setter, class... Args>
    ConnectOptions &set(Setter setter, Args... args) {
        detail::check(setter(p_.get(), args...));
        return *this;
    }
    detail::Handle<ofl_connect_options, ofl_connect_options_free> p_;
};

/** A cancellation token (ofl_cancel_token). Copies share one token:
 *  cancel() from any thread ends every call using it (through
 *  CallOptions::cancel) with CANCELLED as soon as possible; an upload in
 *  flight is reset, so the server never counts it as complete. A call
 *  started with a cancelled token fails at once. A moved-from token may
 *  only be destroyed or assigned to. */
class CancelToken {
public:
    CancelToken() {
        ofl_cancel_token *t = nullptr;
        detail::check(ofl_cancel_token_new(&t));
        p_.reset(t, ofl_cancel_token_free);
    }
    /** Thread-safe and idempotent. */
    void cancel() const { detail::check(ofl_cancel_token_cancel(p_.get())); }
    bool is_cancelled() const noexcept { return p_ && ofl_cancel_token_is_cancelled(p_.get()); }
    const ofl_cancel_token *get() const noexcept { return p_.get(); }

private:
    std::shared_ptr<ofl_cancel_token> p_;
};

/** Progress of one transfer: bytes done and bytes in all (0 when unknown).
 *  Called on a library thread while the call runs, at most every 4 MiB
 *  and once at the end; return false to abort the call with CANCELLED. An
 *  exception it throws aborts the call too and is rethrown by the call. */
using ProgressFunction = std::function<bool(std::uint64_t bytes_done, std::uint64_t bytes_total)>;

/** Settings of one client call (ofl_call_options), its optional last
 *  argument; what is not set keeps the client's default. Read only during
 *  the call, so one CallOptions may serve several calls, also at once. */
struct CallOptions {
    /** Whole-call time limit, all attempts and retries included:
     *  DEADLINE_EXCEEDED when it passes. 0 = no limit; std::nullopt = the
     *  client's default (ConnectOptions::call_timeout). */
    std::optional<std::chrono::milliseconds> timeout;
    /** Cancelling this token (from any thread) ends the call with CANCELLED. */
    std::optional<CancelToken> cancel;
    /** Progress of a transfer (tensor download, results upload, director
     *  model and archive transfers); other calls never call it. */
    ProgressFunction progress;
};

namespace detail {

/** One call's ofl_call_options (NULL when `options` sets nothing), with
 *  the progress trampoline: an exception of the progress function is
 *  caught on the library thread, aborts the call, and is rethrown by
 *  check() once the call has returned. Not copyable: it is the user_data. */
class Call {
public:
    explicit Call(const CallOptions &options) : progress_(options.progress ? &options.progress : nullptr) {
        if (!options.timeout && !options.cancel && !options.progress) return;
        ofl_call_options *c = nullptr;
        detail::check(ofl_call_options_new(&c));
        p_.reset(c);
        if (options.timeout) {
            if (options.timeout->count() < 0) throw Error(Code::invalid_argument, "CallOptions::timeout is negative");
            detail::check(ofl_call_options_set_timeout_ms(c, static_cast<std::uint64_t>(options.timeout->count())));
        }
        if (options.cancel) {
            if (!options.cancel->get()) throw Error(Code::invalid_argument, "CallOptions::cancel is a moved-from token");
            detail::check(ofl_call_options_set_cancel_token(c, options.cancel->get()));
        }
        if (progress_) detail::check(ofl_call_options_set_progress(c, &Call::on_progress, this));
    }
    Call(const Call &) = delete;
    Call &operator=(const Call &) = delete;

    const ofl_call_options *get() const noexcept { return p_.get(); }

    /** The call's result: the progress function's exception if it threw
     *  (the library's error is dropped), else detail::check(error). */
    void check(ofl_error *error) {
        if (error_) {
            ofl_error_free(error);
            std::rethrow_exception(error_);
        }
        detail::check(error);
    }

private:
    static bool on_progress(void *user_data, std::uint64_t done, std::uint64_t total) noexcept {
        Call *self = static_cast<Call *>(user_data);
        if (self->error_) return false;
        try {
            return (*self->progress_)(done, total);
        } catch (...) {
            self->error_ = std::current_exception();  // rethrown on the caller's side of the C frames
            return false;
        }
    }

    Handle<ofl_call_options, ofl_call_options_free> p_;
    const ProgressFunction *progress_;
    std::exception_ptr error_;
};

}  // namespace detail

/** The bounds a server puts on its peers (ofl_server_limits); attached
 *  (copied) with limits(). */
class ServerLimits {
public:
    ServerLimits() {
        ofl_server_limits *l = nullptr;
        detail::check(ofl_server_limits_new(&l));
        p_.reset(l);
    }
    /** Calls served at once on one connection; more are refused with
     *  REFUSED_STREAM (default 100; 0 is an error). */
    ServerLimits &max_concurrent_streams(std::uint32_t max) { return set(ofl_server_limits_set_max_concurrent_streams, max); }
    /** Connections served at once; more wait in the listen backlog
     *  (default 1000; 0 is an error). */
    ServerLimits &max_connections(std::uint32_t max) { return set(ofl_server_limits_set_max_connections, max); }
    /** Time a new connection has to finish its TLS handshake and HTTP/2
     *  preface (default 10 s; 1 ms to a year). */
    ServerLimits &handshake_timeout(std::chrono::milliseconds timeout) {
        return set(ofl_server_limits_set_handshake_timeout_ms, millis(timeout));
    }
    /** A connection with no call in flight this long is closed (default
     *  60 s; 1 ms to a year). */
    ServerLimits &idle_timeout(std::chrono::milliseconds timeout) {
        return set(ofl_server_limits_set_idle_timeout_ms, millis(timeout));
    }
    /** Largest request of a call that is not a streamed upload, framing
     *  included; larger gets RESOURCE_EXHAUSTED (default 4 MiB, at least 1024). */
    ServerLimits &max_unary_request_size(std::uint64_t bytes) {
        return set(ofl_server_limits_set_max_unary_request_size, bytes);
    }
    /** How long a stopping server lets calls in flight finish (default 5 s;
     *  0 cancels them at once; up to a year). After it they are cancelled
     *  (clients see UNAVAILABLE) and their connections reset, so stop() +
     *  serve() returning, and the destructor, take at most about this grace
     *  plus half a second whatever the peers do. A callback still running
     *  then is abandoned: it runs to its end, its answer is dropped. */
    ServerLimits &shutdown_grace(std::chrono::milliseconds grace) {
        if (grace.count() < 0) throw Error(Code::invalid_argument, "shutdown_grace is negative");
        return set(ofl_server_limits_set_shutdown_grace_ms, millis(grace));
    }
    const ofl_server_limits *get() const noexcept { return p_.get(); }

private:
    static std::uint64_t millis(std::chrono::milliseconds d) {
        return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
    }
    template <class Setter, class... Args>
    ServerLimits &set(Setter setter, Args... args) {
        detail::check(setter(p_.get(), args...));
        return *this;
    }
    detail::Handle<ofl_server_limits, ofl_server_limits_free> p_;
};

namespace detail {

/** The 0.2 options shape: the owned ofl_*_options (Api::create/destroy),
 *  one tls() taking a TlsConfig (or no_tls()), and a chaining set(). Api
 *  names the C functions of one options type; Derived is the options class. */
template <class Derived, class Api>
class Options {
public:
    /** TLS settings (copied; `tls` may go after). */
    Derived &tls(const TlsConfig &tls) { return set(Api::set_tls, tls.get()); }
    /** No TLS (OpenFL's tls=False). Without tls() or no_tls(), start or
     *  connect fails naming the setter. */
    Derived &no_tls() { return set(Api::set_tls, static_cast<const ofl_tls_config *>(nullptr)); }
    const typename Api::options *get() const noexcept { return p_.get(); }

protected:
    Options() {
        typename Api::options *o = nullptr;
        check(Api::create(&o));
        p_.reset(o);
    }
    Options(std::string_view host, std::uint16_t port) {
        typename Api::options *o = nullptr;
        check(Api::create(z(host, "host").c_str(), port, &o));
        p_.reset(o);
    }
    template <class Setter, class... Args>
    Derived &set(Setter setter, Args... args) {
        check(setter(p_.get(), args...));
        return static_cast<Derived &>(*this);
    }
    template <class Setter>
    Derived &set_federation(Setter setter, std::string_view aggregator_uuid, std::string_view federation_uuid,
                            std::string_view single_col_cert_common_name) {
        std::string scn = z(single_col_cert_common_name, "single_col_cert_common_name");
        return set(setter, z(aggregator_uuid, "aggregator_uuid").c_str(), z(federation_uuid, "federation_uuid").c_str(),
                   scn.empty() ? nullptr : scn.c_str());
    }

private:
    Handle<typename Api::options, Api::destroy> p_;
};

/** A client's options: Options plus connect(). */
template <class Derived, class Api>
class ClientOptions : public Options<Derived, Api> {
public:
    /** Connection settings (copied); a later call replaces them. */
    Derived &connect(const ConnectOptions &connect) { return this->set(Api::set_connect, connect.get()); }

protected:
    ClientOptions(std::string_view host, std::uint16_t port) : Options<Derived, Api>(host, port) {}
};

/** A server's options: Options plus listen() and limits(). */
template <class Derived, class Api>
class ServerOptions : public Options<Derived, Api> {
public:
    /** Address and port (default "[::]", 0 = any free port). */
    Derived &listen(std::string_view host, std::uint16_t port) {
        return this->set(Api::set_listen, z(host, "host").c_str(), port);
    }
    /** Connection and request bounds (copied). */
    Derived &limits(const ServerLimits &limits) { return this->set(Api::set_limits, limits.get()); }

protected:
    ServerOptions() = default;
};

#define OFL_DETAIL_OPTIONS_0_2_API(type)           \
    using options = type;                          \
    static constexpr auto create = type##_new;     \
    static constexpr auto destroy = type##_free;   \
    static constexpr auto set_tls = type##_set_tls;
struct AggregatorClientOptionsApi {
    OFL_DETAIL_OPTIONS_0_2_API(ofl_aggregator_client_options)
    static constexpr auto set_connect = ofl_aggregator_client_options_set_connect;
};
struct AggregatorServerOptionsApi {
    OFL_DETAIL_OPTIONS_0_2_API(ofl_aggregator_server_options)
    static constexpr auto set_listen = ofl_aggregator_server_options_set_listen;
    static constexpr auto set_limits = ofl_aggregator_server_options_set_limits;
};
struct DirectorClientOptionsApi {
    OFL_DETAIL_OPTIONS_0_2_API(ofl_director_client_options)
    static constexpr auto set_connect = ofl_director_client_options_set_connect;
};
struct DirectorServerOptionsApi {
    OFL_DETAIL_OPTIONS_0_2_API(ofl_director_server_options)
    static constexpr auto set_listen = ofl_director_server_options_set_listen;
    static constexpr auto set_limits = ofl_director_server_options_set_limits;
};
#undef OFL_DETAIL_OPTIONS_0_2_API


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
    /** The bytes: no copy, valid as long as the tensor. They start on a
     *  64-byte boundary on every receive path (download, upload, director
     *  models), so viewing them as floats is safe when the encoding is
     *  float32 (OpenFL's uncompressed pipeline, little-endian hosts):
     *  `reinterpret_cast<const float *>(t.data().data())`, `data().size() / 4`
     *  of them (or a `std::span<const float>` over that in C++20). */
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

/** Whose metrics a Metrics snapshot holds (ofl_metrics_role). */
enum class MetricsRole : std::int32_t {
    aggregator_server = OFL_ROLE_AGGREGATOR_SERVER,
    director_server = OFL_ROLE_DIRECTOR_SERVER,
    aggregator_client = OFL_ROLE_AGGREGATOR_CLIENT,
    envoy_client = OFL_ROLE_ENVOY_CLIENT,
    frontend_client = OFL_ROLE_FRONTEND_CLIENT,
};

/** Kinds of authentication failure (ofl_auth_failure). */
enum class AuthFailure : std::int32_t {
    tls_handshake = OFL_AUTH_FAILURE_TLS_HANDSHAKE,
    unauthorized_collaborator = OFL_AUTH_FAILURE_UNAUTHORIZED_COLLABORATOR,
    cn_mismatch = OFL_AUTH_FAILURE_CN_MISMATCH,
};

/** Kinds of call a server rejected (ofl_rejection). */
enum class Rejection : std::int32_t {
    identity = OFL_REJECTION_IDENTITY,
    bad_header = OFL_REJECTION_BAD_HEADER,
    limits = OFL_REJECTION_LIMITS,
};

/** A snapshot of one server's or client's transport metrics (ofl_metrics:
 *  the header documents every counter). Its numbers do not change;
 *  move-only. Get one from metrics() on a server or client. An RPC is named
 *  as in the proto ("GetTasks"); accessors without one sum every RPC. */
class Metrics {
public:
    explicit Metrics(ofl_metrics *owned) noexcept : p_(owned) {}

    MetricsRole role() const noexcept { return static_cast<MetricsRole>(ofl_metrics_role(p_.get())); }
    /** Every RPC of the service, in the proto's order, then "unknown". */
    std::vector<std::string> rpcs() const {
        std::vector<std::string> out(ofl_metrics_rpc_count(p_.get()));
        for (std::size_t i = 0; i < out.size(); i++) out[i] = ofl_metrics_rpc_name(p_.get(), i);
        return out;
    }
    /** Calls of `rpc` that ended with `code` (gRPC codes only; 0 otherwise). */
    std::uint64_t calls(std::string_view rpc, Code code) const {
        return ofl_metrics_calls(p_.get(), name(rpc).c_str(), static_cast<std::int32_t>(code));
    }
    std::uint64_t calls(Code code) const noexcept {
        return ofl_metrics_calls(p_.get(), nullptr, static_cast<std::int32_t>(code));
    }
    std::uint64_t calls_total(std::string_view rpc) const { return ofl_metrics_calls_total(p_.get(), name(rpc).c_str()); }
    std::uint64_t calls_total() const noexcept { return ofl_metrics_calls_total(p_.get(), nullptr); }
    /** Message bytes received (gRPC framing of each message included). */
    std::uint64_t bytes_in(std::string_view rpc) const { return ofl_metrics_bytes_in(p_.get(), name(rpc).c_str()); }
    std::uint64_t bytes_in() const noexcept { return ofl_metrics_bytes_in(p_.get(), nullptr); }
    /** Message bytes sent. */
    std::uint64_t bytes_out(std::string_view rpc) const { return ofl_metrics_bytes_out(p_.get(), name(rpc).c_str()); }
    std::uint64_t bytes_out() const noexcept { return ofl_metrics_bytes_out(p_.get(), nullptr); }
    std::uint64_t auth_failures(AuthFailure kind) const noexcept {
        return ofl_metrics_auth_failures(p_.get(), static_cast<std::int32_t>(kind));
    }
    std::uint64_t rejected(Rejection kind) const noexcept {
        return ofl_metrics_rejected(p_.get(), static_cast<std::int32_t>(kind));
    }
    std::uint64_t active_connections() const noexcept { return ofl_metrics_active_connections(p_.get()); }
    std::uint64_t connections() const noexcept { return ofl_metrics_connections(p_.get()); }
    std::uint64_t in_flight() const noexcept { return ofl_metrics_in_flight(p_.get()); }
    std::uint64_t retries() const noexcept { return ofl_metrics_retries(p_.get()); }
    /** The Prometheus text exposition format (version 0.0.4) of the snapshot. */
    std::string prometheus() const {
        ofl_string *out = nullptr;
        detail::check(ofl_metrics_prometheus(p_.get(), &out));
        detail::Handle<ofl_string, ofl_string_free> owned(out);
        return std::string(ofl_string_get(out), ofl_string_len(out));
    }
    const ofl_metrics *get() const noexcept { return p_.get(); }

private:
    static std::string name(std::string_view rpc) { return detail::z(rpc, "rpc"); }
    detail::Handle<ofl_metrics, ofl_metrics_free> p_;
};

namespace detail {
/** A snapshot through `take(handle, &out)` (one of the ofl_*_metrics). */
template <class H>
Metrics take_metrics(ofl_error *(*take)(const H *, ofl_metrics **), const H *handle) {
    ofl_metrics *out = nullptr;
    check(take(handle, &out));
    return Metrics(out);
}
}  // namespace detail

/** Settings for AggregatorClient (setters chain; each throws Error on a bad value).
 *  tls()/no_tls() and connect() are the shared ones (TlsConfig, ConnectOptions). */
class AggregatorClientOptions
    : public detail::ClientOptions<AggregatorClientOptions, detail::AggregatorClientOptionsApi> {
public:
    /** The aggregator's address (OpenFL's agg_addr, agg_port). */
    AggregatorClientOptions(std::string_view host, std::uint16_t port) : ClientOptions(host, port) {}
    /** The identity requests carry and replies must match; an empty
     *  single_col_cert_common_name means none. */
    AggregatorClientOptions &federation(std::string_view aggregator_uuid, std::string_view federation_uuid,
                              std::string_view single_col_cert_common_name = {}) {
        return set_federation(ofl_aggregator_client_options_set_federation, aggregator_uuid, federation_uuid,
                              single_col_cert_common_name);
    }
    AggregatorClientOptions &reconnect_every_call(bool enabled = true) {
        return set(ofl_aggregator_client_options_set_reconnect_every_call, enabled);
    }
};

/** A collaborator's connection to an aggregator (OpenFL's
 *  AggregatorGRPCClient). Thread-safe; move-only. Every call takes an
 *  optional CallOptions (time limit, cancel token, progress). close() from
 *  another thread cancels the calls in progress (they throw CANCELLED):
 *  call it, join the threads that use the client, then destroy it. */
class AggregatorClient {
public:
    explicit AggregatorClient(const AggregatorClientOptions &options) {
        ofl_aggregator_client *c = nullptr;
        detail::check(ofl_aggregator_client_new(options.get(), &c));
        p_.reset(c);
    }

    Tasks get_tasks(std::string_view collaborator, const CallOptions &options = {}) const {
        detail::Call call(options);
        ofl_tasks *raw = nullptr;
        ofl_error *error =
            ofl_aggregator_client_get_tasks(p_.get(), detail::z(collaborator, "collaborator").c_str(), call.get(), &raw);
        detail::Handle<ofl_tasks, ofl_tasks_free> t(raw);
        call.check(error);
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

    /** The tensor's data points into the receive buffer (no copy).
     *  CallOptions::progress follows the download. */
    Tensor get_aggregated_tensor(std::string_view collaborator, const TensorRequest &request,
                                 const CallOptions &options = {}) const {
        std::string col = detail::z(collaborator, "collaborator");
        std::string name = detail::z(request.tensor_name, "tensor_name");
        std::vector<std::string> tags;
        std::vector<const char *> tag_ptrs;
        tags.reserve(request.tags.size());
        for (const std::string &t : request.tags) tag_ptrs.push_back(tags.emplace_back(detail::z(t, "tags")).c_str());
        detail::Call call(options);
        ofl_tensor *out = nullptr;
        ofl_error *error = ofl_aggregator_client_get_aggregated_tensor(
            p_.get(), col.c_str(), name.c_str(), request.round_number, request.report,
            tag_ptrs.empty() ? nullptr : tag_ptrs.data(), tag_ptrs.size(), request.require_lossless, call.get(), &out);
        Tensor tensor(out);
        call.check(error);
        return tensor;
    }

    /** Uploads results; tensor data is serialized straight from the views.
     *  CallOptions::progress follows the upload. */
    void send_local_task_results(std::string_view collaborator, std::int32_t round_number, std::string_view task_name,
                                 std::int32_t data_size, const TensorView *tensors, std::size_t count,
                                 const CallOptions &options = {}) const {
        detail::Views views(tensors, count);
        std::string col = detail::z(collaborator, "collaborator");
        std::string task = detail::z(task_name, "task_name");
        detail::Call call(options);
        call.check(ofl_aggregator_client_send_local_task_results(p_.get(), col.c_str(), round_number, task.c_str(),
                                                                 data_size, views.data(), views.size(), call.get()));
    }
    void send_local_task_results(std::string_view collaborator, std::int32_t round_number, std::string_view task_name,
                                 std::int32_t data_size, const std::vector<TensorView> &tensors,
                                 const CallOptions &options = {}) const {
        send_local_task_results(collaborator, round_number, task_name, data_size, tensors.data(), tensors.size(),
                                options);
    }

    /** Closes the connection (OpenFL's disconnect); the next call reconnects. */
    void disconnect() const { detail::check(ofl_aggregator_client_disconnect(p_.get())); }
    /** Replaces the connection with a new one (OpenFL's reconnect). */
    void reconnect() const { detail::check(ofl_aggregator_client_reconnect(p_.get())); }
    /** Cancels the calls in progress on other threads (they throw
     *  CANCELLED) and refuses new ones. Thread-safe, idempotent. */
    void close() const { detail::check(ofl_aggregator_client_close(p_.get())); }

    /** A snapshot of the client's transport metrics. */
    Metrics metrics() const { return detail::take_metrics(ofl_aggregator_client_metrics, p_.get()); }
    ofl_aggregator_client *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_aggregator_client, ofl_aggregator_client_free> p_;
};

/** Settings for AggregatorServer (setters chain; each throws Error).
 *  listen(), tls()/no_tls() and limits() are the shared ones (TlsConfig,
 *  ServerLimits). */
class AggregatorServerOptions
    : public detail::ServerOptions<AggregatorServerOptions, detail::AggregatorServerOptionsApi> {
public:
    AggregatorServerOptions() {}  // user-provided: not an aggregate (AggregatorServerOptions{} must construct)
    AggregatorServerOptions &federation(std::string_view aggregator_uuid, std::string_view federation_uuid,
                              std::string_view single_col_cert_common_name = {}) {
        return set_federation(ofl_aggregator_server_options_set_federation, aggregator_uuid, federation_uuid,
                              single_col_cert_common_name);
    }
    /** Authorizes a collaborator (OpenFL's authorized_cols). */
    AggregatorServerOptions &add_collaborator(std::string_view name) {
        return set(ofl_aggregator_server_options_add_collaborator, detail::z(name, "collaborator_name").c_str());
    }
    /** Upper bound of the random delay before UNAUTHENTICATED (default 5 s; 0 = none). */
    AggregatorServerOptions &auth_failure_max_delay(std::chrono::milliseconds delay) {
        return set(ofl_aggregator_server_options_set_auth_failure_max_delay_ms,
                   static_cast<std::uint64_t>(delay.count()));
    }
    /** Bytes of uploads held in memory at once across the server; over it an
     *  upload gets RESOURCE_EXHAUSTED (default 2 GiB, at least 1 MiB). */
    AggregatorServerOptions &upload_memory_budget(std::uint64_t bytes) {
        return set(ofl_aggregator_server_options_set_upload_memory_budget, bytes);
    }
    /** Largest message accepted or sent, uploads included (default 1 GiB). */
    AggregatorServerOptions &max_message_size(std::uint64_t bytes) {
        return set(ofl_aggregator_server_options_set_max_message_size, bytes);
    }
    /** Most tensors in one upload; more get RESOURCE_EXHAUSTED (default 100000). */
    AggregatorServerOptions &max_tensors_per_upload(std::uint64_t max) {
        return set(ofl_aggregator_server_options_set_max_tensors_per_upload, max);
    }
    /** How often serve() asks all_quit_jobs_sent whether the federation is
     *  over (default 1 s; 1 ms to a year). */
    AggregatorServerOptions &quit_poll_interval(std::chrono::milliseconds interval) {
        return set(ofl_aggregator_server_options_set_quit_poll_interval_ms,
                   interval.count() < 0 ? 0 : static_cast<std::uint64_t>(interval.count()));
    }
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

    using iterator = detail::IndexIterator<TaskResults, TensorRef>;
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

/** The AggregatorLogic methods may_block() answers for (ofl_logic_call). */
enum class LogicCall : std::int32_t {
    get_tasks = OFL_LOGIC_CALL_GET_TASKS,
    get_aggregated_tensor = OFL_LOGIC_CALL_GET_AGGREGATED_TENSOR,
    send_local_task_results = OFL_LOGIC_CALL_SEND_LOCAL_TASK_RESULTS,
    all_quit_jobs_sent = OFL_LOGIC_CALL_ALL_QUIT_JOBS_SENT,
};

/** An aggregator's logic. Methods run on library threads, concurrently
 *  (make them thread-safe) and may block. Throwing openfl::Error answers
 *  the call with its code and message (the callback returns it as an
 *  ofl_error_new); any other std::exception answers UNKNOWN with what();
 *  anything else INTERNAL. */
class AggregatorLogic {
public:
    virtual ~AggregatorLogic() = default;
    /** Whether `call` may block (ofl_aggregator_callbacks_set_may_block):
     *  asked once per call kind when the AggregatorServer starts. true (the
     *  default, always safe): it runs on the library's blocking pool. false:
     *  it runs on one of the library's async worker threads, saving a
     *  thread hand-off per call, and must return promptly (brief locks,
     *  computation): blocking in it stalls every connection that worker
     *  serves; such calls are not bounded by the 8-per-collaborator/256
     *  limits. */
    virtual bool may_block(LogicCall call) const {
        (void)call;
        return true;
    }
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

/** The current exception as the ofl_error a callback returns: an
 *  openfl::Error keeps its code and message, a std::exception is UNKNOWN
 *  with what(), anything else INTERNAL. */
inline ofl_error *exception_to_error(const char *where = "aggregator logic") noexcept {
    Code code = Code::internal;
    std::string message = std::string("unknown exception in ") + where;
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
    return ofl_error_new(static_cast<int32_t>(code), message.c_str());
}

inline LogicHolder &holder(void *user_data) noexcept { return *static_cast<LogicHolder *>(user_data); }

inline ofl_error *get_tasks(void *user_data, const char *collaborator, ofl_reply *reply) noexcept {
    try {
        Tasks t = holder(user_data).logic->get_tasks(sv(collaborator));
        check(ofl_reply_set_round_number(reply, t.round_number));
        check(ofl_reply_set_sleep_time(reply, t.sleep_time));
        check(ofl_reply_set_quit(reply, t.quit));
        for (const Task &task : t.tasks)
            check(ofl_reply_add_task(reply, z(task.name, "task.name").c_str(),
                                     z(task.function_name, "task.function_name").c_str(),
                                     z(task.task_type, "task.task_type").c_str(), task.apply_local));
        return nullptr;
    } catch (...) {
        return exception_to_error();
    }
}

inline ofl_error *get_aggregated_tensor(void *user_data, const char *collaborator,
                                        const ofl_tensor_request *request, ofl_reply *reply) noexcept {
    try {
        TensorRequest r;
        r.tensor_name = sv(request->tensor_name);
        r.round_number = request->round_number;
        r.report = request->report;
        r.require_lossless = request->require_lossless;
        for (std::size_t i = 0; i < request->tags_len; i++) r.tags.emplace_back(sv(request->tags[i]));
        TensorReply tensor_reply(reply);
        holder(user_data).logic->get_aggregated_tensor(sv(collaborator), r, tensor_reply);
        return nullptr;
    } catch (...) {
        return exception_to_error();
    }
}

inline ofl_error *send_local_task_results(void *user_data, const char *collaborator,
                                          const ofl_task_results *results) noexcept {
    try {
        holder(user_data).logic->send_local_task_results(sv(collaborator), TaskResults(results));
        return nullptr;
    } catch (...) {
        return exception_to_error();
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
 *  the background once constructed. Move-only; the destructor stops it and
 *  waits until it wound down (calls in flight get ServerLimits::shutdown_grace,
 *  then are cancelled), and the logic is released once no callback still
 *  runs. Do not destroy it from a logic callback. */
class AggregatorServer {
public:
    AggregatorServer(const AggregatorServerOptions &options, std::shared_ptr<AggregatorLogic> logic) {
        if (!logic) throw Error(Code::invalid_argument, "logic is null");
        ofl_aggregator_callbacks *raw = nullptr;
        detail::check(ofl_aggregator_callbacks_new(&raw));
        detail::Handle<ofl_aggregator_callbacks, ofl_aggregator_callbacks_free> cb(raw);
        auto *h = new detail::LogicHolder{logic, dynamic_cast<CollaboratorValidator *>(logic.get())};
        // From here the library owns h: free_holder runs exactly once, when
        // the callbacks object and the server (if started) are both gone.
        detail::check(ofl_aggregator_callbacks_set_user_data(raw, h, detail::free_holder));
        detail::check(ofl_aggregator_callbacks_set_get_tasks(raw, detail::get_tasks));
        detail::check(ofl_aggregator_callbacks_set_get_aggregated_tensor(raw, detail::get_aggregated_tensor));
        detail::check(ofl_aggregator_callbacks_set_send_local_task_results(raw, detail::send_local_task_results));
        detail::check(ofl_aggregator_callbacks_set_all_quit_jobs_sent(raw, detail::all_quit_jobs_sent));
        if (h->validator)
            detail::check(ofl_aggregator_callbacks_set_valid_collaborator_cn_and_id(raw, detail::valid_collaborator));
        for (LogicCall call : {LogicCall::get_tasks, LogicCall::get_aggregated_tensor,
                               LogicCall::send_local_task_results, LogicCall::all_quit_jobs_sent})
            detail::check(ofl_aggregator_callbacks_set_may_block(raw, static_cast<std::int32_t>(call),
                                                                 logic->may_block(call)));
        ofl_aggregator_server *s = nullptr;
        detail::check(ofl_aggregator_server_start(options.get(), raw, &s));
        p_.reset(s);
    }
    /** Takes ownership of a started server (e.g. from start_fedavg_server). */
    explicit AggregatorServer(ofl_aggregator_server *owned) noexcept : p_(owned) {}

    /** The port listened on (the chosen one when 0 was asked). */
    std::uint16_t port() const noexcept { return ofl_aggregator_server_port(p_.get()); }
    /** Blocks until the logic reports all quit jobs sent, or stop(). */
    void serve() const { detail::check(ofl_aggregator_server_serve(p_.get())); }
    /** Asks the server to stop; returns at once. Safe from callbacks. */
    void stop() const { detail::check(ofl_aggregator_server_stop(p_.get())); }
    /** A snapshot of the server's transport metrics. */
    Metrics metrics() const { return detail::take_metrics(ofl_aggregator_server_metrics, p_.get()); }
    ofl_aggregator_server *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_aggregator_server, ofl_aggregator_server_free> p_;
};

// ---- director -----------------------------------------------------------------

/** Where an experiment is in its life cycle (OpenFL 1.6's Status). */
enum class ExperimentStatus : std::int32_t {
    pending = OFL_EXPERIMENT_STATUS_PENDING,          // submitted, waiting for its turn and its review
    in_progress = OFL_EXPERIMENT_STATUS_IN_PROGRESS,  // approved and started: its envoys receive it
    finished = OFL_EXPERIMENT_STATUS_FINISHED,        // the host reported it finished
    failed = OFL_EXPERIMENT_STATUS_FAILED,            // an envoy or the host reported a failure
    rejected = OFL_EXPERIMENT_STATUS_REJECTED,        // the review rejected it; its archive is deleted
};

/** The status as the wire carries it: "pending", "in_progress", "finished",
 *  "failed", "rejected" ("unknown" otherwise; static string). */
inline const char *status_name(ExperimentStatus status) noexcept {
    return ofl_experiment_status_name(static_cast<std::int32_t>(status));
}

namespace detail {
/** A wire status name as an ExperimentStatus (an unknown name throws). */
inline ExperimentStatus parse_status(std::string_view name) {
    for (std::int32_t s = OFL_EXPERIMENT_STATUS_PENDING; s <= OFL_EXPERIMENT_STATUS_REJECTED; s++)
        if (name == ofl_experiment_status_name(s)) return static_cast<ExperimentStatus>(s);
    throw Error(Code::invalid_response, "unknown experiment status \"" + std::string(name) + "\"");
}

/** NUL-terminated copies of strings and the array of their pointers. */
class CStrings {
public:
    CStrings(const std::vector<std::string> &strings, const char *what) {
        copies_.reserve(strings.size());
        for (const std::string &s : strings) ptrs_.push_back(copies_.emplace_back(z(s, what)).c_str());
    }
    const char *const *data() const noexcept { return ptrs_.empty() ? nullptr : ptrs_.data(); }
    std::size_t size() const noexcept { return ptrs_.size(); }

private:
    std::vector<std::string> copies_;  // reserved: c_str() pointers stay valid
    std::vector<const char *> ptrs_;
};
}  // namespace detail

/** A read-only view of `size()` values (C++17 has no std::span). */
template <class T>
class ArrayView {
public:
    constexpr ArrayView() noexcept = default;
    ArrayView(const T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    const T *data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const T *begin() const noexcept { return data_; }
    const T *end() const noexcept { return data_ + size_; }
    const T &operator[](std::size_t i) const noexcept { return data_[i]; }
    std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }

private:
    const T *data_ = nullptr;
    std::size_t size_ = 0;
};

/** A model decoded as OpenFL's uncompressed float32 pipeline encodes it:
 *  float32 tensors by name, in name order. Move-only. */
class Model {
public:
    explicit Model(ofl_model *owned) noexcept : p_(owned) {}
    std::size_t size() const noexcept { return ofl_model_len(p_.get()); }
    std::string_view name(std::size_t i) const noexcept { return detail::sv(ofl_model_tensor_name(p_.get(), i)); }
    /** The index of the tensor called `name`, if any. */
    std::optional<std::size_t> find(std::string_view name) const {
        std::size_t index = 0;
        if (!ofl_model_find(p_.get(), detail::z(name, "name").c_str(), &index)) return std::nullopt;
        return index;
    }
    /** The dimensions of tensor `i` (empty for a scalar). */
    ArrayView<std::size_t> shape(std::size_t i) const noexcept {
        std::size_t n = 0;
        const std::size_t *dims = ofl_model_tensor_shape(p_.get(), i, &n);
        return ArrayView<std::size_t>(dims, n);
    }
    /** The values of tensor `i`, row-major (no copy; valid as long as the
     *  model), starting on a 64-byte boundary (SIMD loads may assume it). */
    ArrayView<float> values(std::size_t i) const noexcept {
        std::size_t n = 0;
        const float *v = ofl_model_tensor_values(p_.get(), i, &n);
        return ArrayView<float>(v, n);
    }
    const ofl_model *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_model, ofl_model_free> p_;
};

/** A non-owning view of a list of library tensors (a model as it travels). */
class TensorListRef {
public:
    explicit TensorListRef(const ofl_tensor_list *list) noexcept : l_(list) {}
    std::size_t size() const noexcept { return ofl_tensor_list_len(l_); }
    TensorRef operator[](std::size_t i) const noexcept { return TensorRef(ofl_tensor_list_get(l_, i)); }
    /** Decodes the tensors as OpenFL's uncompressed float32 pipeline encodes
     *  a model (throws INVALID_ARGUMENT for one that is not). */
    Model to_model() const {
        ofl_model *m = nullptr;
        detail::check(ofl_tensor_list_to_model(l_, &m));
        return Model(m);
    }

    using iterator = detail::IndexIterator<TensorListRef, TensorRef>;
    iterator begin() const noexcept { return iterator(this, 0); }
    iterator end() const noexcept { return iterator(this, size()); }
    const ofl_tensor_list *get() const noexcept { return l_; }

protected:
    const ofl_tensor_list *l_;
};

/** A model downloaded by a frontend (owns the receive buffer; tensor data
 *  points into it without a copy). Move-only. */
class TensorList : public TensorListRef {
public:
    explicit TensorList(ofl_tensor_list *owned) noexcept : TensorListRef(owned) {}
    TensorList(TensorList &&other) noexcept : TensorListRef(std::exchange(other.l_, nullptr)) {}
    TensorList &operator=(TensorList &&other) noexcept {
        if (this != &other) {
            ofl_tensor_list_free(const_cast<ofl_tensor_list *>(l_));
            l_ = std::exchange(other.l_, nullptr);
        }
        return *this;
    }
    TensorList(const TensorList &) = delete;
    TensorList &operator=(const TensorList &) = delete;
    ~TensorList() { ofl_tensor_list_free(const_cast<ofl_tensor_list *>(l_)); }
};

/** One metric of an experiment (OpenFL's metric record): pushed by the
 *  director's host, delivered by a frontend's metric stream. */
struct DirectorMetric {
    std::string origin;       // a collaborator name, or the aggregator
    std::string task_name;    // e.g. "aggregated_model_validation"
    std::string metric_name;  // e.g. "accuracy"
    float value = 0;
    std::uint32_t round = 0;
};

/** A task of an experiment as frontends see it. */
struct TaskDescription {
    std::string name;
    std::string description;
};

/** What an envoy reported with set_experiment_failed. */
struct EnvoyFailure {
    std::string_view collaborator;  // the envoy
    std::uint32_t error_code = 0;
    std::string_view description;
};

/** A submitted experiment as the director's hooks see it: a view valid
 *  during the hook only (copy what you keep). */
class Experiment {
public:
    explicit Experiment(const ofl_experiment *experiment) noexcept : e_(experiment) {}
    /** What envoys get from wait_experiment. */
    std::string_view name() const noexcept { return ofl_experiment_name(e_); }
    /** The submitting frontend: certificate CN (TLS) or client_id. */
    std::string_view owner() const noexcept { return ofl_experiment_owner(e_); }
    /** The envoys that take part, in submission order. */
    std::vector<std::string_view> collaborators() const {
        std::vector<std::string_view> out(ofl_experiment_collaborators_len(e_));
        for (std::size_t i = 0; i < out.size(); i++) out[i] = detail::sv(ofl_experiment_collaborator(e_, i));
        return out;
    }
    /** The stored archive (gone after a rejection or a removal). */
    std::string_view archive_path() const noexcept { return ofl_experiment_archive_path(e_); }
    std::uint64_t archive_size() const noexcept { return ofl_experiment_archive_size(e_); }
    /** The model sent with the experiment, if any (a view, like the rest). */
    std::optional<TensorListRef> initial_model() const noexcept {
        const ofl_tensor_list *m = ofl_experiment_initial_model(e_);
        if (m == nullptr) return std::nullopt;
        return TensorListRef(m);
    }
    const ofl_experiment *get() const noexcept { return e_; }

private:
    const ofl_experiment *e_;
};

/** Settings for DirectorServer (setters chain; each throws Error):
 *  listen(), tls()/no_tls() and limits() are the shared ones (TlsConfig,
 *  ServerLimits); under one-way TLS (TlsConfig::client_auth(false)) a
 *  caller without a certificate is named by its client_id. */
class DirectorServerOptions
    : public detail::ServerOptions<DirectorServerOptions, detail::DirectorServerOptionsApi> {
public:
    /** Defaults: "[::]", port 0, TLS on with nothing attached (call tls()
     *  or no_tls()), empty shapes, 60 s health checks, archives in a fresh
     *  temporary directory, 1 GiB limits. */
    DirectorServerOptions() {}  // user-provided: not an aggregate
    /** The largest message received or sent (default 1 GiB, as OpenFL). */
    DirectorServerOptions &max_message_size(std::uint64_t bytes) {
        return set(ofl_director_server_options_set_max_message_size, bytes);
    }
    /** The shapes every shard must report to be accepted (e.g. {"28", "28"}). */
    DirectorServerOptions &sample_shape(const std::vector<std::string> &dims) {
        detail::CStrings c(dims, "sample_shape");
        return set(ofl_director_server_options_set_sample_shape, c.data(), c.size());
    }
    DirectorServerOptions &target_shape(const std::vector<std::string> &dims) {
        detail::CStrings c(dims, "target_shape");
        return set(ofl_director_server_options_set_target_shape, c.data(), c.size());
    }
    /** How often envoys send health checks (default 60 s). */
    DirectorServerOptions &envoy_health_check_period(std::chrono::milliseconds period) {
        return set(ofl_director_server_options_set_envoy_health_check_period_ms,
                   period.count() < 0 ? 0 : static_cast<std::uint64_t>(period.count()));
    }
    /** Where archives are stored, as <dir>/<name>.archive (created at start). */
    DirectorServerOptions &archive_dir(std::string_view path) {
        return set(ofl_director_server_options_set_archive_dir, detail::z(path, "path").c_str());
    }
    DirectorServerOptions &max_archive_size(std::uint64_t bytes) {
        return set(ofl_director_server_options_set_max_archive_size, bytes);
    }
    /** Metrics kept per experiment until streamed (default 100 000). */
    DirectorServerOptions &max_queued_metrics(std::size_t count) {
        return set(ofl_director_server_options_set_max_queued_metrics, count);
    }
    /** Under mTLS, whether envoy calls must come from the certificate named
     *  after the envoy (default true; OpenFL checks nothing). */
    DirectorServerOptions &check_envoy_identity(bool enabled) {
        return set(ofl_director_server_options_set_check_envoy_identity, enabled);
    }
};

/** A non-owning handle on a running director: what hooks are given, and
 *  the base of DirectorServer. Every method is thread-safe and may be
 *  called from hooks. */
class DirectorServerRef {
public:
    explicit DirectorServerRef(const ofl_director_server *server) noexcept : s_(server) {}

    /** The port listened on (the chosen one when 0 was asked). */
    std::uint16_t port() const noexcept { return ofl_director_server_port(s_); }
    /** The directory archives are stored in. */
    std::string_view archive_dir() const noexcept { return ofl_director_server_archive_dir(s_); }
    /** Blocks until stop() (a director serves until told to stop). */
    void serve() const { detail::check(ofl_director_server_serve(s_)); }
    /** Asks the server to stop; returns at once. Safe from hooks. */
    void stop() const { detail::check(ofl_director_server_stop(s_)); }

    /** Queues a metric of `experiment` for the frontends' metric streams. */
    void push_metric(std::string_view experiment, const DirectorMetric &metric) const {
        std::string origin = detail::z(metric.origin, "origin"), task = detail::z(metric.task_name, "task_name"),
                    name = detail::z(metric.metric_name, "metric_name");
        ofl_director_metric m{origin.c_str(), task.c_str(), name.c_str(), metric.value, metric.round};
        detail::check(ofl_director_server_push_metric(s_, detail::z(experiment, "experiment").c_str(), &m));
    }
    /** The model a frontend's get_best_model returns (copied, data included).
     *  OpenFL's frontend expects its float32 encoding: little-endian values,
     *  the shape in the int_list of one metadata entry. */
    void set_best_model(std::string_view experiment, const std::vector<TensorView> &tensors) const {
        detail::Views views(tensors.data(), tensors.size());
        detail::check(ofl_director_server_set_best_model(s_, detail::z(experiment, "experiment").c_str(),
                                                         views.data(), views.size()));
    }
    void set_last_model(std::string_view experiment, const std::vector<TensorView> &tensors) const {
        detail::Views views(tensors.data(), tensors.size());
        detail::check(ofl_director_server_set_last_model(s_, detail::z(experiment, "experiment").c_str(),
                                                         views.data(), views.size()));
    }
    /** The round progress frontends see. */
    void set_round(std::string_view experiment, std::uint32_t current_round, std::uint32_t total_rounds) const {
        detail::check(ofl_director_server_set_round(s_, detail::z(experiment, "experiment").c_str(), current_round,
                                                    total_rounds));
    }
    /** The task list frontends see (replaces the previous one). */
    void set_tasks(std::string_view experiment, const std::vector<TaskDescription> &tasks) const {
        std::vector<std::string> names, descriptions;
        for (const TaskDescription &t : tasks) {
            names.push_back(t.name);
            descriptions.push_back(t.description);
        }
        detail::CStrings n(names, "task name"), d(descriptions, "task description");
        detail::check(ofl_director_server_set_tasks(s_, detail::z(experiment, "experiment").c_str(), n.data(),
                                                    d.data(), n.size()));
    }
    /** The experiment finished: streams end once drained, the next may start. */
    void mark_finished(std::string_view experiment) const {
        detail::check(ofl_director_server_mark_finished(s_, detail::z(experiment, "experiment").c_str()));
    }
    /** The experiment failed (reported by the host). */
    void mark_failed(std::string_view experiment, std::string_view description = {}) const {
        std::string d = detail::z(description, "description");
        detail::check(ofl_director_server_mark_failed(s_, detail::z(experiment, "experiment").c_str(),
                                                      d.empty() ? nullptr : d.c_str()));
    }
    /** The status of `experiment`, whoever submitted it (NOT_FOUND when unknown). */
    ExperimentStatus experiment_status(std::string_view experiment) const {
        ofl_experiment_status st = OFL_EXPERIMENT_STATUS_PENDING;
        detail::check(ofl_director_server_experiment_status(s_, detail::z(experiment, "experiment").c_str(), &st));
        return static_cast<ExperimentStatus>(st);
    }
    /** A snapshot of the server's transport metrics. */
    Metrics metrics() const { return detail::take_metrics(ofl_director_server_metrics, s_); }
    const ofl_director_server *get() const noexcept { return s_; }

protected:
    const ofl_director_server *s_;
};

/** What a director asks and tells its host (OpenFL's review_plan_callback
 *  and aggregator launch). Override what you need; the defaults approve
 *  every experiment and start and stop nothing. Hooks run on library
 *  threads, possibly concurrently, never before the DirectorServer
 *  constructor returned and never after its destructor returned; one
 *  experiment is reviewed and started at a time. They may block and may
 *  call the server's methods, but must not destroy the DirectorServer. */
class DirectorHooks {
public:
    virtual ~DirectorHooks() = default;
    /** Approve (true) or reject (false; the archive is deleted). An
     *  exception rejects. */
    virtual bool review_experiment(DirectorServerRef server, const Experiment &experiment) {
        (void)server, (void)experiment;
        return true;
    }
    /** Launch the experiment's aggregator; envoys receive it once this
     *  returns. Throwing openfl::Error marks it failed with that code and
     *  message (another std::exception: UNKNOWN with what(); anything else:
     *  INTERNAL). */
    virtual void start_experiment(DirectorServerRef server, const Experiment &experiment) {
        (void)server, (void)experiment;
    }
    /** An envoy failed the experiment: stop its aggregator. Exceptions are ignored. */
    virtual void experiment_failed(DirectorServerRef server, const Experiment &experiment,
                                   const EnvoyFailure &failure) {
        (void)server, (void)experiment, (void)failure;
    }
};

namespace detail {

struct HooksHolder {
    std::shared_ptr<DirectorHooks> hooks;
    ofl_director_server *server = nullptr;  // written by ofl_director_server_start before any hook runs
};

inline HooksHolder &hooks_holder(void *user_data) noexcept { return *static_cast<HooksHolder *>(user_data); }

inline bool review_experiment(void *user_data, const ofl_experiment *experiment) noexcept {
    try {
        HooksHolder &h = hooks_holder(user_data);
        return h.hooks->review_experiment(DirectorServerRef(h.server), Experiment(experiment));
    } catch (...) {
        return false;  // a failing review rejects
    }
}

inline ofl_error *start_experiment(void *user_data, const ofl_experiment *experiment) noexcept {
    try {
        HooksHolder &h = hooks_holder(user_data);
        h.hooks->start_experiment(DirectorServerRef(h.server), Experiment(experiment));
        return nullptr;
    } catch (...) {
        return exception_to_error("start_experiment");
    }
}

inline void experiment_failed(void *user_data, const ofl_experiment *experiment, const char *collaborator,
                              std::uint32_t error_code, const char *description) noexcept {
    try {
        HooksHolder &h = hooks_holder(user_data);
        h.hooks->experiment_failed(DirectorServerRef(h.server), Experiment(experiment),
                                   EnvoyFailure{sv(collaborator), error_code, sv(description)});
    } catch (...) {
    }
}

inline void free_hooks(void *user_data) noexcept { delete static_cast<HooksHolder *>(user_data); }

}  // namespace detail

/** A running director (OpenFL's Director with its gRPC server): serving and
 *  running experiments in the background once constructed. Move-only; the
 *  destructor stops it, waits until it no longer listens and running hooks
 *  returned, then releases the hooks. Do not destroy it from a hook. */
class DirectorServer : public DirectorServerRef {
public:
    /** `hooks` may be null: the defaults (approve everything, start nothing). */
    explicit DirectorServer(const DirectorServerOptions &options, std::shared_ptr<DirectorHooks> hooks = nullptr)
        : DirectorServerRef(nullptr) {
        if (!hooks) hooks = std::make_shared<DirectorHooks>();
        ofl_director_hooks *raw = nullptr;
        detail::check(ofl_director_hooks_new(&raw));
        detail::Handle<ofl_director_hooks, ofl_director_hooks_free> cb(raw);
        auto *h = new detail::HooksHolder{std::move(hooks)};
        // From here the library owns h: free_hooks runs exactly once, when
        // neither cb nor the server holds it (also when the start fails).
        detail::check(ofl_director_hooks_set_user_data(raw, h, detail::free_hooks));
        detail::check(ofl_director_hooks_set_review_experiment(raw, detail::review_experiment));
        detail::check(ofl_director_hooks_set_start_experiment(raw, detail::start_experiment));
        detail::check(ofl_director_hooks_set_experiment_failed(raw, detail::experiment_failed));
        // &h->server: hooks find the server set (h lives until the server is freed).
        detail::check(ofl_director_server_start(options.get(), raw, &h->server));
        s_ = h->server;
    }
    DirectorServer(DirectorServer &&other) noexcept : DirectorServerRef(std::exchange(other.s_, nullptr)) {}
    DirectorServer &operator=(DirectorServer &&other) noexcept {
        if (this != &other) {
            ofl_director_server_free(const_cast<ofl_director_server *>(s_));
            s_ = std::exchange(other.s_, nullptr);
        }
        return *this;
    }
    DirectorServer(const DirectorServer &) = delete;
    DirectorServer &operator=(const DirectorServer &) = delete;
    ~DirectorServer() { ofl_director_server_free(const_cast<ofl_director_server *>(s_)); }
};

/** Settings for EnvoyClient and FrontendClient (setters chain; each
 *  throws): tls()/no_tls() and connect() are the shared ones (TlsConfig,
 *  ConnectOptions; a call is repeated whole); an envoy's certificate CN is
 *  its shard name, a frontend's names it. */
class DirectorClientOptions
    : public detail::ClientOptions<DirectorClientOptions, detail::DirectorClientOptionsApi> {
public:
    /** The director's address (OpenFL's director_host, director_port); TLS
     *  on with nothing attached (call tls() or no_tls()). */
    DirectorClientOptions(std::string_view host, std::uint16_t port) : ClientOptions(host, port) {}
    /** Envoys: the largest archive get_experiment_data writes (default 1 GiB). */
    DirectorClientOptions &max_archive_size(std::uint64_t bytes) {
        return set(ofl_director_client_options_set_max_archive_size, bytes);
    }
    /** Frontends: the client_id metadata that names the caller without a
     *  client certificate (printable ASCII; empty: none). */
    DirectorClientOptions &client_id(std::string_view id) {
        std::string s = detail::z(id, "client_id");
        return set(ofl_director_client_options_set_client_id, s.empty() ? nullptr : s.c_str());
    }
};

/** One CUDA device of an envoy's node (OpenFL's CudaDeviceInfo). */
struct CudaDevice {
    std::uint64_t index = 0;
    std::uint64_t memory_total = 0;     // bytes
    std::uint64_t memory_utilized = 0;  // bytes
    std::string device_utilization;     // e.g. "35%"
    std::string cuda_driver_version;
    std::string cuda_version;
    std::string name;
};

/** What an envoy reports about its shard (OpenFL's ShardInfo). */
struct ShardInfo {
    std::string description;
    std::uint64_t n_samples = 0;
    std::vector<std::string> sample_shape;  // must equal the director's, e.g. {"28", "28"}
    std::vector<std::string> target_shape;
    std::vector<CudaDevice> cuda_devices;
};

/** An envoy as get_envoys reports it. */
struct EnvoyInfo {
    std::string name;  // its shard name
    std::string shard_description;
    std::uint64_t n_samples = 0;
    std::vector<std::string> sample_shape;
    std::vector<std::string> target_shape;
    bool is_online = false;  // a health check within the last valid_duration
    bool is_experiment_running = false;
    std::chrono::system_clock::time_point last_updated;  // epoch when unknown
    std::chrono::milliseconds valid_duration{0};
    std::string experiment_name;  // the in-progress experiment it was last given ("" for none)
    std::vector<CudaDevice> cuda_devices;
};

/** One experiment of get_experiments_list. */
struct ExperimentSummary {
    std::string name;
    ExperimentStatus status = ExperimentStatus::pending;
    std::uint32_t collaborators_amount = 0;
    std::uint32_t tasks_amount = 0;
    float progress = 0;  // 0 to 1
};

/** One collaborator of an ExperimentDescription. */
struct CollaboratorDescription {
    std::string name;
    std::string status;  // "pending", "running" once it downloaded the archive, "finished", "failed"
    float progress = 0;
    std::uint32_t round = 0;
    std::string current_task;
    std::string next_task;
};

/** Whether a model ("best", "last", "init") or a log can be downloaded
 *  ("ready" or "pending"). */
struct DownloadStatus {
    std::string name;
    std::string status;
};

/** One experiment in detail (get_experiment_description). */
struct ExperimentDescription {
    std::string name;
    ExperimentStatus status = ExperimentStatus::pending;
    float progress = 0;
    std::uint32_t total_rounds = 0;
    std::uint32_t current_round = 0;
    std::vector<CollaboratorDescription> collaborators;
    std::vector<TaskDescription> tasks;
    std::vector<DownloadStatus> models;
    std::vector<DownloadStatus> logs;
};

/** The director's dataset shapes (get_dataset_info). */
struct DatasetInfo {
    std::vector<std::string> sample_shape;
    std::vector<std::string> target_shape;
};

namespace detail {
/** ofl_cuda_device values borrowing the strings of `devices`. */
inline std::vector<ofl_cuda_device> c_devices(const std::vector<CudaDevice> &devices) {
    std::vector<ofl_cuda_device> out;
    for (const CudaDevice &d : devices) {
        for (const std::string *s : {&d.device_utilization, &d.cuda_driver_version, &d.cuda_version, &d.name})
            if (s->find('\0') != std::string::npos) throw Error(Code::invalid_argument, "cuda device contains a NUL byte");
        out.push_back(ofl_cuda_device{d.index, d.memory_total, d.memory_utilized, d.device_utilization.c_str(),
                                      d.cuda_driver_version.c_str(), d.cuda_version.c_str(), d.name.c_str()});
    }
    return out;
}
inline CudaDevice cpp_device(const ofl_cuda_device &d) {
    return CudaDevice{d.index, d.memory_total, d.memory_utilized, std::string(sv(d.device_utilization)),
                      std::string(sv(d.cuda_driver_version)), std::string(sv(d.cuda_version)), std::string(sv(d.name))};
}
inline std::vector<std::string> strings(const ofl_string_list *list) {
    std::vector<std::string> out(ofl_string_list_len(list));
    for (std::size_t i = 0; i < out.size(); i++) out[i] = sv(ofl_string_list_get(list, i));
    return out;
}
struct MetricSink {
    std::function<bool(const DirectorMetric &)> *fn;
    std::exception_ptr error;
};
inline bool on_metric(void *user_data, const ofl_director_metric *m) noexcept {
    auto *sink = static_cast<MetricSink *>(user_data);
    try {
        return (*sink->fn)(DirectorMetric{std::string(sv(m->origin)), std::string(sv(m->task_name)),
                                  std::string(sv(m->metric_name)), m->value, m->round});
    } catch (...) {
        sink->error = std::current_exception();  // rethrown on the caller's side of the C frames
        return false;
    }
}
}  // namespace detail

/** An envoy's connection to the director (OpenFL's ShardDirectorClient).
 *  Thread-safe (e.g. health checks while another thread waits for an
 *  experiment); move-only. Every call takes an optional CallOptions (time
 *  limit, cancel token; progress for get_experiment_data). close() from
 *  another thread cancels calls in progress (they throw CANCELLED): call
 *  it, join the threads that use the client, then destroy it. */
class EnvoyClient {
public:
    /** `shard_name` is the envoy's collaborator name (under mTLS, its
     *  certificate CN). Certificates are read now; the connection is made
     *  by the first call. */
    EnvoyClient(const DirectorClientOptions &options, std::string_view shard_name) {
        ofl_envoy_client *c = nullptr;
        detail::check(ofl_envoy_client_new(options.get(), detail::z(shard_name, "shard_name").c_str(), &c));
        p_.reset(c);
    }
    /** Registers the shard; returns whether the director accepted it. */
    bool update_shard_info(const ShardInfo &info, const CallOptions &options = {}) const {
        std::string description = detail::z(info.description, "shard_description");
        detail::CStrings sample(info.sample_shape, "sample_shape"), target(info.target_shape, "target_shape");
        std::vector<ofl_cuda_device> devices = detail::c_devices(info.cuda_devices);
        ofl_shard_info si{description.c_str(), info.n_samples, sample.data(), sample.size(), target.data(),
                          target.size(), devices.empty() ? nullptr : devices.data(), devices.size()};
        bool accepted = false;
        detail::Call call(options);
        call.check(ofl_envoy_client_update_shard_info(p_.get(), &si, call.get(), &accepted));
        return accepted;
    }
    /** Blocks until the director has an experiment for this envoy; its name. */
    std::string wait_experiment(const CallOptions &options = {}) const {
        detail::Call call(options);
        ofl_string *out = nullptr;
        ofl_error *error = ofl_envoy_client_wait_experiment(p_.get(), call.get(), &out);
        detail::Handle<ofl_string, ofl_string_free> owned(out);
        call.check(error);
        return std::string(ofl_string_get(out), ofl_string_len(out));
    }
    /** Downloads the experiment's archive into `dest_path`; its size.
     *  CallOptions::progress follows the download. */
    std::uint64_t get_experiment_data(std::string_view experiment, std::string_view dest_path,
                                      const CallOptions &options = {}) const {
        std::string name = detail::z(experiment, "experiment_name");
        std::string dest = detail::z(dest_path, "dest_path");
        detail::Call call(options);
        std::uint64_t size = 0;
        call.check(ofl_envoy_client_get_experiment_data(p_.get(), name.c_str(), dest.c_str(), call.get(), &size));
        return size;
    }
    /** A health check; returns the period within which to send the next. */
    std::chrono::milliseconds send_health_check(bool is_experiment_running,
                                                const std::vector<CudaDevice> &devices = {},
                                                const CallOptions &options = {}) const {
        std::vector<ofl_cuda_device> c = detail::c_devices(devices);
        detail::Call call(options);
        std::uint64_t period_ms = 0;
        call.check(ofl_envoy_client_send_health_check(p_.get(), is_experiment_running, c.empty() ? nullptr : c.data(),
                                                      c.size(), call.get(), &period_ms));
        return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(period_ms));
    }
    /** Tells the director this envoy failed `experiment`. */
    void set_experiment_failed(std::string_view experiment, std::uint32_t error_code,
                               std::string_view description = {}, const CallOptions &options = {}) const {
        std::string name = detail::z(experiment, "experiment_name");
        std::string text = detail::z(description, "description");
        detail::Call call(options);
        call.check(ofl_envoy_client_set_experiment_failed(p_.get(), name.c_str(), error_code, text.c_str(), call.get()));
    }
    /** Cancels calls in progress on other threads and refuses new ones. */
    void close() const { detail::check(ofl_envoy_client_close(p_.get())); }
    /** A snapshot of the client's transport metrics. */
    Metrics metrics() const { return detail::take_metrics(ofl_envoy_client_metrics, p_.get()); }
    ofl_envoy_client *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_envoy_client, ofl_envoy_client_free> p_;
};

/** A frontend's connection to the director (OpenFL's DirectorClient).
 *  Thread-safe; move-only. A frontend sees only the experiments it
 *  submitted (others are NOT_FOUND). Every call takes an optional
 *  CallOptions (time limit, cancel token; progress for the experiment
 *  upload and model downloads). close() from another thread cancels calls
 *  in progress (they throw CANCELLED). */
class FrontendClient {
public:
    explicit FrontendClient(const DirectorClientOptions &options) {
        ofl_frontend_client *c = nullptr;
        detail::check(ofl_frontend_client_new(options.get(), &c));
        p_.reset(c);
    }
    /** Submits an experiment: the archive file is streamed (never whole in
     *  memory); the initial model's data is read from the views.
     *  CallOptions::progress follows the upload. */
    void set_new_experiment(std::string_view name, const std::vector<std::string> &collaborators,
                            std::string_view archive_path, const std::vector<TensorView> &initial_model = {},
                            const CallOptions &options = {}) const {
        detail::CStrings cols(collaborators, "collaborators");
        detail::Views views(initial_model.data(), initial_model.size());
        std::string n = detail::z(name, "name");
        std::string archive = detail::z(archive_path, "archive_path");
        detail::Call call(options);
        call.check(ofl_frontend_client_set_new_experiment(p_.get(), n.c_str(), cols.data(), cols.size(), archive.c_str(),
                                                          views.data(), views.size(), call.get()));
    }
    ExperimentStatus get_experiment_status(std::string_view name, const CallOptions &options = {}) const {
        std::string n = detail::z(name, "name");
        detail::Call call(options);
        ofl_experiment_status st = OFL_EXPERIMENT_STATUS_PENDING;
        call.check(ofl_frontend_client_get_experiment_status(p_.get(), n.c_str(), call.get(), &st));
        return static_cast<ExperimentStatus>(st);
    }
    DatasetInfo get_dataset_info(const CallOptions &options = {}) const {
        detail::Call call(options);
        ofl_string_list *sample = nullptr, *target = nullptr;
        ofl_error *error = ofl_frontend_client_get_dataset_info(p_.get(), call.get(), &sample, &target);
        detail::Handle<ofl_string_list, ofl_string_list_free> s(sample), t(target);
        call.check(error);
        return DatasetInfo{detail::strings(sample), detail::strings(target)};
    }
    /** The best model as the host set it (FAILED_PRECONDITION while none).
     *  CallOptions::progress follows the download. */
    TensorList get_best_model(std::string_view name, const CallOptions &options = {}) const {
        return model(ofl_frontend_client_get_best_model, name, options);
    }
    TensorList get_last_model(std::string_view name, const CallOptions &options = {}) const {
        return model(ofl_frontend_client_get_last_model, name, options);
    }
    /** Calls `fn` with each metric until the experiment is over and every
     *  metric was delivered, or until `fn` returns false. `fn` runs on the
     *  calling thread; an exception it throws ends the stream and is
     *  rethrown here. */
    void stream_metrics(std::string_view name, std::function<bool(const DirectorMetric &)> fn,
                        const CallOptions &options = {}) const {
        if (!fn) throw Error(Code::invalid_argument, "fn is empty");
        std::string n = detail::z(name, "name");
        detail::Call call(options);
        detail::MetricSink sink{&fn, nullptr};
        ofl_error *error = ofl_frontend_client_stream_metrics(p_.get(), n.c_str(), detail::on_metric, &sink, call.get());
        if (sink.error) {
            ofl_error_free(error);
            std::rethrow_exception(sink.error);
        }
        call.check(error);
    }
    /** Forgets a finished, failed, rejected or pending experiment and deletes its archive.
     *  Another frontend's (or an unknown) experiment is left alone without error, as OpenFL 1.6 does. */
    void remove_experiment(std::string_view name, const CallOptions &options = {}) const {
        std::string n = detail::z(name, "name");
        detail::Call call(options);
        call.check(ofl_frontend_client_remove_experiment(p_.get(), n.c_str(), call.get()));
    }
    std::vector<EnvoyInfo> get_envoys(const CallOptions &options = {}) const {
        detail::Call call(options);
        ofl_envoys *raw = nullptr;
        ofl_error *error = ofl_frontend_client_get_envoys(p_.get(), call.get(), &raw);
        detail::Handle<ofl_envoys, ofl_envoys_free> owned(raw);
        call.check(error);
        std::vector<EnvoyInfo> out(ofl_envoys_len(raw));
        for (std::size_t i = 0; i < out.size(); i++) {
            EnvoyInfo &e = out[i];
            e.name = detail::sv(ofl_envoys_name(raw, i));
            e.shard_description = detail::sv(ofl_envoys_shard_description(raw, i));
            e.n_samples = ofl_envoys_n_samples(raw, i);
            for (std::size_t d = 0; d < ofl_envoys_sample_shape_len(raw, i); d++)
                e.sample_shape.emplace_back(detail::sv(ofl_envoys_sample_shape(raw, i, d)));
            for (std::size_t d = 0; d < ofl_envoys_target_shape_len(raw, i); d++)
                e.target_shape.emplace_back(detail::sv(ofl_envoys_target_shape(raw, i, d)));
            e.is_online = ofl_envoys_is_online(raw, i);
            e.is_experiment_running = ofl_envoys_is_experiment_running(raw, i);
            e.last_updated = std::chrono::system_clock::time_point(
                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                    std::chrono::milliseconds(ofl_envoys_last_updated_ms(raw, i))));
            e.valid_duration = std::chrono::milliseconds(ofl_envoys_valid_duration_ms(raw, i));
            e.experiment_name = detail::sv(ofl_envoys_experiment_name(raw, i));
            for (std::size_t d = 0; d < ofl_envoys_cuda_devices_len(raw, i); d++) {
                ofl_cuda_device dev{};
                if (ofl_envoys_cuda_device(raw, i, d, &dev)) e.cuda_devices.push_back(detail::cpp_device(dev));
            }
        }
        return out;
    }
    /** The experiments this frontend submitted, in submission order. */
    std::vector<ExperimentSummary> get_experiments_list(const CallOptions &options = {}) const {
        detail::Call call(options);
        ofl_experiment_list *raw = nullptr;
        ofl_error *error = ofl_frontend_client_get_experiments_list(p_.get(), call.get(), &raw);
        detail::Handle<ofl_experiment_list, ofl_experiment_list_free> owned(raw);
        call.check(error);
        std::vector<ExperimentSummary> out(ofl_experiment_list_len(raw));
        for (std::size_t i = 0; i < out.size(); i++)
            out[i] = ExperimentSummary{std::string(detail::sv(ofl_experiment_list_name(raw, i))),
                                       detail::parse_status(detail::sv(ofl_experiment_list_status(raw, i))),
                                       ofl_experiment_list_collaborators_amount(raw, i),
                                       ofl_experiment_list_tasks_amount(raw, i), ofl_experiment_list_progress(raw, i)};
        return out;
    }
    ExperimentDescription get_experiment_description(std::string_view name, const CallOptions &options = {}) const {
        std::string n = detail::z(name, "name");
        detail::Call call(options);
        ofl_experiment_description *d = nullptr;
        ofl_error *error = ofl_frontend_client_get_experiment_description(p_.get(), n.c_str(), call.get(), &d);
        detail::Handle<ofl_experiment_description, ofl_experiment_description_free> owned(d);
        call.check(error);
        ExperimentDescription out;
        out.name = ofl_experiment_description_name(d);
        out.status = detail::parse_status(ofl_experiment_description_status(d));
        out.progress = ofl_experiment_description_progress(d);
        out.total_rounds = ofl_experiment_description_total_rounds(d);
        out.current_round = ofl_experiment_description_current_round(d);
        for (std::size_t i = 0; i < ofl_experiment_description_collaborators_len(d); i++)
            out.collaborators.push_back(CollaboratorDescription{
                std::string(detail::sv(ofl_experiment_description_collaborator_name(d, i))),
                std::string(detail::sv(ofl_experiment_description_collaborator_status(d, i))),
                ofl_experiment_description_collaborator_progress(d, i),
                ofl_experiment_description_collaborator_round(d, i),
                std::string(detail::sv(ofl_experiment_description_collaborator_current_task(d, i))),
                std::string(detail::sv(ofl_experiment_description_collaborator_next_task(d, i)))});
        for (std::size_t i = 0; i < ofl_experiment_description_tasks_len(d); i++)
            out.tasks.push_back(TaskDescription{std::string(detail::sv(ofl_experiment_description_task_name(d, i))),
                                                std::string(detail::sv(ofl_experiment_description_task_description(d, i)))});
        for (std::size_t i = 0; i < ofl_experiment_description_models_len(d); i++)
            out.models.push_back(DownloadStatus{std::string(detail::sv(ofl_experiment_description_model_name(d, i))),
                                                std::string(detail::sv(ofl_experiment_description_model_status(d, i)))});
        for (std::size_t i = 0; i < ofl_experiment_description_logs_len(d); i++)
            out.logs.push_back(DownloadStatus{std::string(detail::sv(ofl_experiment_description_log_name(d, i))),
                                              std::string(detail::sv(ofl_experiment_description_log_status(d, i)))});
        return out;
    }
    /** Cancels calls in progress on other threads (a metric stream too) and refuses new ones. */
    void close() const { detail::check(ofl_frontend_client_close(p_.get())); }
    /** A snapshot of the client's transport metrics. */
    Metrics metrics() const { return detail::take_metrics(ofl_frontend_client_metrics, p_.get()); }
    ofl_frontend_client *get() const noexcept { return p_.get(); }

private:
    using ModelCall = ofl_error *(*)(const ofl_frontend_client *, const char *, const ofl_call_options *,
                                     ofl_tensor_list **);
    TensorList model(ModelCall fetch, std::string_view name, const CallOptions &options) const {
        std::string n = detail::z(name, "name");
        detail::Call call(options);
        ofl_tensor_list *out = nullptr;
        ofl_error *error = fetch(p_.get(), n.c_str(), call.get(), &out);
        TensorList list(out);
        call.check(error);
        return list;
    }
    detail::Handle<ofl_frontend_client, ofl_frontend_client_free> p_;
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

// ---- built-in FedAvg -----------------------------------------------------------

/** Settings of the built-in FedAvg aggregator (ofl_fedavg_options_*; see the C
 *  header for every default). Setters throw Error on a bad value. Move-only. */
class FedAvgOptions {
public:
    FedAvgOptions() {
        ofl_fedavg_options *o = nullptr;
        detail::check(ofl_fedavg_options_new(&o));
        p_.reset(o);
    }
    FedAvgOptions &federation(std::string_view aggregator_uuid, std::string_view federation_uuid,
                              std::string_view single_col_cert_common_name = {}) {
        std::string cn = detail::z(single_col_cert_common_name, "single_col_cert_common_name");
        detail::check(ofl_fedavg_options_set_federation(
            p_.get(), detail::z(aggregator_uuid, "aggregator_uuid").c_str(),
            detail::z(federation_uuid, "federation_uuid").c_str(), cn.empty() ? nullptr : cn.c_str()));
        return *this;
    }
    /** A collaborator of every round (at least one; a repeat is added once). */
    FedAvgOptions &add_collaborator(std::string_view name) {
        detail::check(ofl_fedavg_options_add_collaborator(p_.get(), detail::z(name, "collaborator_name").c_str()));
        return *this;
    }
    /** Rounds to train, at least 1 (default 10). */
    FedAvgOptions &rounds_to_train(std::int32_t rounds) {
        detail::check(ofl_fedavg_options_set_rounds_to_train(p_.get(), rounds));
        return *this;
    }
    /** The first call replaces OpenFL's three default tasks. */
    FedAvgOptions &add_task(std::string_view name, std::string_view function_name, std::string_view task_type,
                            bool apply_local) {
        detail::check(ofl_fedavg_options_add_task(p_.get(), detail::z(name, "name").c_str(),
                                                  detail::z(function_name, "function_name").c_str(),
                                                  detail::z(task_type, "task_type").c_str(), apply_local));
        return *this;
    }
    /** A tensor of the initial model: `shape` (empty for a scalar), values row-major. */
    FedAvgOptions &add_model_tensor(std::string_view name, const std::vector<std::size_t> &shape,
                                    const std::vector<float> &values) {
        detail::check(ofl_fedavg_options_add_model_tensor(p_.get(), detail::z(name, "name").c_str(), shape.data(),
                                                          shape.size(), values.data(), values.size()));
        return *this;
    }
    /** The metric that picks the best model (reported by the aggregated-model
     *  validation; higher is better); std::nullopt restores the default, that
     *  task's first metric by name. An empty name throws INVALID_ARGUMENT. */
    FedAvgOptions &best_model_metric(std::optional<std::string_view> metric_name) {
        std::string name = metric_name ? detail::z(*metric_name, "metric_name") : std::string();
        detail::check(ofl_fedavg_options_set_best_model_metric(p_.get(), metric_name ? name.c_str() : nullptr));
        return *this;
    }
    /** How long a request for a later round's model waits (default 30 s). */
    FedAvgOptions &tensor_wait(std::chrono::milliseconds wait) {
        if (wait.count() < 0) throw Error(Code::invalid_argument, "tensor_wait is negative");
        detail::check(ofl_fedavg_options_set_tensor_wait_ms(p_.get(), static_cast<std::uint64_t>(wait.count())));
        return *this;
    }
    /** Seconds a collaborator that finished the round waits (default 10, at least 1). */
    FedAvgOptions &sleep_time(std::int32_t seconds) {
        detail::check(ofl_fedavg_options_set_sleep_time(p_.get(), seconds));
        return *this;
    }
    /** Crash recovery: the directory where the aggregator saves what it needs
     *  to resume the round after a restart (ofl_fedavg_options_set_state_dir);
     *  std::nullopt (the default) keeps nothing. An empty path throws
     *  INVALID_ARGUMENT. */
    FedAvgOptions &state_dir(std::optional<std::string_view> path) {
        std::string dir = path ? detail::z(*path, "path") : std::string();
        detail::check(ofl_fedavg_options_set_state_dir(p_.get(), path ? dir.c_str() : nullptr));
        return *this;
    }
    const ofl_fedavg_options *get() const noexcept { return p_.get(); }

private:
    detail::Handle<ofl_fedavg_options, ofl_fedavg_options_free> p_;
};

/** One metric of the built-in FedAvg (OpenFL's metric record): reported by
 *  a collaborator, or a round's data_size-weighted average (copied). */
struct FedAvgMetric {
    std::int32_t round = 0;     // 0 = the initial model's round
    std::string origin;         // the collaborator, or "aggregator"
    bool aggregated = false;    // the average over all collaborators
    std::string task;           // e.g. "aggregated_model_validation"
    std::string name;           // e.g. "accuracy"
    double value = 0;
};

/** The best model's round and score (FedAvg::best_model_score). */
struct FedAvgScore {
    std::int32_t round = 0;
    double score = 0;
};

/** The built-in FedAvg aggregation logic (ofl_fedavg): at round 0, or at the
 *  saved round of its state directory. Thread-safe: read it from any thread,
 *  also while a server runs it. Move-only; a moved-from FedAvg answers 0,
 *  false or INVALID_ARGUMENT. */
class FedAvg {
public:
    explicit FedAvg(const FedAvgOptions &options) {
        ofl_fedavg *f = nullptr;
        detail::check(ofl_fedavg_new(options.get(), &f));
        p_.reset(f);
    }
    /** 0 at the start, rounds_to_train() once training is over. */
    std::int32_t current_round() const noexcept { return ofl_fedavg_current_round(p_.get()); }
    std::int32_t rounds_to_train() const noexcept { return ofl_fedavg_rounds_to_train(p_.get()); }
    /** Every round trained: collaborators are now told to quit. */
    bool is_finished() const noexcept { return ofl_fedavg_is_finished(p_.get()); }
    /** Metrics recorded so far (collaborators' as they came, then each round's averages). */
    std::size_t metrics_size() const noexcept { return ofl_fedavg_metrics_len(p_.get()); }
    /** Metric `index` (indices stay stable); OUT_OF_RANGE when not recorded yet. */
    FedAvgMetric metric(std::size_t index) const {
        ofl_fedavg_metric m{};
        detail::check(ofl_fedavg_get_metric(p_.get(), index, &m));
        return FedAvgMetric{m.round, std::string(detail::sv(m.origin)), m.aggregated, std::string(detail::sv(m.task)),
                            std::string(detail::sv(m.name)), m.value};
    }
    /** Every metric recorded so far, in index order. */
    std::vector<FedAvgMetric> metrics() const {
        std::vector<FedAvgMetric> out;
        for (std::size_t i = 0, n = metrics_size(); i < n; i++) out.push_back(metric(i));
        return out;
    }
    /** The newest model: the initial one before the first round ends. */
    Model last_model() const { return model(ofl_fedavg_last_model); }
    /** The model that scored best in the aggregated-model validation
     *  (FedAvgOptions::best_model_metric); FAILED_PRECONDITION until a round
     *  with that metric has ended. */
    Model best_model() const { return model(ofl_fedavg_best_model); }
    /** The best model's round and score; std::nullopt while there is none. */
    std::optional<FedAvgScore> best_model_score() const noexcept {
        FedAvgScore s;
        if (!ofl_fedavg_best_model_score(p_.get(), &s.round, &s.score)) return std::nullopt;
        return s;
    }
    const ofl_fedavg *get() const noexcept { return p_.get(); }

private:
    Model model(ofl_error *(*copy)(const ofl_fedavg *, ofl_model **)) const {
        ofl_model *m = nullptr;
        detail::check(copy(p_.get(), &m));
        return Model(m);
    }
    detail::Handle<ofl_fedavg, ofl_fedavg_free> p_;
};

/** Starts an aggregator server whose logic is `fedavg` (shared: the server
 *  keeps its own reference). Identity and collaborators come from the FedAvg. */
inline AggregatorServer start_fedavg_server(const AggregatorServerOptions &options, const FedAvg &fedavg) {
    ofl_aggregator_server *s = nullptr;
    detail::check(ofl_aggregator_server_start_fedavg(options.get(), fedavg.get(), &s));
    return AggregatorServer(s);
}

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
