/*
 * test_api_objects: the objects C API 0.2 shares between areas, and the
 * aggregator's callback registration.
 *
 *  - ofl_tls_config: every bad input (NULL, empty, invalid UTF-8, a mode
 *    that is no ofl_client_auth) is INVALID_ARGUMENT naming the argument;
 *    attaching copies (the config may change or go right after); a TLS
 *    server refuses a plain-text client and the other way round, and
 *    set_tls(NULL) after set_tls(tls) really turns TLS off;
 *  - ofl_error_new: OK gives NULL; code and message kept; a code that is no
 *    ofl_code becomes UNKNOWN; a callback's error reaches the client as the
 *    gRPC status (code and message);
 *  - ofl_aggregator_callbacks: NULL handles, a missing required callback is
 *    INVALID_ARGUMENT naming its setter, free_user_data runs exactly once:
 *    after the last of server and callbacks object is freed, when a start
 *    fails, when replaced, and at once when handed to a NULL object; the
 *    server keeps working after the callbacks object is freed;
 *  - ofl_connect_options: bad values; a retry deadline attached with
 *    ofl_aggregator_client_options_set_connect is in force.
 *
 * usage: test_api_objects CERT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char BAD_UTF8[] = "bad\xff\xfe";
#define INVALID OFL_CODE_INVALID_ARGUMENT

static cert_paths g_certs;

/* ---- ofl_tls_config --------------------------------------------------------- */

static void test_tls_config_bad_inputs(void) {
    static const uint8_t pem[] = "x";
    EXPECT_CODE(ofl_tls_config_new(NULL), INVALID, "out");
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));

    EXPECT_CODE(ofl_tls_config_set_root_certificate_file(NULL, g_certs.ca), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_set_root_certificate_file(tls, NULL), INVALID, "path");
    EXPECT_CODE(ofl_tls_config_set_root_certificate_file(tls, ""), INVALID, "path is empty");
    EXPECT_CODE(ofl_tls_config_set_root_certificate_file(tls, BAD_UTF8), INVALID, "path");

    EXPECT_CODE(ofl_tls_config_set_root_certificate_pem(NULL, pem, 1), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_set_root_certificate_pem(tls, NULL, 5), INVALID, "pem_data");
    EXPECT_CODE(ofl_tls_config_set_root_certificate_pem(tls, pem, 0), INVALID,
                "pem_data is empty");
    EXPECT_CODE(ofl_tls_config_set_root_certificate_pem(tls, NULL, 0), INVALID,
                "pem_data is empty");

    EXPECT_CODE(ofl_tls_config_set_identity_files(NULL, "c", "k"), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_set_identity_files(tls, NULL, "k"), INVALID, "certificate");
    EXPECT_CODE(ofl_tls_config_set_identity_files(tls, "", "k"), INVALID, "certificate is empty");
    EXPECT_CODE(ofl_tls_config_set_identity_files(tls, BAD_UTF8, "k"), INVALID, "certificate");
    EXPECT_CODE(ofl_tls_config_set_identity_files(tls, "c", NULL), INVALID, "private_key");
    EXPECT_CODE(ofl_tls_config_set_identity_files(tls, "c", ""), INVALID, "private_key is empty");

    EXPECT_CODE(ofl_tls_config_set_identity_pem(NULL, pem, 1, pem, 1), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_set_identity_pem(tls, NULL, 3, pem, 1), INVALID, "certificate");
    EXPECT_CODE(ofl_tls_config_set_identity_pem(tls, pem, 0, pem, 1), INVALID,
                "certificate is empty");
    EXPECT_CODE(ofl_tls_config_set_identity_pem(tls, pem, 1, NULL, 3), INVALID, "private_key");
    EXPECT_CODE(ofl_tls_config_set_identity_pem(tls, pem, 1, pem, 0), INVALID,
                "private_key is empty");

    EXPECT_CODE(ofl_tls_config_set_client_auth(NULL, OFL_CLIENT_AUTH_NONE), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_set_client_auth(tls, 2), INVALID, "client auth mode 2");
    EXPECT_CODE(ofl_tls_config_set_client_auth(tls, -1), INVALID, "client auth mode -1");
    EXPECT_OK(ofl_tls_config_set_client_auth(tls, OFL_CLIENT_AUTH_NONE));
    EXPECT_OK(ofl_tls_config_set_client_auth(tls, OFL_CLIENT_AUTH_MUTUAL));

    EXPECT_CODE(ofl_tls_config_add_crl_file(NULL, "crl.pem"), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_add_crl_file(tls, NULL), INVALID, "path");
    EXPECT_CODE(ofl_tls_config_add_crl_file(tls, ""), INVALID, "path is empty");
    EXPECT_CODE(ofl_tls_config_add_crl_pem(NULL, pem, 1), INVALID, "tls");
    EXPECT_CODE(ofl_tls_config_add_crl_pem(tls, NULL, 4), INVALID, "pem_data");
    EXPECT_CODE(ofl_tls_config_add_crl_pem(tls, pem, 0), INVALID, "pem_data is empty");

    ofl_tls_config_free(tls);
    ofl_tls_config_free(NULL);
}

static ofl_error *ok_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)collaborator;
    return ofl_reply_set_round_number(reply, 42);
}

static ofl_error *unimplemented_tensor(void *ud, const char *collaborator,
                                       const ofl_tensor_request *req, ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)req, (void)reply;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, "no tensors here");
}

static ofl_error *ok_send_results(void *ud, const char *collaborator,
                                  const ofl_task_results *results) {
    (void)ud, (void)collaborator, (void)results;
    return NULL;
}

static const callback_fns OK_CALLBACKS = {
    .get_tasks = ok_get_tasks,
    .get_aggregated_tensor = unimplemented_tensor,
    .send_local_task_results = ok_send_results,
};

/* GetTasks from `mode`'s client to `port`: the error (NULL on success, when
 * the round must be 42). */
static ofl_error *get_tasks_with(uint16_t port, tls_mode mode) {
    ofl_aggregator_client *client =
        make_client(&g_certs, port, mode, g_certs.col1_crt, g_certs.col1_key);
    ofl_tasks *tasks = NULL;
    ofl_error *err = ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks);
    if (err == NULL) CHECK(ofl_tasks_round_number(tasks) == 42);
    ofl_tasks_free(tasks);
    ofl_aggregator_client_free(client);
    return err;
}

/* TLS on, then off again, on the same options objects: each attachment
 * replaces the previous one, and the config is copied when attached. */
static void test_tls_round_trip(void) {
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_INSECURE);
    ofl_tls_config *tls =
        make_tls_config(&g_certs, TLS_MUTUAL, NULL, g_certs.server_crt, g_certs.server_key);
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    /* Changing (or freeing) the config after attaching changes nothing. */
    REQUIRE_OK(ofl_tls_config_set_root_certificate_file(tls, "/nonexistent/ca.crt"));
    ofl_tls_config_free(tls);

    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &OK_CALLBACKS, &server));
    uint16_t port = ofl_aggregator_server_port(server);
    EXPECT_OK(get_tasks_with(port, TLS_MUTUAL));
    /* A plain-text client cannot talk to a TLS server. */
    ofl_error *err = get_tasks_with(port, TLS_INSECURE);
    CHECK_MSG(err != NULL, "a plain-text client reached a TLS server");
    ofl_error_free(err);
    ofl_aggregator_server_free(server);

    /* set_tls(NULL) after set_tls(tls): TLS off. */
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, NULL));
    server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &OK_CALLBACKS, &server));
    port = ofl_aggregator_server_port(server);
    EXPECT_OK(get_tasks_with(port, TLS_INSECURE));
    err = get_tasks_with(port, TLS_MUTUAL);
    CHECK_MSG(err != NULL && ofl_error_code(err) == OFL_CODE_PROTOCOL_MISMATCH,
              "a TLS client to a plain-text server: %s",
              err ? ofl_code_name(ofl_error_code(err)) : "OK");
    ofl_error_free(err);
    ofl_aggregator_server_free(server);

    /* And on again. */
    tls = make_tls_config(&g_certs, TLS_MUTUAL, NULL, g_certs.server_crt, g_certs.server_key);
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
    server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &OK_CALLBACKS, &server));
    EXPECT_OK(get_tasks_with(ofl_aggregator_server_port(server), TLS_MUTUAL));
    ofl_aggregator_server_free(server);
    ofl_aggregator_server_options_free(o);
}

/* ---- ofl_error_new ------------------------------------------------------------ */

static void test_error_new(void) {
    CHECK(ofl_error_new(OFL_CODE_OK, "ignored") == NULL);
    CHECK(ofl_error_new(OFL_CODE_OK, NULL) == NULL);

    ofl_error *e = ofl_error_new(OFL_CODE_NOT_FOUND, "no such tensor");
    REQUIRE(e != NULL);
    CHECK(ofl_error_code(e) == OFL_CODE_NOT_FOUND);
    CHECK_STR(ofl_error_message(e), "no such tensor");
    ofl_error_free(e);

    e = ofl_error_new(OFL_CODE_ABORTED, NULL);
    REQUIRE(e != NULL);
    CHECK(ofl_error_code(e) == OFL_CODE_ABORTED);
    CHECK_STR(ofl_error_message(e), "");
    ofl_error_free(e);

    e = ofl_error_new(9999, "not a code");
    REQUIRE(e != NULL);
    CHECK(ofl_error_code(e) == OFL_CODE_UNKNOWN);
    CHECK_STR(ofl_error_message(e), "not a code");
    ofl_error_free(e);

    /* Invalid UTF-8 is kept, lossily. */
    e = ofl_error_new(OFL_CODE_INTERNAL, BAD_UTF8);
    REQUIRE(e != NULL);
    CHECK(strncmp(ofl_error_message(e), "bad", 3) == 0);
    ofl_error_free(e);
}

static ofl_error *denying_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)reply;
    char msg[128];
    snprintf(msg, sizeof msg, "%s is benched this round", collaborator);
    return ofl_error_new(OFL_CODE_PERMISSION_DENIED, msg);
}

static ofl_error *aborting_send_results(void *ud, const char *collaborator,
                                        const ofl_task_results *results) {
    (void)ud, (void)collaborator;
    char msg[128];
    snprintf(msg, sizeof msg, "results of round %d came too late",
             (int)ofl_task_results_round_number(results));
    return ofl_error_new(OFL_CODE_ABORTED, msg);
}

/* A callback's error reaches the collaborator as the gRPC status. */
static void test_callback_errors_reach_the_client(void) {
    callback_fns fns = {
        .get_tasks = denying_get_tasks,
        .get_aggregated_tensor = unimplemented_tensor,
        .send_local_task_results = aborting_send_results,
    };
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_MUTUAL);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &fns, &server));
    ofl_aggregator_server_options_free(o);
    ofl_aggregator_client *client = make_client(&g_certs, ofl_aggregator_server_port(server),
                                                TLS_MUTUAL, g_certs.col1_crt, g_certs.col1_key);
    ofl_tasks *tasks = NULL;
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks),
                OFL_CODE_PERMISSION_DENIED, "col1 is benched this round");
    CHECK(tasks == NULL);
    ofl_tensor *t = NULL;
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "w", 1, false, NULL,
                                                            0, false, NULL, &t),
                OFL_CODE_UNIMPLEMENTED, "no tensors here");
    CHECK(t == NULL);
    static const uint8_t data[8] = {0};
    ofl_tensor_view v = {.name = "w", .data = data, .data_len = sizeof data};
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 7, "train", 1, &v,
                                                              1, NULL),
                OFL_CODE_ABORTED, "results of round 7 came too late");
    ofl_aggregator_client_free(client);
    ofl_aggregator_server_free(server);
}

/* ---- ofl_aggregator_callbacks ------------------------------------------------- */

static void count_free(void *user_data) { atomic_fetch_add((atomic_int *)user_data, 1); }

static void test_callbacks_null_handles(void) {
    EXPECT_CODE(ofl_aggregator_callbacks_new(NULL), INVALID, "out");
    EXPECT_CODE(ofl_aggregator_callbacks_set_get_tasks(NULL, ok_get_tasks), INVALID, "callbacks");
    EXPECT_CODE(ofl_aggregator_callbacks_set_get_aggregated_tensor(NULL, unimplemented_tensor),
                INVALID, "callbacks");
    EXPECT_CODE(ofl_aggregator_callbacks_set_send_local_task_results(NULL, ok_send_results),
                INVALID, "callbacks");
    EXPECT_CODE(ofl_aggregator_callbacks_set_all_quit_jobs_sent(NULL, NULL), INVALID,
                "callbacks");
    EXPECT_CODE(ofl_aggregator_callbacks_set_valid_collaborator_cn_and_id(NULL, NULL), INVALID,
                "callbacks");
    /* User data handed to a NULL object is released at once, exactly once. */
    atomic_int freed = 0;
    EXPECT_CODE(ofl_aggregator_callbacks_set_user_data(NULL, &freed, count_free), INVALID,
                "callbacks");
    CHECK_MSG(atomic_load(&freed) == 1, "free_user_data ran %d times", atomic_load(&freed));
    ofl_aggregator_callbacks_free(NULL);

    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_INSECURE);
    ofl_aggregator_server *server = NULL;
    EXPECT_CODE(ofl_aggregator_server_start(o, NULL, &server), INVALID, "callbacks");
    ofl_aggregator_callbacks *cb = make_callbacks(&OK_CALLBACKS);
    EXPECT_CODE(ofl_aggregator_server_start(NULL, cb, &server), INVALID, "options");
    EXPECT_CODE(ofl_aggregator_server_start(o, cb, NULL), INVALID, "out");
    CHECK(server == NULL);
    ofl_aggregator_callbacks_free(cb);
    ofl_aggregator_server_options_free(o);
}

/* Setting the required callbacks one at a time: each start names the next
 * missing setter; user data stays with the callbacks object through failed
 * starts and is released exactly once when it is freed. */
static void test_missing_callbacks_name_their_setter(void) {
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_INSECURE);
    atomic_int freed = 0;
    ofl_aggregator_callbacks *cb = NULL;
    REQUIRE_OK(ofl_aggregator_callbacks_new(&cb));
    REQUIRE_OK(ofl_aggregator_callbacks_set_user_data(cb, &freed, count_free));
    ofl_aggregator_server *server = NULL;
    EXPECT_CODE(ofl_aggregator_server_start(o, cb, &server), INVALID,
                "ofl_aggregator_callbacks_set_get_tasks");
    REQUIRE_OK(ofl_aggregator_callbacks_set_get_tasks(cb, ok_get_tasks));
    EXPECT_CODE(ofl_aggregator_server_start(o, cb, &server), INVALID,
                "ofl_aggregator_callbacks_set_get_aggregated_tensor");
    REQUIRE_OK(ofl_aggregator_callbacks_set_get_aggregated_tensor(cb, unimplemented_tensor));
    EXPECT_CODE(ofl_aggregator_server_start(o, cb, &server), INVALID,
                "ofl_aggregator_callbacks_set_send_local_task_results");
    REQUIRE_OK(ofl_aggregator_callbacks_set_send_local_task_results(cb, ok_send_results));
    /* NULL unsets a callback again. */
    REQUIRE_OK(ofl_aggregator_callbacks_set_get_tasks(cb, NULL));
    EXPECT_CODE(ofl_aggregator_server_start(o, cb, &server), INVALID,
                "ofl_aggregator_callbacks_set_get_tasks");
    CHECK(server == NULL);
    /* A start that fails for another reason (TLS on, nothing attached). */
    REQUIRE_OK(ofl_aggregator_callbacks_set_get_tasks(cb, ok_get_tasks));
    ofl_aggregator_server_options *bare = NULL;
    REQUIRE_OK(ofl_aggregator_server_options_new(&bare));
    REQUIRE_OK(ofl_aggregator_server_options_set_listen(bare, "127.0.0.1", 0));
    EXPECT_CODE(ofl_aggregator_server_start(bare, cb, &server), INVALID,
                "ofl_aggregator_server_options_set_tls");
    CHECK(server == NULL);
    ofl_aggregator_server_options_free(bare);

    sleep_ms(50);
    CHECK_MSG(atomic_load(&freed) == 0, "free_user_data ran while the callbacks object lives");
    ofl_aggregator_callbacks_free(cb);
    CHECK_MSG(atomic_load(&freed) == 1, "free_user_data ran %d times after the failed starts",
              atomic_load(&freed));
    ofl_aggregator_server_options_free(o);
}

static void test_user_data_lifetime(void) {
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_INSECURE);

    /* Replaced user data is released at once; the new one is used. */
    atomic_int first = 0, second = 0;
    ofl_aggregator_callbacks *cb = make_callbacks(&OK_CALLBACKS);
    REQUIRE_OK(ofl_aggregator_callbacks_set_user_data(cb, &first, count_free));
    REQUIRE_OK(ofl_aggregator_callbacks_set_user_data(cb, &second, count_free));
    CHECK(atomic_load(&first) == 1 && atomic_load(&second) == 0);

    /* Freed after start: the server keeps the callbacks and the data. */
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(ofl_aggregator_server_start(o, cb, &server));
    ofl_aggregator_callbacks_free(cb);
    CHECK_MSG(atomic_load(&second) == 0, "user data freed while the server holds it");
    EXPECT_OK(get_tasks_with(ofl_aggregator_server_port(server), TLS_INSECURE));
    ofl_aggregator_server_free(server);
    CHECK_MSG(wait_for_count(&second, 1, 5000) == 1,
              "free_user_data ran %d times after ofl_aggregator_server_free",
              atomic_load(&second));
    sleep_ms(50);
    CHECK(atomic_load(&second) == 1 && atomic_load(&first) == 1);

    /* Two servers and the callbacks object share it: freed after the last. */
    atomic_int shared = 0;
    cb = make_callbacks(&OK_CALLBACKS);
    REQUIRE_OK(ofl_aggregator_callbacks_set_user_data(cb, &shared, count_free));
    ofl_aggregator_server *a = NULL, *b = NULL;
    REQUIRE_OK(ofl_aggregator_server_start(o, cb, &a));
    REQUIRE_OK(ofl_aggregator_server_start(o, cb, &b));
    ofl_aggregator_server_free(a);
    ofl_aggregator_callbacks_free(cb);
    sleep_ms(50);
    CHECK_MSG(atomic_load(&shared) == 0, "user data freed while a server still holds it");
    ofl_aggregator_server_free(b);
    CHECK_MSG(wait_for_count(&shared, 1, 5000) == 1, "shared user data freed %d times",
              atomic_load(&shared));
    ofl_aggregator_server_options_free(o);
}

/* ---- ofl_connect_options ------------------------------------------------------ */

static void test_connect_options(void) {
    EXPECT_CODE(ofl_connect_options_new(NULL), INVALID, "out");
    ofl_connect_options *c = NULL;
    REQUIRE_OK(ofl_connect_options_new(&c));
    EXPECT_CODE(ofl_connect_options_set_server_name(NULL, "x"), INVALID, "connect");
    EXPECT_CODE(ofl_connect_options_set_server_name(c, NULL), INVALID, "server_name");
    EXPECT_CODE(ofl_connect_options_set_server_name(c, ""), INVALID, "server_name is empty");
    EXPECT_CODE(ofl_connect_options_set_server_name(c, BAD_UTF8), INVALID, "server_name");
    EXPECT_CODE(ofl_connect_options_set_connect_timeout_ms(NULL, 10), INVALID, "connect");
    EXPECT_CODE(ofl_connect_options_set_connect_timeout_ms(c, 0), INVALID, "timeout_ms");
    EXPECT_CODE(ofl_connect_options_set_retry(NULL, 10, 100, 1000), INVALID, "connect");
    EXPECT_CODE(ofl_connect_options_set_retry(c, 0, 100, 1000), INVALID, "initial_backoff_ms");
    EXPECT_CODE(ofl_connect_options_set_retry(c, 200, 100, 1000), INVALID, "max_backoff_ms");
    EXPECT_OK(ofl_connect_options_set_retry(c, 10, 100, -1));
    EXPECT_CODE(ofl_connect_options_set_max_message_size(NULL, 1 << 20), INVALID, "connect");
    EXPECT_CODE(ofl_connect_options_set_max_message_size(c, 0), INVALID, "max message size");
    EXPECT_CODE(ofl_connect_options_set_max_message_size(c, 1023), INVALID, "max message size");
    EXPECT_OK(ofl_connect_options_set_max_message_size(c, 1024));
    ofl_connect_options_free(c);
    ofl_connect_options_free(NULL);

    /* The retry deadline is in force: nobody listens on port 9, the call
     * gives up after ~300 ms instead of retrying forever. */
    REQUIRE_OK(ofl_connect_options_new(&c));
    REQUIRE_OK(ofl_connect_options_set_retry(c, 20, 50, 300));
    ofl_aggregator_client_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_client_options_new("127.0.0.1", 9, &o));
    REQUIRE_OK(ofl_aggregator_client_options_set_tls(o, NULL));
    REQUIRE_OK(ofl_aggregator_client_options_set_connect(o, c));
    ofl_connect_options_free(c); /* copied */
    ofl_aggregator_client *client = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &client));
    ofl_aggregator_client_options_free(o);
    ofl_tasks *tasks = NULL;
    double t0 = now_seconds();
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks),
                OFL_CODE_RETRIES_EXHAUSTED, NULL);
    double took = now_seconds() - t0;
    CHECK_MSG(took < 5.0, "a 300 ms retry deadline took %.2f s", took);
    ofl_aggregator_client_free(client);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    test_note("ofl_tls_config: bad inputs");
    test_tls_config_bad_inputs();
    test_note("ofl_tls_config: TLS on, off, on");
    test_tls_round_trip();
    test_note("ofl_error_new");
    test_error_new();
    test_note("callback errors reach the client");
    test_callback_errors_reach_the_client();
    test_note("ofl_aggregator_callbacks: NULL handles");
    test_callbacks_null_handles();
    test_note("ofl_aggregator_callbacks: missing callbacks name their setter");
    test_missing_callbacks_name_their_setter();
    test_note("ofl_aggregator_callbacks: user data lifetime");
    test_user_data_lifetime();
    test_note("ofl_connect_options");
    test_connect_options();
    return test_finish("test_api_objects");
}
