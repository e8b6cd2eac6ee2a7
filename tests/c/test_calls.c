/*
 * Per-call settings through the public header (issue 9, items 1 and 5):
 * a call time limit (the client default and a per-call override) ends a
 * call to a stalled server with OFL_CODE_DEADLINE_EXCEEDED; a cancel token
 * cancelled from a second thread ends a call with OFL_CODE_CANCELLED;
 * progress callbacks see downloads and uploads grow monotonically to their
 * total, and returning false aborts the call (an aborted upload is never
 * counted by the server).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define TENSOR_SIZE (24u << 20)
#define STEP (4u << 20)

static cert_paths g_certs;
static uint8_t *g_model;
static atomic_int g_release; /* ends every stall */
static atomic_int g_uploads; /* uploads the server counted */

/* GetTasks stalls (up to 5 s) until released. */
static ofl_error *cb_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)collaborator;
    for (int i = 0; i < 500 && !atomic_load(&g_release); i++) sleep_ms(10);
    EXPECT_OK(ofl_reply_set_sleep_time(reply, 1));
    return NULL;
}

static ofl_error *cb_get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                                ofl_reply *reply) {
    (void)ud, (void)collaborator;
    ofl_tensor_view view = {.name = req->tensor_name, .round_number = req->round_number,
                            .lossless = true, .data = g_model, .data_len = TENSOR_SIZE};
    if (!EXPECT_OK(ofl_reply_set_tensor(reply, &view))) return ofl_error_new(OFL_CODE_INTERNAL, NULL);
    return NULL;
}

static ofl_error *cb_send_results(void *ud, const char *collaborator, const ofl_task_results *results) {
    (void)ud, (void)collaborator, (void)results;
    atomic_fetch_add(&g_uploads, 1);
    return NULL;
}

/* A client of `port` whose calls have `call_timeout_ms` by default. */
static ofl_aggregator_client *client_with_timeout(uint16_t port, uint64_t call_timeout_ms) {
    ofl_aggregator_client_options *o = make_client_options(&g_certs, port, TLS_MUTUAL, NULL,
                                                           g_certs.col1_crt, g_certs.col1_key);
    ofl_connect_options *connect = NULL;
    REQUIRE_OK(ofl_connect_options_new(&connect));
    REQUIRE_OK(ofl_connect_options_set_retry(connect, 50, 500, 20000));
    REQUIRE_OK(ofl_connect_options_set_call_timeout_ms(connect, call_timeout_ms));
    REQUIRE_OK(ofl_aggregator_client_options_set_connect(o, connect));
    ofl_connect_options_free(connect);
    ofl_aggregator_client *client = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &client));
    ofl_aggregator_client_options_free(o);
    return client;
}

static void check_took(double started, double at_least, double at_most, const char *what) {
    double took = now_seconds() - started;
    CHECK_MSG(took >= at_least && took <= at_most, "%s took %.3f s, expected %.2f..%.2f s", what, took,
              at_least, at_most);
}

static void test_timeouts(uint16_t port) {
    ofl_aggregator_client *client = client_with_timeout(port, 1000);
    ofl_tasks *tasks = NULL;
    double t = now_seconds();
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks), OFL_CODE_DEADLINE_EXCEEDED,
                "GetTasks: not done within its call timeout of 1000 ms");
    check_took(t, 0.95, 1.9, "the client default (1 s)");
    CHECK(tasks == NULL);

    ofl_call_options *call = NULL;
    REQUIRE_OK(ofl_call_options_new(&call));
    REQUIRE_OK(ofl_call_options_set_timeout_ms(call, 300));
    t = now_seconds();
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", call, &tasks), OFL_CODE_DEADLINE_EXCEEDED,
                "300 ms");
    check_took(t, 0.28, 1.0, "the per-call override (300 ms)");
    EXPECT_CODE(ofl_call_options_set_timeout_ms(call, 400ull * 24 * 3600 * 1000), OFL_CODE_INVALID_ARGUMENT,
                "timeout_ms");
    EXPECT_CODE(ofl_call_options_set_timeout_ms(NULL, 1), OFL_CODE_INVALID_ARGUMENT, "call");
    ofl_call_options_free(call);
    ofl_aggregator_client_free(client);
}

typedef struct canceller {
    ofl_cancel_token *token;
    unsigned after_ms;
} canceller;

/* Cancels the token after a while, then drops this thread's reference. */
static void *cancel_later(void *p) {
    canceller *c = p;
    sleep_ms(c->after_ms);
    EXPECT_OK(ofl_cancel_token_cancel(c->token));
    ofl_cancel_token_free(c->token);
    return NULL;
}

static void test_cancel_from_another_thread(uint16_t port) {
    ofl_aggregator_client *client = client_with_timeout(port, 0);
    ofl_cancel_token *token = NULL;
    REQUIRE_OK(ofl_cancel_token_new(&token));
    CHECK(!ofl_cancel_token_is_cancelled(token));
    ofl_call_options *call = NULL;
    REQUIRE_OK(ofl_call_options_new(&call));
    REQUIRE_OK(ofl_call_options_set_cancel_token(call, token));
    /* The options share the token: the thread frees its handle after cancelling. */
    canceller c = {token, 300};
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, cancel_later, &c) == 0);
    ofl_tasks *tasks = NULL;
    double t = now_seconds();
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", call, &tasks), OFL_CODE_CANCELLED,
                "cancelled by its cancel token");
    check_took(t, 0.28, 1.5, "cancelled GetTasks");
    pthread_join(thread, NULL);
    /* Later calls with the cancelled token fail at once; without it they work. */
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col1", call, &tasks), OFL_CODE_CANCELLED, NULL);
    ofl_call_options_free(call);
    EXPECT_CODE(ofl_cancel_token_cancel(NULL), OFL_CODE_INVALID_ARGUMENT, "token");
    CHECK(!ofl_cancel_token_is_cancelled(NULL));
    ofl_aggregator_client_free(client);
}

typedef struct progress_log {
    uint64_t done[64];
    uint64_t total[64];
    int n;
    int stop_at; /* return false at this report (0: never) */
} progress_log;

static bool on_progress(void *user_data, uint64_t done, uint64_t total) {
    progress_log *log = user_data;
    if (log->n < 64) {
        log->done[log->n] = done;
        log->total[log->n] = total;
    }
    log->n++;
    return log->stop_at == 0 || log->n < log->stop_at;
}

static void check_progress(const progress_log *log, uint64_t min_total, const char *what) {
    CHECK_MSG(log->n >= 4 && log->n < 64, "%s: %d reports", what, log->n);
    if (log->n < 2 || log->n >= 64) return;
    int last = log->n - 1;
    CHECK_MSG(log->done[last] == log->total[last], "%s: last report %llu of %llu", what,
              (unsigned long long)log->done[last], (unsigned long long)log->total[last]);
    CHECK_MSG(log->total[last] >= min_total, "%s: total %llu", what, (unsigned long long)log->total[last]);
    for (int i = 1; i < log->n; i++) {
        CHECK_MSG(log->done[i] >= log->done[i - 1], "%s: report %d went backwards", what, i);
        CHECK_MSG(log->total[i] == log->total[last], "%s: report %d has another total", what, i);
        if (i < last)
            CHECK_MSG(log->done[i] - log->done[i - 1] >= STEP, "%s: reports %d and %d closer than 4 MiB", what,
                      i - 1, i);
    }
}

static void test_progress(uint16_t port) {
    ofl_aggregator_client *client = client_with_timeout(port, 0);
    ofl_call_options *call = NULL;
    REQUIRE_OK(ofl_call_options_new(&call));

    progress_log down = {0};
    REQUIRE_OK(ofl_call_options_set_progress(call, on_progress, &down));
    ofl_tensor *tensor = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "model", 1, false, NULL, 0, false,
                                                              call, &tensor))) {
        CHECK(ofl_tensor_data_len(tensor) == TENSOR_SIZE);
        ofl_tensor_free(tensor);
    }
    check_progress(&down, TENSOR_SIZE, "download");

    progress_log up = {0};
    REQUIRE_OK(ofl_call_options_set_progress(call, on_progress, &up));
    ofl_tensor_view view = {.name = "w", .round_number = 1, .lossless = true, .data = g_model,
                            .data_len = TENSOR_SIZE};
    int before = atomic_load(&g_uploads);
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 10, &view, 1, call));
    check_progress(&up, TENSOR_SIZE, "upload");
    CHECK(atomic_load(&g_uploads) == before + 1);

    /* Aborts: false at the second report ends the call with CANCELLED. */
    progress_log abort_up = {.stop_at = 2};
    REQUIRE_OK(ofl_call_options_set_progress(call, on_progress, &abort_up));
    before = atomic_load(&g_uploads);
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 10, &view, 1, call),
                OFL_CODE_CANCELLED, "progress callback");
    CHECK_MSG(abort_up.n == 2, "the callback ran %d times, not again after false", abort_up.n);
    progress_log abort_down = {.stop_at = 2};
    REQUIRE_OK(ofl_call_options_set_progress(call, on_progress, &abort_down));
    tensor = NULL;
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "model", 1, false, NULL, 0, false,
                                                            call, &tensor),
                OFL_CODE_CANCELLED, "progress callback");
    CHECK(tensor == NULL);
    sleep_ms(500);
    CHECK_MSG(atomic_load(&g_uploads) == before, "an aborted upload was counted");

    /* NULL removes the callback. */
    REQUIRE_OK(ofl_call_options_set_progress(call, NULL, NULL));
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 10, &view, 1, call));
    CHECK(atomic_load(&g_uploads) == before + 1);
    ofl_call_options_free(call);
    ofl_aggregator_client_free(client);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    g_model = malloc(TENSOR_SIZE);
    REQUIRE(g_model != NULL);
    fill_pattern(g_model, TENSOR_SIZE, 7, 3);

    callback_fns cb = {
        .get_tasks = cb_get_tasks,
        .get_aggregated_tensor = cb_get_tensor,
        .send_local_task_results = cb_send_results,
    };
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_MUTUAL);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &cb, &server));
    ofl_aggregator_server_options_free(o);
    uint16_t port = ofl_aggregator_server_port(server);

    test_note("call time limits");
    test_timeouts(port);
    test_note("a cancel token cancelled from another thread");
    test_cancel_from_another_thread(port);
    test_note("progress and aborts");
    test_progress(port);

    atomic_store(&g_release, 1);
    ofl_aggregator_server_free(server);
    free(g_model);
    return test_finish("test_calls");
}
