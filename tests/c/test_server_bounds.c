/*
 * test_server_bounds: ofl_server_limits (the bounds both servers take with
 * `_set_limits`) and the aggregator-only bounds. Each bad value (NULL, 0,
 * below the minimum, over a year) gets OFL_CODE_INVALID_ARGUMENT with a
 * message naming the setting; good values are accepted; a server starts
 * with tight bounds.
 *
 * usage: test_server_bounds CERT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define YEAR_MS (365ull * 24 * 3600 * 1000)

/* The five bounds both servers have, for one options type. */
#define CHECK_COMMON_BOUNDS(prefix, o)                                                               \
    do {                                                                                             \
        EXPECT_CODE(prefix##_set_max_concurrent_streams(NULL, 10), OFL_CODE_INVALID_ARGUMENT,        \
                    "options");                                                                      \
        EXPECT_CODE(prefix##_set_max_concurrent_streams(o, 0), OFL_CODE_INVALID_ARGUMENT,            \
                    "max_concurrent_streams");                                                       \
        EXPECT_OK(prefix##_set_max_concurrent_streams(o, 1));                                        \
        EXPECT_OK(prefix##_set_max_concurrent_streams(o, 100));                                      \
        EXPECT_CODE(prefix##_set_max_connections(NULL, 10), OFL_CODE_INVALID_ARGUMENT, "options");   \
        EXPECT_CODE(prefix##_set_max_connections(o, 0), OFL_CODE_INVALID_ARGUMENT,                   \
                    "max_connections");                                                              \
        EXPECT_OK(prefix##_set_max_connections(o, 64));                                              \
        EXPECT_CODE(prefix##_set_handshake_timeout_ms(NULL, 10), OFL_CODE_INVALID_ARGUMENT,          \
                    "options");                                                                      \
        EXPECT_CODE(prefix##_set_handshake_timeout_ms(o, 0), OFL_CODE_INVALID_ARGUMENT,              \
                    "handshake_timeout");                                                            \
        EXPECT_CODE(prefix##_set_handshake_timeout_ms(o, YEAR_MS + 1), OFL_CODE_INVALID_ARGUMENT,    \
                    "handshake_timeout");                                                            \
        EXPECT_CODE(prefix##_set_handshake_timeout_ms(o, UINT64_MAX), OFL_CODE_INVALID_ARGUMENT,     \
                    "handshake_timeout");                                                            \
        EXPECT_OK(prefix##_set_handshake_timeout_ms(o, YEAR_MS));                                    \
        EXPECT_OK(prefix##_set_handshake_timeout_ms(o, 2000));                                       \
        EXPECT_CODE(prefix##_set_idle_timeout_ms(NULL, 10), OFL_CODE_INVALID_ARGUMENT, "options");   \
        EXPECT_CODE(prefix##_set_idle_timeout_ms(o, 0), OFL_CODE_INVALID_ARGUMENT, "idle_timeout");  \
        EXPECT_CODE(prefix##_set_idle_timeout_ms(o, YEAR_MS + 1), OFL_CODE_INVALID_ARGUMENT,         \
                    "idle_timeout");                                                                 \
        EXPECT_OK(prefix##_set_idle_timeout_ms(o, 5000));                                            \
        EXPECT_CODE(prefix##_set_max_unary_request_size(NULL, 4096), OFL_CODE_INVALID_ARGUMENT,      \
                    "options");                                                                      \
        EXPECT_CODE(prefix##_set_max_unary_request_size(o, 0), OFL_CODE_INVALID_ARGUMENT,            \
                    "max_unary_request_size");                                                       \
        EXPECT_CODE(prefix##_set_max_unary_request_size(o, 1023), OFL_CODE_INVALID_ARGUMENT,         \
                    "max_unary_request_size");                                                       \
        EXPECT_CODE(prefix##_set_max_unary_request_size(o, UINT64_MAX), OFL_CODE_INVALID_ARGUMENT,   \
                    "max_unary_request_size");                                                       \
        EXPECT_OK(prefix##_set_max_unary_request_size(o, 1024));                                     \
        EXPECT_OK(prefix##_set_max_unary_request_size(o, 64 << 10));                                 \
    } while (0)

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

/* Bad and good values of every ofl_server_limits setter. */
static void test_server_limits(void) {
    EXPECT_CODE(ofl_server_limits_new(NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    ofl_server_limits *l = NULL;
    REQUIRE_OK(ofl_server_limits_new(&l));
    EXPECT_CODE(ofl_server_limits_set_max_concurrent_streams(NULL, 10), OFL_CODE_INVALID_ARGUMENT,
                "limits");
    EXPECT_CODE(ofl_server_limits_set_max_concurrent_streams(l, 0), OFL_CODE_INVALID_ARGUMENT,
                "max_concurrent_streams");
    EXPECT_OK(ofl_server_limits_set_max_concurrent_streams(l, 1));
    EXPECT_CODE(ofl_server_limits_set_max_connections(NULL, 10), OFL_CODE_INVALID_ARGUMENT,
                "limits");
    EXPECT_CODE(ofl_server_limits_set_max_connections(l, 0), OFL_CODE_INVALID_ARGUMENT,
                "max_connections");
    EXPECT_OK(ofl_server_limits_set_max_connections(l, 64));
    EXPECT_CODE(ofl_server_limits_set_handshake_timeout_ms(NULL, 10), OFL_CODE_INVALID_ARGUMENT,
                "limits");
    EXPECT_CODE(ofl_server_limits_set_handshake_timeout_ms(l, 0), OFL_CODE_INVALID_ARGUMENT,
                "handshake_timeout");
    EXPECT_CODE(ofl_server_limits_set_handshake_timeout_ms(l, YEAR_MS + 1),
                OFL_CODE_INVALID_ARGUMENT, "handshake_timeout");
    EXPECT_CODE(ofl_server_limits_set_handshake_timeout_ms(l, UINT64_MAX),
                OFL_CODE_INVALID_ARGUMENT, "handshake_timeout");
    EXPECT_OK(ofl_server_limits_set_handshake_timeout_ms(l, YEAR_MS));
    EXPECT_OK(ofl_server_limits_set_handshake_timeout_ms(l, 2000));
    EXPECT_CODE(ofl_server_limits_set_idle_timeout_ms(NULL, 10), OFL_CODE_INVALID_ARGUMENT,
                "limits");
    EXPECT_CODE(ofl_server_limits_set_idle_timeout_ms(l, 0), OFL_CODE_INVALID_ARGUMENT,
                "idle_timeout");
    EXPECT_CODE(ofl_server_limits_set_idle_timeout_ms(l, YEAR_MS + 1), OFL_CODE_INVALID_ARGUMENT,
                "idle_timeout");
    EXPECT_OK(ofl_server_limits_set_idle_timeout_ms(l, 5000));
    EXPECT_CODE(ofl_server_limits_set_max_unary_request_size(NULL, 4096),
                OFL_CODE_INVALID_ARGUMENT, "limits");
    EXPECT_CODE(ofl_server_limits_set_max_unary_request_size(l, 0), OFL_CODE_INVALID_ARGUMENT,
                "max_unary_request_size");
    EXPECT_CODE(ofl_server_limits_set_max_unary_request_size(l, 1023), OFL_CODE_INVALID_ARGUMENT,
                "max_unary_request_size");
    EXPECT_CODE(ofl_server_limits_set_max_unary_request_size(l, UINT64_MAX),
                OFL_CODE_INVALID_ARGUMENT, "max_unary_request_size");
    EXPECT_OK(ofl_server_limits_set_max_unary_request_size(l, 1024));
    EXPECT_OK(ofl_server_limits_set_max_unary_request_size(l, 64 << 10));
    ofl_server_limits_free(l);
    ofl_server_limits_free(NULL);
}

/* Tight limits: one stream per connection, unary requests of at most 1 KiB. */
static ofl_server_limits *tight_limits(void) {
    ofl_server_limits *l = NULL;
    REQUIRE_OK(ofl_server_limits_new(&l));
    REQUIRE_OK(ofl_server_limits_set_max_concurrent_streams(l, 1));
    REQUIRE_OK(ofl_server_limits_set_max_connections(l, 4));
    REQUIRE_OK(ofl_server_limits_set_handshake_timeout_ms(l, 2000));
    REQUIRE_OK(ofl_server_limits_set_idle_timeout_ms(l, 5000));
    REQUIRE_OK(ofl_server_limits_set_max_unary_request_size(l, 1024));
    return l;
}

static void test_aggregator_bounds(void) {
    ofl_aggregator_server_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_server_options_new(&o));
    ofl_server_limits *l = tight_limits();
    EXPECT_CODE(ofl_aggregator_server_options_set_limits(NULL, l), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_limits(o, NULL), OFL_CODE_INVALID_ARGUMENT,
                "limits");
    EXPECT_OK(ofl_aggregator_server_options_set_limits(o, l));
    ofl_server_limits_free(l); /* copied */

    EXPECT_CODE(ofl_aggregator_server_options_set_upload_memory_budget(NULL, 1 << 20),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_upload_memory_budget(o, 0), OFL_CODE_INVALID_ARGUMENT,
                "upload_memory_budget");
    EXPECT_CODE(ofl_aggregator_server_options_set_upload_memory_budget(o, (1 << 20) - 1),
                OFL_CODE_INVALID_ARGUMENT, "upload_memory_budget");
    EXPECT_CODE(ofl_aggregator_server_options_set_upload_memory_budget(o, UINT64_MAX),
                OFL_CODE_INVALID_ARGUMENT, "upload_memory_budget");
    EXPECT_OK(ofl_aggregator_server_options_set_upload_memory_budget(o, 64 << 20));

    EXPECT_CODE(ofl_aggregator_server_options_set_max_tensors_per_upload(NULL, 10), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_max_tensors_per_upload(o, 0), OFL_CODE_INVALID_ARGUMENT,
                "max_tensors_per_upload");
    EXPECT_CODE(ofl_aggregator_server_options_set_max_tensors_per_upload(o, UINT64_MAX),
                OFL_CODE_INVALID_ARGUMENT, "max_tensors_per_upload");
    EXPECT_OK(ofl_aggregator_server_options_set_max_tensors_per_upload(o, 1000));

    /* A server starts with these tight bounds and stops. */
    REQUIRE_OK(ofl_aggregator_server_options_set_listen(o, "127.0.0.1", 0));
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, NULL));
    REQUIRE_OK(ofl_aggregator_server_options_set_federation(o, "agg", "fed", NULL));
    REQUIRE_OK(ofl_aggregator_server_options_add_collaborator(o, "col1"));
    callback_fns cb = {
        .get_tasks = get_tasks,
        .get_aggregated_tensor = get_tensor,
        .send_local_task_results = send_results,
    };
    ofl_aggregator_server *server = NULL;
    if (EXPECT_OK(start_with_callbacks(o, &cb, &server))) {
        uint16_t port = ofl_aggregator_server_port(server);
        CHECK(port != 0);
        /* The copied limits are in force: a GetTasks request over 1 KiB
         * (a long sender name) is refused before it is buffered. */
        char long_name[2048];
        memset(long_name, 'c', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = '\0';
        ofl_aggregator_client_options *co = NULL;
        REQUIRE_OK(ofl_aggregator_client_options_new("127.0.0.1", port, &co));
        REQUIRE_OK(ofl_aggregator_client_options_set_federation(co, "agg", "fed", NULL));
        REQUIRE_OK(ofl_aggregator_client_options_set_tls(co, NULL));
        ofl_aggregator_client *client = NULL;
        REQUIRE_OK(ofl_aggregator_client_new(co, &client));
        ofl_aggregator_client_options_free(co);
        ofl_tasks *tasks = NULL;
        EXPECT_CODE(ofl_aggregator_client_get_tasks(client, long_name, NULL, &tasks),
                    OFL_CODE_RESOURCE_EXHAUSTED, NULL);
        CHECK(tasks == NULL);
        ofl_aggregator_client_free(client);
        EXPECT_OK(ofl_aggregator_server_stop(server));
        ofl_aggregator_server_free(server);
    }
    ofl_aggregator_server_options_free(o);
}

static ofl_error *start_nothing(void *ud, const ofl_experiment *e) {
    (void)ud, (void)e;
    return NULL;
}

static void test_director_bounds(void) {
    ofl_director_server_options *o = NULL;
    REQUIRE_OK(ofl_director_server_options_new(&o));
    ofl_server_limits *limits = NULL;
    REQUIRE_OK(ofl_server_limits_new(&limits));
    REQUIRE_OK(ofl_server_limits_set_max_concurrent_streams(limits, 1));
    REQUIRE_OK(ofl_server_limits_set_max_connections(limits, 64));
    REQUIRE_OK(ofl_server_limits_set_handshake_timeout_ms(limits, 2000));
    REQUIRE_OK(ofl_server_limits_set_idle_timeout_ms(limits, 5000));
    REQUIRE_OK(ofl_server_limits_set_max_unary_request_size(limits, 1024));
    EXPECT_CODE(ofl_director_server_options_set_limits(NULL, limits), OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_director_server_options_set_limits(o, NULL), OFL_CODE_INVALID_ARGUMENT, "limits");
    REQUIRE_OK(ofl_director_server_options_set_limits(o, limits));
    ofl_server_limits_free(limits);

    REQUIRE_OK(ofl_director_server_options_set_listen(o, "127.0.0.1", 0));
    REQUIRE_OK(ofl_director_server_options_set_tls(o, NULL));
    ofl_director_hooks *hooks = NULL;
    REQUIRE_OK(ofl_director_hooks_new(&hooks));
    REQUIRE_OK(ofl_director_hooks_set_start_experiment(hooks, start_nothing));
    ofl_director_server *server = NULL;
    if (EXPECT_OK(ofl_director_server_start(o, hooks, &server))) {
        CHECK(ofl_director_server_port(server) != 0);
        EXPECT_OK(ofl_director_server_stop(server));
        ofl_director_server_free(server);
    }
    ofl_director_hooks_free(hooks);
    ofl_director_server_options_free(o);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    test_note("ofl_server_limits");
    test_server_limits();
    test_note("aggregator server bounds");
    test_aggregator_bounds();
    test_note("director server bounds");
    test_director_bounds();
    return test_finish("test_server_bounds");
}
