/*
 * test_metrics: transport metrics read from C (issue 9, item 6).
 *
 * Over mTLS, a collaborator (col1) makes 4 GetTasks calls and uploads one
 * 100 KiB tensor; col1's certificate claiming to be col2 is refused
 * (UNAUTHENTICATED, a CN mismatch). The server's and the client's
 * ofl_metrics snapshots then count exactly that: calls by RPC and code,
 * the same message bytes on both sides (the upload within its documented
 * framing overhead), the auth failure and the rejected call (server), one
 * connection each, nothing in flight, no retries. The refusal is logged at
 * WARN with the peer's address and CN. The Prometheus text holds the same
 * numbers in well-formed lines. NULL and bad arguments get their
 * documented answers.
 *
 * usage: test_metrics CERT_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define UPLOAD_LEN ((size_t)100 << 10)

static cert_paths g_certs;

/* ---- captured WARN records ------------------------------------------------ */

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_refusal_warnings;

static void capture_log(void *user_data, ofl_log_level level, const char *target, const char *message) {
    (void)user_data, (void)target;
    if (level != OFL_LOG_LEVEL_WARN) return;
    if (strstr(message, "refused a GetTasks call from 127.0.0.1:") && strstr(message, "certificate CN |col1|")) {
        pthread_mutex_lock(&g_log_lock);
        g_refusal_warnings++;
        pthread_mutex_unlock(&g_log_lock);
    }
}

/* ---- server callbacks ------------------------------------------------------- */

static ofl_error *get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)reply;
    return NULL;
}

static ofl_error *get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req, ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)req, (void)reply;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

static ofl_error *send_results(void *ud, const char *collaborator, const ofl_task_results *results) {
    (void)ud, (void)collaborator, (void)results;
    return NULL;
}

/* ---- checks ------------------------------------------------------------------- */

/* The value of the Prometheus sample `series` (name and labels, exactly),
 * or UINT64_MAX when absent. Checks every line on the way: comments are
 * HELP or TYPE lines, samples are `openfl_transport_...{...} <integer>`. */
static uint64_t prometheus_value(const char *text, const char *series) {
    uint64_t found = UINT64_MAX;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        CHECK_MSG(end != NULL, "the last line is not terminated");
        if (!end) break;
        size_t len = (size_t)(end - line);
        if (line[0] == '#') {
            CHECK_MSG(strncmp(line, "# HELP openfl_transport_", 24) == 0 ||
                          strncmp(line, "# TYPE openfl_transport_", 24) == 0,
                      "bad comment line: %.*s", (int)len, line);
        } else {
            const char *space = memchr(line, ' ', len);
            CHECK_MSG(strncmp(line, "openfl_transport_", 17) == 0 && space && space[-1] == '}',
                      "bad sample line: %.*s", (int)len, line);
            if (space) {
                char *value_end = NULL;
                unsigned long long value = strtoull(space + 1, &value_end, 10);
                CHECK_MSG(value_end == end, "bad value: %.*s", (int)len, line);
                if ((size_t)(space - line) == strlen(series) && strncmp(line, series, strlen(series)) == 0)
                    found = value;
            }
        }
        line = end + 1;
    }
    return found;
}

static void check_prometheus(const ofl_metrics *m) {
    ofl_string *text = NULL;
    REQUIRE_OK(ofl_metrics_prometheus(m, &text));
    const char *s = ofl_string_get(text);
    CHECK(strstr(s, "# TYPE openfl_transport_calls_total counter\n") != NULL);
    CHECK(strstr(s, "# TYPE openfl_transport_active_connections gauge\n") != NULL);
    CHECK(prometheus_value(s, "openfl_transport_calls_total{role=\"aggregator_server\",rpc=\"GetTasks\",code=\"OK\"}") == 4);
    CHECK(prometheus_value(
              s, "openfl_transport_calls_total{role=\"aggregator_server\",rpc=\"GetTasks\",code=\"UNAUTHENTICATED\"}") == 1);
    CHECK(prometheus_value(s, "openfl_transport_received_bytes_total{role=\"aggregator_server\",rpc=\"SendLocalTaskResults\"}") ==
          ofl_metrics_bytes_in(m, "SendLocalTaskResults"));
    CHECK(prometheus_value(s, "openfl_transport_auth_failures_total{role=\"aggregator_server\",kind=\"cn_mismatch\"}") == 1);
    CHECK(prometheus_value(s, "openfl_transport_rejected_calls_total{role=\"aggregator_server\",kind=\"identity\"}") == 1);
    CHECK(prometheus_value(s, "openfl_transport_active_connections{role=\"aggregator_server\"}") == 1);
    ofl_string_free(text);
}

static void check_arguments(const ofl_metrics *m) {
    ofl_metrics *out = NULL;
    EXPECT_CODE(ofl_aggregator_server_metrics(NULL, &out), OFL_CODE_INVALID_ARGUMENT, "server");
    EXPECT_CODE(ofl_aggregator_client_metrics(NULL, &out), OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_envoy_client_metrics(NULL, &out), OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_frontend_client_metrics(NULL, &out), OFL_CODE_INVALID_ARGUMENT, "client");
    EXPECT_CODE(ofl_director_server_metrics(NULL, &out), OFL_CODE_INVALID_ARGUMENT, "server");
    CHECK(out == NULL);
    ofl_string *text = NULL;
    EXPECT_CODE(ofl_metrics_prometheus(NULL, &text), OFL_CODE_INVALID_ARGUMENT, "metrics");
    EXPECT_CODE(ofl_metrics_prometheus(m, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    CHECK(ofl_metrics_calls(NULL, "GetTasks", OFL_CODE_OK) == 0);
    CHECK(ofl_metrics_calls(m, "NoSuchRpc", OFL_CODE_OK) == 0);
    CHECK(ofl_metrics_calls(m, "GetTasks", 17) == 0);
    CHECK(ofl_metrics_calls(m, "GetTasks", -1) == 0);
    CHECK(ofl_metrics_calls(m, "GetTasks", OFL_CODE_TLS) == 0);
    CHECK(ofl_metrics_auth_failures(m, 3) == 0);
    CHECK(ofl_metrics_rejected(m, -1) == 0);
    CHECK(ofl_metrics_rpc_name(m, ofl_metrics_rpc_count(m)) == NULL);
    CHECK(ofl_metrics_rpc_name(NULL, 0) == NULL);
    CHECK(ofl_metrics_rpc_count(NULL) == 0);
    CHECK(ofl_metrics_active_connections(NULL) == 0);
    ofl_metrics_free(NULL);
}

/* ---- the test --------------------------------------------------------------- */

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_WARN, capture_log, NULL));

    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_MUTUAL);
    callback_fns cb = {.get_tasks = get_tasks, .get_aggregated_tensor = get_tensor, .send_local_task_results = send_results};
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &cb, &server));
    ofl_aggregator_server_options_free(o);
    uint16_t port = ofl_aggregator_server_port(server);
    ofl_aggregator_client *client = make_client(&g_certs, port, TLS_MUTUAL, g_certs.col1_crt, g_certs.col1_key);

    test_note("4 GetTasks, 1 upload of %zu bytes, 1 refused GetTasks", UPLOAD_LEN);
    for (int i = 0; i < 4; i++) {
        ofl_tasks *tasks = NULL;
        if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks))) ofl_tasks_free(tasks);
    }
    uint8_t *data = malloc(UPLOAD_LEN);
    REQUIRE(data != NULL);
    fill_pattern(data, UPLOAD_LEN, 3, 1);
    ofl_tensor_view view = {.name = "w", .round_number = 1, .lossless = true, .data = data, .data_len = UPLOAD_LEN};
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 10, &view, 1, NULL));
    free(data);
    ofl_tasks *tasks = NULL;
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col2", NULL, &tasks), OFL_CODE_UNAUTHENTICATED, "differs");

    ofl_metrics *s = NULL, *c = NULL;
    REQUIRE_OK(ofl_aggregator_server_metrics(server, &s));
    REQUIRE_OK(ofl_aggregator_client_metrics(client, &c));
    CHECK(ofl_metrics_role(s) == OFL_ROLE_AGGREGATOR_SERVER);
    CHECK(ofl_metrics_role(c) == OFL_ROLE_AGGREGATOR_CLIENT);

    /* The RPCs are listed by name, in the proto's order. */
    CHECK(ofl_metrics_rpc_count(s) == 7);
    CHECK_STR(ofl_metrics_rpc_name(s, 0), "GetTasks");
    CHECK_STR(ofl_metrics_rpc_name(s, 2), "SendLocalTaskResults");
    CHECK_STR(ofl_metrics_rpc_name(s, 6), "unknown");

    const ofl_metrics *both[2] = {s, c};
    for (int i = 0; i < 2; i++) {
        const ofl_metrics *m = both[i];
        CHECK(ofl_metrics_calls(m, "GetTasks", OFL_CODE_OK) == 4);
        CHECK(ofl_metrics_calls(m, "GetTasks", OFL_CODE_UNAUTHENTICATED) == 1);
        CHECK(ofl_metrics_calls(m, "SendLocalTaskResults", OFL_CODE_OK) == 1);
        CHECK(ofl_metrics_calls(m, NULL, OFL_CODE_OK) == 5);
        CHECK(ofl_metrics_calls_total(m, NULL) == 6);
        CHECK(ofl_metrics_calls_total(m, "GetAggregatedTensor") == 0);
        CHECK(ofl_metrics_auth_failures(m, OFL_AUTH_FAILURE_CN_MISMATCH) == 1);
        CHECK(ofl_metrics_auth_failures(m, OFL_AUTH_FAILURE_UNAUTHORIZED_COLLABORATOR) == 0);
        CHECK(ofl_metrics_auth_failures(m, OFL_AUTH_FAILURE_TLS_HANDSHAKE) == 0);
        CHECK(ofl_metrics_active_connections(m) == 1);
        CHECK(ofl_metrics_connections(m) == 1);
        CHECK(ofl_metrics_in_flight(m) == 0);
        CHECK(ofl_metrics_retries(m) == 0);
    }
    /* Both sides count the same message bytes; the upload is the tensor
     * plus its TaskResults fields and framing. */
    CHECK(ofl_metrics_bytes_in(s, "SendLocalTaskResults") == ofl_metrics_bytes_out(c, "SendLocalTaskResults"));
    CHECK(ofl_metrics_bytes_out(s, "GetTasks") == ofl_metrics_bytes_in(c, "GetTasks"));
    CHECK(ofl_metrics_bytes_in(s, NULL) == ofl_metrics_bytes_out(c, NULL));
    uint64_t up = ofl_metrics_bytes_in(s, "SendLocalTaskResults");
    CHECK_MSG(up >= UPLOAD_LEN + 5 && up <= UPLOAD_LEN + 512, "upload counted as %llu bytes", (unsigned long long)up);
    CHECK(ofl_metrics_rejected(s, OFL_REJECTION_IDENTITY) == 1);
    CHECK(ofl_metrics_rejected(s, OFL_REJECTION_BAD_HEADER) == 0);
    CHECK(ofl_metrics_rejected(s, OFL_REJECTION_LIMITS) == 0);
    CHECK(ofl_metrics_rejected(c, OFL_REJECTION_IDENTITY) == 0);

    check_prometheus(s);
    check_arguments(s);
    pthread_mutex_lock(&g_log_lock);
    CHECK_MSG(g_refusal_warnings == 1, "%d WARN lines for the refusal", g_refusal_warnings);
    pthread_mutex_unlock(&g_log_lock);
    ofl_metrics_free(s);
    ofl_metrics_free(c);

    /* A snapshot taken after the client is gone: its connection closed. */
    ofl_aggregator_client_free(client);
    uint64_t active = 1;
    for (int i = 0; i < 200 && active != 0; i++) {
        REQUIRE_OK(ofl_aggregator_server_metrics(server, &s));
        active = ofl_metrics_active_connections(s);
        ofl_metrics_free(s);
        if (active) sleep_ms(25);
    }
    CHECK(active == 0);
    EXPECT_OK(ofl_aggregator_server_stop(server));
    ofl_aggregator_server_free(server);
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_WARN, NULL, NULL));
    return test_finish("test_metrics");
}
