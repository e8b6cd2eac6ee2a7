/*
 * test_fedavg: the built-in FedAvg aggregator through the C API.
 *
 * Part 1, arguments: every ofl_fedavg_* and ofl_model_* export (and
 * ofl_aggregator_server_start_fedavg) with NULL or invalid arguments gives
 * the documented error code or value: INVALID_ARGUMENT for NULL handles,
 * NULL/empty/non-UTF-8 strings, bad shapes and duplicates; OUT_OF_RANGE for
 * a metric index not recorded; FAILED_PRECONDITION for a best model before
 * any round; 0/false/NULL from the plain accessors; NULL frees are no-ops.
 *
 * Part 2, a federation: FedAvg (collaborators col1, col2; 2 rounds; OpenFL's
 * default tasks; model "w" [2, 3] and scalar "b") served over mTLS with
 * ofl_aggregator_server_start_fedavg. Two collaborator threads do what
 * OpenFL 1.6's Collaborator does: fetch w and b for the round (tags
 * {"model"}, checked encoding: tags {"compressed", "model"}, shape in
 * int_list, little-endian float32), validate, train (a deterministic step
 * away from the global model, different per collaborator and round), upload
 * trained tensors + metrics with OpenFL's tags and data sizes (col1: 10
 * training / 8 validation samples, col2: 30 / 4), sleep when told to, quit.
 * Once ofl_aggregator_server_serve returns, everything is read back through
 * the C API and compared with what the collaborators sent: the last model
 * (round 1's weighted average), the best model and score (round 1's
 * validation scored best: its model is round 0's weighted average, which is
 * also what both collaborators downloaded for round 1), every metric (each
 * collaborator's as sent, each average weighted by data size), the metric
 * strings handed out while the server ran still valid at the end.
 *
 * Part 3, the state directory (ofl_fedavg_options_set_state_dir): bad
 * arguments; a FedAvg with a state directory takes an upload over mTLS, is
 * freed as a crash would leave it, and a new FedAvg on the directory has
 * the upload (its metric) and resumes round 0 (the collaborator then owes
 * two tasks); a directory in use is FAILED_PRECONDITION; a damaged
 * federation.state is DATA_LOSS naming the file.
 *
 * usage: test_fedavg CERT_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define ROUNDS 2
#define NCOLS 2
#define W_ROWS 2
#define W_COLS 3
#define W_LEN (W_ROWS * W_COLS)
#define TOLERANCE 1e-5

#define TASK_VALIDATE "aggregated_model_validation"
#define TASK_TRAIN "train"
#define TASK_LOCAL "locally_tuned_model_validation"

static cert_paths g_certs;
static uint16_t g_port;
static const ofl_fedavg *g_fedavg;

static const char *const COLS[NCOLS] = {"col1", "col2"};
static const int32_t TRAIN_SIZE[NCOLS] = {10, 30};
static const int32_t VALID_SIZE[NCOLS] = {8, 4};

static const float INITIAL_W[W_LEN] = {0.5f, -1.0f, 2.0f, 0.25f, 0.0f, -3.0f};
static const float INITIAL_B = 0.75f;

/* ---- part 1: arguments ------------------------------------------------- */

static const char NOT_UTF8[] = {(char)0xff, (char)0xfe, 0};

/* Options every argument test starts from: valid for ofl_fedavg_new. */
static ofl_fedavg_options *valid_options(void) {
    ofl_fedavg_options *o = NULL;
    REQUIRE_OK(ofl_fedavg_options_new(&o));
    REQUIRE(o != NULL);
    REQUIRE_OK(ofl_fedavg_options_set_federation(o, TEST_AGGREGATOR_UUID, TEST_FEDERATION_UUID,
                                                 NULL));
    REQUIRE_OK(ofl_fedavg_options_add_collaborator(o, "col1"));
    REQUIRE_OK(ofl_fedavg_options_add_collaborator(o, "col2"));
    const size_t shape[2] = {W_ROWS, W_COLS};
    REQUIRE_OK(ofl_fedavg_options_add_model_tensor(o, "w", shape, 2, INITIAL_W, W_LEN));
    REQUIRE_OK(ofl_fedavg_options_add_model_tensor(o, "b", NULL, 0, &INITIAL_B, 1));
    return o;
}

static void test_options_arguments(void) {
    test_note("ofl_fedavg_options_*: NULL and invalid arguments");
    EXPECT_CODE(ofl_fedavg_options_new(NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    ofl_fedavg_options_free(NULL);

    ofl_fedavg_options *o = valid_options();

    /* set_federation: both uuids required, the shared CN optional. */
    EXPECT_CODE(ofl_fedavg_options_set_federation(NULL, "a", "f", NULL), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_fedavg_options_set_federation(o, NULL, "f", NULL), OFL_CODE_INVALID_ARGUMENT,
                "aggregator_uuid");
    EXPECT_CODE(ofl_fedavg_options_set_federation(o, "a", NULL, NULL), OFL_CODE_INVALID_ARGUMENT,
                "federation_uuid");
    EXPECT_CODE(ofl_fedavg_options_set_federation(o, NOT_UTF8, "f", NULL),
                OFL_CODE_INVALID_ARGUMENT, "UTF-8");
    EXPECT_CODE(ofl_fedavg_options_set_federation(o, "a", "f", NOT_UTF8),
                OFL_CODE_INVALID_ARGUMENT, "single_col_cert_common_name");
    EXPECT_OK(ofl_fedavg_options_set_federation(o, TEST_AGGREGATOR_UUID, TEST_FEDERATION_UUID,
                                                NULL));

    /* add_collaborator: a non-empty UTF-8 name; a repeat is added once. */
    EXPECT_CODE(ofl_fedavg_options_add_collaborator(NULL, "col3"), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_fedavg_options_add_collaborator(o, NULL), OFL_CODE_INVALID_ARGUMENT,
                "collaborator_name");
    EXPECT_CODE(ofl_fedavg_options_add_collaborator(o, ""), OFL_CODE_INVALID_ARGUMENT, "empty");
    EXPECT_CODE(ofl_fedavg_options_add_collaborator(o, NOT_UTF8), OFL_CODE_INVALID_ARGUMENT,
                "UTF-8");
    EXPECT_OK(ofl_fedavg_options_add_collaborator(o, "col1"));

    /* set_rounds_to_train: at least 1. */
    EXPECT_CODE(ofl_fedavg_options_set_rounds_to_train(NULL, 2), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_fedavg_options_set_rounds_to_train(o, 0), OFL_CODE_INVALID_ARGUMENT, "0");
    EXPECT_CODE(ofl_fedavg_options_set_rounds_to_train(o, -5), OFL_CODE_INVALID_ARGUMENT, "-5");
    EXPECT_OK(ofl_fedavg_options_set_rounds_to_train(o, 1));

    /* add_task: name, function and type required; names unique. */
    EXPECT_CODE(ofl_fedavg_options_add_task(NULL, "t", "train_task", "train", false),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_fedavg_options_add_task(o, NULL, "train_task", "train", false),
                OFL_CODE_INVALID_ARGUMENT, "name");
    EXPECT_CODE(ofl_fedavg_options_add_task(o, "", "train_task", "train", false),
                OFL_CODE_INVALID_ARGUMENT, "empty");
    EXPECT_CODE(ofl_fedavg_options_add_task(o, "t", NULL, "train", false),
                OFL_CODE_INVALID_ARGUMENT, "function_name");
    EXPECT_CODE(ofl_fedavg_options_add_task(o, "t", "train_task", NULL, false),
                OFL_CODE_INVALID_ARGUMENT, "task_type");
    EXPECT_CODE(ofl_fedavg_options_add_task(o, "t", NOT_UTF8, "train", false),
                OFL_CODE_INVALID_ARGUMENT, "UTF-8");

    /* add_model_tensor: shape and values must agree; names unique. */
    const size_t shape22[2] = {2, 2};
    const size_t huge[1] = {(size_t)1 << 31};
    const float four[4] = {1, 2, 3, 4};
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(NULL, "v", shape22, 2, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, NULL, shape22, 2, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "name");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "", shape22, 2, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "empty");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, NOT_UTF8, shape22, 2, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "UTF-8");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "v", NULL, 2, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "shape");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "v", shape22, 2, NULL, 4),
                OFL_CODE_INVALID_ARGUMENT, "values");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "v", shape22, 2, four, 3),
                OFL_CODE_INVALID_ARGUMENT, "\"v\"");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "v", NULL, 0, four, 2),
                OFL_CODE_INVALID_ARGUMENT, "\"v\""); /* a scalar holds 1 value */
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "v", huge, 1, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "int32");
    EXPECT_CODE(ofl_fedavg_options_add_model_tensor(o, "w", shape22, 2, four, 4),
                OFL_CODE_INVALID_ARGUMENT, "already");

    /* set_best_model_metric: NULL restores the default, "" is refused. */
    EXPECT_CODE(ofl_fedavg_options_set_best_model_metric(NULL, "acc"), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_fedavg_options_set_best_model_metric(o, ""), OFL_CODE_INVALID_ARGUMENT,
                "empty");
    EXPECT_CODE(ofl_fedavg_options_set_best_model_metric(o, NOT_UTF8), OFL_CODE_INVALID_ARGUMENT,
                "UTF-8");
    EXPECT_OK(ofl_fedavg_options_set_best_model_metric(o, "acc"));
    EXPECT_OK(ofl_fedavg_options_set_best_model_metric(o, NULL));

    /* set_tensor_wait_ms: any value; set_sleep_time: at least 1 s. */
    EXPECT_CODE(ofl_fedavg_options_set_tensor_wait_ms(NULL, 10), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_OK(ofl_fedavg_options_set_tensor_wait_ms(o, 0));
    EXPECT_CODE(ofl_fedavg_options_set_sleep_time(NULL, 1), OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_fedavg_options_set_sleep_time(o, 0), OFL_CODE_INVALID_ARGUMENT, "sleep");
    EXPECT_CODE(ofl_fedavg_options_set_sleep_time(o, -1), OFL_CODE_INVALID_ARGUMENT, "sleep");
    EXPECT_OK(ofl_fedavg_options_set_sleep_time(o, 1));

    /* The failed calls changed nothing: the options still make a FedAvg. */
    ofl_fedavg *fa = NULL;
    EXPECT_CODE(ofl_fedavg_new(o, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    EXPECT_CODE(ofl_fedavg_new(NULL, &fa), OFL_CODE_INVALID_ARGUMENT, "options");
    CHECK(fa == NULL);
    REQUIRE_OK(ofl_fedavg_new(o, &fa));
    CHECK(ofl_fedavg_rounds_to_train(fa) == 1);
    ofl_model *m = NULL;
    REQUIRE_OK(ofl_fedavg_last_model(fa, &m));
    CHECK(ofl_model_len(m) == 2); /* "v" was never added */
    ofl_model_free(m);
    ofl_fedavg_free(fa);
    ofl_fedavg_options_free(o);

    /* ofl_fedavg_new checks what is missing. */
    ofl_fedavg_options *empty = NULL;
    REQUIRE_OK(ofl_fedavg_options_new(&empty));
    fa = NULL;
    EXPECT_CODE(ofl_fedavg_new(empty, &fa), OFL_CODE_INVALID_ARGUMENT, "collaborators");
    REQUIRE_OK(ofl_fedavg_options_add_collaborator(empty, "col1"));
    EXPECT_CODE(ofl_fedavg_new(empty, &fa), OFL_CODE_INVALID_ARGUMENT, "initial_model");
    CHECK(fa == NULL);
    /* A task list without duplicates replaces the defaults; a repeat is refused. */
    REQUIRE_OK(ofl_fedavg_options_add_task(empty, "t", "train_task", "train", false));
    EXPECT_CODE(ofl_fedavg_options_add_task(empty, "t", "validate_task", "validate", false),
                OFL_CODE_INVALID_ARGUMENT, "already");
    ofl_fedavg_options_free(empty);
}

static void test_handle_arguments(void) {
    test_note("ofl_fedavg_* / ofl_model_* / start_fedavg: NULL and invalid arguments");
    ofl_fedavg_free(NULL);
    ofl_model_free(NULL);

    /* Plain accessors: documented values for NULL. */
    CHECK(ofl_fedavg_current_round(NULL) == 0);
    CHECK(ofl_fedavg_rounds_to_train(NULL) == 0);
    CHECK(!ofl_fedavg_is_finished(NULL));
    CHECK(ofl_fedavg_metrics_len(NULL) == 0);
    int32_t round = -7;
    double score = -7.0;
    CHECK(!ofl_fedavg_best_model_score(NULL, &round, &score));
    CHECK(round == -7 && score == -7.0);

    ofl_fedavg_metric metric;
    memset(&metric, 0, sizeof metric);
    ofl_model *m = NULL;
    EXPECT_CODE(ofl_fedavg_get_metric(NULL, 0, &metric), OFL_CODE_INVALID_ARGUMENT, "fedavg");
    EXPECT_CODE(ofl_fedavg_last_model(NULL, &m), OFL_CODE_INVALID_ARGUMENT, "fedavg");
    EXPECT_CODE(ofl_fedavg_best_model(NULL, &m), OFL_CODE_INVALID_ARGUMENT, "fedavg");
    CHECK(m == NULL);

    /* A fresh FedAvg: round 0, no metrics, no best model yet. */
    ofl_fedavg_options *o = valid_options();
    REQUIRE_OK(ofl_fedavg_options_set_rounds_to_train(o, 3));
    ofl_fedavg *fa = NULL;
    REQUIRE_OK(ofl_fedavg_new(o, &fa));
    ofl_fedavg_options_free(o);
    CHECK(ofl_fedavg_current_round(fa) == 0);
    CHECK(ofl_fedavg_rounds_to_train(fa) == 3);
    CHECK(!ofl_fedavg_is_finished(fa));
    CHECK(ofl_fedavg_metrics_len(fa) == 0);
    EXPECT_CODE(ofl_fedavg_get_metric(fa, 0, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    EXPECT_CODE(ofl_fedavg_get_metric(fa, 0, &metric), OFL_CODE_OUT_OF_RANGE, "out of range");
    EXPECT_CODE(ofl_fedavg_get_metric(fa, (size_t)-1, &metric), OFL_CODE_OUT_OF_RANGE, NULL);
    EXPECT_CODE(ofl_fedavg_last_model(fa, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    EXPECT_CODE(ofl_fedavg_best_model(fa, NULL), OFL_CODE_INVALID_ARGUMENT, "out");
    EXPECT_CODE(ofl_fedavg_best_model(fa, &m), OFL_CODE_FAILED_PRECONDITION, "no best model");
    CHECK(m == NULL);
    CHECK(!ofl_fedavg_best_model_score(fa, &round, &score));
    CHECK(!ofl_fedavg_best_model_score(fa, NULL, NULL));
    CHECK(round == -7 && score == -7.0);

    /* ofl_model accessors: NULL model, out-of-range index, NULL outputs. */
    size_t len = 99, index = 99;
    CHECK(ofl_model_len(NULL) == 0);
    CHECK(ofl_model_tensor_name(NULL, 0) == NULL);
    CHECK(!ofl_model_find(NULL, "w", &index) && index == 99);
    CHECK(ofl_model_tensor_shape(NULL, 0, &len) == NULL && len == 0);
    len = 99;
    CHECK(ofl_model_tensor_values(NULL, 0, &len) == NULL && len == 0);
    CHECK(ofl_model_tensor_shape(NULL, 0, NULL) == NULL);
    CHECK(ofl_model_tensor_values(NULL, 0, NULL) == NULL);

    REQUIRE_OK(ofl_fedavg_last_model(fa, &m));
    REQUIRE(m != NULL);
    CHECK(ofl_model_len(m) == 2);
    CHECK_STR(ofl_model_tensor_name(m, 0), "b"); /* name order */
    CHECK_STR(ofl_model_tensor_name(m, 1), "w");
    CHECK(ofl_model_tensor_name(m, 2) == NULL);
    CHECK(ofl_model_tensor_name(m, (size_t)-1) == NULL);
    CHECK(!ofl_model_find(m, NULL, &index) && index == 99);
    CHECK(!ofl_model_find(m, "nope", &index) && index == 99);
    CHECK(!ofl_model_find(m, "", &index) && index == 99);
    CHECK(!ofl_model_find(m, NOT_UTF8, &index) && index == 99);
    CHECK(ofl_model_find(m, "w", NULL));
    CHECK(ofl_model_find(m, "w", &index) && index == 1);
    len = 99;
    CHECK(ofl_model_tensor_shape(m, 2, &len) == NULL && len == 0);
    len = 99;
    CHECK(ofl_model_tensor_values(m, 2, &len) == NULL && len == 0);
    /* A scalar: a non-NULL shape pointer with 0 dimensions, one value. */
    len = 99;
    CHECK(ofl_model_tensor_shape(m, 0, &len) != NULL && len == 0);
    const float *b = ofl_model_tensor_values(m, 0, &len);
    CHECK(b != NULL && len == 1 && b[0] == INITIAL_B);
    const size_t *shape = ofl_model_tensor_shape(m, 1, NULL);
    CHECK(shape != NULL && shape[0] == W_ROWS && shape[1] == W_COLS);
    const float *w = ofl_model_tensor_values(m, 1, NULL);
    CHECK(w != NULL && memcmp(w, INITIAL_W, sizeof INITIAL_W) == 0);
    ofl_model_free(m);

    /* start_fedavg: every argument required. */
    ofl_aggregator_server_options *so = make_server_options(&g_certs, TLS_INSECURE);
    ofl_aggregator_server *server = NULL;
    EXPECT_CODE(ofl_aggregator_server_start_fedavg(NULL, fa, &server), OFL_CODE_INVALID_ARGUMENT,
                "server_options");
    EXPECT_CODE(ofl_aggregator_server_start_fedavg(so, NULL, &server), OFL_CODE_INVALID_ARGUMENT,
                "fedavg");
    EXPECT_CODE(ofl_aggregator_server_start_fedavg(so, fa, NULL), OFL_CODE_INVALID_ARGUMENT,
                "out");
    CHECK(server == NULL);
    /* The server keeps its own reference: the handle may go first. */
    REQUIRE_OK(ofl_aggregator_server_start_fedavg(so, fa, &server));
    ofl_aggregator_server_options_free(so);
    ofl_fedavg_free(fa);
    CHECK(ofl_aggregator_server_port(server) != 0);
    EXPECT_OK(ofl_aggregator_server_stop(server));
    ofl_aggregator_server_free(server);
}

/* ---- part 2: a federation ------------------------------------------------ */

static const char *const TAGS_MODEL[] = {"model"};
static const char *const TAGS_TRAINED[] = {"compressed", "trained"};
static const char *const TAGS_TRAIN_METRIC[] = {"compressed", "metric"};
static const char *const TAGS_VALIDATE_AGG[] = {"compressed", "metric", "validate_agg"};
static const char *const TAGS_VALIDATE_LOCAL[] = {"compressed", "metric", "validate_local"};
#define NTAGS(tags) (sizeof(tags) / sizeof((tags)[0]))

static void put_f32_le(uint8_t *dst, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int k = 0; k < 4; k++) dst[k] = (uint8_t)(u >> (8 * k));
}

static float get_f32_le(const uint8_t *src) {
    uint32_t u = 0;
    for (int k = 0; k < 4; k++) u |= (uint32_t)src[k] << (8 * k);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* What a collaborator saw and sent, per round. */
typedef struct col_record {
    float got_w[ROUNDS][W_LEN];
    float got_b[ROUNDS];
    int downloads[ROUNDS];
    float sent_w[ROUNDS][W_LEN];
    float sent_b[ROUNDS];
    float sent_train_loss[ROUNDS];
    float sent_score[ROUNDS];       /* aggregated_model_validation */
    float sent_local_score[ROUNDS]; /* locally_tuned_model_validation */
    int uploads[ROUNDS];
    int quits;
    int sleeps;
} col_record;

typedef struct collaborator {
    int index;
    ofl_aggregator_client *client;
    col_record rec;
    /* A metric read while the server ran (its strings must stay valid). */
    bool have_early_metric;
    ofl_fedavg_metric early_metric;
} collaborator;

/* The model a collaborator "trains" to: a step away from the global model
 * that depends on who and when, so the weights matter in the average. */
static float trained_value(int col, int round, int i, float global) {
    return global + (col == 0 ? 1.0f : -0.5f) * (float)(i + 1) + 0.25f * (float)round;
}

/* A validation score that differs per collaborator and rises per round
 * (so round ROUNDS-1's global model scores best). */
static float score_value(int col, int round, bool local) {
    return 0.5f + 0.1f * (float)round + (col == 0 ? 0.02f : -0.01f) + (local ? 0.05f : 0.0f);
}

/* GetAggregatedTensor for a model tensor, decoded after checking OpenFL's
 * encoding: tags {"compressed", "model"}, one metadata entry with the shape. */
static bool fetch(collaborator *c, const char *name, int32_t round, float *out, size_t len,
                  const int32_t *shape, size_t ndim) {
    ofl_tensor *t = NULL;
    if (!EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(c->client, COLS[c->index], name, round, false,
                                                    TAGS_MODEL, NTAGS(TAGS_MODEL), true, NULL, &t))) {
        return false;
    }
    bool ok = true;
    CHECK_STR(ofl_tensor_name(t), name);
    CHECK(ofl_tensor_round_number(t) == round);
    CHECK(ofl_tensor_lossless(t) && !ofl_tensor_report(t));
    CHECK(ofl_tensor_tags_len(t) == 2);
    if (ofl_tensor_tags_len(t) == 2) {
        CHECK_STR(ofl_tensor_tag(t, 0), "compressed");
        CHECK_STR(ofl_tensor_tag(t, 1), "model");
    }
    size_t got_ndim = 99;
    const int32_t *got_shape =
        ofl_tensor_metadata_len(t) == 1 ? ofl_tensor_metadata_int_list(t, 0, &got_ndim) : NULL;
    if (ofl_tensor_metadata_len(t) != 1 || got_ndim != ndim ||
        (ndim > 0 && (got_shape == NULL || memcmp(got_shape, shape, ndim * sizeof *shape) != 0))) {
        test_fail_at(__FILE__, __LINE__, "%s: tensor %s has the wrong shape metadata",
                     COLS[c->index], name);
        ok = false;
    }
    if (ofl_tensor_data_len(t) != 4 * len) {
        test_fail_at(__FILE__, __LINE__, "%s: tensor %s has %zu bytes, expected %zu",
                     COLS[c->index], name, (size_t)ofl_tensor_data_len(t), 4 * len);
        ok = false;
    } else {
        for (size_t k = 0; k < len; k++) out[k] = get_f32_le(ofl_tensor_data(t) + 4 * k);
    }
    ofl_tensor_free(t);
    return ok;
}

/* Fetches w and b once per round, as OpenFL's collaborator caches them. */
static void fetch_model(collaborator *c, int32_t round) {
    if (round < 0 || round >= ROUNDS) {
        test_fail_at(__FILE__, __LINE__, "%s: tasks for round %d", COLS[c->index], round);
        return;
    }
    if (c->rec.downloads[round]++ > 0) return;
    static const int32_t w_shape[2] = {W_ROWS, W_COLS};
    fetch(c, "w", round, c->rec.got_w[round], W_LEN, w_shape, 2);
    fetch(c, "b", round, &c->rec.got_b[round], 1, NULL, 0);
}

/* One upload's tensors, in memory this function owns during the call. */
typedef struct upload {
    size_t n;
    ofl_tensor_view views[4];
    ofl_metadata_view metadata[4];
    int32_t shape[4][2];
    uint8_t data[4][4 * W_LEN];
} upload;

static void upload_add(upload *u, int32_t round, const char *name, bool report,
                       const char *const *tags, size_t ntags, const float *values, size_t len,
                       const int32_t *shape, size_t ndim) {
    REQUIRE(u->n < 4 && len <= W_LEN && ndim <= 2);
    size_t i = u->n++;
    for (size_t k = 0; k < len; k++) put_f32_le(u->data[i] + 4 * k, values[k]);
    for (size_t k = 0; k < ndim; k++) u->shape[i][k] = shape[k];
    u->metadata[i] = (ofl_metadata_view){.int_list = u->shape[i], .int_list_len = ndim};
    u->views[i] = (ofl_tensor_view){
        .name = name,
        .round_number = round,
        .lossless = true,
        .report = report,
        .tags = tags,
        .tags_len = ntags,
        .metadata = &u->metadata[i],
        .metadata_len = 1,
        .data = u->data[i],
        .data_len = 4 * len,
    };
}

static void run_task(collaborator *c, const ofl_tasks *tasks, size_t i) {
    int32_t round = ofl_tasks_round_number(tasks);
    const char *task = ofl_tasks_name(tasks, i);
    const char *function = ofl_tasks_function_name(tasks, i);
    int col = c->index;
    REQUIRE(round >= 0 && round < ROUNDS);
    upload u = {0};
    int32_t data_size = 0;
    if (strcmp(task, TASK_TRAIN) == 0) {
        CHECK_STR(function, "train_task");
        fetch_model(c, round);
        for (int k = 0; k < W_LEN; k++) {
            c->rec.sent_w[round][k] = trained_value(col, round, k, c->rec.got_w[round][k]);
        }
        c->rec.sent_b[round] = trained_value(col, round, 7, c->rec.got_b[round]);
        c->rec.sent_train_loss[round] = 1.0f / (float)(round + 2) + 0.1f * (float)col;
        static const int32_t w_shape[2] = {W_ROWS, W_COLS};
        upload_add(&u, round, "train_loss", true, TAGS_TRAIN_METRIC, NTAGS(TAGS_TRAIN_METRIC),
                   &c->rec.sent_train_loss[round], 1, NULL, 0);
        upload_add(&u, round, "w", false, TAGS_TRAINED, NTAGS(TAGS_TRAINED), c->rec.sent_w[round],
                   W_LEN, w_shape, 2);
        upload_add(&u, round, "b", false, TAGS_TRAINED, NTAGS(TAGS_TRAINED), &c->rec.sent_b[round],
                   1, NULL, 0);
        data_size = TRAIN_SIZE[col];
    } else if (strcmp(task, TASK_VALIDATE) == 0 || strcmp(task, TASK_LOCAL) == 0) {
        CHECK_STR(function, "validate_task");
        bool local = ofl_tasks_apply_local(tasks, i);
        CHECK(local == (strcmp(task, TASK_LOCAL) == 0));
        if (!local) fetch_model(c, round);
        float *score = local ? &c->rec.sent_local_score[round] : &c->rec.sent_score[round];
        *score = score_value(col, round, local);
        const char *const *tags = local ? TAGS_VALIDATE_LOCAL : TAGS_VALIDATE_AGG;
        upload_add(&u, round, "score", true, tags, NTAGS(TAGS_VALIDATE_AGG), score, 1, NULL, 0);
        data_size = VALID_SIZE[col];
    } else {
        test_fail_at(__FILE__, __LINE__, "%s: unexpected task \"%s\"", COLS[col], task);
        return;
    }
    if (EXPECT_OK(ofl_aggregator_client_send_local_task_results(c->client, COLS[col], round, task, data_size,
                                                     u.views, u.n, NULL))) {
        c->rec.uploads[round]++;
    }
}

static void *collaborator_main(void *arg) {
    collaborator *c = arg;
    const char *crt = c->index == 0 ? g_certs.col1_crt : g_certs.col2_crt;
    const char *key = c->index == 0 ? g_certs.col1_key : g_certs.col2_key;
    c->client = make_client(&g_certs, g_port, TLS_MUTUAL, crt, key);

    /* The FedAvg's refusals reach the client with their codes. */
    if (c->index == 0) {
        ofl_tensor *t = NULL;
        EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(c->client, COLS[0], "nope", 0, false,
                                                     TAGS_MODEL, 1, true, NULL, &t),
                    OFL_CODE_FAILED_PRECONDITION, "\"nope\"");
        static const char *const delta_tags[] = {"aggregated", "delta"};
        EXPECT_CODE(ofl_aggregator_client_get_aggregated_tensor(c->client, COLS[0], "w", 0, false,
                                                     delta_tags, 2, true, NULL, &t),
                    OFL_CODE_INVALID_ARGUMENT, "delta");
        CHECK(t == NULL);
    }

    for (int calls = 0; calls < 100; calls++) {
        ofl_tasks *tasks = NULL;
        if (!EXPECT_OK(ofl_aggregator_client_get_tasks(c->client, COLS[c->index], NULL, &tasks))) break;
        if (ofl_tasks_quit(tasks)) {
            c->rec.quits++;
            CHECK(ofl_tasks_round_number(tasks) == ROUNDS);
            ofl_tasks_free(tasks);
            break;
        }
        size_t n = ofl_tasks_len(tasks);
        if (n == 0) {
            c->rec.sleeps++;
            CHECK(ofl_tasks_sleep_time(tasks) == 1);
            sleep_ms(1000u * (unsigned)ofl_tasks_sleep_time(tasks));
        } else {
            CHECK(n == 3 && ofl_tasks_sleep_time(tasks) == 0);
        }
        for (size_t i = 0; i < n; i++) run_task(c, tasks, i);
        ofl_tasks_free(tasks);
        /* Read the FedAvg's metrics while the server runs (another thread). */
        if (!c->have_early_metric && ofl_fedavg_metrics_len(g_fedavg) > 0) {
            c->have_early_metric = EXPECT_OK(ofl_fedavg_get_metric(g_fedavg, 0, &c->early_metric));
        }
    }
    ofl_aggregator_client_free(c->client);
    c->client = NULL;
    return NULL;
}

static bool close_to(double actual, double expected) {
    double diff = actual - expected;
    return diff <= TOLERANCE && -diff <= TOLERANCE; /* false for NaN */
}

/* Checks tensor `name` of `m` against expected values (shape from `ndim`). */
static void check_model_tensor(const ofl_model *m, const char *what, const char *name,
                               const double *expected, size_t len, size_t ndim) {
    size_t index = 0, got_len = 0, got_ndim = 0;
    if (!ofl_model_find(m, name, &index)) {
        test_fail_at(__FILE__, __LINE__, "%s: no tensor %s", what, name);
        return;
    }
    const float *values = ofl_model_tensor_values(m, index, &got_len);
    const size_t *shape = ofl_model_tensor_shape(m, index, &got_ndim);
    CHECK_MSG(got_len == len && got_ndim == ndim && shape != NULL,
              "%s: %s has %zu values in %zu dimensions", what, name, got_len, got_ndim);
    if (ndim == 2 && got_ndim == 2) CHECK(shape[0] == W_ROWS && shape[1] == W_COLS);
    for (size_t k = 0; k < len && k < got_len; k++) {
        CHECK_MSG(close_to(values[k], expected[k]), "%s: %s[%zu] = %.8f, expected %.8f", what,
                  name, k, (double)values[k], expected[k]);
    }
}

/* The data-size weighted average of the collaborators' uploads of a round. */
static void expected_model(const collaborator *cols, int round, double *w, double *b) {
    double total = 0;
    for (int c = 0; c < NCOLS; c++) total += TRAIN_SIZE[c];
    for (int k = 0; k < W_LEN; k++) w[k] = 0;
    *b = 0;
    for (int c = 0; c < NCOLS; c++) {
        double weight = TRAIN_SIZE[c] / total;
        for (int k = 0; k < W_LEN; k++) w[k] += weight * cols[c].rec.sent_w[round][k];
        *b += weight * cols[c].rec.sent_b[round];
    }
}

static double expected_metric(const collaborator *cols, int round, const char *task) {
    double sum = 0, total = 0;
    for (int c = 0; c < NCOLS; c++) {
        const col_record *r = &cols[c].rec;
        bool train = strcmp(task, TASK_TRAIN) == 0;
        double size = train ? TRAIN_SIZE[c] : VALID_SIZE[c];
        double value = train ? r->sent_train_loss[round]
                       : strcmp(task, TASK_LOCAL) == 0 ? r->sent_local_score[round]
                                                       : r->sent_score[round];
        sum += size * value;
        total += size;
    }
    return sum / total;
}

static void check_metrics(const ofl_fedavg *fa, const collaborator *cols) {
    static const char *const TASKS[3] = {TASK_VALIDATE, TASK_TRAIN, TASK_LOCAL};
    size_t n = ofl_fedavg_metrics_len(fa);
    CHECK_MSG(n == (size_t)ROUNDS * 3 * (NCOLS + 1), "%zu metrics", n);
    int seen[ROUNDS][3][NCOLS + 1];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < n; i++) {
        ofl_fedavg_metric m;
        if (!EXPECT_OK(ofl_fedavg_get_metric(fa, i, &m))) continue;
        int t = -1, who = -1;
        for (int k = 0; k < 3; k++)
            if (strcmp(m.task, TASKS[k]) == 0) t = k;
        for (int c = 0; c < NCOLS; c++)
            if (strcmp(m.origin, COLS[c]) == 0) who = c;
        if (strcmp(m.origin, "aggregator") == 0) who = NCOLS;
        if (t < 0 || who < 0 || m.round < 0 || m.round >= ROUNDS) {
            test_fail_at(__FILE__, __LINE__, "unexpected metric %s/%s/%s round %d", m.origin,
                         m.task, m.name, m.round);
            continue;
        }
        seen[m.round][t][who]++;
        CHECK(m.aggregated == (who == NCOLS));
        CHECK_STR(m.name, t == 1 ? "train_loss" : "score");
        double expected;
        if (who == NCOLS) {
            expected = expected_metric(cols, m.round, m.task);
        } else {
            const col_record *r = &cols[who].rec;
            expected = t == 0 ? r->sent_score[m.round] : t == 1 ? r->sent_train_loss[m.round]
                                                                : r->sent_local_score[m.round];
        }
        CHECK_MSG(close_to(m.value, expected), "metric %s/%s/%s round %d = %.8f, expected %.8f",
                  m.origin, m.task, m.name, m.round, m.value, expected);
    }
    for (int r = 0; r < ROUNDS; r++)
        for (int t = 0; t < 3; t++)
            for (int w = 0; w <= NCOLS; w++)
                CHECK_MSG(seen[r][t][w] == 1, "round %d task %s origin %d: %d metrics", r,
                          TASKS[t], w, seen[r][t][w]);
}

static void test_federation(void) {
    test_note("FedAvg federation: 2 collaborators, %d rounds, mTLS", ROUNDS);
    ofl_fedavg_options *o = valid_options();
    REQUIRE_OK(ofl_fedavg_options_set_rounds_to_train(o, ROUNDS));
    REQUIRE_OK(ofl_fedavg_options_set_sleep_time(o, 1));
    REQUIRE_OK(ofl_fedavg_options_set_tensor_wait_ms(o, 5000));
    REQUIRE_OK(ofl_fedavg_options_set_best_model_metric(o, "score"));
    ofl_fedavg *fa = NULL;
    REQUIRE_OK(ofl_fedavg_new(o, &fa));
    ofl_fedavg_options_free(o);
    g_fedavg = fa;

    ofl_aggregator_server_options *so = make_server_options(&g_certs, TLS_MUTUAL);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(ofl_aggregator_server_start_fedavg(so, fa, &server));
    ofl_aggregator_server_options_free(so);
    g_port = ofl_aggregator_server_port(server);
    REQUIRE(g_port != 0);

    collaborator cols[NCOLS];
    pthread_t threads[NCOLS];
    memset(cols, 0, sizeof cols);
    for (int c = 0; c < NCOLS; c++) {
        cols[c].index = c;
        REQUIRE(pthread_create(&threads[c], NULL, collaborator_main, &cols[c]) == 0);
    }
    double start = now_seconds();
    EXPECT_OK(ofl_aggregator_server_serve(server)); /* returns once both were told to quit */
    for (int c = 0; c < NCOLS; c++) pthread_join(threads[c], NULL);
    test_note("federation done in %.1f s", now_seconds() - start);
    ofl_aggregator_server_free(server);

    /* Both collaborators did every round and were told to quit once. */
    for (int c = 0; c < NCOLS; c++) {
        const col_record *r = &cols[c].rec;
        CHECK_MSG(r->quits == 1, "%s: %d quits", COLS[c], r->quits);
        for (int round = 0; round < ROUNDS; round++) {
            CHECK_MSG(r->uploads[round] == 3, "%s round %d: %d uploads", COLS[c], round,
                      r->uploads[round]);
            CHECK_MSG(r->downloads[round] >= 1, "%s round %d: no model", COLS[c], round);
        }
    }
    CHECK(ofl_fedavg_current_round(fa) == ROUNDS);
    CHECK(ofl_fedavg_rounds_to_train(fa) == ROUNDS);
    CHECK(ofl_fedavg_is_finished(fa));

    /* Round 0's model is the initial one; round r+1's the average of round r. */
    double w[W_LEN], b;
    for (int c = 0; c < NCOLS; c++) {
        const col_record *r = &cols[c].rec;
        CHECK(memcmp(r->got_w[0], INITIAL_W, sizeof INITIAL_W) == 0 && r->got_b[0] == INITIAL_B);
        for (int round = 1; round < ROUNDS; round++) {
            expected_model(cols, round - 1, w, &b);
            for (int k = 0; k < W_LEN; k++) {
                CHECK_MSG(close_to(r->got_w[round][k], w[k]), "%s round %d: w[%d] = %.8f, expected %.8f",
                          COLS[c], round, k, (double)r->got_w[round][k], w[k]);
            }
            CHECK(close_to(r->got_b[round], b));
        }
    }

    /* The last model: round ROUNDS-1's weighted average. */
    ofl_model *m = NULL;
    REQUIRE_OK(ofl_fedavg_last_model(fa, &m));
    expected_model(cols, ROUNDS - 1, w, &b);
    check_model_tensor(m, "last model", "w", w, W_LEN, 2);
    check_model_tensor(m, "last model", "b", &b, 1, 0);
    ofl_model_free(m);

    /* The best model: the last round's validation scored best; its model is
     * the one validated then, round ROUNDS-2's average. */
    int32_t best_round = -1;
    double best_score = 0;
    CHECK(ofl_fedavg_best_model_score(fa, &best_round, &best_score));
    CHECK_MSG(best_round == ROUNDS - 1, "best round %d", best_round);
    CHECK(close_to(best_score, expected_metric(cols, ROUNDS - 1, TASK_VALIDATE)));
    CHECK(ofl_fedavg_best_model_score(fa, NULL, NULL));
    m = NULL;
    REQUIRE_OK(ofl_fedavg_best_model(fa, &m));
    expected_model(cols, ROUNDS - 2, w, &b);
    check_model_tensor(m, "best model", "w", w, W_LEN, 2);
    check_model_tensor(m, "best model", "b", &b, 1, 0);
    ofl_model_free(m);

    check_metrics(fa, cols);
    ofl_fedavg_metric m0;
    REQUIRE_OK(ofl_fedavg_get_metric(fa, 0, &m0));
    for (int c = 0; c < NCOLS; c++) {
        if (!cols[c].have_early_metric) continue;
        const ofl_fedavg_metric *e = &cols[c].early_metric;
        /* Same record, same strings, still valid (ASan checks the reads). */
        CHECK(e->origin == m0.origin && e->task == m0.task && e->name == m0.name);
        CHECK_STR(e->origin, m0.origin);
        CHECK_STR(e->task, m0.task);
        CHECK(e->round == 0 && e->value == m0.value && !e->aggregated);
    }
    CHECK(cols[0].have_early_metric || cols[1].have_early_metric);
    ofl_fedavg_free(fa);
    g_fedavg = NULL;
}

/* ---- part 3: the state directory ------------------------------------- */

static ofl_fedavg *fedavg_in(const char *dir) {
    ofl_fedavg_options *o = valid_options();
    REQUIRE_OK(ofl_fedavg_options_set_rounds_to_train(o, 2));
    REQUIRE_OK(ofl_fedavg_options_set_state_dir(o, dir));
    ofl_fedavg *fa = NULL;
    REQUIRE_OK(ofl_fedavg_new(o, &fa));
    ofl_fedavg_options_free(o);
    return fa;
}

static void test_state_dir(void) {
    test_note("ofl_fedavg_options_set_state_dir: arguments, resume, refusals");
    ofl_fedavg_options *o = valid_options();
    EXPECT_CODE(ofl_fedavg_options_set_state_dir(NULL, "/tmp/x"), OFL_CODE_INVALID_ARGUMENT,
                "options");
    EXPECT_CODE(ofl_fedavg_options_set_state_dir(o, ""), OFL_CODE_INVALID_ARGUMENT, "empty");
    EXPECT_CODE(ofl_fedavg_options_set_state_dir(o, NOT_UTF8), OFL_CODE_INVALID_ARGUMENT,
                "UTF-8");
    EXPECT_OK(ofl_fedavg_options_set_state_dir(o, NULL)); /* back to none */
    ofl_fedavg_options_free(o);

    char dir[] = "/tmp/ofl_fedavg_state_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    ofl_fedavg *fa = fedavg_in(dir);
    ofl_fedavg_options *again = valid_options();
    REQUIRE_OK(ofl_fedavg_options_set_rounds_to_train(again, 2));
    REQUIRE_OK(ofl_fedavg_options_set_state_dir(again, dir));
    ofl_fedavg *second = NULL;
    EXPECT_CODE(ofl_fedavg_new(again, &second), OFL_CODE_FAILED_PRECONDITION, "in use");
    CHECK(second == NULL);

    /* col1 reports its aggregated-model validation of round 0. */
    ofl_aggregator_server_options *so = make_server_options(&g_certs, TLS_MUTUAL);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(ofl_aggregator_server_start_fedavg(so, fa, &server));
    ofl_aggregator_server_options_free(so);
    ofl_aggregator_client *client = make_client(&g_certs, ofl_aggregator_server_port(server), TLS_MUTUAL,
                                     g_certs.col1_crt, g_certs.col1_key);
    upload u = {0};
    float score = 0.625f;
    upload_add(&u, 0, "score", true, TAGS_VALIDATE_AGG, NTAGS(TAGS_VALIDATE_AGG), &score, 1, NULL,
               0);
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, "col1", 0, TASK_VALIDATE, 8, u.views, u.n, NULL));
    ofl_aggregator_client_free(client);
    ofl_aggregator_server_free(server);
    ofl_fedavg_free(fa); /* the aggregator is gone; its directory stays */

    /* A new FedAvg resumes: the upload is there, col1 owes the other two tasks. */
    REQUIRE_OK(ofl_fedavg_new(again, &second));
    CHECK(ofl_fedavg_current_round(second) == 0);
    CHECK_MSG(ofl_fedavg_metrics_len(second) == 1, "%zu metrics",
              ofl_fedavg_metrics_len(second));
    ofl_fedavg_metric m;
    if (EXPECT_OK(ofl_fedavg_get_metric(second, 0, &m))) {
        CHECK_STR(m.origin, "col1");
        CHECK_STR(m.task, TASK_VALIDATE);
        CHECK(m.value == 0.625 && !m.aggregated);
    }
    ofl_fedavg_free(second);

    /* A damaged federation.state is refused, naming the file. */
    char path[sizeof dir + 32];
    snprintf(path, sizeof path, "%s/federation.state", dir);
    FILE *f = fopen(path, "r+b");
    REQUIRE(f != NULL);
    REQUIRE(fseek(f, 60, SEEK_SET) == 0);
    int byte = fgetc(f);
    REQUIRE(byte != EOF && fseek(f, 60, SEEK_SET) == 0);
    fputc(byte ^ 0x5a, f);
    fclose(f);
    second = NULL;
    EXPECT_CODE(ofl_fedavg_new(again, &second), OFL_CODE_DATA_LOSS, "federation.state");
    CHECK(second == NULL);
    ofl_fedavg_options_free(again);

    /* Clean up the directory (its files are ours). */
    static const char *const files[] = {"federation.state", "lock"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    char result_glob[sizeof dir + 64];
    for (int seq = 0; seq < 4; seq++) {
        snprintf(result_glob, sizeof result_glob, "%s/result-%020d.state", dir, seq);
        unlink(result_glob);
    }
    CHECK_MSG(rmdir(dir) == 0, "could not remove %s", dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    test_options_arguments();
    test_handle_arguments();
    test_federation();
    test_state_dir();
    return test_finish("test_fedavg");
}
