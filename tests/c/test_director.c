/*
 * test_director: the director's C API (ofl_director_server_*, hooks,
 * ofl_envoy_client_*, ofl_frontend_client_* and the objects they return).
 *
 *  - NULL arguments: every new export given NULL where a pointer is
 *    required fails with OFL_CODE_INVALID_ARGUMENT naming the argument (bad
 *    values and invalid UTF-8 likewise); accessors given NULL return their
 *    documented defaults; `_free(NULL)` is a no-op.
 *  - Failed starts (NULL options, NULL out, TLS without certificates, port in
 *    use) release the hooks' user_data exactly once, before returning.
 *  - A whole life cycle over mTLS: a director with C hooks; envoys col1 and
 *    col2 on threads register (a wrong shape is refused), send health checks
 *    with a CUDA device, wait for the experiment and download its 5 MiB
 *    archive (byte-identical); frontend "frontend" submits the archive file
 *    with an initial model; the review and start hooks see the experiment
 *    (owner, collaborators, archive, initial model, and the server already
 *    set); the host reports rounds, tasks, metrics, best/last models and the
 *    end; the frontend reads envoys, dataset info, status, list,
 *    description, both models (decoded with ofl_tensor_list_to_model),
 *    streams metrics (stopping early, then live until the end) and removes
 *    the experiment. Also: an envoy failing an experiment (the
 *    experiment_failed hook sees it), a rejected review (archive deleted), a
 *    start hook failing with a message, identity and isolation errors, close
 *    cancelling a WaitExperiment, serve/stop, and free_user_data exactly
 *    once when ofl_director_server_free returns.
 *  - Without TLS and with NULL hooks (the defaults): client_id names the
 *    frontend, experiments are approved and started.
 *
 * usage: test_director CERT_DIR
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* Not UTF-8: 0xff never occurs in UTF-8. */
static const char BAD_UTF8[] = "bad\xff\xfe";

static cert_paths g_certs;
static char g_frontend_crt[1024], g_frontend_key[1024];
static char g_frontend2_crt[1024], g_frontend2_key[1024];
static char g_work[256]; /* a fresh temporary directory for this run */

static const char *const SAMPLE_SHAPE[2] = {"28", "28"};
static const char *const WRONG_SHAPE[2] = {"32", "32"};
static const char *const TARGET_SHAPE[1] = {"1"};
static const char *const BOTH_COLS[2] = {"col1", "col2"};
#define HEALTH_PERIOD_MS 2000u
#define ARCHIVE_LEN (((size_t)5 << 20) + 123) /* three chunks of at most 2 MiB */
#define ARCHIVE_MUL 13u
#define ARCHIVE_ADD 5u
#define N_SAMPLES 6000u

/* ---- files --------------------------------------------------------------- */

static void work_path(char *out, size_t cap, const char *name) {
    int n = snprintf(out, cap, "%s/%s", g_work, name);
    REQUIRE(n > 0 && (size_t)n < cap);
}

static void cert_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    REQUIRE(n > 0 && (size_t)n < cap);
    if (access(out, R_OK) != 0) {
        fprintf(stderr, "missing %s (did the certs fixture run?)\n", out);
        exit(1);
    }
}

static void write_pattern_file(const char *path, size_t len, unsigned mul, unsigned add) {
    uint8_t *buf = malloc(len ? len : 1);
    REQUIRE(buf != NULL);
    fill_pattern(buf, len, mul, add);
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(buf, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
    free(buf);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whether `path` holds exactly the pattern of `len` bytes. */
static bool file_has_pattern(const char *path, size_t len, unsigned mul, unsigned add) {
    size_t got = 0;
    uint8_t *buf = read_file(path, &got);
    if (buf == NULL) return false;
    bool ok = got == len && check_pattern(buf, len, mul, add) == len;
    free(buf);
    return ok;
}

/* ---- option builders ----------------------------------------------------- */

/* TLS settings with ca.crt as root, `crt`/`key` as identity (none when `crt`
 * is NULL) and one-way or mutual client authentication. Caller frees. */
static ofl_tls_config *tls_config(const char *crt, const char *key, bool one_way) {
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));
    REQUIRE_OK(ofl_tls_config_set_root_certificate_file(tls, g_certs.ca));
    if (crt != NULL) REQUIRE_OK(ofl_tls_config_set_identity_files(tls, crt, key));
    REQUIRE_OK(ofl_tls_config_set_client_auth(tls, one_way ? OFL_CLIENT_AUTH_NONE : OFL_CLIENT_AUTH_MUTUAL));
    return tls;
}

/* Connection settings: a 5 s retry deadline and connect timeout, 64 MiB
 * messages, and `server_name` (NULL: the host). Caller frees. */
static ofl_connect_options *connect_options(const char *server_name) {
    ofl_connect_options *c = NULL;
    REQUIRE_OK(ofl_connect_options_new(&c));
    REQUIRE_OK(ofl_connect_options_set_retry(c, 50, 500, 5000));
    REQUIRE_OK(ofl_connect_options_set_connect_timeout_ms(c, 5000));
    REQUIRE_OK(ofl_connect_options_set_max_message_size(c, 64u << 20));
    if (server_name != NULL) REQUIRE_OK(ofl_connect_options_set_server_name(c, server_name));
    return c;
}

static ofl_director_server_options *director_options(tls_mode mode, const char *archive_dir) {
    ofl_director_server_options *o = NULL;
    REQUIRE_OK(ofl_director_server_options_new(&o));
    REQUIRE_OK(ofl_director_server_options_set_listen(o, "127.0.0.1", 0));
    REQUIRE_OK(ofl_director_server_options_set_sample_shape(o, SAMPLE_SHAPE, 2));
    REQUIRE_OK(ofl_director_server_options_set_target_shape(o, TARGET_SHAPE, 1));
    REQUIRE_OK(ofl_director_server_options_set_envoy_health_check_period_ms(o, HEALTH_PERIOD_MS));
    REQUIRE_OK(ofl_director_server_options_set_archive_dir(o, archive_dir));
    REQUIRE_OK(ofl_director_server_options_set_max_archive_size(o, 64u << 20));
    REQUIRE_OK(ofl_director_server_options_set_max_message_size(o, 64u << 20));
    REQUIRE_OK(ofl_director_server_options_set_max_queued_metrics(o, 1000));
    REQUIRE_OK(ofl_director_server_options_set_check_envoy_identity(o, true));
    ofl_tls_config *tls = NULL;
    if (mode != TLS_INSECURE) tls = tls_config(g_certs.server_crt, g_certs.server_key, mode == TLS_ONE_WAY);
    REQUIRE_OK(ofl_director_server_options_set_tls(o, tls)); /* NULL: TLS off */
    ofl_tls_config_free(tls);
    return o;
}

/* Client options for 127.0.0.1:`port`, a 5 s retry deadline, and mTLS with
 * `crt`/`key` (or no TLS when `crt` is NULL). */
static ofl_director_client_options *client_options(uint16_t port, const char *crt, const char *key) {
    ofl_director_client_options *o = NULL;
    REQUIRE_OK(ofl_director_client_options_new("127.0.0.1", port, &o));
    REQUIRE_OK(ofl_director_client_options_set_max_archive_size(o, 64u << 20));
    ofl_connect_options *c = connect_options(crt == NULL ? NULL : "localhost");
    REQUIRE_OK(ofl_director_client_options_set_connect(o, c));
    ofl_connect_options_free(c);
    ofl_tls_config *tls = crt == NULL ? NULL : tls_config(crt, key, false);
    REQUIRE_OK(ofl_director_client_options_set_tls(o, tls)); /* NULL: TLS off */
    ofl_tls_config_free(tls);
    return o;
}

static ofl_envoy_client *make_envoy(uint16_t port, const char *name, const char *crt,
                                    const char *key) {
    ofl_director_client_options *o = client_options(port, crt, key);
    ofl_envoy_client *c = NULL;
    REQUIRE_OK(ofl_envoy_client_new(o, name, &c));
    ofl_director_client_options_free(o);
    return c;
}

static ofl_frontend_client *make_frontend(uint16_t port, const char *crt, const char *key,
                                          const char *client_id) {
    ofl_director_client_options *o = client_options(port, crt, key);
    if (client_id != NULL) REQUIRE_OK(ofl_director_client_options_set_client_id(o, client_id));
    ofl_frontend_client *f = NULL;
    REQUIRE_OK(ofl_frontend_client_new(o, &f));
    ofl_director_client_options_free(o);
    return f;
}

static ofl_shard_info shard_info(const char *const *sample_shape) {
    ofl_shard_info s = {
        .shard_description = "mnist shard",
        .n_samples = N_SAMPLES,
        .sample_shape = sample_shape,
        .sample_shape_len = 2,
        .target_shape = TARGET_SHAPE,
        .target_shape_len = 1,
    };
    return s;
}

/* ---- models --------------------------------------------------------------- */

static const int32_t W_SHAPE[2] = {2, 3};
static const char *const MODEL_TAGS[1] = {"model"};

typedef struct model_views {
    ofl_metadata_view metadata[2];
    ofl_tensor_view tensors[2];
} model_views;

/* Two tensors as OpenFL's uncompressed pipeline encodes them: "w" (2 x 3)
 * and "b" (a scalar), float32 little-endian, the shape in int_list. */
static void make_model(model_views *m, const float w[6], const float b[1]) {
    memset(m, 0, sizeof *m);
    m->metadata[0].int_list = W_SHAPE;
    m->metadata[0].int_list_len = 2;
    m->tensors[0] = (ofl_tensor_view){
        .name = "w", .lossless = true, .tags = MODEL_TAGS, .tags_len = 1,
        .metadata = &m->metadata[0], .metadata_len = 1,
        .data = (const uint8_t *)w, .data_len = 6 * sizeof(float),
    };
    m->tensors[1] = (ofl_tensor_view){
        .name = "b", .lossless = true, .tags = MODEL_TAGS, .tags_len = 1,
        .metadata = &m->metadata[1], .metadata_len = 1,
        .data = (const uint8_t *)b, .data_len = sizeof(float),
    };
}

static const float INIT_W[6] = {1, 2, 3, 4, 5, 6};
static const float INIT_B[1] = {0.5f};
static const float BEST_W[6] = {10, 20, 30, 40, 50, 60};
static const float BEST_B[1] = {1.5f};
static const float LAST_W[6] = {-1, -2, -3, -4, -5, -6};
static const float LAST_B[1] = {-0.5f};

/* Checks a received model against w/b: raw tensors, then decoded. */
static void check_model_at(const char *file, int line, const ofl_tensor_list *list,
                           const float w[6], const float b[1]) {
    if (ofl_tensor_list_len(list) != 2) {
        test_fail_at(file, line, "model has %zu tensors, expected 2", ofl_tensor_list_len(list));
        return;
    }
    const ofl_tensor *t0 = ofl_tensor_list_get(list, 0);
    CHECK(t0 != NULL && strcmp(ofl_tensor_name(t0), "w") == 0);
    CHECK(ofl_tensor_data_len(t0) == 6 * sizeof(float));
    CHECK(memcmp(ofl_tensor_data(t0), w, 6 * sizeof(float)) == 0);
    CHECK(ofl_tensor_tags_len(t0) == 1 && strcmp(ofl_tensor_tag(t0, 0), "model") == 0);
    CHECK(ofl_tensor_list_get(list, 2) == NULL);

    ofl_model *m = NULL;
    if (!expect_ok_at(file, line, "ofl_tensor_list_to_model", ofl_tensor_list_to_model(list, &m)))
        return;
    size_t index = 99, len = 0;
    CHECK(ofl_model_len(m) == 2);
    CHECK(ofl_model_find(m, "w", &index));
    const size_t *shape = ofl_model_tensor_shape(m, index, &len);
    CHECK(len == 2 && shape[0] == 2 && shape[1] == 3);
    const float *values = ofl_model_tensor_values(m, index, &len);
    CHECK(len == 6 && memcmp(values, w, sizeof(float) * 6) == 0);
    CHECK(ofl_model_find(m, "b", &index));
    ofl_model_tensor_shape(m, index, &len);
    CHECK(len == 0);
    values = ofl_model_tensor_values(m, index, &len);
    CHECK(len == 1 && values[0] == b[0]);
    ofl_model_free(m);
}
#define CHECK_MODEL(list, w, b) check_model_at(__FILE__, __LINE__, (list), (w), (b))

/* ---- the host: hooks with counters ---------------------------------------- */

typedef struct host {
    ofl_director_server *server; /* written by ofl_director_server_start */
    atomic_int reviews;
    atomic_int starts;
    atomic_int failed_hooks;
    atomic_int free_calls;
    atomic_int server_unset; /* hooks that ran before the server was set */
    pthread_mutex_t lock;
    /* what the start hook saw for "mnist" */
    char owner[64];
    char cols[4][64];
    size_t ncols;
    uint64_t archive_size;
    bool archive_ok;
    size_t init_len;
    bool init_ok;
    /* what the experiment_failed hook saw */
    char failed_experiment[128];
    char failed_collaborator[64];
    uint32_t failed_code;
    char failed_description[128];
} host;

static void host_init(host *h) {
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
}

static void host_free_user_data(void *ud) {
    host *h = ud;
    atomic_fetch_add(&h->free_calls, 1);
}

static bool host_review(void *ud, const ofl_experiment *e) {
    host *h = ud;
    if (h->server == NULL) atomic_fetch_add(&h->server_unset, 1);
    atomic_fetch_add(&h->reviews, 1);
    return strncmp(ofl_experiment_name(e), "reject", 6) != 0;
}

/* The initial model "mnist" was submitted with. */
static bool initial_model_ok(const ofl_tensor_list *m) {
    if (m == NULL || ofl_tensor_list_len(m) != 2) return false;
    const ofl_tensor *w = ofl_tensor_list_get(m, 0);
    const ofl_tensor *b = ofl_tensor_list_get(m, 1);
    size_t len = 0;
    const int32_t *shape = ofl_tensor_metadata_int_list(w, 0, &len);
    return strcmp(ofl_tensor_name(w), "w") == 0 && ofl_tensor_data_len(w) == sizeof INIT_W &&
           memcmp(ofl_tensor_data(w), INIT_W, sizeof INIT_W) == 0 && len == 2 && shape[0] == 2 &&
           shape[1] == 3 && strcmp(ofl_tensor_name(b), "b") == 0 &&
           ofl_tensor_data_len(b) == sizeof INIT_B &&
           memcmp(ofl_tensor_data(b), INIT_B, sizeof INIT_B) == 0;
}

static ofl_error *host_start(void *ud, const ofl_experiment *e) {
    host *h = ud;
    if (h->server == NULL) atomic_fetch_add(&h->server_unset, 1);
    const char *name = ofl_experiment_name(e);
    if (strncmp(name, "nostart", 7) == 0) {
        atomic_fetch_add(&h->starts, 1);
        return ofl_error_new(OFL_CODE_UNAVAILABLE, "no aggregator for you");
    }
    if (strcmp(name, "mnist") == 0) {
        pthread_mutex_lock(&h->lock);
        snprintf(h->owner, sizeof h->owner, "%s", ofl_experiment_owner(e));
        h->ncols = ofl_experiment_collaborators_len(e);
        for (size_t i = 0; i < h->ncols && i < 4; i++)
            snprintf(h->cols[i], sizeof h->cols[i], "%s", ofl_experiment_collaborator(e, i));
        CHECK(ofl_experiment_collaborator(e, h->ncols) == NULL);
        h->archive_size = ofl_experiment_archive_size(e);
        struct stat st;
        const char *path = ofl_experiment_archive_path(e);
        h->archive_ok = stat(path, &st) == 0 && (uint64_t)st.st_size == h->archive_size &&
                        strstr(path, "mnist") != NULL;
        const ofl_tensor_list *init = ofl_experiment_initial_model(e);
        h->init_len = ofl_tensor_list_len(init);
        h->init_ok = initial_model_ok(init);
        pthread_mutex_unlock(&h->lock);
        /* A hook may report progress at once: the server is set. */
        EXPECT_OK(ofl_director_server_set_round(h->server, name, 0, 2));
    }
    atomic_fetch_add(&h->starts, 1);
    return NULL;
}

static void host_failed(void *ud, const ofl_experiment *e, const char *collaborator,
                        uint32_t error_code, const char *description) {
    host *h = ud;
    pthread_mutex_lock(&h->lock);
    snprintf(h->failed_experiment, sizeof h->failed_experiment, "%s", ofl_experiment_name(e));
    snprintf(h->failed_collaborator, sizeof h->failed_collaborator, "%s", collaborator);
    h->failed_code = error_code;
    snprintf(h->failed_description, sizeof h->failed_description, "%s", description);
    pthread_mutex_unlock(&h->lock);
    atomic_fetch_add(&h->failed_hooks, 1);
}

/* Hooks calling the host's functions with `h` (freed with
 * host_free_user_data). Caller frees. */
static ofl_director_hooks *host_hooks(host *h) {
    ofl_director_hooks *hooks = NULL;
    REQUIRE_OK(ofl_director_hooks_new(&hooks));
    REQUIRE_OK(ofl_director_hooks_set_user_data(hooks, h, host_free_user_data));
    REQUIRE_OK(ofl_director_hooks_set_review_experiment(hooks, host_review));
    REQUIRE_OK(ofl_director_hooks_set_start_experiment(hooks, host_start));
    REQUIRE_OK(ofl_director_hooks_set_experiment_failed(hooks, host_failed));
    return hooks;
}

static ofl_error *start_nothing(void *ud, const ofl_experiment *e) {
    (void)ud, (void)e;
    return NULL;
}

/* Hooks with the defaults and a start hook that starts nothing. Caller frees. */
static ofl_director_hooks *default_hooks(void) {
    ofl_director_hooks *hooks = NULL;
    REQUIRE_OK(ofl_director_hooks_new(&hooks));
    REQUIRE_OK(ofl_director_hooks_set_start_experiment(hooks, start_nothing));
    return hooks;
}

/* Starts a director with default_hooks(). */
static ofl_director_server *start_default(const ofl_director_server_options *o) {
    ofl_director_hooks *hooks = default_hooks();
    ofl_director_server *s = NULL;
    REQUIRE_OK(ofl_director_server_start(o, hooks, &s));
    ofl_director_hooks_free(hooks); /* the server keeps its share */
    return s;
}

/* Error log lines, concatenated (the library's log callback). */
typedef struct log_capture {
    pthread_mutex_t lock;
    char text[4096];
} log_capture;

static void capture_log(void *ud, ofl_log_level level, const char *target, const char *message) {
    (void)level, (void)target;
    log_capture *cap = ud;
    pthread_mutex_lock(&cap->lock);
    size_t used = strlen(cap->text);
    snprintf(cap->text + used, sizeof cap->text - used, "%s\n", message);
    pthread_mutex_unlock(&cap->lock);
}

/* Polls the frontend's view of `name` until it is `want` (10 s at most). */
static bool wait_status_at(const char *file, int line, ofl_frontend_client *f, const char *name,
                           ofl_experiment_status want) {
    ofl_experiment_status st = (ofl_experiment_status)-1;
    double deadline = now_seconds() + 10;
    while (now_seconds() < deadline) {
        ofl_error *err = ofl_frontend_client_get_experiment_status(f, name, NULL, &st);
        if (err == NULL && st == want) return true;
        ofl_error_free(err);
        sleep_ms(20);
    }
    test_fail_at(file, line, "experiment %s: status %s, expected %s", name,
                 ofl_experiment_status_name((int32_t)st), ofl_experiment_status_name((int32_t)want));
    return false;
}
#define WAIT_STATUS(f, name, want) wait_status_at(__FILE__, __LINE__, (f), (name), (want))

/* ---- metric streams -------------------------------------------------------- */

#define MAX_METRICS 16
typedef struct metric_log {
    int n;
    int stop_after; /* return false after this many (0: never) */
    char names[MAX_METRICS][32];
    char origins[MAX_METRICS][32];
    char tasks[MAX_METRICS][32];
    float values[MAX_METRICS];
    uint32_t rounds[MAX_METRICS];
    pthread_t thread; /* the thread the callback must run on */
    bool wrong_thread;
} metric_log;

static bool on_metric(void *ud, const ofl_director_metric *m) {
    metric_log *log = ud;
    if (!pthread_equal(pthread_self(), log->thread)) log->wrong_thread = true;
    if (log->n < MAX_METRICS) {
        snprintf(log->names[log->n], 32, "%s", m->metric_name);
        snprintf(log->origins[log->n], 32, "%s", m->origin);
        snprintf(log->tasks[log->n], 32, "%s", m->task_name);
        log->values[log->n] = m->value;
        log->rounds[log->n] = m->round;
    }
    log->n++;
    return log->stop_after == 0 || log->n < log->stop_after;
}

typedef struct stream_run {
    ofl_frontend_client *frontend;
    const char *experiment;
    metric_log log;
    ofl_error *result;
} stream_run;

static void *stream_main(void *arg) {
    stream_run *r = arg;
    r->log.thread = pthread_self();
    r->result = ofl_frontend_client_stream_metrics(r->frontend, r->experiment, on_metric, &r->log, NULL);
    return NULL;
}

static void push_metric(host *h, const char *experiment, const char *origin, const char *name,
                        float value, uint32_t round) {
    ofl_director_metric m = {
        .origin = origin, .task_name = "aggregated_model_validation", .metric_name = name,
        .value = value, .round = round,
    };
    EXPECT_OK(ofl_director_server_push_metric(h->server, experiment, &m));
}

/* ---- envoy threads ---------------------------------------------------------- */

typedef struct envoy_run {
    const char *name;
    const char *crt;
    const char *key;
    uint16_t port;
    bool try_wrong_shape;
    char experiment[128];
    size_t experiment_len;
    char dest[512];
    uint64_t size;
    uint64_t period_ms;
    bool refused_wrong_shape;
} envoy_run;

static void *envoy_main(void *arg) {
    envoy_run *r = arg;
    ofl_envoy_client *c = make_envoy(r->port, r->name, r->crt, r->key);
    bool accepted = true;
    if (r->try_wrong_shape) {
        ofl_shard_info wrong = shard_info(WRONG_SHAPE);
        if (EXPECT_OK(ofl_envoy_client_update_shard_info(c, &wrong, NULL, &accepted)))
            r->refused_wrong_shape = !accepted;
    }
    ofl_shard_info good = shard_info(SAMPLE_SHAPE);
    accepted = false;
    EXPECT_OK(ofl_envoy_client_update_shard_info(c, &good, NULL, &accepted));
    CHECK_MSG(accepted, "%s: shard refused", r->name);
    ofl_cuda_device gpu = {
        .index = 0, .memory_total = 16ull << 30, .memory_utilized = 1ull << 30,
        .device_utilization = "35%", .cuda_driver_version = "535.54", .cuda_version = "12.2",
        .name = "gpu0",
    };
    EXPECT_OK(ofl_envoy_client_send_health_check(c, false, &gpu, 1, NULL, &r->period_ms));

    ofl_string *name = NULL;
    if (EXPECT_OK(ofl_envoy_client_wait_experiment(c, NULL, &name))) {
        snprintf(r->experiment, sizeof r->experiment, "%s", ofl_string_get(name));
        r->experiment_len = ofl_string_len(name);
        ofl_string_free(name);
        EXPECT_OK(ofl_envoy_client_get_experiment_data(c, r->experiment, r->dest, NULL, &r->size));
        /* The device pointer is optional. */
        EXPECT_OK(ofl_envoy_client_send_health_check(c, true, NULL, 0, NULL, NULL));
    }
    ofl_envoy_client_free(c);
    return NULL;
}

/* The index of envoy `name` in `envoys`, or -1. */
static long envoy_index(const ofl_envoys *envoys, const char *name) {
    for (size_t i = 0; i < ofl_envoys_len(envoys); i++)
        if (strcmp(ofl_envoys_name(envoys, i), name) == 0) return (long)i;
    return -1;
}

/* Waits until both envoys registered and reported their device. */
static ofl_envoys *wait_envoys(ofl_frontend_client *f) {
    double deadline = now_seconds() + 10;
    for (;;) {
        ofl_envoys *e = NULL;
        REQUIRE_OK(ofl_frontend_client_get_envoys(f, NULL, &e));
        long a = envoy_index(e, "col1"), b = envoy_index(e, "col2");
        if (a >= 0 && b >= 0 && ofl_envoys_cuda_devices_len(e, (size_t)a) == 1 &&
            ofl_envoys_cuda_devices_len(e, (size_t)b) == 1)
            return e;
        ofl_envoys_free(e);
        REQUIRE(now_seconds() < deadline);
        sleep_ms(20);
    }
}

typedef struct wait_run {
    ofl_envoy_client *client;
    ofl_error *result;
    ofl_string *name;
} wait_run;

static void *wait_main(void *arg) {
    wait_run *r = arg;
    r->result = ofl_envoy_client_wait_experiment(r->client, NULL, &r->name);
    return NULL;
}

typedef struct serve_run {
    ofl_director_server *server;
    ofl_error *result;
    atomic_int done;
} serve_run;

static void *serve_main(void *arg) {
    serve_run *r = arg;
    r->result = ofl_director_server_serve(r->server);
    atomic_store(&r->done, 1);
    return NULL;
}

/* ---- NULL arguments ---------------------------------------------------------- */

#define INVALID OFL_CODE_INVALID_ARGUMENT

static bool never_called(void *ud, const ofl_director_metric *m) {
    (void)ud, (void)m;
    test_fail_at(__FILE__, __LINE__, "metric callback called");
    return false;
}

static void test_null_arguments(void) {
    test_note("NULL arguments");
    const char *dims[2] = {"28", NULL};
    const char *const one[1] = {"x"};

    /* Director options. */
    ofl_director_server_options *o = NULL;
    EXPECT_CODE(ofl_director_server_options_new(NULL), INVALID, "out");
    REQUIRE_OK(ofl_director_server_options_new(&o));
    EXPECT_CODE(ofl_director_server_options_set_listen(NULL, "h", 1), INVALID, "options");
    EXPECT_CODE(ofl_director_server_options_set_listen(o, NULL, 1), INVALID, "host");
    EXPECT_CODE(ofl_director_server_options_set_listen(o, "", 1), INVALID, "host");
    EXPECT_CODE(ofl_director_server_options_set_listen(o, BAD_UTF8, 1), INVALID, "UTF-8");
    EXPECT_CODE(ofl_director_server_options_set_tls(NULL, NULL), INVALID, "options");
    EXPECT_CODE(ofl_director_server_options_set_limits(NULL, NULL), INVALID, "options");
    EXPECT_CODE(ofl_director_server_options_set_limits(o, NULL), INVALID, "limits");
    ofl_server_limits *limits = NULL;
    REQUIRE_OK(ofl_server_limits_new(&limits));
    REQUIRE_OK(ofl_server_limits_set_max_connections(limits, 64));
    EXPECT_OK(ofl_director_server_options_set_limits(o, limits));
    ofl_server_limits_free(limits);
    EXPECT_CODE(ofl_director_server_options_set_sample_shape(NULL, SAMPLE_SHAPE, 2), INVALID,
                "options");
    EXPECT_CODE(ofl_director_server_options_set_sample_shape(o, NULL, 2), INVALID, "dims");
    EXPECT_CODE(ofl_director_server_options_set_sample_shape(o, dims, 2), INVALID, "dims[1]");
    EXPECT_OK(ofl_director_server_options_set_sample_shape(o, NULL, 0));
    EXPECT_CODE(ofl_director_server_options_set_target_shape(NULL, TARGET_SHAPE, 1), INVALID,
                "options");
    EXPECT_CODE(ofl_director_server_options_set_target_shape(o, NULL, 1), INVALID, "dims");
    EXPECT_CODE(ofl_director_server_options_set_envoy_health_check_period_ms(NULL, 1), INVALID,
                "options");
    EXPECT_CODE(ofl_director_server_options_set_envoy_health_check_period_ms(o, 0), INVALID,
                "period_ms");
    EXPECT_CODE(ofl_director_server_options_set_archive_dir(NULL, "/tmp"), INVALID, "options");
    EXPECT_CODE(ofl_director_server_options_set_archive_dir(o, NULL), INVALID, "path");
    EXPECT_CODE(ofl_director_server_options_set_archive_dir(o, ""), INVALID, "path");
    EXPECT_CODE(ofl_director_server_options_set_archive_dir(o, BAD_UTF8), INVALID, "UTF-8");
    EXPECT_CODE(ofl_director_server_options_set_max_archive_size(NULL, 1), INVALID, "options");
    EXPECT_CODE(ofl_director_server_options_set_max_archive_size(o, 0), INVALID, "positive");
    EXPECT_CODE(ofl_director_server_options_set_max_message_size(NULL, 1 << 20), INVALID,
                "options");
    EXPECT_CODE(ofl_director_server_options_set_max_message_size(o, 10), INVALID, "out of range");
    EXPECT_CODE(ofl_director_server_options_set_max_queued_metrics(NULL, 1), INVALID, "options");
    EXPECT_CODE(ofl_director_server_options_set_max_queued_metrics(o, 0), INVALID, "positive");
    EXPECT_CODE(ofl_director_server_options_set_check_envoy_identity(NULL, true), INVALID,
                "options");
    ofl_director_server_options_free(NULL);
    ofl_director_server_options_free(o);

    /* Server handle and the host's reports (a server with default hooks). */
    char archives[512];
    work_path(archives, sizeof archives, "null-archives");
    o = director_options(TLS_INSECURE, archives);
    ofl_director_server *s = NULL;
    ofl_director_hooks *dh = default_hooks();
    EXPECT_CODE(ofl_director_server_start(NULL, dh, &s), INVALID, "options");
    EXPECT_CODE(ofl_director_server_start(o, dh, NULL), INVALID, "out");
    EXPECT_CODE(ofl_director_server_start(o, NULL, &s), INVALID, "hooks");
    CHECK(s == NULL);
    ofl_director_hooks_free(dh);
    s = start_default(o);
    ofl_director_server_options_free(o);
    CHECK(ofl_director_server_port(NULL) == 0);
    CHECK_STR(ofl_director_server_archive_dir(NULL), "");
    CHECK_STR(ofl_director_server_archive_dir(s), archives);
    CHECK(file_exists(archives));
    EXPECT_CODE(ofl_director_server_serve(NULL), INVALID, "server");
    EXPECT_CODE(ofl_director_server_stop(NULL), INVALID, "server");
    ofl_director_server_free(NULL);

    ofl_director_metric m = {.origin = "a", .task_name = "t", .metric_name = "m"};
    EXPECT_CODE(ofl_director_server_push_metric(NULL, "e", &m), INVALID, "server");
    EXPECT_CODE(ofl_director_server_push_metric(s, NULL, &m), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_push_metric(s, BAD_UTF8, &m), INVALID, "UTF-8");
    EXPECT_CODE(ofl_director_server_push_metric(s, "e", NULL), INVALID, "metric");
    m.origin = NULL;
    EXPECT_CODE(ofl_director_server_push_metric(s, "e", &m), INVALID, "metric.origin");
    m.origin = "a", m.task_name = NULL;
    EXPECT_CODE(ofl_director_server_push_metric(s, "e", &m), INVALID, "metric.task_name");
    m.task_name = "t", m.metric_name = NULL;
    EXPECT_CODE(ofl_director_server_push_metric(s, "e", &m), INVALID, "metric.metric_name");
    m.metric_name = "m";
    EXPECT_CODE(ofl_director_server_push_metric(s, "e", &m), OFL_CODE_NOT_FOUND, "\"e\"");
    model_views mv;
    make_model(&mv, INIT_W, INIT_B);
    EXPECT_CODE(ofl_director_server_set_best_model(NULL, "e", mv.tensors, 2), INVALID, "server");
    EXPECT_CODE(ofl_director_server_set_best_model(s, NULL, mv.tensors, 2), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_set_best_model(s, "e", NULL, 2), INVALID, "tensors");
    mv.tensors[1].name = NULL;
    EXPECT_CODE(ofl_director_server_set_best_model(s, "e", mv.tensors, 2), INVALID, "tensor.name");
    mv.tensors[1].name = "b";
    EXPECT_CODE(ofl_director_server_set_best_model(s, "e", mv.tensors, 2), OFL_CODE_NOT_FOUND,
                NULL);
    EXPECT_CODE(ofl_director_server_set_last_model(NULL, "e", mv.tensors, 2), INVALID, "server");
    EXPECT_CODE(ofl_director_server_set_last_model(s, NULL, mv.tensors, 2), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_set_last_model(s, "e", NULL, 1), INVALID, "tensors");
    EXPECT_CODE(ofl_director_server_set_last_model(s, "e", NULL, 0), OFL_CODE_NOT_FOUND, NULL);
    EXPECT_CODE(ofl_director_server_set_round(NULL, "e", 1, 2), INVALID, "server");
    EXPECT_CODE(ofl_director_server_set_round(s, NULL, 1, 2), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_set_round(s, "e", 1, 2), OFL_CODE_NOT_FOUND, NULL);
    EXPECT_CODE(ofl_director_server_set_tasks(NULL, "e", one, NULL, 1), INVALID, "server");
    EXPECT_CODE(ofl_director_server_set_tasks(s, NULL, one, NULL, 1), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_set_tasks(s, "e", NULL, NULL, 1), INVALID, "names");
    EXPECT_CODE(ofl_director_server_set_tasks(s, "e", one, dims + 1, 1), INVALID,
                "descriptions[0]");
    EXPECT_CODE(ofl_director_server_set_tasks(s, "e", one, NULL, 1), OFL_CODE_NOT_FOUND, NULL);
    EXPECT_CODE(ofl_director_server_mark_finished(NULL, "e"), INVALID, "server");
    EXPECT_CODE(ofl_director_server_mark_finished(s, NULL), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_mark_finished(s, "e"), OFL_CODE_NOT_FOUND, NULL);
    EXPECT_CODE(ofl_director_server_mark_failed(NULL, "e", NULL), INVALID, "server");
    EXPECT_CODE(ofl_director_server_mark_failed(s, NULL, NULL), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_mark_failed(s, "e", BAD_UTF8), INVALID, "description");
    EXPECT_CODE(ofl_director_server_mark_failed(s, "e", NULL), OFL_CODE_NOT_FOUND, NULL);
    ofl_experiment_status st = OFL_EXPERIMENT_STATUS_REJECTED;
    EXPECT_CODE(ofl_director_server_experiment_status(NULL, "e", &st), INVALID, "server");
    EXPECT_CODE(ofl_director_server_experiment_status(s, NULL, &st), INVALID, "experiment");
    EXPECT_CODE(ofl_director_server_experiment_status(s, "e", NULL), INVALID, "out");
    EXPECT_CODE(ofl_director_server_experiment_status(s, "e", &st), OFL_CODE_NOT_FOUND, "\"e\"");
    CHECK(st == OFL_EXPERIMENT_STATUS_REJECTED); /* not written on failure */
    ofl_director_server_free(s);

    /* Hook-side accessors. */
    CHECK_STR(ofl_experiment_name(NULL), "");
    CHECK_STR(ofl_experiment_owner(NULL), "");
    CHECK(ofl_experiment_collaborators_len(NULL) == 0);
    CHECK(ofl_experiment_collaborator(NULL, 0) == NULL);
    CHECK_STR(ofl_experiment_archive_path(NULL), "");
    CHECK(ofl_experiment_archive_size(NULL) == 0);
    CHECK(ofl_experiment_initial_model(NULL) == NULL);

    /* Strings, string lists, tensor lists, statuses. */
    CHECK_STR(ofl_string_get(NULL), "");
    CHECK(ofl_string_len(NULL) == 0);
    ofl_string_free(NULL);
    CHECK(ofl_string_list_len(NULL) == 0);
    CHECK(ofl_string_list_get(NULL, 0) == NULL);
    ofl_string_list_free(NULL);
    CHECK(ofl_tensor_list_len(NULL) == 0);
    CHECK(ofl_tensor_list_get(NULL, 0) == NULL);
    ofl_model *model = NULL;
    EXPECT_CODE(ofl_tensor_list_to_model(NULL, &model), INVALID, "list");
    EXPECT_CODE(ofl_tensor_list_to_model(NULL, NULL), INVALID, "out");
    ofl_tensor_list_free(NULL);
    CHECK_STR(ofl_experiment_status_name(OFL_EXPERIMENT_STATUS_PENDING), "pending");
    CHECK_STR(ofl_experiment_status_name(OFL_EXPERIMENT_STATUS_IN_PROGRESS), "in_progress");
    CHECK_STR(ofl_experiment_status_name(OFL_EXPERIMENT_STATUS_FINISHED), "finished");
    CHECK_STR(ofl_experiment_status_name(OFL_EXPERIMENT_STATUS_FAILED), "failed");
    CHECK_STR(ofl_experiment_status_name(OFL_EXPERIMENT_STATUS_REJECTED), "rejected");
    CHECK_STR(ofl_experiment_status_name(5), "unknown");
    CHECK_STR(ofl_experiment_status_name(-1), "unknown");

    /* Client options. */
    ofl_director_client_options *co = NULL;
    EXPECT_CODE(ofl_director_client_options_new(NULL, 1, &co), INVALID, "host");
    EXPECT_CODE(ofl_director_client_options_new("", 1, &co), INVALID, "host");
    EXPECT_CODE(ofl_director_client_options_new(BAD_UTF8, 1, &co), INVALID, "UTF-8");
    EXPECT_CODE(ofl_director_client_options_new("h", 1, NULL), INVALID, "out");
    CHECK(co == NULL);
    REQUIRE_OK(ofl_director_client_options_new("127.0.0.1", 1, &co));
    EXPECT_CODE(ofl_director_client_options_set_tls(NULL, NULL), INVALID, "options");
    EXPECT_CODE(ofl_director_client_options_set_connect(NULL, NULL), INVALID, "options");
    EXPECT_CODE(ofl_director_client_options_set_connect(co, NULL), INVALID, "connect");
    EXPECT_CODE(ofl_director_client_options_set_max_archive_size(NULL, 1), INVALID, "options");
    EXPECT_CODE(ofl_director_client_options_set_max_archive_size(co, 0), INVALID, "positive");
    EXPECT_CODE(ofl_director_client_options_set_client_id(NULL, "alice"), INVALID, "options");
    EXPECT_CODE(ofl_director_client_options_set_client_id(co, ""), INVALID, "client_id");
    EXPECT_CODE(ofl_director_client_options_set_client_id(co, "tab\there"), INVALID, "client_id");
    EXPECT_CODE(ofl_director_client_options_set_client_id(co, BAD_UTF8), INVALID, "UTF-8");
    EXPECT_OK(ofl_director_client_options_set_client_id(co, "alice"));
    EXPECT_OK(ofl_director_client_options_set_client_id(co, NULL));
    /* TLS on (the default) with nothing attached: no client. */
    ofl_envoy_client *ec = NULL;
    ofl_frontend_client *fc = NULL;
    EXPECT_CODE(ofl_envoy_client_new(co, "col1", &ec), INVALID, "ofl_director_client_options_set_tls");
    EXPECT_CODE(ofl_frontend_client_new(co, &fc), INVALID, "ofl_director_client_options_set_tls");
    CHECK(ec == NULL && fc == NULL);
    REQUIRE_OK(ofl_director_client_options_set_tls(co, NULL));

    /* Envoy client (never connects: every check comes first). */
    EXPECT_CODE(ofl_envoy_client_new(NULL, "col1", &ec), INVALID, "options");
    EXPECT_CODE(ofl_envoy_client_new(co, NULL, &ec), INVALID, "shard_name");
    EXPECT_CODE(ofl_envoy_client_new(co, "", &ec), INVALID, "shard_name");
    EXPECT_CODE(ofl_envoy_client_new(co, "col1", NULL), INVALID, "out");
    CHECK(ec == NULL);
    REQUIRE_OK(ofl_envoy_client_new(co, "col1", &ec));
    EXPECT_CODE(ofl_envoy_client_close(NULL), INVALID, "client");
    ofl_envoy_client_free(NULL);
    ofl_shard_info si = shard_info(SAMPLE_SHAPE);
    bool accepted = false;
    EXPECT_CODE(ofl_envoy_client_update_shard_info(NULL, &si, NULL, &accepted), INVALID, "client");
    EXPECT_CODE(ofl_envoy_client_update_shard_info(ec, NULL, NULL, &accepted), INVALID, "shard_info");
    EXPECT_CODE(ofl_envoy_client_update_shard_info(ec, &si, NULL, NULL), INVALID, "accepted");
    si.sample_shape = NULL;
    EXPECT_CODE(ofl_envoy_client_update_shard_info(ec, &si, NULL, &accepted), INVALID, "sample_shape");
    si.sample_shape = SAMPLE_SHAPE, si.target_shape = NULL;
    EXPECT_CODE(ofl_envoy_client_update_shard_info(ec, &si, NULL, &accepted), INVALID, "target_shape");
    si.target_shape = TARGET_SHAPE, si.cuda_devices_len = 1;
    EXPECT_CODE(ofl_envoy_client_update_shard_info(ec, &si, NULL, &accepted), INVALID, "cuda_devices");
    si.cuda_devices_len = 0, si.shard_description = BAD_UTF8;
    EXPECT_CODE(ofl_envoy_client_update_shard_info(ec, &si, NULL, &accepted), INVALID,
                "shard_description");
    ofl_string *str = NULL;
    EXPECT_CODE(ofl_envoy_client_wait_experiment(NULL, NULL, &str), INVALID, "client");
    EXPECT_CODE(ofl_envoy_client_wait_experiment(ec, NULL, NULL), INVALID, "out");
    EXPECT_CODE(ofl_envoy_client_get_experiment_data(NULL, "e", "/tmp/x", NULL, NULL), INVALID,
                "client");
    EXPECT_CODE(ofl_envoy_client_get_experiment_data(ec, NULL, "/tmp/x", NULL, NULL), INVALID,
                "experiment_name");
    EXPECT_CODE(ofl_envoy_client_get_experiment_data(ec, "e", NULL, NULL, NULL), INVALID, "dest_path");
    EXPECT_CODE(ofl_envoy_client_get_experiment_data(ec, "e", "", NULL, NULL), INVALID, "dest_path");
    EXPECT_CODE(ofl_envoy_client_send_health_check(NULL, false, NULL, 0, NULL, NULL), INVALID, "client");
    EXPECT_CODE(ofl_envoy_client_send_health_check(ec, false, NULL, 2, NULL, NULL), INVALID,
                "cuda_devices");
    ofl_cuda_device bad_dev = {.name = BAD_UTF8};
    EXPECT_CODE(ofl_envoy_client_send_health_check(ec, false, &bad_dev, 1, NULL, NULL), INVALID,
                "devices[0].name");
    EXPECT_CODE(ofl_envoy_client_set_experiment_failed(NULL, "e", 1, NULL, NULL), INVALID, "client");
    EXPECT_CODE(ofl_envoy_client_set_experiment_failed(ec, NULL, 1, NULL, NULL), INVALID,
                "experiment_name");
    EXPECT_CODE(ofl_envoy_client_set_experiment_failed(ec, "e", 1, BAD_UTF8, NULL), INVALID,
                "description");
    EXPECT_OK(ofl_envoy_client_close(ec));
    /* A closed client refuses calls. */
    EXPECT_CODE(ofl_envoy_client_wait_experiment(ec, NULL, &str), OFL_CODE_CANCELLED, "closed");
    ofl_envoy_client_free(ec);

    /* Frontend client. */
    fc = NULL;
    EXPECT_CODE(ofl_frontend_client_new(NULL, &fc), INVALID, "options");
    EXPECT_CODE(ofl_frontend_client_new(co, NULL), INVALID, "out");
    REQUIRE_OK(ofl_frontend_client_new(co, &fc));
    ofl_director_client_options_free(co);
    ofl_director_client_options_free(NULL);
    EXPECT_CODE(ofl_frontend_client_close(NULL), INVALID, "client");
    ofl_frontend_client_free(NULL);
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(NULL, "e", BOTH_COLS, 2, "/tmp/x", NULL, 0, NULL),
                INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(fc, NULL, BOTH_COLS, 2, "/tmp/x", NULL, 0, NULL),
                INVALID, "name");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(fc, "e", NULL, 2, "/tmp/x", NULL, 0, NULL),
                INVALID, "collaborators");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(fc, "e", dims, 2, "/tmp/x", NULL, 0, NULL),
                INVALID, "collaborators[1]");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(fc, "e", BOTH_COLS, 2, NULL, NULL, 0, NULL),
                INVALID, "archive_path");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(fc, "e", BOTH_COLS, 2, "/tmp/x", NULL, 2, NULL),
                INVALID, "initial_model");
    EXPECT_CODE(ofl_frontend_client_get_experiment_status(NULL, "e", NULL, &st), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_get_experiment_status(fc, NULL, NULL, &st), INVALID, "name");
    EXPECT_CODE(ofl_frontend_client_get_experiment_status(fc, "e", NULL, NULL), INVALID, "out");
    ofl_string_list *sl1 = NULL, *sl2 = NULL;
    EXPECT_CODE(ofl_frontend_client_get_dataset_info(NULL, NULL, &sl1, &sl2), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_get_dataset_info(fc, NULL, NULL, &sl2), INVALID, "sample_shape");
    EXPECT_CODE(ofl_frontend_client_get_dataset_info(fc, NULL, &sl1, NULL), INVALID, "target_shape");
    ofl_tensor_list *tl = NULL;
    EXPECT_CODE(ofl_frontend_client_get_best_model(NULL, "e", NULL, &tl), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_get_best_model(fc, NULL, NULL, &tl), INVALID, "name");
    EXPECT_CODE(ofl_frontend_client_get_best_model(fc, "e", NULL, NULL), INVALID, "out");
    EXPECT_CODE(ofl_frontend_client_get_last_model(NULL, "e", NULL, &tl), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_get_last_model(fc, NULL, NULL, &tl), INVALID, "name");
    EXPECT_CODE(ofl_frontend_client_get_last_model(fc, "e", NULL, NULL), INVALID, "out");
    EXPECT_CODE(ofl_frontend_client_stream_metrics(NULL, "e", never_called, NULL, NULL), INVALID,
                "client");
    EXPECT_CODE(ofl_frontend_client_stream_metrics(fc, NULL, never_called, NULL, NULL), INVALID, "name");
    EXPECT_CODE(ofl_frontend_client_stream_metrics(fc, "e", NULL, NULL, NULL), INVALID, "callback");
    EXPECT_CODE(ofl_frontend_client_remove_experiment(NULL, "e", NULL), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_remove_experiment(fc, NULL, NULL), INVALID, "name");
    ofl_envoys *envoys = NULL;
    EXPECT_CODE(ofl_frontend_client_get_envoys(NULL, NULL, &envoys), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_get_envoys(fc, NULL, NULL), INVALID, "out");
    ofl_experiment_list *list = NULL;
    EXPECT_CODE(ofl_frontend_client_get_experiments_list(NULL, NULL, &list), INVALID, "client");
    EXPECT_CODE(ofl_frontend_client_get_experiments_list(fc, NULL, NULL), INVALID, "out");
    ofl_experiment_description *desc = NULL;
    EXPECT_CODE(ofl_frontend_client_get_experiment_description(NULL, "e", NULL, &desc), INVALID,
                "client");
    EXPECT_CODE(ofl_frontend_client_get_experiment_description(fc, NULL, NULL, &desc), INVALID, "name");
    EXPECT_CODE(ofl_frontend_client_get_experiment_description(fc, "e", NULL, NULL), INVALID, "out");
    CHECK(sl1 == NULL && sl2 == NULL && tl == NULL && envoys == NULL && list == NULL &&
          desc == NULL && str == NULL);
    ofl_frontend_client_free(fc);

    /* Accessors of returned objects. */
    ofl_cuda_device dev;
    CHECK(ofl_envoys_len(NULL) == 0);
    CHECK(ofl_envoys_name(NULL, 0) == NULL);
    CHECK(ofl_envoys_shard_description(NULL, 0) == NULL);
    CHECK(ofl_envoys_n_samples(NULL, 0) == 0);
    CHECK(ofl_envoys_sample_shape_len(NULL, 0) == 0);
    CHECK(ofl_envoys_sample_shape(NULL, 0, 0) == NULL);
    CHECK(ofl_envoys_target_shape_len(NULL, 0) == 0);
    CHECK(ofl_envoys_target_shape(NULL, 0, 0) == NULL);
    CHECK(!ofl_envoys_is_online(NULL, 0));
    CHECK(!ofl_envoys_is_experiment_running(NULL, 0));
    CHECK(ofl_envoys_last_updated_ms(NULL, 0) == 0);
    CHECK(ofl_envoys_valid_duration_ms(NULL, 0) == 0);
    CHECK(ofl_envoys_experiment_name(NULL, 0) == NULL);
    CHECK(ofl_envoys_cuda_devices_len(NULL, 0) == 0);
    CHECK(!ofl_envoys_cuda_device(NULL, 0, 0, &dev));
    ofl_envoys_free(NULL);
    CHECK(ofl_experiment_list_len(NULL) == 0);
    CHECK(ofl_experiment_list_name(NULL, 0) == NULL);
    CHECK(ofl_experiment_list_status(NULL, 0) == NULL);
    CHECK(ofl_experiment_list_collaborators_amount(NULL, 0) == 0);
    CHECK(ofl_experiment_list_tasks_amount(NULL, 0) == 0);
    CHECK(ofl_experiment_list_progress(NULL, 0) == 0.0f);
    ofl_experiment_list_free(NULL);
    CHECK_STR(ofl_experiment_description_name(NULL), "");
    CHECK_STR(ofl_experiment_description_status(NULL), "");
    CHECK(ofl_experiment_description_progress(NULL) == 0.0f);
    CHECK(ofl_experiment_description_total_rounds(NULL) == 0);
    CHECK(ofl_experiment_description_current_round(NULL) == 0);
    CHECK(ofl_experiment_description_collaborators_len(NULL) == 0);
    CHECK(ofl_experiment_description_collaborator_name(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_collaborator_status(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_collaborator_progress(NULL, 0) == 0.0f);
    CHECK(ofl_experiment_description_collaborator_round(NULL, 0) == 0);
    CHECK(ofl_experiment_description_collaborator_current_task(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_collaborator_next_task(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_tasks_len(NULL) == 0);
    CHECK(ofl_experiment_description_task_name(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_task_description(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_models_len(NULL) == 0);
    CHECK(ofl_experiment_description_model_name(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_model_status(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_logs_len(NULL) == 0);
    CHECK(ofl_experiment_description_log_name(NULL, 0) == NULL);
    CHECK(ofl_experiment_description_log_status(NULL, 0) == NULL);
    ofl_experiment_description_free(NULL);
}

/* ---- failed starts ---------------------------------------------------------- */

static void expect_start_fails_at(const char *file, int line, const char *what,
                                  const ofl_director_server_options *options, bool null_out,
                                  ofl_code code, const char *needle) {
    host h;
    host_init(&h);
    ofl_director_hooks *hooks = host_hooks(&h);
    ofl_director_server *server = NULL;
    ofl_error *err = ofl_director_server_start(options, hooks, null_out ? NULL : &server);
    /* The failed server dropped its share: the hooks object holds the last. */
    int freed = atomic_load(&h.free_calls);
    if (expect_code_at(file, line, what, err, code, needle) && server != NULL)
        test_fail_at(file, line, "%s: *out written on failure", what);
    if (freed != 0)
        test_fail_at(file, line, "%s: free_user_data ran %d times while the hooks object lives",
                     what, freed);
    ofl_director_hooks_free(hooks);
    if (atomic_load(&h.free_calls) != 1)
        test_fail_at(file, line, "%s: free_user_data ran %d times after ofl_director_hooks_free",
                     what, atomic_load(&h.free_calls));
    sleep_ms(50);
    if (atomic_load(&h.free_calls) != 1)
        test_fail_at(file, line, "%s: free_user_data ran %d times", what,
                     atomic_load(&h.free_calls));
    pthread_mutex_destroy(&h.lock);
}
#define EXPECT_START_FAILS(options, null_out, code, needle) \
    expect_start_fails_at(__FILE__, __LINE__, #options, (options), (null_out), (code), (needle))

static void test_failed_starts(void) {
    test_note("failed starts release user_data once");
    char archives[512];
    work_path(archives, sizeof archives, "start-archives");
    EXPECT_START_FAILS(NULL, false, INVALID, "options");
    ofl_director_server_options *o = director_options(TLS_MUTUAL, archives);
    EXPECT_START_FAILS(o, true, INVALID, "out");
    ofl_director_server_options_free(o);

    /* TLS (the default) without certificates. */
    ofl_director_server_options *bare = NULL;
    REQUIRE_OK(ofl_director_server_options_new(&bare));
    REQUIRE_OK(ofl_director_server_options_set_listen(bare, "127.0.0.1", 0));
    REQUIRE_OK(ofl_director_server_options_set_archive_dir(bare, archives));
    EXPECT_START_FAILS(bare, false, INVALID, "ofl_director_server_options_set_tls");
    /* A certificate file that does not exist. */
    ofl_tls_config *missing = NULL;
    REQUIRE_OK(ofl_tls_config_new(&missing));
    REQUIRE_OK(ofl_tls_config_set_root_certificate_file(missing, "/nonexistent/ca.crt"));
    REQUIRE_OK(ofl_tls_config_set_identity_files(missing, g_certs.server_crt, g_certs.server_key));
    REQUIRE_OK(ofl_director_server_options_set_tls(bare, missing));
    ofl_tls_config_free(missing); /* attached: copied */
    EXPECT_START_FAILS(bare, false, OFL_CODE_IO, "/nonexistent/ca.crt");

    /* The port is taken. */
    ofl_director_server_options *first = director_options(TLS_INSECURE, archives);
    ofl_director_server *running = start_default(first);
    REQUIRE_OK(ofl_director_server_options_set_tls(bare, NULL));
    REQUIRE_OK(ofl_director_server_options_set_listen(bare, "127.0.0.1",
                                                      ofl_director_server_port(running)));
    EXPECT_START_FAILS(bare, false, OFL_CODE_IO, NULL);
    ofl_director_server_free(running);
    ofl_director_server_options_free(first);
    ofl_director_server_options_free(bare);
}

/* ---- the life cycle over mTLS ----------------------------------------------- */

static void check_envoys(const ofl_envoys *e, const char *experiment) {
    CHECK(ofl_envoys_len(e) == 2);
    for (size_t k = 0; k < 2; k++) {
        long i = envoy_index(e, BOTH_COLS[k]);
        CHECK_MSG(i >= 0, "envoy %s missing", BOTH_COLS[k]);
        if (i < 0) continue;
        size_t x = (size_t)i;
        CHECK_STR(ofl_envoys_shard_description(e, x), "mnist shard");
        CHECK(ofl_envoys_n_samples(e, x) == N_SAMPLES);
        CHECK(ofl_envoys_sample_shape_len(e, x) == 2);
        CHECK_STR(ofl_envoys_sample_shape(e, x, 0), "28");
        CHECK_STR(ofl_envoys_sample_shape(e, x, 1), "28");
        CHECK(ofl_envoys_sample_shape(e, x, 2) == NULL);
        CHECK(ofl_envoys_target_shape_len(e, x) == 1);
        CHECK_STR(ofl_envoys_target_shape(e, x, 0), "1");
        CHECK(ofl_envoys_is_online(e, x));
        CHECK(ofl_envoys_valid_duration_ms(e, x) == 2 * HEALTH_PERIOD_MS);
        int64_t now_ms = (int64_t)time(NULL) * 1000;
        int64_t updated = ofl_envoys_last_updated_ms(e, x);
        CHECK_MSG(updated > now_ms - 60000 && updated < now_ms + 60000, "last_updated %lld",
                  (long long)updated);
        CHECK_STR(ofl_envoys_experiment_name(e, x), experiment);
        ofl_cuda_device d;
        memset(&d, 0, sizeof d);
        CHECK(ofl_envoys_cuda_device(e, x, 0, &d));
        CHECK(d.index == 0 && d.memory_total == 16ull << 30 && d.memory_utilized == 1ull << 30);
        CHECK_STR(d.name, "gpu0");
        CHECK_STR(d.device_utilization, "35%");
        CHECK_STR(d.cuda_driver_version, "535.54");
        CHECK_STR(d.cuda_version, "12.2");
        CHECK(!ofl_envoys_cuda_device(e, x, 1, &d));
        CHECK(!ofl_envoys_cuda_device(e, x, 0, NULL));
    }
    CHECK(ofl_envoys_name(e, 2) == NULL);
}

static void check_description_running(ofl_frontend_client *f) {
    ofl_experiment_description *d = NULL;
    if (!EXPECT_OK(ofl_frontend_client_get_experiment_description(f, "mnist", NULL, &d))) return;
    CHECK_STR(ofl_experiment_description_name(d), "mnist");
    CHECK_STR(ofl_experiment_description_status(d), "in_progress");
    CHECK(ofl_experiment_description_current_round(d) == 1);
    CHECK(ofl_experiment_description_total_rounds(d) == 2);
    CHECK(ofl_experiment_description_progress(d) == 0.5f);
    CHECK(ofl_experiment_description_collaborators_len(d) == 2);
    for (size_t i = 0; i < 2; i++) {
        CHECK_STR(ofl_experiment_description_collaborator_name(d, i), BOTH_COLS[i]);
        /* Both downloaded the archive. */
        CHECK_STR(ofl_experiment_description_collaborator_status(d, i), "running");
        CHECK(ofl_experiment_description_collaborator_round(d, i) == 1);
        CHECK(ofl_experiment_description_collaborator_progress(d, i) == 0.5f);
        CHECK_STR(ofl_experiment_description_collaborator_current_task(d, i), "");
        CHECK_STR(ofl_experiment_description_collaborator_next_task(d, i), "");
    }
    CHECK(ofl_experiment_description_collaborator_name(d, 2) == NULL);
    CHECK(ofl_experiment_description_tasks_len(d) == 2);
    CHECK_STR(ofl_experiment_description_task_name(d, 0), "train");
    CHECK_STR(ofl_experiment_description_task_description(d, 0), "train the model");
    CHECK_STR(ofl_experiment_description_task_name(d, 1), "validate");
    CHECK_STR(ofl_experiment_description_task_description(d, 1), "validate it");
    CHECK(ofl_experiment_description_task_name(d, 2) == NULL);
    CHECK(ofl_experiment_description_models_len(d) == 3);
    CHECK_STR(ofl_experiment_description_model_name(d, 0), "best");
    CHECK_STR(ofl_experiment_description_model_status(d, 0), "pending");
    CHECK_STR(ofl_experiment_description_model_name(d, 1), "last");
    CHECK_STR(ofl_experiment_description_model_status(d, 1), "pending");
    CHECK_STR(ofl_experiment_description_model_name(d, 2), "init");
    CHECK_STR(ofl_experiment_description_model_status(d, 2), "ready");
    CHECK(ofl_experiment_description_model_name(d, 3) == NULL);
    CHECK(ofl_experiment_description_logs_len(d) == 1);
    CHECK_STR(ofl_experiment_description_log_name(d, 0), "aggregator");
    CHECK(ofl_experiment_description_log_status(d, 0) != NULL);
    CHECK(ofl_experiment_description_log_name(d, 1) == NULL);
    ofl_experiment_description_free(d);
}

static void test_life_cycle(void) {
    test_note("life cycle over mTLS");
    char archives[512], archive[512];
    work_path(archives, sizeof archives, "archives");
    work_path(archive, sizeof archive, "mnist-workspace.zip");
    write_pattern_file(archive, ARCHIVE_LEN, ARCHIVE_MUL, ARCHIVE_ADD);

    host h;
    host_init(&h);
    ofl_director_hooks *hooks = host_hooks(&h);
    ofl_director_server_options *o = director_options(TLS_MUTUAL, archives);
    REQUIRE_OK(ofl_director_server_start(o, hooks, &h.server));
    ofl_director_hooks_free(hooks); /* the server keeps its share of user_data */
    ofl_director_server_options_free(o);
    uint16_t port = ofl_director_server_port(h.server);
    REQUIRE(port != 0);

    /* Envoys register, report a GPU, and wait for an experiment. */
    envoy_run runs[2] = {
        {.name = "col1", .crt = g_certs.col1_crt, .key = g_certs.col1_key, .port = port,
         .try_wrong_shape = true},
        {.name = "col2", .crt = g_certs.col2_crt, .key = g_certs.col2_key, .port = port},
    };
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        char file[64];
        snprintf(file, sizeof file, "%s-download.zip", runs[i].name);
        work_path(runs[i].dest, sizeof runs[i].dest, file);
        REQUIRE(pthread_create(&threads[i], NULL, envoy_main, &runs[i]) == 0);
    }

    ofl_frontend_client *f = make_frontend(port, g_frontend_crt, g_frontend_key, NULL);
    ofl_envoys *envoys = wait_envoys(f);
    check_envoys(envoys, "");
    ofl_envoys_free(envoys);

    ofl_string_list *sample = NULL, *target = NULL;
    if (EXPECT_OK(ofl_frontend_client_get_dataset_info(f, NULL, &sample, &target))) {
        CHECK(ofl_string_list_len(sample) == 2);
        CHECK_STR(ofl_string_list_get(sample, 0), "28");
        CHECK_STR(ofl_string_list_get(sample, 1), "28");
        CHECK(ofl_string_list_get(sample, 2) == NULL);
        CHECK(ofl_string_list_len(target) == 1);
        CHECK_STR(ofl_string_list_get(target, 0), "1");
    }
    ofl_string_list_free(sample);
    ofl_string_list_free(target);

    /* Submit: the hooks see it; the envoys get it and download the archive. */
    model_views init;
    make_model(&init, INIT_W, INIT_B);
    REQUIRE_OK(ofl_frontend_client_set_new_experiment(f, "mnist", BOTH_COLS, 2, archive,
                                                      init.tensors, 2, NULL));
    CHECK(wait_for_count(&h.starts, 1, 10000) == 1);
    CHECK(atomic_load(&h.reviews) == 1);
    pthread_mutex_lock(&h.lock);
    CHECK_STR(h.owner, "frontend");
    CHECK(h.ncols == 2);
    CHECK_STR(h.cols[0], "col1");
    CHECK_STR(h.cols[1], "col2");
    CHECK(h.archive_size == ARCHIVE_LEN);
    CHECK(h.archive_ok);
    CHECK(h.init_len == 2);
    CHECK(h.init_ok);
    pthread_mutex_unlock(&h.lock);

    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        CHECK_STR(runs[i].experiment, "mnist");
        CHECK(runs[i].experiment_len == 5);
        CHECK(runs[i].size == ARCHIVE_LEN);
        CHECK_MSG(file_has_pattern(runs[i].dest, ARCHIVE_LEN, ARCHIVE_MUL, ARCHIVE_ADD),
                  "%s: downloaded archive differs", runs[i].name);
        CHECK(runs[i].period_ms == HEALTH_PERIOD_MS);
    }
    CHECK(runs[0].refused_wrong_shape);

    ofl_experiment_status st = OFL_EXPERIMENT_STATUS_REJECTED;
    EXPECT_OK(ofl_frontend_client_get_experiment_status(f, "mnist", NULL, &st));
    CHECK(st == OFL_EXPERIMENT_STATUS_IN_PROGRESS);
    st = OFL_EXPERIMENT_STATUS_REJECTED;
    EXPECT_OK(ofl_director_server_experiment_status(h.server, "mnist", &st));
    CHECK(st == OFL_EXPERIMENT_STATUS_IN_PROGRESS);
    envoys = wait_envoys(f);
    check_envoys(envoys, "mnist");
    for (size_t i = 0; i < ofl_envoys_len(envoys); i++)
        CHECK(ofl_envoys_is_experiment_running(envoys, i));
    ofl_envoys_free(envoys);

    /* The host reports progress. */
    const char *task_names[2] = {"train", "validate"};
    const char *task_descriptions[2] = {"train the model", "validate it"};
    EXPECT_OK(ofl_director_server_set_round(h.server, "mnist", 1, 2));
    EXPECT_OK(ofl_director_server_set_tasks(h.server, "mnist", task_names, task_descriptions, 2));
    check_description_running(f);
    ofl_experiment_list *list = NULL;
    if (EXPECT_OK(ofl_frontend_client_get_experiments_list(f, NULL, &list))) {
        CHECK(ofl_experiment_list_len(list) == 1);
        CHECK_STR(ofl_experiment_list_name(list, 0), "mnist");
        CHECK_STR(ofl_experiment_list_status(list, 0), "in_progress");
        CHECK(ofl_experiment_list_collaborators_amount(list, 0) == 2);
        CHECK(ofl_experiment_list_tasks_amount(list, 0) == 2);
        CHECK(ofl_experiment_list_progress(list, 0) == 0.5f);
        CHECK(ofl_experiment_list_name(list, 1) == NULL);
    }
    ofl_experiment_list_free(list);
    ofl_tensor_list *model = NULL;
    EXPECT_CODE(ofl_frontend_client_get_best_model(f, "mnist", NULL, &model),
                OFL_CODE_FAILED_PRECONDITION, "best");
    CHECK(model == NULL);

    /* A stream stopped by its callback after the first metric. */
    push_metric(&h, "mnist", "col1", "accuracy", 0.25f, 0);
    stream_run early = {.frontend = f, .experiment = "mnist", .log = {.stop_after = 1}};
    stream_main(&early);
    EXPECT_OK(early.result);
    CHECK(early.log.n == 1 && !early.log.wrong_thread);
    CHECK_STR(early.log.names[0], "accuracy");
    CHECK_STR(early.log.origins[0], "col1");
    CHECK_STR(early.log.tasks[0], "aggregated_model_validation");
    CHECK(early.log.values[0] == 0.25f && early.log.rounds[0] == 0);

    /* A live stream until the experiment finishes. */
    stream_run live = {.frontend = f, .experiment = "mnist"};
    pthread_t stream_thread;
    REQUIRE(pthread_create(&stream_thread, NULL, stream_main, &live) == 0);
    sleep_ms(100);
    push_metric(&h, "mnist", "aggregator", "accuracy", 0.5f, 1);
    push_metric(&h, "mnist", "col2", "loss", 1.5f, 1);
    sleep_ms(50);
    push_metric(&h, "mnist", "aggregator", "accuracy", 0.75f, 2);
    model_views best, last;
    make_model(&best, BEST_W, BEST_B);
    make_model(&last, LAST_W, LAST_B);
    EXPECT_OK(ofl_director_server_set_best_model(h.server, "mnist", best.tensors, 2));
    EXPECT_OK(ofl_director_server_set_last_model(h.server, "mnist", last.tensors, 2));
    EXPECT_OK(ofl_director_server_set_round(h.server, "mnist", 2, 2));
    EXPECT_OK(ofl_director_server_mark_finished(h.server, "mnist"));
    EXPECT_OK(ofl_director_server_mark_finished(h.server, "mnist")); /* idempotent */
    EXPECT_CODE(ofl_director_server_mark_failed(h.server, "mnist", "late"),
                OFL_CODE_FAILED_PRECONDITION, "finished");
    pthread_join(stream_thread, NULL);
    EXPECT_OK(live.result);
    CHECK_MSG(live.log.n == 3, "live stream got %d metrics", live.log.n);
    CHECK(!live.log.wrong_thread);
    if (live.log.n == 3) {
        CHECK(live.log.values[0] == 0.5f && live.log.rounds[0] == 1);
        CHECK_STR(live.log.origins[0], "aggregator");
        CHECK(live.log.values[1] == 1.5f);
        CHECK_STR(live.log.names[1], "loss");
        CHECK(live.log.values[2] == 0.75f && live.log.rounds[2] == 2);
    }

    /* The frontend reads the outcome. */
    CHECK(WAIT_STATUS(f, "mnist", OFL_EXPERIMENT_STATUS_FINISHED));
    if (EXPECT_OK(ofl_frontend_client_get_best_model(f, "mnist", NULL, &model))) CHECK_MODEL(model, BEST_W, BEST_B);
    ofl_tensor_list_free(model);
    model = NULL;
    if (EXPECT_OK(ofl_frontend_client_get_last_model(f, "mnist", NULL, &model))) CHECK_MODEL(model, LAST_W, LAST_B);
    ofl_tensor_list_free(model);
    ofl_experiment_description *d = NULL;
    if (EXPECT_OK(ofl_frontend_client_get_experiment_description(f, "mnist", NULL, &d))) {
        CHECK_STR(ofl_experiment_description_status(d), "finished");
        CHECK(ofl_experiment_description_progress(d) == 1.0f);
        CHECK_STR(ofl_experiment_description_collaborator_status(d, 0), "finished");
        CHECK_STR(ofl_experiment_description_model_status(d, 0), "ready");
        CHECK_STR(ofl_experiment_description_model_status(d, 1), "ready");
    }
    ofl_experiment_description_free(d);
    /* Nothing left to stream: the stream of a finished experiment ends at once. */
    stream_run after = {.frontend = f, .experiment = "mnist"};
    stream_main(&after);
    EXPECT_OK(after.result);
    CHECK(after.log.n == 0);

    /* Another frontend sees none of it. */
    ofl_frontend_client *f2 = make_frontend(port, g_frontend2_crt, g_frontend2_key, NULL);
    EXPECT_CODE(ofl_frontend_client_get_experiment_status(f2, "mnist", NULL, &st), OFL_CODE_NOT_FOUND,
                "mnist");
    EXPECT_CODE(ofl_frontend_client_get_experiment_description(f2, "mnist", NULL, &d),
                OFL_CODE_NOT_FOUND, "mnist");
    EXPECT_CODE(ofl_frontend_client_get_best_model(f2, "mnist", NULL, &model), OFL_CODE_NOT_FOUND,
                "mnist");
    EXPECT_CODE(ofl_frontend_client_stream_metrics(f2, "mnist", never_called, NULL, NULL),
                OFL_CODE_NOT_FOUND, "mnist");
    /* As OpenFL: removing another's experiment is a no-op that succeeds. */
    EXPECT_OK(ofl_frontend_client_remove_experiment(f2, "mnist", NULL));
    EXPECT_OK(ofl_frontend_client_get_experiment_status(f, "mnist", NULL, &st));
    CHECK(st == OFL_EXPERIMENT_STATUS_FINISHED);
    list = NULL;
    if (EXPECT_OK(ofl_frontend_client_get_experiments_list(f2, NULL, &list)))
        CHECK(ofl_experiment_list_len(list) == 0);
    ofl_experiment_list_free(list);

    /* Bad submissions. */
    char empty[512], missing[512];
    work_path(empty, sizeof empty, "empty.zip");
    write_pattern_file(empty, 0, 1, 0);
    work_path(missing, sizeof missing, "missing.zip");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(f, "mnist", BOTH_COLS, 2, archive, NULL, 0, NULL),
                OFL_CODE_ALREADY_EXISTS, "mnist");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(f, "../escape", BOTH_COLS, 2, archive, NULL,
                                                       0, NULL),
                INVALID, "path separator");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(f, "nocols", NULL, 0, archive, NULL, 0, NULL),
                INVALID, "collaborators");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(f, "empty", BOTH_COLS, 2, empty, NULL, 0, NULL),
                INVALID, "empty");
    EXPECT_CODE(ofl_frontend_client_set_new_experiment(f, "missing", BOTH_COLS, 2, missing, NULL,
                                                       0, NULL),
                OFL_CODE_IO, "missing.zip");

    /* An envoy fails an experiment; the hook hears of it. */
    ofl_envoy_client *col1 = make_envoy(port, "col1", g_certs.col1_crt, g_certs.col1_key);
    ofl_envoy_client *col2 = make_envoy(port, "col2", g_certs.col2_crt, g_certs.col2_key);
    REQUIRE_OK(ofl_frontend_client_set_new_experiment(f, "exp-fail", BOTH_COLS, 1, archive, NULL,
                                                      0, NULL));
    ofl_string *name = NULL;
    if (EXPECT_OK(ofl_envoy_client_wait_experiment(col1, NULL, &name)))
        CHECK_STR(ofl_string_get(name), "exp-fail");
    ofl_string_free(name);
    char dest[512];
    work_path(dest, sizeof dest, "col2-exp-fail.zip");
    EXPECT_CODE(ofl_envoy_client_get_experiment_data(col2, "exp-fail", dest, NULL, NULL),
                OFL_CODE_PERMISSION_DENIED, "col2");
    CHECK(!file_exists(dest));
    EXPECT_CODE(ofl_envoy_client_set_experiment_failed(col2, "exp-fail", 1, "not mine", NULL),
                OFL_CODE_PERMISSION_DENIED, "col2");
    EXPECT_CODE(ofl_frontend_client_remove_experiment(f, "exp-fail", NULL),
                OFL_CODE_FAILED_PRECONDITION, "exp-fail");
    EXPECT_OK(ofl_envoy_client_set_experiment_failed(col1, "exp-fail", 7, "out of memory", NULL));
    CHECK(wait_for_count(&h.failed_hooks, 1, 10000) == 1);
    pthread_mutex_lock(&h.lock);
    CHECK_STR(h.failed_experiment, "exp-fail");
    CHECK_STR(h.failed_collaborator, "col1");
    CHECK(h.failed_code == 7);
    CHECK_STR(h.failed_description, "out of memory");
    pthread_mutex_unlock(&h.lock);
    CHECK(WAIT_STATUS(f, "exp-fail", OFL_EXPERIMENT_STATUS_FAILED));
    EXPECT_CODE(ofl_director_server_mark_finished(h.server, "exp-fail"),
                OFL_CODE_FAILED_PRECONDITION, "failed");
    EXPECT_OK(ofl_director_server_mark_failed(h.server, "exp-fail", "again")); /* idempotent */

    /* An envoy certificate cannot act for another envoy. */
    ofl_envoy_client *impostor = make_envoy(port, "col2", g_certs.col1_crt, g_certs.col1_key);
    ofl_shard_info good = shard_info(SAMPLE_SHAPE);
    bool accepted = false;
    EXPECT_CODE(ofl_envoy_client_update_shard_info(impostor, &good, NULL, &accepted),
                OFL_CODE_PERMISSION_DENIED, "col1");
    ofl_envoy_client_free(impostor);

    /* The review rejects: the archive is deleted, nothing starts. */
    int starts = atomic_load(&h.starts);
    REQUIRE_OK(ofl_frontend_client_set_new_experiment(f, "reject-me", BOTH_COLS, 2, archive, NULL,
                                                      0, NULL));
    CHECK(WAIT_STATUS(f, "reject-me", OFL_EXPERIMENT_STATUS_REJECTED));
    char stored[1024];
    snprintf(stored, sizeof stored, "%s/reject-me.archive", archives);
    CHECK_MSG(!file_exists(stored), "%s still exists", stored);
    CHECK(atomic_load(&h.starts) == starts);
    CHECK(atomic_load(&h.reviews) == 3);

    /* The start hook fails with ofl_error_new: the frontend sees the
     * experiment failed, and the director's error log names the hook's code
     * and message. */
    log_capture cap = {.lock = PTHREAD_MUTEX_INITIALIZER};
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_ERROR, capture_log, &cap));
    REQUIRE_OK(ofl_frontend_client_set_new_experiment(f, "nostart-1", BOTH_COLS, 2, archive, NULL,
                                                      0, NULL));
    CHECK(WAIT_STATUS(f, "nostart-1", OFL_EXPERIMENT_STATUS_FAILED));
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_OFF, NULL, NULL));
    CHECK_MSG(strstr(cap.text, "nostart-1") != NULL && strstr(cap.text, "Unavailable") != NULL &&
                  strstr(cap.text, "no aggregator for you") != NULL,
              "error log: %s", cap.text);
    CHECK(atomic_load(&h.starts) == starts + 1);
    EXPECT_CODE(ofl_director_server_mark_finished(h.server, "nostart-1"),
                OFL_CODE_FAILED_PRECONDITION, NULL);
    /* The source archive was streamed, not consumed. */
    CHECK(file_has_pattern(archive, ARCHIVE_LEN, ARCHIVE_MUL, ARCHIVE_ADD));

    /* Removal. */
    snprintf(stored, sizeof stored, "%s/mnist.archive", archives);
    CHECK(file_exists(stored));
    EXPECT_OK(ofl_frontend_client_remove_experiment(f, "mnist", NULL));
    CHECK(!file_exists(stored));
    EXPECT_CODE(ofl_frontend_client_get_experiment_status(f, "mnist", NULL, &st), OFL_CODE_NOT_FOUND,
                "mnist");
    EXPECT_CODE(ofl_director_server_experiment_status(h.server, "mnist", &st), OFL_CODE_NOT_FOUND,
                "mnist");
    EXPECT_OK(ofl_frontend_client_remove_experiment(f, "reject-me", NULL));

    /* close cancels a WaitExperiment in progress (col2 has nothing coming). */
    wait_run w = {.client = col2};
    pthread_t waiter;
    REQUIRE(pthread_create(&waiter, NULL, wait_main, &w) == 0);
    sleep_ms(200);
    EXPECT_OK(ofl_envoy_client_close(col2));
    pthread_join(waiter, NULL);
    EXPECT_CODE(w.result, OFL_CODE_CANCELLED, NULL);
    CHECK(w.name == NULL);
    ofl_envoy_client_free(col2);
    ofl_envoy_client_free(col1);
    ofl_frontend_client_free(f2);
    ofl_frontend_client_free(f);

    /* serve returns after stop; free releases user_data before returning. */
    serve_run sr = {.server = h.server};
    pthread_t server_thread;
    REQUIRE(pthread_create(&server_thread, NULL, serve_main, &sr) == 0);
    sleep_ms(100);
    CHECK(atomic_load(&sr.done) == 0);
    EXPECT_OK(ofl_director_server_stop(h.server));
    EXPECT_OK(ofl_director_server_stop(h.server)); /* idempotent */
    pthread_join(server_thread, NULL);
    EXPECT_OK(sr.result);
    CHECK(atomic_load(&h.free_calls) == 0);
    ofl_director_server_free(h.server);
    CHECK_MSG(atomic_load(&h.free_calls) == 1, "free_user_data ran %d times",
              atomic_load(&h.free_calls));
    CHECK(atomic_load(&h.server_unset) == 0);
    sleep_ms(50);
    CHECK(atomic_load(&h.free_calls) == 1);
    pthread_mutex_destroy(&h.lock);
}

/* ---- without TLS, default hooks ------------------------------------------- */

static void test_insecure_defaults(void) {
    test_note("no TLS, default hooks");
    char archives[512], archive[512], dest[512];
    work_path(archives, sizeof archives, "plain-archives");
    work_path(archive, sizeof archive, "plain.zip");
    work_path(dest, sizeof dest, "plain-download.zip");
    write_pattern_file(archive, 4096, 3, 1);

    ofl_director_server_options *o = director_options(TLS_INSECURE, archives);
    ofl_director_server *s = start_default(o);
    ofl_director_server_options_free(o);
    uint16_t port = ofl_director_server_port(s);

    ofl_envoy_client *envoy = make_envoy(port, "col1", NULL, NULL);
    ofl_shard_info good = shard_info(SAMPLE_SHAPE);
    bool accepted = false;
    EXPECT_OK(ofl_envoy_client_update_shard_info(envoy, &good, NULL, &accepted));
    CHECK(accepted);
    ofl_frontend_client *alice = make_frontend(port, NULL, NULL, "alice");
    ofl_frontend_client *bob = make_frontend(port, NULL, NULL, "bob");
    REQUIRE_OK(ofl_frontend_client_set_new_experiment(alice, "plain", BOTH_COLS, 1, archive, NULL,
                                                      0, NULL));
    /* Default hooks: approved and started at once. */
    CHECK(WAIT_STATUS(alice, "plain", OFL_EXPERIMENT_STATUS_IN_PROGRESS));
    ofl_experiment_status st;
    EXPECT_CODE(ofl_frontend_client_get_experiment_status(bob, "plain", NULL, &st), OFL_CODE_NOT_FOUND,
                "plain");
    ofl_string *name = NULL;
    if (EXPECT_OK(ofl_envoy_client_wait_experiment(envoy, NULL, &name)))
        CHECK_STR(ofl_string_get(name), "plain");
    ofl_string_free(name);
    uint64_t size = 0;
    EXPECT_OK(ofl_envoy_client_get_experiment_data(envoy, "plain", dest, NULL, &size));
    CHECK(size == 4096 && file_has_pattern(dest, 4096, 3, 1));
    uint64_t period = 0;
    EXPECT_OK(ofl_envoy_client_send_health_check(envoy, true, NULL, 0, NULL, &period));
    CHECK(period == HEALTH_PERIOD_MS);
    EXPECT_OK(ofl_director_server_mark_finished(s, "plain"));
    CHECK(WAIT_STATUS(alice, "plain", OFL_EXPERIMENT_STATUS_FINISHED));
    /* No model was set. */
    ofl_tensor_list *model = NULL;
    EXPECT_CODE(ofl_frontend_client_get_last_model(alice, "plain", NULL, &model),
                OFL_CODE_FAILED_PRECONDITION, "last");

    ofl_frontend_client_free(bob);
    ofl_frontend_client_free(alice);
    ofl_envoy_client_free(envoy);
    ofl_director_server_free(s);
}

/* ---- hooks object ------------------------------------------------------------ */

static atomic_int g_freed;
static void count_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&g_freed, 1);
}

static void test_hooks_setters(void) {
    test_note("hooks setters and user_data ownership");
    EXPECT_CODE(ofl_director_hooks_new(NULL), INVALID, "out");
    /* Handed over with a NULL hooks object: released at once. */
    EXPECT_CODE(ofl_director_hooks_set_user_data(NULL, NULL, count_free), INVALID, "hooks");
    CHECK(atomic_load(&g_freed) == 1);
    EXPECT_CODE(ofl_director_hooks_set_review_experiment(NULL, host_review), INVALID, "hooks");
    EXPECT_CODE(ofl_director_hooks_set_start_experiment(NULL, start_nothing), INVALID, "hooks");
    EXPECT_CODE(ofl_director_hooks_set_experiment_failed(NULL, host_failed), INVALID, "hooks");
    ofl_director_hooks_free(NULL);

    ofl_director_hooks *hooks = NULL;
    REQUIRE_OK(ofl_director_hooks_new(&hooks));
    REQUIRE_OK(ofl_director_hooks_set_user_data(hooks, NULL, count_free));
    /* A second pair replaces the first, which is released now. */
    REQUIRE_OK(ofl_director_hooks_set_user_data(hooks, NULL, count_free));
    CHECK(atomic_load(&g_freed) == 2);
    REQUIRE_OK(ofl_director_hooks_set_review_experiment(hooks, host_review));

    char archives[512];
    work_path(archives, sizeof archives, "hooks-archives");
    ofl_director_server_options *o = director_options(TLS_INSECURE, archives);
    ofl_director_server *s = NULL;
    /* start_experiment is required; the error names its setter. */
    EXPECT_CODE(ofl_director_server_start(o, hooks, &s), INVALID,
                "ofl_director_hooks_set_start_experiment");
    CHECK(s == NULL);
    CHECK(atomic_load(&g_freed) == 2);

    /* Hooks freed first: the server releases user_data when it is freed. */
    REQUIRE_OK(ofl_director_hooks_set_start_experiment(hooks, start_nothing));
    REQUIRE_OK(ofl_director_server_start(o, hooks, &s));
    ofl_director_hooks_free(hooks);
    CHECK(atomic_load(&g_freed) == 2);
    ofl_director_server_free(s);
    CHECK_MSG(atomic_load(&g_freed) == 3, "free_user_data ran %d times", atomic_load(&g_freed) - 2);

    /* Server freed first: the hooks object releases it. */
    REQUIRE_OK(ofl_director_hooks_new(&hooks));
    REQUIRE_OK(ofl_director_hooks_set_user_data(hooks, NULL, count_free));
    REQUIRE_OK(ofl_director_hooks_set_start_experiment(hooks, start_nothing));
    REQUIRE_OK(ofl_director_server_start(o, hooks, &s));
    ofl_director_server_free(s);
    CHECK(atomic_load(&g_freed) == 3);
    ofl_director_hooks_free(hooks);
    CHECK(atomic_load(&g_freed) == 4);
    sleep_ms(50);
    CHECK(atomic_load(&g_freed) == 4);
    ofl_director_server_options_free(o);
}

/* ---- one-way TLS and connection settings ------------------------------------ */

static ofl_director_client_options *one_way_client(uint16_t port, const char *server_name) {
    ofl_director_client_options *o = NULL;
    REQUIRE_OK(ofl_director_client_options_new("127.0.0.1", port, &o));
    ofl_tls_config *tls = tls_config(NULL, NULL, true); /* root only, no identity */
    REQUIRE_OK(ofl_director_client_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
    ofl_connect_options *c = connect_options(server_name);
    REQUIRE_OK(ofl_director_client_options_set_connect(o, c));
    ofl_connect_options_free(c);
    REQUIRE_OK(ofl_director_client_options_set_client_id(o, "carol"));
    return o;
}

static void test_one_way_tls_and_connect(void) {
    test_note("one-way TLS, connect options");
    char archives[512];
    work_path(archives, sizeof archives, "oneway-archives");
    ofl_director_server_options *so = director_options(TLS_ONE_WAY, archives);
    ofl_director_server *s = start_default(so);
    ofl_director_server_options_free(so);
    uint16_t port = ofl_director_server_port(s);

    /* A frontend with no certificate reaches a one-way director. */
    ofl_director_client_options *o = one_way_client(port, "localhost");
    ofl_frontend_client *f = NULL;
    REQUIRE_OK(ofl_frontend_client_new(o, &f));
    ofl_string_list *sample = NULL, *target = NULL;
    if (EXPECT_OK(ofl_frontend_client_get_dataset_info(f, NULL, &sample, &target))) {
        CHECK(ofl_string_list_len(sample) == 2);
        CHECK_STR(ofl_string_list_get(sample, 0), "28");
        CHECK(ofl_string_list_len(target) == 1);
    }
    ofl_string_list_free(sample);
    ofl_string_list_free(target);
    ofl_frontend_client_free(f);
    /* So does an envoy (it sends no client_id). */
    ofl_envoy_client *e = NULL;
    REQUIRE_OK(ofl_envoy_client_new(o, "col1", &e));
    ofl_shard_info good = shard_info(SAMPLE_SHAPE);
    bool accepted = false;
    EXPECT_OK(ofl_envoy_client_update_shard_info(e, &good, NULL, &accepted));
    CHECK(accepted);
    ofl_envoy_client_free(e);
    ofl_director_client_options_free(o);

    /* The connect options' server name is what the certificate is checked
     * against: a name the director's certificate lacks fails the
     * handshake, for both clients (and is not retried). */
    o = one_way_client(port, "not-the-director.example");
    REQUIRE_OK(ofl_frontend_client_new(o, &f));
    EXPECT_CODE(ofl_frontend_client_get_dataset_info(f, NULL, &sample, &target), OFL_CODE_TLS, NULL);
    ofl_frontend_client_free(f);
    REQUIRE_OK(ofl_envoy_client_new(o, "col1", &e));
    EXPECT_CODE(ofl_envoy_client_update_shard_info(e, &good, NULL, &accepted), OFL_CODE_TLS, NULL);
    ofl_envoy_client_free(e);
    ofl_director_client_options_free(o);

    /* A later ofl_director_client_options_set_connect replaces the earlier. */
    o = one_way_client(port, "not-the-director.example");
    ofl_connect_options *c = connect_options("localhost");
    REQUIRE_OK(ofl_director_client_options_set_connect(o, c));
    ofl_connect_options_free(c);
    REQUIRE_OK(ofl_frontend_client_new(o, &f));
    EXPECT_OK(ofl_frontend_client_get_dataset_info(f, NULL, &sample, &target));
    ofl_string_list_free(sample);
    ofl_string_list_free(target);
    ofl_frontend_client_free(f);
    ofl_director_client_options_free(o);

    /* A client without TLS does not get through to a TLS director. */
    o = client_options(port, NULL, NULL);
    REQUIRE_OK(ofl_frontend_client_new(o, &f));
    ofl_error *err = ofl_frontend_client_get_dataset_info(f, NULL, &sample, &target);
    CHECK_MSG(err != NULL, "a plain-text client talked to a TLS director");
    ofl_error_free(err);
    ofl_frontend_client_free(f);
    ofl_director_client_options_free(o);
    ofl_director_server_free(s);
}

/* ---- main ------------------------------------------------------------------ */

static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    cert_path(g_frontend_crt, sizeof g_frontend_crt, argv[1], "frontend.crt");
    cert_path(g_frontend_key, sizeof g_frontend_key, argv[1], "frontend.key");
    cert_path(g_frontend2_crt, sizeof g_frontend2_crt, argv[1], "frontend2.crt");
    cert_path(g_frontend2_key, sizeof g_frontend2_key, argv[1], "frontend2.key");
    const char *tmp = getenv("TMPDIR");
    snprintf(g_work, sizeof g_work, "%s/ofl-test-director-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    REQUIRE(mkdtemp(g_work) != NULL);
    test_note("work directory %s", g_work);
    /* Quiet: the expected failures log warnings and errors. */
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_OFF, NULL, NULL));

    test_null_arguments();
    test_failed_starts();
    test_life_cycle();
    test_insecure_defaults();
    test_hooks_setters();
    test_one_way_tls_and_connect();

    if (test_failures() == 0) remove_tree(g_work);
    return test_finish("test_director");
}
