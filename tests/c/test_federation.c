/*
 * test_federation: a whole federation round in one process, over mTLS,
 * one-way TLS and plain text, with the aggregation logic in C callbacks.
 *
 * Server callbacks: get_tasks answers tasks "train"/"validate" on a
 * collaborator's first call and quit on its second; get_aggregated_tensor
 * serves a fresh 16 MiB tensor (bytes (i*7+1)%256) per call with
 * ofl_reply_set_tensor_borrowed, whose release callback frees it (so a read
 * after release is a use-after-free under ASan) and must run exactly once;
 * send_local_task_results checks the 16 MiB upload (bytes (i*7+2)%256),
 * tags, metadata, data size, task name and round byte for byte.
 *
 * Collaborator threads (col1, col2 under mTLS; col1 otherwise): get_tasks,
 * get_aggregated_tensor, send_local_task_results, get_tasks (quit). The
 * server's all_quit_jobs_sent then becomes true and
 * ofl_aggregator_server_serve returns; free_user_data runs exactly once.
 *
 * Also: a callback's NOT_FOUND + message reaches the client; a spoofed sender
 * gets UNAUTHENTICATED (no delay configured); a certificate from an unknown
 * CA, an unknown server CA, a missing client certificate and a wrong server
 * name get OFL_CODE_TLS; without TLS the warning is logged (captured through
 * ofl_set_log_callback).
 *
 * usage: test_federation CERT_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#define TENSOR_SIZE ((size_t)16 << 20) /* 16 MiB = 4096 x 4096 bytes */
#define ROUND 1
#define DATA_SIZE 1234
#define MAX_BORROWS 64
#define NCOLS 2

static cert_paths g_certs;
static const char *const COLS[NCOLS] = {"col1", "col2"};
static const char *const REQUEST_TAGS[2] = {"model", "aggregated"};
static const int32_t SHAPE[2] = {4096, 4096};

/* ---- captured logs ------------------------------------------------------ */

#define MAX_LOGS 512
typedef struct log_record {
    ofl_log_level level;
    char target[128];
    char message[512];
} log_record;

static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_record g_logs[MAX_LOGS];
static int g_nlogs;

/* Called on library threads; must not call back into the library. */
static void capture_log(void *user_data, ofl_log_level level, const char *target,
                        const char *message) {
    (void)user_data;
    pthread_mutex_lock(&g_log_lock);
    if (g_nlogs < MAX_LOGS) {
        log_record *r = &g_logs[g_nlogs++];
        r->level = level;
        snprintf(r->target, sizeof r->target, "%s", target ? target : "(null)");
        snprintf(r->message, sizeof r->message, "%s", message ? message : "(null)");
    }
    pthread_mutex_unlock(&g_log_lock);
}

/* Whether a record at `level` whose message contains all of `needles`
 * (NULL-terminated list) was logged since record `from`. */
static bool logged_since(int from, ofl_log_level level, const char *const *needles) {
    bool found = false;
    pthread_mutex_lock(&g_log_lock);
    for (int i = from; i < g_nlogs && !found; i++) {
        if (g_logs[i].level != level) continue;
        bool all = strncmp(g_logs[i].target, "openfl_transport", 16) == 0;
        for (const char *const *n = needles; all && *n; n++)
            all = strstr(g_logs[i].message, *n) != NULL;
        found = all;
    }
    pthread_mutex_unlock(&g_log_lock);
    return found;
}

static int log_count(void) {
    pthread_mutex_lock(&g_log_lock);
    int n = g_nlogs;
    pthread_mutex_unlock(&g_log_lock);
    return n;
}

/* ---- the aggregation logic ------------------------------------------- */

typedef struct borrow {
    struct fed_state *state;
    uint8_t *data;
    int slot;
} borrow;

typedef struct fed_state {
    pthread_mutex_t lock;
    int get_tasks_calls[NCOLS];
    bool quit_sent[NCOLS];
    bool participant[NCOLS]; /* all_quit_jobs_sent waits for these */
    atomic_int borrows;
    atomic_int releases[MAX_BORROWS];
    atomic_int tensor_calls;
    atomic_int results_calls;
    atomic_int results_ok;
    atomic_int free_calls;
    atomic_int quit_polls;
} fed_state;

static int col_index(const char *name) {
    for (int i = 0; i < NCOLS; i++)
        if (strcmp(name, COLS[i]) == 0) return i;
    return -1;
}

static void fed_state_init(fed_state *s, bool col1, bool col2) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->participant[0] = col1;
    s->participant[1] = col2;
}

static void fed_state_destroy(fed_state *s) { pthread_mutex_destroy(&s->lock); }

static ofl_error *fed_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    fed_state *s = ud;
    int idx = col_index(collaborator);
    if (idx < 0) {
        test_fail_at(__FILE__, __LINE__, "get_tasks for unexpected collaborator \"%s\"",
                     collaborator);
        return ofl_error_new(OFL_CODE_PERMISSION_DENIED, "unknown collaborator");
    }
    pthread_mutex_lock(&s->lock);
    int call = ++s->get_tasks_calls[idx];
    pthread_mutex_unlock(&s->lock);
    if (call == 1) {
        EXPECT_OK(ofl_reply_set_round_number(reply, ROUND));
        EXPECT_OK(ofl_reply_add_task(reply, "train", "train_task", "train", false));
        EXPECT_OK(ofl_reply_add_task(reply, "validate", "validate_task", "validate", true));
        return NULL;
    }
    EXPECT_OK(ofl_reply_set_round_number(reply, ROUND));
    EXPECT_OK(ofl_reply_set_quit(reply, true));
    pthread_mutex_lock(&s->lock);
    s->quit_sent[idx] = true;
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static bool fed_all_quit_jobs_sent(void *ud) {
    fed_state *s = ud;
    atomic_fetch_add(&s->quit_polls, 1);
    bool all = true;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < NCOLS; i++)
        if (s->participant[i] && !s->quit_sent[i]) all = false;
    pthread_mutex_unlock(&s->lock);
    return all;
}

/* Runs once per borrowed tensor, when the library no longer reads it. */
static void release_borrow(void *context) {
    borrow *b = context;
    int n = atomic_fetch_add(&b->state->releases[b->slot], 1) + 1;
    if (n == 1) {
        /* Scribble first: a late reader would see wrong bytes even without ASan. */
        memset(b->data, 0xEE, TENSOR_SIZE);
        free(b->data);
        free(b);
    } else {
        test_fail_at(__FILE__, __LINE__, "release of borrowed tensor %d called %d times",
                     b->slot, n);
    }
}

static bool request_tags_ok(const ofl_tensor_request *req) {
    if (req->tags_len != 2 || req->tags == NULL) return false;
    return strcmp(req->tags[0], REQUEST_TAGS[0]) == 0 && strcmp(req->tags[1], REQUEST_TAGS[1]) == 0;
}

static ofl_error *fed_get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                              ofl_reply *reply) {
    fed_state *s = ud;
    atomic_fetch_add(&s->tensor_calls, 1);
    CHECK_MSG(col_index(collaborator) >= 0, "get_aggregated_tensor for \"%s\"", collaborator);
    CHECK(req->round_number == ROUND);
    CHECK(req->report == false);
    CHECK(req->require_lossless == true);
    CHECK_MSG(request_tags_ok(req), "request tags differ");

    if (strcmp(req->tensor_name, "model") != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "tensor %s of round %d is not known", req->tensor_name,
                 (int)req->round_number);
        return ofl_error_new(OFL_CODE_NOT_FOUND, msg);
    }

    int slot = atomic_fetch_add(&s->borrows, 1);
    if (slot >= MAX_BORROWS) {
        test_fail_at(__FILE__, __LINE__, "too many tensor calls");
        return ofl_error_new(OFL_CODE_RESOURCE_EXHAUSTED, NULL);
    }
    borrow *b = malloc(sizeof *b);
    uint8_t *data = malloc(TENSOR_SIZE);
    if (b == NULL || data == NULL) {
        free(b);
        free(data);
        return ofl_error_new(OFL_CODE_RESOURCE_EXHAUSTED, NULL);
    }
    fill_pattern(data, TENSOR_SIZE, 7, 1);
    *b = (borrow){.state = s, .data = data, .slot = slot};

    static const char *const tags[2] = {"model", "aggregated"};
    static const bool flags[1] = {true};
    static const int32_t keys[2] = {3, 1};
    static const float values[2] = {1.5f, 0.25f};
    ofl_metadata_view md = {.int_list = SHAPE, .int_list_len = 2, .bool_list = flags,
                            .bool_list_len = 1, .int_to_float_keys = keys,
                            .int_to_float_values = values, .int_to_float_len = 2};
    ofl_tensor_view view = {.name = "model", .round_number = ROUND, .lossless = true,
                            .report = false, .tags = tags, .tags_len = 2, .metadata = &md,
                            .metadata_len = 1, .data = data, .data_len = TENSOR_SIZE};
    /* On failure the library still calls release_borrow (exactly once). */
    if (!EXPECT_OK(ofl_reply_set_tensor_borrowed(reply, &view, release_borrow, b)))
        return ofl_error_new(OFL_CODE_INTERNAL, NULL);
    return NULL;
}

static bool upload_ok(const char *collaborator, const ofl_task_results *r) {
    bool ok = true;
#define UCHECK(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            test_fail_at(__FILE__, __LINE__, "upload from %s: CHECK(%s)", collaborator, #cond); \
            ok = false;                                                                  \
        }                                                                                \
    } while (0)
    UCHECK(ofl_task_results_round_number(r) == ROUND);
    UCHECK(strcmp(ofl_task_results_task_name(r), "train") == 0);
    UCHECK(ofl_task_results_data_size(r) == DATA_SIZE);
    UCHECK(ofl_task_results_tensors_len(r) == 1);
    UCHECK(ofl_task_results_tensor(r, 1) == NULL);
    const ofl_tensor *t = ofl_task_results_tensor(r, 0);
    UCHECK(t != NULL);
    if (t == NULL) return false;
    UCHECK(strcmp(ofl_tensor_name(t), "model") == 0);
    UCHECK(ofl_tensor_round_number(t) == ROUND);
    UCHECK(ofl_tensor_lossless(t) == true);
    UCHECK(ofl_tensor_report(t) == false);
    UCHECK(ofl_tensor_tags_len(t) == 2);
    UCHECK(ofl_tensor_tag(t, 0) != NULL && strcmp(ofl_tensor_tag(t, 0), "trained") == 0);
    UCHECK(ofl_tensor_tag(t, 1) != NULL && strcmp(ofl_tensor_tag(t, 1), collaborator) == 0);
    UCHECK(ofl_tensor_metadata_len(t) == 1);
    uintptr_t n = 0;
    const int32_t *shape = ofl_tensor_metadata_int_list(t, 0, &n);
    UCHECK(n == 2 && shape != NULL && shape[0] == SHAPE[0] && shape[1] == SHAPE[1]);
    UCHECK(ofl_tensor_metadata_int_to_float_len(t, 0) == 0);
    UCHECK(ofl_tensor_data_len(t) == TENSOR_SIZE);
    const uint8_t *data = ofl_tensor_data(t);
    UCHECK(data != NULL);
    if (data != NULL && ofl_tensor_data_len(t) == TENSOR_SIZE) {
        size_t bad = check_pattern(data, TENSOR_SIZE, 7, 2);
        if (bad != TENSOR_SIZE) {
            test_fail_at(__FILE__, __LINE__, "upload from %s differs at byte %zu", collaborator,
                         bad);
            ok = false;
        }
    }
#undef UCHECK
    return ok;
}

static ofl_error *fed_send_results(void *ud, const char *collaborator,
                                const ofl_task_results *results) {
    fed_state *s = ud;
    atomic_fetch_add(&s->results_calls, 1);
    if (col_index(collaborator) < 0) {
        test_fail_at(__FILE__, __LINE__, "results from unexpected collaborator \"%s\"",
                     collaborator);
        return ofl_error_new(OFL_CODE_PERMISSION_DENIED, NULL);
    }
    if (upload_ok(collaborator, results)) atomic_fetch_add(&s->results_ok, 1);
    return NULL;
}

static void fed_free(void *ud) {
    fed_state *s = ud;
    atomic_fetch_add(&s->free_calls, 1);
}

static ofl_aggregator_server *start_server(fed_state *s, tls_mode mode) {
    callback_fns cb = {
        .user_data = s,
        .free_user_data = fed_free,
        .get_tasks = fed_get_tasks,
        .get_aggregated_tensor = fed_get_tensor,
        .send_local_task_results = fed_send_results,
        .all_quit_jobs_sent = fed_all_quit_jobs_sent,
        .valid_collaborator_cn_and_id = NULL, /* OpenFL 1.6's rule */
    };
    ofl_aggregator_server_options *o = make_server_options(&g_certs, mode);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &cb, &server));
    ofl_aggregator_server_options_free(o);
    REQUIRE(server != NULL && ofl_aggregator_server_port(server) != 0);
    return server;
}

/* Checks after ofl_aggregator_server_free: user data and every borrowed
 * tensor released exactly once. */
static void check_released(fed_state *s, const char *what) {
    int freed = wait_for_count(&s->free_calls, 1, 10000);
    CHECK_MSG(freed == 1, "%s: free_user_data ran %d times, expected 1", what, freed);
    int borrows = atomic_load(&s->borrows);
    for (int i = 0; i < borrows && i < MAX_BORROWS; i++) {
        int n = wait_for_count(&s->releases[i], 1, 5000);
        CHECK_MSG(n == 1, "%s: borrowed tensor %d released %d times, expected 1", what, i, n);
    }
    sleep_ms(50); /* still exactly once a little later */
    CHECK_MSG(atomic_load(&s->free_calls) == 1, "%s: free_user_data ran again", what);
}

/* ---- serve on a thread, with a bounded wait ------------------------------ */

typedef struct serve_ctx {
    ofl_aggregator_server *server;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    ofl_error *error;
} serve_ctx;

static void *serve_main(void *p) {
    serve_ctx *c = p;
    ofl_error *e = ofl_aggregator_server_serve(c->server);
    pthread_mutex_lock(&c->lock);
    c->error = e;
    c->done = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void serve_start(serve_ctx *c, ofl_aggregator_server *server) {
    memset(c, 0, sizeof *c);
    c->server = server;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &attr);
    pthread_condattr_destroy(&attr);
    REQUIRE(pthread_create(&c->thread, NULL, serve_main, c) == 0);
}

/* Waits up to timeout_ms for serve to return; returns whether it did. */
static bool serve_wait(serve_ctx *c, unsigned timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (!c->done) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) != 0) break;
    }
    bool done = c->done;
    pthread_mutex_unlock(&c->lock);
    return done;
}

/* Expects serve to return by itself (all quit jobs sent); stops it otherwise. */
static void serve_finish(serve_ctx *c, const char *what) {
    double t0 = now_seconds();
    if (!serve_wait(c, 15000)) {
        test_fail_at(__FILE__, __LINE__,
                     "%s: ofl_aggregator_server_serve did not return after all quit jobs were "
                     "sent; stopping it",
                     what);
        EXPECT_OK(ofl_aggregator_server_stop(c->server));
        if (!serve_wait(c, 15000)) {
            test_fail_at(__FILE__, __LINE__, "%s: serve ignores stop too", what);
            test_abort(__FILE__, __LINE__);
        }
    } else {
        test_note("%s: serve returned %.3f s after the last collaborator quit", what,
                  now_seconds() - t0);
    }
    pthread_join(c->thread, NULL);
    expect_ok_at(__FILE__, __LINE__, "ofl_aggregator_server_serve", c->error);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
}

/* ---- collaborators -------------------------------------------------------- */

typedef struct collaborator {
    const char *name;
    uint16_t port;
    tls_mode mode;
    bool pem; /* certificates from memory instead of files */
} collaborator;

static ofl_aggregator_client *collaborator_client(const collaborator *c) {
    const char *crt = strcmp(c->name, "col1") == 0 ? g_certs.col1_crt : g_certs.col2_crt;
    const char *key = strcmp(c->name, "col1") == 0 ? g_certs.col1_key : g_certs.col2_key;
    ofl_aggregator_client_options *o = make_client_options(&g_certs, c->port, c->mode, NULL, crt, key);
    if (c->pem && c->mode == TLS_MUTUAL) {
        size_t ca_len = 0, crt_len = 0, key_len = 0;
        uint8_t *ca_pem = read_file(g_certs.ca, &ca_len);
        uint8_t *crt_pem = read_file(crt, &crt_len);
        uint8_t *key_pem = read_file(key, &key_len);
        REQUIRE(ca_pem && crt_pem && key_pem);
        ofl_tls_config *tls = NULL;
        REQUIRE_OK(ofl_tls_config_new(&tls));
        REQUIRE_OK(ofl_tls_config_set_root_certificate_pem(tls, ca_pem, ca_len));
        REQUIRE_OK(ofl_tls_config_set_identity_pem(tls, crt_pem, crt_len, key_pem, key_len));
        /* Copied: the buffers and the config may go right after. */
        REQUIRE_OK(ofl_aggregator_client_options_set_tls(o, tls));
        ofl_tls_config_free(tls);
        free(ca_pem);
        free(crt_pem);
        free(key_pem);
    }
    ofl_aggregator_client *client = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &client));
    ofl_aggregator_client_options_free(o); /* allowed right after ofl_aggregator_client_new */
    return client;
}

static void check_model(const char *who, const ofl_tensor *t) {
    CHECK_STR(ofl_tensor_name(t), "model");
    CHECK(ofl_tensor_round_number(t) == ROUND);
    CHECK(ofl_tensor_lossless(t) == true);
    CHECK(ofl_tensor_report(t) == false);
    CHECK(ofl_tensor_tags_len(t) == 2);
    CHECK_STR(ofl_tensor_tag(t, 0), "model");
    CHECK_STR(ofl_tensor_tag(t, 1), "aggregated");
    CHECK(ofl_tensor_tag(t, 2) == NULL);
    CHECK(ofl_tensor_metadata_len(t) == 1);
    uintptr_t n = 0;
    const int32_t *shape = ofl_tensor_metadata_int_list(t, 0, &n);
    CHECK(n == 2 && shape != NULL && shape[0] == SHAPE[0] && shape[1] == SHAPE[1]);
    const bool *flags = ofl_tensor_metadata_bool_list(t, 0, &n);
    CHECK(n == 1 && flags != NULL && flags[0] == true);
    CHECK(ofl_tensor_metadata_int_to_float_len(t, 0) == 2);
    int32_t key = 0;
    float value = 0;
    CHECK(ofl_tensor_metadata_int_to_float_entry(t, 0, 0, &key, &value) && key == 1 &&
          value == 0.25f);
    CHECK(ofl_tensor_metadata_int_to_float_entry(t, 0, 1, &key, &value) && key == 3 &&
          value == 1.5f);
    const uint8_t *data = ofl_tensor_data(t);
    CHECK_MSG(ofl_tensor_data_len(t) == TENSOR_SIZE, "%s: tensor has %zu bytes", who,
              (size_t)ofl_tensor_data_len(t));
    if (data != NULL && ofl_tensor_data_len(t) == TENSOR_SIZE) {
        size_t bad = check_pattern(data, TENSOR_SIZE, 7, 1);
        CHECK_MSG(bad == TENSOR_SIZE, "%s: downloaded tensor differs at byte %zu", who, bad);
    }
}

/* One collaborator's whole round. */
static void *collaborator_main(void *p) {
    const collaborator *c = p;
    ofl_aggregator_client *client = collaborator_client(c);

    ofl_tasks *tasks = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, c->name, NULL, &tasks))) {
        CHECK(ofl_tasks_round_number(tasks) == ROUND);
        CHECK(ofl_tasks_quit(tasks) == false);
        CHECK(ofl_tasks_sleep_time(tasks) == 0);
        CHECK(ofl_tasks_len(tasks) == 2);
        CHECK_STR(ofl_tasks_name(tasks, 0), "train");
        CHECK_STR(ofl_tasks_function_name(tasks, 0), "train_task");
        CHECK_STR(ofl_tasks_task_type(tasks, 0), "train");
        CHECK(ofl_tasks_apply_local(tasks, 0) == false);
        CHECK_STR(ofl_tasks_name(tasks, 1), "validate");
        CHECK_STR(ofl_tasks_function_name(tasks, 1), "validate_task");
        CHECK_STR(ofl_tasks_task_type(tasks, 1), "validate");
        CHECK(ofl_tasks_apply_local(tasks, 1) == true);
        ofl_tasks_free(tasks);
        tasks = NULL;
    }

    ofl_tensor *model = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(client, c->name, "model", ROUND, false,
                                                   REQUEST_TAGS, 2, true, NULL, &model))) {
        check_model(c->name, model);
        ofl_tensor_free(model);
    }

    uint8_t *update = malloc(TENSOR_SIZE);
    REQUIRE(update != NULL);
    fill_pattern(update, TENSOR_SIZE, 7, 2);
    const char *tags[2] = {"trained", c->name};
    ofl_metadata_view md = {.int_list = SHAPE, .int_list_len = 2};
    ofl_tensor_view view = {.name = "model", .round_number = ROUND, .lossless = true,
                            .report = false, .tags = tags, .tags_len = 2, .metadata = &md,
                            .metadata_len = 1, .data = update, .data_len = TENSOR_SIZE};
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, c->name, ROUND, "train", DATA_SIZE,
                                                 &view, 1, NULL));
    free(update); /* borrowed for the call only */

    if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, c->name, NULL, &tasks))) {
        CHECK_MSG(ofl_tasks_quit(tasks) == true, "%s was not told to quit", c->name);
        CHECK(ofl_tasks_len(tasks) == 0);
        ofl_tasks_free(tasks);
    }
    ofl_aggregator_client_free(client);
    return NULL;
}

static void run_collaborators(collaborator *cols, int n) {
    pthread_t threads[NCOLS];
    REQUIRE(n <= NCOLS);
    for (int i = 0; i < n; i++)
        REQUIRE(pthread_create(&threads[i], NULL, collaborator_main, &cols[i]) == 0);
    for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
}

/* ---- scenarios ---------------------------------------------------------- */

/* A client whose TLS settings are wrong in some way must fail with TLS. */
static void expect_tls_failure(const char *what, ofl_aggregator_client_options *o, const char *sender) {
    ofl_aggregator_client *client = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &client));
    ofl_tasks *tasks = NULL;
    double t0 = now_seconds();
    expect_code_at(__FILE__, __LINE__, what, ofl_aggregator_client_get_tasks(client, sender, NULL, &tasks),
                   OFL_CODE_TLS, NULL);
    test_note("%s: TLS failure after %.3f s", what, now_seconds() - t0);
    CHECK(tasks == NULL);
    ofl_aggregator_client_free(client);
}

static void mtls_negative_checks(fed_state *s, uint16_t port) {
    ofl_tensor *t = NULL;
    ofl_tasks *tasks = NULL;

    /* A callback's NOT_FOUND and message reach the client. */
    collaborator col1 = {.name = "col1", .port = port, .mode = TLS_MUTUAL};
    ofl_aggregator_client *client = collaborator_client(&col1);
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "missing", ROUND, false,
                                                 REQUEST_TAGS, 2, true, NULL, &t),
                OFL_CODE_NOT_FOUND, "tensor missing of round 1 is not known");
    CHECK(t == NULL);

    /* Spoofed sender: col1's certificate speaking for col2. */
    double t0 = now_seconds();
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col2", NULL, &tasks), OFL_CODE_UNAUTHENTICATED, "col2");
    EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(client, "col2", "model", ROUND, false,
                                                 REQUEST_TAGS, 2, true, NULL, &t),
                OFL_CODE_UNAUTHENTICATED, NULL);
    static const uint8_t small[16] = {0};
    ofl_tensor_view v = {.name = "model", .data = small, .data_len = sizeof small};
    EXPECT_CODE(ofl_aggregator_client_send_local_task_results(client, "col2", ROUND, "train", 1, &v, 1, NULL),
                OFL_CODE_UNAUTHENTICATED, NULL);
    double spoof_s = now_seconds() - t0;
    CHECK_MSG(spoof_s < 3.0, "3 spoofed calls took %.2f s with no authentication delay", spoof_s);
    pthread_mutex_lock(&s->lock);
    CHECK_MSG(s->get_tasks_calls[1] == 0, "get_tasks ran for a spoofed col2");
    pthread_mutex_unlock(&s->lock);
    CHECK_MSG(atomic_load(&s->results_calls) == 0, "send_local_task_results ran for a spoof");
    CHECK(atomic_load(&s->borrows) == 0);
    ofl_aggregator_client_free(client);

    /* TLS failures (never retried: a retry would end in RETRIES_EXHAUSTED). */
    ofl_aggregator_client_options *o;
    o = make_client_options(&g_certs, port, TLS_MUTUAL, NULL, g_certs.foreign_crt,
                            g_certs.foreign_key);
    expect_tls_failure("client certificate from an unknown CA", o, "col1");
    ofl_aggregator_client_options_free(o);

    o = make_client_options(&g_certs, port, TLS_MUTUAL, g_certs.foreign_ca, g_certs.col1_crt,
                            g_certs.col1_key);
    expect_tls_failure("server certificate from an unknown CA", o, "col1");
    ofl_aggregator_client_options_free(o);

    o = make_client_options(&g_certs, port, TLS_ONE_WAY, NULL, NULL, NULL);
    expect_tls_failure("no client certificate for an mTLS server", o, "col1");
    ofl_aggregator_client_options_free(o);

    o = make_client_options(&g_certs, port, TLS_MUTUAL, NULL, g_certs.col1_crt, g_certs.col1_key);
    ofl_connect_options *connect = NULL;
    REQUIRE_OK(ofl_connect_options_new(&connect));
    REQUIRE_OK(ofl_connect_options_set_server_name(connect, "not-the-server.example"));
    REQUIRE_OK(ofl_connect_options_set_retry(connect, 50, 500, 5000));
    REQUIRE_OK(ofl_aggregator_client_options_set_connect(o, connect));
    ofl_connect_options_free(connect);
    expect_tls_failure("wrong server name", o, "col1");
    ofl_aggregator_client_options_free(o);
}

static void scenario_mtls(void) {
    fed_state s;
    fed_state_init(&s, true, true);
    ofl_aggregator_server *server = start_server(&s, TLS_MUTUAL);
    uint16_t port = ofl_aggregator_server_port(server);
    test_note("mTLS server on port %u", (unsigned)port);
    serve_ctx serve;
    serve_start(&serve, server);

    mtls_negative_checks(&s, port);

    double t0 = now_seconds();
    collaborator cols[NCOLS] = {
        {.name = "col1", .port = port, .mode = TLS_MUTUAL, .pem = false},
        {.name = "col2", .port = port, .mode = TLS_MUTUAL, .pem = true},
    };
    run_collaborators(cols, NCOLS);
    test_note("mTLS: two collaborators moved 4 x 16 MiB in %.2f s", now_seconds() - t0);
    serve_finish(&serve, "mTLS");

    CHECK_MSG(atomic_load(&s.results_ok) == 2, "%d of 2 uploads verified",
              atomic_load(&s.results_ok));
    CHECK(atomic_load(&s.results_calls) == 2);
    CHECK(s.get_tasks_calls[0] == 2 && s.get_tasks_calls[1] == 2);
    CHECK(atomic_load(&s.borrows) == 2);
    CHECK(atomic_load(&s.quit_polls) >= 1);

    ofl_aggregator_server_free(server);
    check_released(&s, "mTLS");
    fed_state_destroy(&s);
}

static void scenario_insecure(void) {
    fed_state s;
    fed_state_init(&s, true, false);
    int logs_before = log_count();
    ofl_aggregator_server *server = start_server(&s, TLS_INSECURE);
    uint16_t port = ofl_aggregator_server_port(server);
    test_note("insecure server on port %u", (unsigned)port);
    static const char *const server_warning[] = {"without TLS", NULL};
    CHECK_MSG(logged_since(logs_before, OFL_LOG_LEVEL_WARN, server_warning),
              "no WARN record about running without TLS after starting an insecure server");

    serve_ctx serve;
    serve_start(&serve, server);

    /* Without TLS the header sender is trusted (documented): a "col2" claim
     * from anyone is accepted. */
    int client_logs = log_count();
    collaborator col1 = {.name = "col1", .port = port, .mode = TLS_INSECURE};
    ofl_aggregator_client *client = collaborator_client(&col1);
    static const char *const client_warning[] = {"without TLS", NULL};
    CHECK_MSG(logged_since(client_logs, OFL_LOG_LEVEL_WARN, client_warning),
              "no WARN record from a client without TLS");
    ofl_tasks *tasks = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col2", NULL, &tasks))) ofl_tasks_free(tasks);
    ofl_aggregator_client_free(client);

    run_collaborators(&col1, 1);
    serve_finish(&serve, "insecure");
    CHECK(atomic_load(&s.results_ok) == 1);
    ofl_aggregator_server_free(server);
    check_released(&s, "insecure");
    fed_state_destroy(&s);
}

static void scenario_one_way(void) {
    fed_state s;
    fed_state_init(&s, true, false);
    int logs_before = log_count();
    ofl_aggregator_server *server = start_server(&s, TLS_ONE_WAY);
    uint16_t port = ofl_aggregator_server_port(server);
    test_note("one-way TLS server on port %u", (unsigned)port);
    static const char *const warning[] = {"client authentication disabled", NULL};
    CHECK_MSG(logged_since(logs_before, OFL_LOG_LEVEL_WARN, warning),
              "no WARN record about disabled client authentication");
    serve_ctx serve;
    serve_start(&serve, server);

    /* A client that does present a certificate is still checked by its CN. */
    ofl_aggregator_client_options *o = make_client_options(&g_certs, port, TLS_MUTUAL, NULL,
                                                g_certs.col1_crt, g_certs.col1_key);
    ofl_aggregator_client *client = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &client));
    ofl_aggregator_client_options_free(o);
    ofl_tasks *tasks = NULL;
    EXPECT_CODE(ofl_aggregator_client_get_tasks(client, "col2", NULL, &tasks), OFL_CODE_UNAUTHENTICATED, NULL);
    ofl_aggregator_client_free(client);

    /* The round itself, without a client certificate. */
    collaborator col1 = {.name = "col1", .port = port, .mode = TLS_ONE_WAY};
    run_collaborators(&col1, 1);
    serve_finish(&serve, "one-way TLS");
    CHECK(atomic_load(&s.results_ok) == 1);
    ofl_aggregator_server_free(server);
    check_released(&s, "one-way TLS");
    fed_state_destroy(&s);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_INFO, capture_log, NULL));
    double t0 = now_seconds();

    test_note("mTLS federation");
    scenario_mtls();
    test_note("insecure federation");
    scenario_insecure();
    test_note("one-way TLS federation");
    scenario_one_way();

    /* Logging back to stderr before the capture buffer goes away. */
    EXPECT_OK(ofl_set_log_callback(OFL_LOG_LEVEL_WARN, NULL, NULL));
    test_note("%d log records captured; %.2f s", log_count(), now_seconds() - t0);
    return test_finish("test_federation");
}
