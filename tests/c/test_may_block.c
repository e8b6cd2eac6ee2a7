/*
 * test_may_block: ofl_aggregator_callbacks_set_may_block. A get_tasks
 * callback declared non-blocking (OFL_LOGIC_CALL_GET_TASKS, false) runs on
 * one of the library's async workers ("ofl-worker"); left at the default it
 * runs on the blocking pool ("ofl-blocking"). The callback reads its own
 * thread's name with pthread_getname_np. A value that is no ofl_logic_call
 * is INVALID_ARGUMENT naming it.
 *
 * usage: test_may_block CERT_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static cert_paths g_certs;

/* The name of the thread the last get_tasks ran on. */
typedef struct seen {
    pthread_mutex_t lock;
    char thread[32];
    int calls;
} seen;

static ofl_error *record_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)collaborator;
    seen *s = ud;
    char name[32] = {0};
    int rc = pthread_getname_np(pthread_self(), name, sizeof name);
    pthread_mutex_lock(&s->lock);
    snprintf(s->thread, sizeof s->thread, "%s", rc == 0 ? name : "<pthread_getname_np failed>");
    s->calls++;
    pthread_mutex_unlock(&s->lock);
    return ofl_reply_set_round_number(reply, 4);
}

static ofl_error *no_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                            ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)req, (void)reply;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

static ofl_error *no_results(void *ud, const char *collaborator, const ofl_task_results *r) {
    (void)ud, (void)collaborator, (void)r;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

/* A mutual-TLS server whose get_tasks is declared non-blocking or not, one
 * GetTasks round trip as col1; the thread get_tasks ran on is in `s`. */
static void get_tasks_round_trip(bool declare_non_blocking, seen *s) {
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_MUTUAL);
    callback_fns fns = {.user_data = s,
                        .get_tasks = record_get_tasks,
                        .get_aggregated_tensor = no_tensor,
                        .send_local_task_results = no_results};
    ofl_aggregator_callbacks *cb = make_callbacks(&fns);
    if (declare_non_blocking) {
        REQUIRE_OK(ofl_aggregator_callbacks_set_may_block(cb, OFL_LOGIC_CALL_GET_TASKS, false));
    }
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(ofl_aggregator_server_start(o, cb, &server));
    ofl_aggregator_callbacks_free(cb);
    ofl_aggregator_server_options_free(o);

    ofl_aggregator_client *client = make_client(&g_certs, ofl_aggregator_server_port(server),
                                                TLS_MUTUAL, g_certs.col1_crt, g_certs.col1_key);
    ofl_tasks *tasks = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks))) {
        CHECK(ofl_tasks_round_number(tasks) == 4);
    }
    ofl_tasks_free(tasks);
    ofl_aggregator_client_free(client);
    ofl_aggregator_server_free(server);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);

    test_note("get_tasks declared non-blocking runs on an async worker");
    {
        seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
        get_tasks_round_trip(true, &s);
        CHECK(s.calls == 1);
        CHECK_STR(s.thread, "ofl-worker");
    }
    test_note("get_tasks left at the default runs on the blocking pool");
    {
        seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
        get_tasks_round_trip(false, &s);
        CHECK(s.calls == 1);
        CHECK_STR(s.thread, "ofl-blocking");
    }
    test_note("a value that is no ofl_logic_call is refused");
    {
        ofl_aggregator_callbacks *cb = NULL;
        REQUIRE_OK(ofl_aggregator_callbacks_new(&cb));
        EXPECT_CODE(ofl_aggregator_callbacks_set_may_block(cb, 4, false), OFL_CODE_INVALID_ARGUMENT,
                    "logic call 4 is not an ofl_logic_call");
        EXPECT_CODE(ofl_aggregator_callbacks_set_may_block(cb, -7, true), OFL_CODE_INVALID_ARGUMENT,
                    "logic call -7");
        EXPECT_CODE(ofl_aggregator_callbacks_set_may_block(NULL, OFL_LOGIC_CALL_GET_TASKS, false),
                    OFL_CODE_INVALID_ARGUMENT, "callbacks");
        EXPECT_OK(ofl_aggregator_callbacks_set_may_block(cb, OFL_LOGIC_CALL_ALL_QUIT_JOBS_SENT, false));
        ofl_aggregator_callbacks_free(cb);
    }
    return test_finish("test_may_block");
}
