/*
 * test_errors: the C API's error contract.
 *
 *  - every export given NULL where a pointer is required fails with
 *    OFL_CODE_INVALID_ARGUMENT and a message naming the argument; invalid
 *    UTF-8 likewise; accessors given NULL return their documented default;
 *    `_free(NULL)` is a no-op;
 *  - ofl_code_name, ofl_set_log_callback level checks;
 *  - server start: unreadable certificate file -> IO, garbage PEM -> TLS,
 *    TLS without certificates -> INVALID_ARGUMENT, port in use -> IO,
 *    incomplete callbacks -> INVALID_ARGUMENT naming the setter;
 *    free_user_data runs exactly once on every failed start (once the
 *    callbacks object is freed too);
 *  - client creation: the same certificate checks;
 *  - inside callbacks: ofl_reply_* argument checks, the borrowed-data release
 *    running exactly once (also on failure and on replacement), callback
 *    error codes reaching the client, server-side header checks.
 *
 * usage: test_errors CERT_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

/* Not UTF-8: 0xff never occurs in UTF-8. */
static const char BAD_UTF8[] = "bad\xff\xfe";

static cert_paths g_certs;

/* ---- callbacks with counters ------------------------------------------- */

typedef struct counters {
    atomic_int free_calls;
} counters;

static void count_free(void *user_data) {
    counters *c = user_data;
    atomic_fetch_add(&c->free_calls, 1);
}

static ofl_error *noop_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)reply;
    return NULL;
}

static ofl_error *noop_get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                               ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)req, (void)reply;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

static ofl_error *noop_send_results(void *ud, const char *collaborator,
                                 const ofl_task_results *results) {
    (void)ud, (void)collaborator, (void)results;
    return NULL;
}

static callback_fns noop_callbacks(counters *c) {
    callback_fns cb = {
        .user_data = c,
        .free_user_data = count_free,
        .get_tasks = noop_get_tasks,
        .get_aggregated_tensor = noop_get_tensor,
        .send_local_task_results = noop_send_results,
    };
    return cb;
}

/* Starts a server that must fail with `code`/`needle`, and checks that
 * free_user_data ran exactly once. */
static void expect_start_fails_at(const char *file, int line, const char *what,
                                  const ofl_aggregator_server_options *options, ofl_code code,
                                  const char *needle) {
    counters c = {0};
    callback_fns cb = noop_callbacks(&c);
    ofl_aggregator_server *server = NULL;
    if (expect_code_at(file, line, what, start_with_callbacks(options, &cb, &server), code,
                       needle)) {
        if (server != NULL) test_fail_at(file, line, "%s: *out written on failure", what);
    }
    int freed = wait_for_count(&c.free_calls, 1, 2000);
    if (freed != 1)
        test_fail_at(file, line, "%s: free_user_data ran %d times, expected 1", what, freed);
}
#define EXPECT_START_FAILS(options, code, needle) \
    expect_start_fails_at(__FILE__, __LINE__, #options, (options), (code), (needle))

/* ---- version, codes, logging -------------------------------------------- */

static void test_version_and_codes(void) {
    const char *v = ofl_version();
    CHECK(v != NULL && v[0] != '\0');
    test_note("library version %s", v ? v : "(null)");

    static const struct {
        int32_t code;
        const char *name;
    } names[] = {
        {OFL_CODE_OK, "OK"},
        {OFL_CODE_CANCELLED, "CANCELLED"},
        {OFL_CODE_UNKNOWN, "UNKNOWN"},
        {OFL_CODE_INVALID_ARGUMENT, "INVALID_ARGUMENT"},
        {OFL_CODE_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"},
        {OFL_CODE_NOT_FOUND, "NOT_FOUND"},
        {OFL_CODE_ALREADY_EXISTS, "ALREADY_EXISTS"},
        {OFL_CODE_PERMISSION_DENIED, "PERMISSION_DENIED"},
        {OFL_CODE_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"},
        {OFL_CODE_FAILED_PRECONDITION, "FAILED_PRECONDITION"},
        {OFL_CODE_ABORTED, "ABORTED"},
        {OFL_CODE_OUT_OF_RANGE, "OUT_OF_RANGE"},
        {OFL_CODE_UNIMPLEMENTED, "UNIMPLEMENTED"},
        {OFL_CODE_INTERNAL, "INTERNAL"},
        {OFL_CODE_UNAVAILABLE, "UNAVAILABLE"},
        {OFL_CODE_DATA_LOSS, "DATA_LOSS"},
        {OFL_CODE_UNAUTHENTICATED, "UNAUTHENTICATED"},
        {OFL_CODE_TLS, "TLS"},
        {OFL_CODE_IO, "IO"},
        {OFL_CODE_PANIC, "PANIC"},
        {OFL_CODE_INVALID_RESPONSE, "INVALID_RESPONSE"},
        {OFL_CODE_RETRIES_EXHAUSTED, "RETRIES_EXHAUSTED"},
        {OFL_CODE_PROTOCOL_MISMATCH, "PROTOCOL_MISMATCH"},
        {17, "UNKNOWN_CODE"},
        {99, "UNKNOWN_CODE"},
        {106, "UNKNOWN_CODE"},
        {-1, "UNKNOWN_CODE"},
        {INT32_MIN, "UNKNOWN_CODE"},
        {INT32_MAX, "UNKNOWN_CODE"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *got = ofl_code_name(names[i].code);
        CHECK_MSG(got != NULL && strcmp(got, names[i].name) == 0,
                  "ofl_code_name(%d) is \"%s\", expected \"%s\"", (int)names[i].code,
                  got ? got : "(null)", names[i].name);
    }

    /* Error accessors on NULL. */
    CHECK(ofl_error_code(NULL) == OFL_CODE_OK);
    CHECK_STR(ofl_error_message(NULL), "");
    ofl_error_free(NULL);

    /* Log levels: only 0..5 are ofl_log_level values. */
    EXPECT_CODE(ofl_set_log_callback(6, NULL, NULL), OFL_CODE_INVALID_ARGUMENT, "max_level");
    EXPECT_CODE(ofl_set_log_callback(-1, NULL, NULL), OFL_CODE_INVALID_ARGUMENT, "max_level");
    EXPECT_CODE(ofl_set_log_callback(INT32_MAX, NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "max_level");
    EXPECT_OK(ofl_set_log_callback(OFL_LOG_LEVEL_OFF, NULL, NULL));
    EXPECT_OK(ofl_set_log_callback(OFL_LOG_LEVEL_TRACE, NULL, NULL));
    /* Back to the default: warnings and errors on stderr. */
    EXPECT_OK(ofl_set_log_callback(OFL_LOG_LEVEL_WARN, NULL, NULL));
}

/* ---- accessors with NULL ---------------------------------------------- */

static void test_null_accessors(void) {
    /* ofl_tasks */
    CHECK(ofl_tasks_round_number(NULL) == 0);
    CHECK(ofl_tasks_sleep_time(NULL) == 0);
    CHECK(ofl_tasks_quit(NULL) == false);
    CHECK(ofl_tasks_len(NULL) == 0);
    CHECK(ofl_tasks_name(NULL, 0) == NULL);
    CHECK(ofl_tasks_function_name(NULL, 0) == NULL);
    CHECK(ofl_tasks_task_type(NULL, 0) == NULL);
    CHECK(ofl_tasks_apply_local(NULL, 0) == false);
    ofl_tasks_free(NULL);

    /* ofl_tensor */
    CHECK_STR(ofl_tensor_name(NULL), "");
    CHECK(ofl_tensor_round_number(NULL) == 0);
    CHECK(ofl_tensor_lossless(NULL) == false);
    CHECK(ofl_tensor_report(NULL) == false);
    CHECK(ofl_tensor_tags_len(NULL) == 0);
    CHECK(ofl_tensor_tag(NULL, 0) == NULL);
    CHECK(ofl_tensor_data(NULL) == NULL);
    CHECK(ofl_tensor_data_len(NULL) == 0);
    CHECK(ofl_tensor_metadata_len(NULL) == 0);
    uintptr_t len = 99;
    CHECK(ofl_tensor_metadata_int_list(NULL, 0, &len) == NULL);
    CHECK(len == 0);
    CHECK(ofl_tensor_metadata_int_list(NULL, 0, NULL) == NULL);
    len = 99;
    CHECK(ofl_tensor_metadata_bool_list(NULL, 0, &len) == NULL);
    CHECK(len == 0);
    CHECK(ofl_tensor_metadata_int_to_float_len(NULL, 0) == 0);
    int32_t key = 7;
    float value = 7.0f;
    CHECK(ofl_tensor_metadata_int_to_float_entry(NULL, 0, 0, &key, &value) == false);
    CHECK(key == 7 && value == 7.0f);
    ofl_tensor_free(NULL);

    /* ofl_task_results */
    CHECK(ofl_task_results_round_number(NULL) == 0);
    CHECK_STR(ofl_task_results_task_name(NULL), "");
    CHECK(ofl_task_results_data_size(NULL) == 0);
    CHECK(ofl_task_results_tensors_len(NULL) == 0);
    CHECK(ofl_task_results_tensor(NULL, 0) == NULL);

    /* Servers and clients */
    CHECK(ofl_aggregator_server_port(NULL) == 0);
    ofl_aggregator_server_free(NULL);
    ofl_aggregator_server_options_free(NULL);
    ofl_aggregator_client_free(NULL);
    ofl_aggregator_client_options_free(NULL);
}

/* ---- ofl_reply_* with a NULL reply (outside callbacks) ---------------- */

static atomic_int g_release_calls;

static void count_release(void *context) {
    atomic_int *n = context;
    atomic_fetch_add(n, 1);
}

static void test_reply_null(void) {
    static const uint8_t bytes[4] = {1, 2, 3, 4};
    ofl_tensor_view view = {.name = "t", .data = bytes, .data_len = sizeof bytes};

    EXPECT_CODE(ofl_reply_add_task(NULL, "train", NULL, NULL, false), OFL_CODE_INVALID_ARGUMENT,
                "reply");
    EXPECT_CODE(ofl_reply_set_round_number(NULL, 1), OFL_CODE_INVALID_ARGUMENT, "reply");
    EXPECT_CODE(ofl_reply_set_sleep_time(NULL, 1), OFL_CODE_INVALID_ARGUMENT, "reply");
    EXPECT_CODE(ofl_reply_set_quit(NULL, true), OFL_CODE_INVALID_ARGUMENT, "reply");
    EXPECT_CODE(ofl_reply_set_tensor(NULL, &view), OFL_CODE_INVALID_ARGUMENT, "reply");

    /* Borrowed data is released exactly once, also when the call fails. */
    atomic_store(&g_release_calls, 0);
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(NULL, &view, count_release, &g_release_calls),
                OFL_CODE_INVALID_ARGUMENT, "reply");
    CHECK_MSG(wait_for_count(&g_release_calls, 1, 2000) == 1,
              "release ran %d times after a failed ofl_reply_set_tensor_borrowed(NULL reply)",
              atomic_load(&g_release_calls));
    atomic_store(&g_release_calls, 0);
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(NULL, NULL, count_release, &g_release_calls),
                OFL_CODE_INVALID_ARGUMENT, NULL);
    CHECK_MSG(wait_for_count(&g_release_calls, 1, 2000) == 1,
              "release ran %d times after a failed ofl_reply_set_tensor_borrowed(NULL, NULL)",
              atomic_load(&g_release_calls));
    /* A NULL release function is allowed. */
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(NULL, &view, NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "reply");
}

/* ---- server options ---------------------------------------------------- */

static void test_server_options_null(void) {
    EXPECT_CODE(ofl_aggregator_server_options_new(NULL), OFL_CODE_INVALID_ARGUMENT, "out");

    ofl_aggregator_server_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_server_options_new(&o));
    REQUIRE(o != NULL);

    EXPECT_CODE(ofl_aggregator_server_options_set_listen(NULL, "127.0.0.1", 0),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_listen(o, NULL, 0), OFL_CODE_INVALID_ARGUMENT,
                "host");
    EXPECT_CODE(ofl_aggregator_server_options_set_listen(o, "", 0), OFL_CODE_INVALID_ARGUMENT,
                "host");
    EXPECT_CODE(ofl_aggregator_server_options_set_listen(o, BAD_UTF8, 0),
                OFL_CODE_INVALID_ARGUMENT, "host");

    EXPECT_CODE(ofl_aggregator_server_options_set_tls(NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_limits(NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "limits");

    EXPECT_CODE(ofl_aggregator_server_options_set_federation(NULL, "a", "f", NULL),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_federation(o, NULL, "f", NULL),
                OFL_CODE_INVALID_ARGUMENT, "aggregator_uuid");
    EXPECT_CODE(ofl_aggregator_server_options_set_federation(o, "a", NULL, NULL),
                OFL_CODE_INVALID_ARGUMENT, "federation_uuid");
    EXPECT_CODE(ofl_aggregator_server_options_set_federation(o, BAD_UTF8, "f", NULL),
                OFL_CODE_INVALID_ARGUMENT, "aggregator_uuid");
    EXPECT_CODE(ofl_aggregator_server_options_set_federation(o, "a", BAD_UTF8, NULL),
                OFL_CODE_INVALID_ARGUMENT, "federation_uuid");
    EXPECT_CODE(ofl_aggregator_server_options_set_federation(o, "a", "f", BAD_UTF8),
                OFL_CODE_INVALID_ARGUMENT, "single_col_cert_common_name");
    EXPECT_OK(ofl_aggregator_server_options_set_federation(o, "a", "f", NULL));

    EXPECT_CODE(ofl_aggregator_server_options_add_collaborator(NULL, "col1"),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_server_options_add_collaborator(o, NULL),
                OFL_CODE_INVALID_ARGUMENT, "collaborator_name");
    EXPECT_CODE(ofl_aggregator_server_options_add_collaborator(o, ""),
                OFL_CODE_INVALID_ARGUMENT, "collaborator_name");
    EXPECT_CODE(ofl_aggregator_server_options_add_collaborator(o, BAD_UTF8),
                OFL_CODE_INVALID_ARGUMENT, "collaborator_name");

    EXPECT_CODE(ofl_aggregator_server_options_set_auth_failure_max_delay_ms(NULL, 0),
                OFL_CODE_INVALID_ARGUMENT, "options");

    EXPECT_CODE(ofl_aggregator_server_options_set_max_message_size(NULL, 1 << 20),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_max_message_size(o, 0),
                OFL_CODE_INVALID_ARGUMENT, "max message size");
    EXPECT_CODE(ofl_aggregator_server_options_set_max_message_size(o, 1023),
                OFL_CODE_INVALID_ARGUMENT, "max message size");
    EXPECT_OK(ofl_aggregator_server_options_set_max_message_size(o, 1 << 20));

    ofl_aggregator_server_options_free(o);
}

/* ---- server start / serve / stop --------------------------------------- */


static void test_server_start_null(void) {
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_INSECURE);
    ofl_aggregator_server *server = NULL;

    /* NULL options or out: free_user_data still runs exactly once (when
     * start_with_callbacks frees the callbacks object). */
    EXPECT_START_FAILS(NULL, OFL_CODE_INVALID_ARGUMENT, "options");
    {
        counters c = {0};
        callback_fns cb = noop_callbacks(&c);
        EXPECT_CODE(start_with_callbacks(o, &cb, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
        CHECK_MSG(wait_for_count(&c.free_calls, 1, 2000) == 1,
                  "free_user_data ran %d times after start(out=NULL)", atomic_load(&c.free_calls));
    }
    EXPECT_CODE(ofl_aggregator_server_start(o, NULL, &server), OFL_CODE_INVALID_ARGUMENT,
                "callbacks");
    CHECK(server == NULL);

    /* Each required callback missing: INVALID_ARGUMENT naming its setter,
     * and free_user_data exactly once. */
    static const char *const names[] = {"ofl_aggregator_callbacks_set_get_tasks",
                                        "ofl_aggregator_callbacks_set_get_aggregated_tensor",
                                        "ofl_aggregator_callbacks_set_send_local_task_results"};
    for (int which = 0; which < 3; which++) {
        counters c = {0};
        callback_fns cb = noop_callbacks(&c);
        if (which == 0) cb.get_tasks = NULL;
        if (which == 1) cb.get_aggregated_tensor = NULL;
        if (which == 2) cb.send_local_task_results = NULL;
        EXPECT_CODE(start_with_callbacks(o, &cb, &server), OFL_CODE_INVALID_ARGUMENT,
                    names[which]);
        CHECK(server == NULL);
        CHECK_MSG(wait_for_count(&c.free_calls, 1, 2000) == 1,
                  "%s not called: free_user_data ran %d times, expected 1", names[which],
                  atomic_load(&c.free_calls));
    }
    /* ... and with no free_user_data at all nothing is called. */
    {
        callback_fns cb = noop_callbacks(NULL);
        cb.free_user_data = NULL;
        cb.get_tasks = NULL;
        EXPECT_CODE(start_with_callbacks(o, &cb, &server), OFL_CODE_INVALID_ARGUMENT,
                    "ofl_aggregator_callbacks_set_get_tasks");
    }

    EXPECT_CODE(ofl_aggregator_server_serve(NULL), OFL_CODE_INVALID_ARGUMENT, "server");
    EXPECT_CODE(ofl_aggregator_server_stop(NULL), OFL_CODE_INVALID_ARGUMENT, "server");

    /* Port in use: IO. */
    {
        counters c = {0};
        callback_fns cb = noop_callbacks(&c);
        REQUIRE_OK(start_with_callbacks(o, &cb, &server));
        uint16_t port = ofl_aggregator_server_port(server);
        CHECK(port != 0);
        ofl_aggregator_server_options *busy = make_server_options(&g_certs, TLS_INSECURE);
        REQUIRE_OK(ofl_aggregator_server_options_set_listen(busy, "127.0.0.1", port));
        EXPECT_START_FAILS(busy, OFL_CODE_IO, NULL);
        ofl_aggregator_server_options_free(busy);
        /* stop is idempotent; serve returns at once after stop. */
        EXPECT_OK(ofl_aggregator_server_stop(server));
        EXPECT_OK(ofl_aggregator_server_stop(server));
        EXPECT_OK(ofl_aggregator_server_serve(server));
        ofl_aggregator_server_free(server);
        server = NULL;
        CHECK_MSG(wait_for_count(&c.free_calls, 1, 5000) == 1,
                  "free_user_data ran %d times after ofl_aggregator_server_free",
                  atomic_load(&c.free_calls));
    }
    ofl_aggregator_server_options_free(o);
}

static const char GARBAGE[] = "this is not PEM at all\n";
static const char BAD_BASE64_PEM[] =
    "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n";

/* Attaches TLS settings with the given files (server identity). */
static void set_server_tls_files(ofl_aggregator_server_options *o, const char *root,
                                 const char *crt, const char *key) {
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));
    REQUIRE_OK(ofl_tls_config_set_root_certificate_file(tls, root));
    REQUIRE_OK(ofl_tls_config_set_identity_files(tls, crt, key));
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
}

/* A server with the given PEM documents (NULL = the real file's contents). */
static ofl_aggregator_server_options *server_pem_options(const char *root, const char *crt,
                                                        const char *key, const char *key_file) {
    size_t root_len = 0, crt_len = 0, key_len = 0;
    uint8_t *root_buf = root ? NULL : read_file(g_certs.ca, &root_len);
    uint8_t *crt_buf = crt ? NULL : read_file(g_certs.server_crt, &crt_len);
    uint8_t *key_buf = key ? NULL : read_file(key_file ? key_file : g_certs.server_key, &key_len);
    REQUIRE((root || root_buf) && (crt || crt_buf) && (key || key_buf));
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_MUTUAL);
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));
    REQUIRE_OK(ofl_tls_config_set_root_certificate_pem(
        tls, root ? (const uint8_t *)root : root_buf, root ? strlen(root) : root_len));
    REQUIRE_OK(ofl_tls_config_set_identity_pem(
        tls, crt ? (const uint8_t *)crt : crt_buf, crt ? strlen(crt) : crt_len,
        key ? (const uint8_t *)key : key_buf, key ? strlen(key) : key_len));
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
    free(root_buf);
    free(crt_buf);
    free(key_buf);
    return o;
}

static void test_server_tls_failures(void) {
    ofl_aggregator_server_options *o;

    /* Unreadable certificate files: IO, naming the file. */
    o = make_server_options(&g_certs, TLS_MUTUAL);
    set_server_tls_files(o, "/nonexistent/ca.crt", g_certs.server_crt, g_certs.server_key);
    EXPECT_START_FAILS(o, OFL_CODE_IO, "/nonexistent/ca.crt");
    set_server_tls_files(o, g_certs.ca, "/nonexistent/s.crt", g_certs.server_key);
    EXPECT_START_FAILS(o, OFL_CODE_IO, "/nonexistent/s.crt");
    set_server_tls_files(o, g_certs.ca, g_certs.server_crt, "/nonexistent/s.key");
    EXPECT_START_FAILS(o, OFL_CODE_IO, "/nonexistent/s.key");

    /* A garbage file: TLS. */
    char garbage_path[] = "/tmp/ofl-garbage-XXXXXX";
    int fd = mkstemp(garbage_path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, GARBAGE, sizeof GARBAGE - 1) == (ssize_t)(sizeof GARBAGE - 1));
    close(fd);
    set_server_tls_files(o, garbage_path, g_certs.server_crt, g_certs.server_key);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "root_certificate");
    set_server_tls_files(o, g_certs.ca, garbage_path, g_certs.server_key);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "certificate");
    set_server_tls_files(o, g_certs.ca, g_certs.server_crt, garbage_path);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "private_key");
    unlink(garbage_path);
    ofl_aggregator_server_options_free(o);

    /* Garbage PEM in memory: TLS, naming the document. */
    o = server_pem_options(GARBAGE, NULL, NULL, NULL);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "root_certificate");
    ofl_aggregator_server_options_free(o);
    o = server_pem_options(BAD_BASE64_PEM, NULL, NULL, NULL);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "root_certificate");
    ofl_aggregator_server_options_free(o);
    o = server_pem_options(NULL, GARBAGE, NULL, NULL);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "certificate");
    ofl_aggregator_server_options_free(o);
    o = server_pem_options(NULL, NULL, GARBAGE, NULL);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, "private_key");
    ofl_aggregator_server_options_free(o);
    /* A key that does not belong to the certificate: TLS. */
    o = server_pem_options(NULL, NULL, NULL, g_certs.col1_key);
    EXPECT_START_FAILS(o, OFL_CODE_TLS, NULL);
    ofl_aggregator_server_options_free(o);
    /* The real documents in memory start. */
    {
        o = server_pem_options(NULL, NULL, NULL, NULL);
        counters c = {0};
        callback_fns cb = noop_callbacks(&c);
        ofl_aggregator_server *server = NULL;
        EXPECT_OK(start_with_callbacks(o, &cb, &server));
        ofl_aggregator_server_free(server);
        CHECK(wait_for_count(&c.free_calls, 1, 5000) == 1);
        ofl_aggregator_server_options_free(o);
    }

    /* TLS on (the default) with nothing attached: INVALID_ARGUMENT naming
     * the setter. */
    REQUIRE_OK(ofl_aggregator_server_options_new(&o));
    REQUIRE_OK(ofl_aggregator_server_options_set_listen(o, "127.0.0.1", 0));
    EXPECT_START_FAILS(o, OFL_CODE_INVALID_ARGUMENT, "ofl_aggregator_server_options_set_tls");
    /* An empty ofl_tls_config: the root certificate is missing. */
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    EXPECT_START_FAILS(o, OFL_CODE_INVALID_ARGUMENT, "root_certificate");
    /* ... or with a root certificate only. */
    REQUIRE_OK(ofl_tls_config_set_root_certificate_file(tls, g_certs.ca));
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    EXPECT_START_FAILS(o, OFL_CODE_INVALID_ARGUMENT, "certificate");
    ofl_tls_config_free(tls);
    ofl_aggregator_server_options_free(o);
}

/* ---- client options and client creation ---------------------------------- */

static void test_client_options_null(void) {
    ofl_aggregator_client_options *o = NULL;
    EXPECT_CODE(ofl_aggregator_client_options_new(NULL, 1, &o), OFL_CODE_INVALID_ARGUMENT, "host");
    EXPECT_CODE(ofl_aggregator_client_options_new("", 1, &o), OFL_CODE_INVALID_ARGUMENT, "host");
    EXPECT_CODE(ofl_aggregator_client_options_new(BAD_UTF8, 1, &o), OFL_CODE_INVALID_ARGUMENT, "host");
    EXPECT_CODE(ofl_aggregator_client_options_new("localhost", 1, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    CHECK(o == NULL);
    REQUIRE_OK(ofl_aggregator_client_options_new("localhost", 1, &o));
    REQUIRE(o != NULL);

    EXPECT_CODE(ofl_aggregator_client_options_set_tls(NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_aggregator_client_options_set_connect(o, NULL), OFL_CODE_INVALID_ARGUMENT,
                "connect");
    {
        ofl_connect_options *connect = NULL;
        REQUIRE_OK(ofl_connect_options_new(&connect));
        EXPECT_CODE(ofl_aggregator_client_options_set_connect(NULL, connect),
                    OFL_CODE_INVALID_ARGUMENT, "options");
        ofl_connect_options_free(connect);
    }

    EXPECT_CODE(ofl_aggregator_client_options_set_federation(NULL, "a", "f", NULL),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_client_options_set_federation(o, NULL, "f", NULL), OFL_CODE_INVALID_ARGUMENT,
                "aggregator_uuid");
    EXPECT_CODE(ofl_aggregator_client_options_set_federation(o, "a", NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "federation_uuid");
    EXPECT_CODE(ofl_aggregator_client_options_set_federation(o, "a", "f", BAD_UTF8),
                OFL_CODE_INVALID_ARGUMENT, "single_col_cert_common_name");

    EXPECT_CODE(ofl_aggregator_client_options_set_reconnect_every_call(NULL, true),
                OFL_CODE_INVALID_ARGUMENT, "options");

    ofl_aggregator_client *client = NULL;
    EXPECT_CODE(ofl_aggregator_client_new(NULL, &client), OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_client_new(o, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    CHECK(client == NULL);

    EXPECT_CODE(ofl_aggregator_client_disconnect(NULL), OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_aggregator_client_close(NULL), OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_aggregator_client_reconnect(NULL), OFL_CODE_INVALID_ARGUMENT, "client");
    ofl_aggregator_client_options_free(o);
}

static void expect_client_new_fails_at(const char *file, int line, const char *what,
                                       ofl_aggregator_client_options *o, ofl_code code, const char *needle) {
    ofl_aggregator_client *client = NULL;
    expect_code_at(file, line, what, ofl_aggregator_client_new(o, &client), code, needle);
    if (client != NULL) {
        test_fail_at(file, line, "%s: *out written on failure", what);
        ofl_aggregator_client_free(client);
    }
}
#define EXPECT_CLIENT_NEW_FAILS(o, code, needle) \
    expect_client_new_fails_at(__FILE__, __LINE__, #o, (o), (code), (needle))

/* Attaches TLS settings: root file or PEM, optional identity files, mode. */
static void set_client_tls(ofl_aggregator_client_options *o, const char *root_file,
                           const char *root_pem, const char *crt, const char *key,
                           ofl_client_auth mode) {
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));
    if (root_file) REQUIRE_OK(ofl_tls_config_set_root_certificate_file(tls, root_file));
    if (root_pem)
        REQUIRE_OK(ofl_tls_config_set_root_certificate_pem(tls, (const uint8_t *)root_pem,
                                                           strlen(root_pem)));
    if (crt && key) REQUIRE_OK(ofl_tls_config_set_identity_files(tls, crt, key));
    REQUIRE_OK(ofl_tls_config_set_client_auth(tls, mode));
    REQUIRE_OK(ofl_aggregator_client_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
}

static void test_client_tls_failures(void) {
    ofl_aggregator_client_options *o = NULL;

    /* TLS on (the default) with nothing attached: INVALID_ARGUMENT naming
     * the setter. */
    REQUIRE_OK(ofl_aggregator_client_options_new("127.0.0.1", 1, &o));
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_INVALID_ARGUMENT, "ofl_aggregator_client_options_set_tls");
    /* An empty ofl_tls_config: the root certificate is missing. */
    set_client_tls(o, NULL, NULL, NULL, NULL, OFL_CLIENT_AUTH_MUTUAL);
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_INVALID_ARGUMENT, "root_certificate");
    /* Client authentication on (the default) with a root certificate only. */
    set_client_tls(o, g_certs.ca, NULL, NULL, NULL, OFL_CLIENT_AUTH_MUTUAL);
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_INVALID_ARGUMENT, "certificate");
    /* Unreadable files: IO naming the file. */
    set_client_tls(o, "/nonexistent/ca.crt", NULL, g_certs.col1_crt, g_certs.col1_key,
                   OFL_CLIENT_AUTH_MUTUAL);
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_IO, "/nonexistent/ca.crt");
    set_client_tls(o, g_certs.ca, NULL, g_certs.col1_crt, "/nonexistent/col1.key",
                   OFL_CLIENT_AUTH_MUTUAL);
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_IO, "/nonexistent/col1.key");
    /* Garbage PEM: TLS. */
    set_client_tls(o, NULL, GARBAGE, NULL, NULL, OFL_CLIENT_AUTH_NONE);
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_TLS, "root_certificate");
    {
        size_t ca_len = 0, key_len = 0;
        uint8_t *ca = read_file(g_certs.ca, &ca_len);
        uint8_t *key = read_file(g_certs.col1_key, &key_len);
        REQUIRE(ca != NULL && key != NULL);
        ofl_tls_config *tls = NULL;
        REQUIRE_OK(ofl_tls_config_new(&tls));
        REQUIRE_OK(ofl_tls_config_set_root_certificate_pem(tls, ca, ca_len));
        REQUIRE_OK(ofl_tls_config_set_identity_pem(tls, (const uint8_t *)GARBAGE,
                                                   strlen(GARBAGE), key, key_len));
        REQUIRE_OK(ofl_aggregator_client_options_set_tls(o, tls));
        ofl_tls_config_free(tls);
        EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_TLS, "certificate");
        free(ca);
        free(key);
    }
    /* A key that does not belong to the certificate. */
    set_client_tls(o, g_certs.ca, NULL, g_certs.col1_crt, g_certs.col2_key,
                   OFL_CLIENT_AUTH_MUTUAL);
    EXPECT_CLIENT_NEW_FAILS(o, OFL_CODE_TLS, NULL);
    ofl_aggregator_client_options_free(o);
}

/* ---- a live server whose callbacks check ofl_reply_* arguments --------- */

typedef struct live_state {
    atomic_int free_calls;
    atomic_int get_tasks_calls;
    atomic_int first_release;  /* "twice": the replaced borrowed tensor */
    atomic_int second_release; /* "twice": the one that was sent */
    atomic_int fail_release;   /* borrowed sets that failed */
    atomic_int results_calls;
} live_state;

static uint8_t g_twice_first[256];
static uint8_t g_twice_second[256];

static ofl_error *live_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    live_state *s = ud;
    atomic_fetch_add(&s->get_tasks_calls, 1);
    EXPECT_CODE(ofl_reply_add_task(reply, NULL, NULL, NULL, false), OFL_CODE_INVALID_ARGUMENT,
                "name");
    EXPECT_CODE(ofl_reply_add_task(reply, BAD_UTF8, NULL, NULL, false),
                OFL_CODE_INVALID_ARGUMENT, "name");
    EXPECT_CODE(ofl_reply_add_task(reply, "t", BAD_UTF8, NULL, false), OFL_CODE_INVALID_ARGUMENT,
                "function_name");
    EXPECT_CODE(ofl_reply_add_task(reply, "t", NULL, BAD_UTF8, false), OFL_CODE_INVALID_ARGUMENT,
                "task_type");
    EXPECT_OK(ofl_reply_add_task(reply, "only", NULL, NULL, true));
    EXPECT_OK(ofl_reply_set_round_number(reply, 7));
    EXPECT_OK(ofl_reply_set_sleep_time(reply, 3));
    if (strcmp(collaborator, "col2") == 0) {
        /* A value that is no ofl_code reaches the peer as UNKNOWN. */
        return ofl_error_new(9999, "custom failure for col2");
    }
    return NULL;
}

static void check_set_tensor_arguments(live_state *s, ofl_reply *reply) {
    static const uint8_t data[4] = {1, 2, 3, 4};
    static const char *const one_null_tag[2] = {"ok", NULL};
    static const int32_t ints[2] = {1, 2};
    ofl_tensor_view v;

    EXPECT_CODE(ofl_reply_set_tensor(reply, NULL), OFL_CODE_INVALID_ARGUMENT, "tensor");
    v = (ofl_tensor_view){.name = NULL, .data = data, .data_len = 4};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "tensor.name");
    v.name = BAD_UTF8;
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "tensor.name");
    v = (ofl_tensor_view){.name = "t", .data = NULL, .data_len = 4};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "tensor.data");
    v = (ofl_tensor_view){.name = "t", .tags = NULL, .tags_len = 2};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "tensor.tags");
    v = (ofl_tensor_view){.name = "t", .tags = one_null_tag, .tags_len = 2};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "tensor.tags[1]");
    v = (ofl_tensor_view){.name = "t", .metadata = NULL, .metadata_len = 1};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "tensor.metadata");
    ofl_metadata_view md = {.int_list = NULL, .int_list_len = 3};
    v = (ofl_tensor_view){.name = "t", .metadata = &md, .metadata_len = 1};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "int_list");
    md = (ofl_metadata_view){.bool_list = NULL, .bool_list_len = 1};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "bool_list");
    md = (ofl_metadata_view){.int_to_float_keys = NULL, .int_to_float_values = NULL,
                             .int_to_float_len = 1};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT, "int_to_float_keys");
    md = (ofl_metadata_view){.int_to_float_keys = ints, .int_to_float_values = NULL,
                             .int_to_float_len = 2};
    EXPECT_CODE(ofl_reply_set_tensor(reply, &v), OFL_CODE_INVALID_ARGUMENT,
                "int_to_float_values");

    /* Failed borrowed sets release their data exactly once each. */
    int before = atomic_load(&s->fail_release);
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(reply, NULL, count_release, &s->fail_release),
                OFL_CODE_INVALID_ARGUMENT, "tensor");
    v = (ofl_tensor_view){.name = "t", .data = NULL, .data_len = 4};
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(reply, &v, count_release, &s->fail_release),
                OFL_CODE_INVALID_ARGUMENT, "tensor.data");
    v = (ofl_tensor_view){.name = NULL, .data = data, .data_len = 4};
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(reply, &v, count_release, &s->fail_release),
                OFL_CODE_INVALID_ARGUMENT, "tensor.name");
    v = (ofl_tensor_view){.name = "t", .tags = NULL, .tags_len = 1, .data = data, .data_len = 4};
    EXPECT_CODE(ofl_reply_set_tensor_borrowed(reply, &v, count_release, &s->fail_release),
                OFL_CODE_INVALID_ARGUMENT, "tensor.tags");
    int got = wait_for_count(&s->fail_release, before + 4, 2000);
    CHECK_MSG(got == before + 4, "4 failed borrowed sets ran release %d times", got - before);
}

static ofl_error *live_get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                               ofl_reply *reply) {
    live_state *s = ud;
    (void)collaborator;
    const char *name = req->tensor_name;
    if (strcmp(name, "args") == 0) {
        check_set_tensor_arguments(s, reply);
        /* A copied tensor: the caller's buffers may change right after. */
        uint8_t data[64];
        fill_pattern(data, sizeof data, 3, 5);
        char tag0[] = "copied";
        const char *tags[1] = {tag0};
        int32_t shape[2] = {8, 8};
        bool flags[3] = {true, false, true};
        int32_t keys[3] = {5, 2, 9};
        float values[3] = {0.5f, 0.25f, 0.75f};
        ofl_metadata_view md = {.int_list = shape, .int_list_len = 2, .bool_list = flags,
                                .bool_list_len = 3, .int_to_float_keys = keys,
                                .int_to_float_values = values, .int_to_float_len = 3};
        ofl_tensor_view v = {.name = "args", .round_number = 4, .lossless = true, .report = true,
                             .tags = tags, .tags_len = 1, .metadata = &md, .metadata_len = 1,
                             .data = data, .data_len = sizeof data};
        EXPECT_OK(ofl_reply_set_tensor(reply, &v));
        memset(data, 0, sizeof data);
        memset(tag0, 'X', sizeof tag0 - 1);
        shape[0] = shape[1] = -1;
        keys[0] = keys[1] = keys[2] = -1;
        return NULL;
    }
    if (strcmp(name, "unset") == 0) return NULL; /* OK without a tensor */
    if (strcmp(name, "notfound") == 0) {
        return ofl_error_new(OFL_CODE_NOT_FOUND, "no tensor named notfound");
    }
    if (strcmp(name, "nomessage") == 0) return ofl_error_new(OFL_CODE_FAILED_PRECONDITION, NULL);
    if (strcmp(name, "twice") == 0) {
        /* The first borrowed tensor is replaced: released once, never sent. */
        ofl_tensor_view v = {.name = "twice", .data = g_twice_first,
                             .data_len = sizeof g_twice_first};
        EXPECT_OK(ofl_reply_set_tensor_borrowed(reply, &v, count_release, &s->first_release));
        v.data = g_twice_second;
        v.data_len = sizeof g_twice_second;
        EXPECT_OK(ofl_reply_set_tensor_borrowed(reply, &v, count_release, &s->second_release));
        return NULL;
    }
    return ofl_error_new(OFL_CODE_INVALID_ARGUMENT, "unexpected tensor name");
}

static ofl_error *live_send_results(void *ud, const char *collaborator,
                                 const ofl_task_results *results) {
    live_state *s = ud;
    atomic_fetch_add(&s->results_calls, 1);
    CHECK_STR(collaborator, "col1");
    CHECK_STR(ofl_task_results_task_name(results), "empty");
    CHECK(ofl_task_results_round_number(results) == 2);
    CHECK(ofl_task_results_data_size(results) == 0);
    CHECK(ofl_task_results_tensors_len(results) == 0);
    CHECK(ofl_task_results_tensor(results, 0) == NULL);
    return NULL;
}

static void live_free(void *ud) {
    live_state *s = ud;
    atomic_fetch_add(&s->free_calls, 1);
}

/* Client calls with bad arguments: none of them reaches the server. */
static void check_client_call_arguments(ofl_aggregator_client *client) {
    ofl_tasks *tasks = NULL;
    ofl_tensor *tensor = NULL;
    static const char *const null_tag[1] = {NULL};
    static const char *const bad_tag[1] = {BAD_UTF8};

    EXPECT_CODE(ofl_aggregator_client_get_tasks(NULL, "col1", NULL, &tasks), OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, NULL, NULL, &tasks), OFL_CODE_INVALID_ARGUMENT,
                "collaborator_name");
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, BAD_UTF8, NULL, &tasks), OFL_CODE_INVALID_ARGUMENT,
                "collaborator_name");
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", NULL, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    CHECK(tasks == NULL);

    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(NULL, "col1", "t", 0, false, NULL, 0, false,
                                                 NULL,
                                                 &tensor),
                OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, NULL, "t", 0, false, NULL, 0, false,
                                                 NULL,
                                                 &tensor),
                OFL_CODE_INVALID_ARGUMENT, "collaborator_name");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", NULL, 0, false, NULL, 0, false,
                                                 NULL,
                                                 &tensor),
                OFL_CODE_INVALID_ARGUMENT, "tensor_name");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", BAD_UTF8, 0, false, NULL, 0,
                                                 false, NULL, &tensor),
                OFL_CODE_INVALID_ARGUMENT, "tensor_name");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "t", 0, false, NULL, 1, false,
                                                 NULL,
                                                 &tensor),
                OFL_CODE_INVALID_ARGUMENT, "tags");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "t", 0, false, null_tag, 1,
                                                 false, NULL, &tensor),
                OFL_CODE_INVALID_ARGUMENT, "tags[0]");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "t", 0, false, bad_tag, 1,
                                                 false, NULL, &tensor),
                OFL_CODE_INVALID_ARGUMENT, "tags[0]");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "t", 0, false, NULL, 0, false,
                                                 NULL,
                                                 NULL),
                OFL_CODE_INVALID_ARGUMENT, "out");
    CHECK(tensor == NULL);

    static const uint8_t data[8] = {0};
    static const int32_t shape[1] = {8};
    ofl_metadata_view md = {.int_list = shape, .int_list_len = 1};
    ofl_tensor_view good = {.name = "w", .metadata = &md, .metadata_len = 1, .data = data,
                            .data_len = sizeof data};
    ofl_tensor_view bad;
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(NULL, "col1", 1, "train", 1, &good, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, NULL, 1, "train", 1, &good, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "collaborator_name");
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, NULL, 1, &good, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "task_name");
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, BAD_UTF8, 1, &good, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "task_name");
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 1, NULL, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "tensors");
    bad = good;
    bad.name = NULL;
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 1, &bad, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "tensor.name");
    bad = good;
    bad.data = NULL;
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 1, &bad, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "tensor.data");
    bad = good;
    bad.tags_len = 1;
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 1, &bad, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "tensor.tags");
    bad = good;
    bad.metadata = NULL;
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 1, &bad, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "tensor.metadata");
    ofl_metadata_view bad_md = {.int_list = NULL, .int_list_len = 2};
    bad = good;
    bad.metadata = &bad_md;
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 1, &bad, 1, NULL),
                OFL_CODE_INVALID_ARGUMENT, "int_list");
}

static void check_args_tensor(const ofl_tensor *t) {
    CHECK_STR(ofl_tensor_name(t), "args");
    CHECK(ofl_tensor_round_number(t) == 4);
    CHECK(ofl_tensor_lossless(t) == true);
    CHECK(ofl_tensor_report(t) == true);
    CHECK(ofl_tensor_tags_len(t) == 1);
    CHECK_STR(ofl_tensor_tag(t, 0), "copied");
    CHECK(ofl_tensor_tag(t, 1) == NULL);
    CHECK(ofl_tensor_data_len(t) == 64);
    const uint8_t *data = ofl_tensor_data(t);
    CHECK(data != NULL && check_pattern(data, 64, 3, 5) == 64);
    CHECK(ofl_tensor_metadata_len(t) == 1);
    uintptr_t n = 0;
    const int32_t *shape = ofl_tensor_metadata_int_list(t, 0, &n);
    CHECK(n == 2 && shape != NULL && shape[0] == 8 && shape[1] == 8);
    const bool *flags = ofl_tensor_metadata_bool_list(t, 0, &n);
    CHECK(n == 3 && flags != NULL && flags[0] && !flags[1] && flags[2]);
    CHECK(ofl_tensor_metadata_int_to_float_len(t, 0) == 3);
    static const int32_t want_keys[3] = {2, 5, 9}; /* increasing key order */
    static const float want_values[3] = {0.25f, 0.5f, 0.75f};
    for (uintptr_t i = 0; i < 3; i++) {
        int32_t key = -1;
        float value = -1.0f;
        CHECK(ofl_tensor_metadata_int_to_float_entry(t, 0, i, &key, &value));
        CHECK_MSG(key == want_keys[i] && value == want_values[i],
                  "int_to_float entry %zu is (%d, %g), expected (%d, %g)", (size_t)i, (int)key,
                  (double)value, (int)want_keys[i], (double)want_values[i]);
    }
    /* Out of range. */
    int32_t key = 0;
    float value = 0;
    CHECK(!ofl_tensor_metadata_int_to_float_entry(t, 0, 3, &key, &value));
    CHECK(!ofl_tensor_metadata_int_to_float_entry(t, 1, 0, &key, &value));
    CHECK(!ofl_tensor_metadata_int_to_float_entry(t, 0, 0, NULL, &value));
    CHECK(!ofl_tensor_metadata_int_to_float_entry(t, 0, 0, &key, NULL));
    n = 99;
    CHECK(ofl_tensor_metadata_int_list(t, 1, &n) == NULL && n == 0);
    n = 99;
    CHECK(ofl_tensor_metadata_bool_list(t, 1, &n) == NULL && n == 0);
    CHECK(ofl_tensor_metadata_int_to_float_len(t, 1) == 0);
}

static void test_live_server(void) {
    live_state s = {0};
    fill_pattern(g_twice_first, sizeof g_twice_first, 1, 100);
    fill_pattern(g_twice_second, sizeof g_twice_second, 1, 200);
    callback_fns cb = {
        .user_data = &s,
        .free_user_data = live_free,
        .get_tasks = live_get_tasks,
        .get_aggregated_tensor = live_get_tensor,
        .send_local_task_results = live_send_results,
    };
    ofl_aggregator_server_options *so = make_server_options(&g_certs, TLS_INSECURE);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(so, &cb, &server));
    ofl_aggregator_server_options_free(so);
    uint16_t port = ofl_aggregator_server_port(server);
    CHECK(port != 0);
    test_note("live insecure server on port %u", (unsigned)port);

    ofl_aggregator_client *client = make_client(&g_certs, port, TLS_INSECURE, NULL, NULL);
    check_client_call_arguments(client);
    CHECK_MSG(atomic_load(&s.get_tasks_calls) == 0,
              "a client call with bad arguments reached the server");

    /* get_tasks: reply built despite the rejected arguments. */
    ofl_tasks *tasks = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks))) {
        CHECK(ofl_tasks_round_number(tasks) == 7);
        CHECK(ofl_tasks_sleep_time(tasks) == 3);
        CHECK(ofl_tasks_quit(tasks) == false);
        CHECK(ofl_tasks_len(tasks) == 1);
        CHECK_STR(ofl_tasks_name(tasks, 0), "only");
        CHECK_STR(ofl_tasks_function_name(tasks, 0), ""); /* NULL -> "" */
        CHECK_STR(ofl_tasks_task_type(tasks, 0), "");
        CHECK(ofl_tasks_apply_local(tasks, 0) == true);
        CHECK(ofl_tasks_name(tasks, 1) == NULL);
        CHECK(ofl_tasks_function_name(tasks, 1) == NULL);
        CHECK(ofl_tasks_task_type(tasks, 1) == NULL);
        CHECK(ofl_tasks_apply_local(tasks, 1) == false);
        ofl_tasks_free(tasks);
    }
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col2", NULL, &tasks), OFL_CODE_UNKNOWN,
                "custom failure for col2");

    /* Header checks on the server, with precise codes naming the field. */
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col3", NULL, &tasks), OFL_CODE_PERMISSION_DENIED,
                "header.sender");
    {
        ofl_aggregator_client_options *co = make_client_options(&g_certs, port, TLS_INSECURE, NULL, NULL,
                                                     NULL);
        REQUIRE_OK(ofl_aggregator_client_options_set_federation(co, TEST_AGGREGATOR_UUID, "other-fed", NULL));
        ofl_aggregator_client *other = NULL;
        REQUIRE_OK(ofl_aggregator_client_new(co, &other));
        EXPECT_CODE(ofl_aggregator_client_get_tasks(other, "col1", NULL, &tasks), OFL_CODE_INVALID_ARGUMENT,
                    "header.federation_uuid");
        REQUIRE_OK(ofl_aggregator_client_options_set_federation(co, "other-agg", TEST_FEDERATION_UUID, NULL));
        ofl_aggregator_client_free(other);
        other = NULL;
        REQUIRE_OK(ofl_aggregator_client_new(co, &other));
        EXPECT_CODE(ofl_aggregator_client_get_tasks(other, "col1", NULL, &tasks), OFL_CODE_INVALID_ARGUMENT,
                    "header.receiver");
        ofl_aggregator_client_free(other);
        ofl_aggregator_client_options_free(co);
    }

    /* get_aggregated_tensor: argument checks inside the callback, then a copy. */
    ofl_tensor *t = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "args", 4, true, NULL, 0,
                                                   true, NULL, &t))) {
        check_args_tensor(t);
        ofl_tensor_free(t);
        t = NULL;
    }
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "unset", 0, false, NULL, 0,
                                                 false, NULL, &t),
                OFL_CODE_INTERNAL, "no error and no tensor");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "notfound", 0, false, NULL, 0,
                                                 false, NULL, &t),
                OFL_CODE_NOT_FOUND, "no tensor named notfound");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "nomessage", 0, false, NULL, 0,
                                                 false, NULL, &t),
                OFL_CODE_FAILED_PRECONDITION, "get_aggregated_tensor");
    CHECK(t == NULL);
    if (EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "twice", 0, false, NULL, 0,
                                                   false, NULL, &t))) {
        CHECK(ofl_tensor_data_len(t) == sizeof g_twice_second);
        CHECK(ofl_tensor_data_len(t) == sizeof g_twice_second &&
              memcmp(ofl_tensor_data(t), g_twice_second, sizeof g_twice_second) == 0);
        ofl_tensor_free(t);
    }
    CHECK_MSG(wait_for_count(&s.first_release, 1, 5000) == 1,
              "replaced borrowed tensor released %d times", atomic_load(&s.first_release));
    CHECK_MSG(wait_for_count(&s.second_release, 1, 5000) == 1,
              "sent borrowed tensor released %d times", atomic_load(&s.second_release));

    /* An upload without tensors. */
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, "col1", 2, "empty", 0, NULL, 0, NULL));
    CHECK(atomic_load(&s.results_calls) == 1);

    /* disconnect / reconnect keep the client usable. */
    EXPECT_OK(ofl_aggregator_client_disconnect(client));
    EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks));
    ofl_tasks_free(tasks);
    tasks = NULL;
    EXPECT_OK(ofl_aggregator_client_reconnect(client));
    EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks));
    ofl_tasks_free(tasks);

    ofl_aggregator_client_free(client);
    ofl_aggregator_server_free(server);
    CHECK_MSG(wait_for_count(&s.free_calls, 1, 5000) == 1,
              "free_user_data ran %d times after ofl_aggregator_server_free",
              atomic_load(&s.free_calls));
    /* Still exactly once a little later. */
    sleep_ms(50);
    CHECK(atomic_load(&s.free_calls) == 1);
    CHECK(atomic_load(&s.first_release) == 1 && atomic_load(&s.second_release) == 1);
}

/* A call retrying forever (nobody listens) is cancelled by ofl_aggregator_client_close
 * from another thread; later calls fail the same way; close is idempotent. */
typedef struct close_call {
    ofl_aggregator_client *client;
    ofl_error *error;
} close_call;

static void *get_tasks_until_cancelled(void *arg) {
    close_call *c = arg;
    ofl_tasks *tasks = NULL;
    c->error = ofl_aggregator_client_get_tasks(c->client, "col1", NULL, &tasks);
    ofl_tasks_free(tasks);
    return NULL;
}

static void test_client_close_cancels(void) {
    ofl_aggregator_client_options *o = make_client_options(&g_certs, 9, TLS_INSECURE, NULL, NULL, NULL);
    ofl_connect_options *connect = NULL;
    REQUIRE_OK(ofl_connect_options_new(&connect));
    REQUIRE_OK(ofl_connect_options_set_retry(connect, 50, 200, -1));
    EXPECT_OK(ofl_aggregator_client_options_set_connect(o, connect));
    ofl_connect_options_free(connect);
    ofl_aggregator_client *client = NULL;
    EXPECT_OK(ofl_aggregator_client_new(o, &client));
    ofl_aggregator_client_options_free(o);
    if (client == NULL) return;

    close_call call = {client, NULL};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, get_tasks_until_cancelled, &call) == 0);
    usleep(300 * 1000);
    EXPECT_OK(ofl_aggregator_client_close(client));
    pthread_join(thread, NULL);
    EXPECT_CODE(call.error, OFL_CODE_CANCELLED, "closed");

    ofl_tasks *tasks = NULL;
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks), OFL_CODE_CANCELLED, "closed");
    CHECK(tasks == NULL);
    EXPECT_OK(ofl_aggregator_client_close(client));
    ofl_aggregator_client_free(client);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    double t0 = now_seconds();

    test_note("version, code names, log levels");
    test_version_and_codes();
    test_note("accessors and _free with NULL");
    test_null_accessors();
    test_note("ofl_reply_* with a NULL reply");
    test_reply_null();
    test_note("server options");
    test_server_options_null();
    test_note("server start/serve/stop");
    test_server_start_null();
    test_note("server TLS failures");
    test_server_tls_failures();
    test_note("client options");
    test_client_options_null();
    test_note("client TLS failures");
    test_client_tls_failures();
    test_note("client close cancels a call in progress");
    test_client_close_cancels();
    test_note("live server: callback-side checks");
    test_live_server();

    test_note("%.2f s", now_seconds() - t0);
    return test_finish("test_errors");
}
