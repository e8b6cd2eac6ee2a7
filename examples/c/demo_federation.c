/*
 * demo_federation: a whole federation in one process, through the public C
 * API only.
 *
 *   demo_federation CERT_DIR      (make_certs.sh output: ca, server, col1..3)
 *
 * The aggregator is the library's built-in FedAvg (ofl_fedavg_new +
 * ofl_aggregator_server_start_fedavg), listening on 127.0.0.1 with mutual
 * TLS. Three collaborator threads (col1, col2, col3), each with its own
 * client certificate and ofl_aggregator_client, do what OpenFL 1.6's Collaborator does
 * with the default task list: every round they fetch the global model,
 * validate it on their validation shard, train it for a few epochs on their
 * training shard, upload the trained weights, and validate the locally
 * trained model. The model is a logistic regression in plain C (logreg.h)
 * and each collaborator's data is a synthetic shard of its own size and
 * feature distribution (see logreg.h).
 *
 * After 10 rounds it prints, from the aggregator's metrics, each
 * collaborator's validation loss/accuracy of the global model per round and
 * the aggregated (data-size weighted) result; then it compares the final
 * federated model with models each collaborator trains alone for the same
 * number of epochs, all evaluated on the union of the validation shards.
 * Exit status 0 only when the federated model beats every local-only model.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "logreg.h"
#include "openfl_transport.h"

#define ROUNDS 10
#define EPOCHS_PER_ROUND 2
#define VALID_SIZE 200
#define SLEEP_TIME_S 1 /* what FedAvg tells a collaborator waiting for the others */
#define TIMEOUT_S 55   /* the whole demo must finish well within a minute */
#define AGGREGATOR_UUID "demo-aggregator"
#define FEDERATION_UUID "demo-federation"

/* Task and metric names of OpenFL's default plan. */
#define TASK_VALIDATE_GLOBAL "aggregated_model_validation"
#define METRIC_LOSS "loss"
#define METRIC_ACCURACY "accuracy"
#define METRIC_TRAIN_LOSS "train_loss"

/* Model tensors: the weights (shape [NFEAT]) and the bias (a scalar). */
#define TENSOR_WEIGHTS "weights"
#define TENSOR_BIAS "bias"

static const char *const COLLABORATORS[NSHARDS] = {"col1", "col2", "col3"};
static const int TRAIN_SIZE[NSHARDS] = {600, 400, 300};

static const char *g_cert_dir;
static uint16_t g_port;
static dataset g_train[NSHARDS];
static dataset g_valid[NSHARDS];
static atomic_bool g_done;

/* ---- errors ---------------------------------------------------------------- */

/* Every ofl_error ends the demo: print where and why, exit 1. */
#define TRY(expr) try_at(__FILE__, __LINE__, #expr, (expr))

static void try_at(const char *file, int line, const char *expr, ofl_error *err) {
    if (!err) return;
    fprintf(stderr, "%s:%d: %s failed: %s: %s\n", file, line, expr,
            ofl_code_name((int32_t)ofl_error_code(err)), ofl_error_message(err));
    ofl_error_free(err);
    exit(1);
}

static _Noreturn void fail(const char *who, const char *message) {
    fprintf(stderr, "demo_federation: %s: %s\n", who, message);
    exit(1);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cert_path(char *buf, size_t size, const char *file) {
    if ((size_t)snprintf(buf, size, "%s/%s", g_cert_dir, file) >= size) fail("certificates", "path too long");
}

/* ---- OpenFL's tensor encoding ------------------------------------------------ */

/* Tensors travel as little-endian float32 bytes; the shape is the int_list
 * of their one transformer-metadata entry (OpenFL's NoCompressionPipeline).
 * Written byte by byte so the demo is right on any host. */
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

/* Tags as OpenFL's collaborator sends them (sorted; "compressed" marks the
 * lossless pipeline's encoding). */
static const char *const TAGS_MODEL[] = {"model"};
static const char *const TAGS_TRAINED[] = {"compressed", "trained"};
static const char *const TAGS_TRAIN_METRIC[] = {"compressed", "metric"};
static const char *const TAGS_VALIDATE_AGG[] = {"compressed", "metric", "validate_agg"};
static const char *const TAGS_VALIDATE_LOCAL[] = {"compressed", "metric", "validate_local"};
#define NTAGS(tags) (sizeof(tags) / sizeof((tags)[0]))

/* The tensors of one upload, in memory the caller owns (the library borrows
 * it for the duration of ofl_aggregator_client_send_local_task_results). */
#define MAX_UPLOAD 4
typedef struct upload {
    size_t n;
    ofl_tensor_view views[MAX_UPLOAD];
    ofl_metadata_view metadata[MAX_UPLOAD];
    int32_t shape[MAX_UPLOAD][1];
    uint8_t data[MAX_UPLOAD][NFEAT * 4];
} upload;

/* Adds a tensor of `len` values: a vector when `vector`, else a scalar. */
static void upload_add(upload *u, int32_t round, const char *name, bool report,
                       const char *const *tags, size_t ntags, bool vector, const float *values,
                       size_t len) {
    if (u->n == MAX_UPLOAD || len > NFEAT || (!vector && len != 1)) fail("upload", "too many values");
    size_t i = u->n++;
    for (size_t k = 0; k < len; k++) put_f32_le(u->data[i] + 4 * k, values[k]);
    u->shape[i][0] = (int32_t)len;
    u->metadata[i] = (ofl_metadata_view){.int_list = u->shape[i], .int_list_len = vector ? 1 : 0};
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

/* ---- a collaborator ----------------------------------------------------------- */

typedef struct collaborator {
    int index;
    const char *name;
    ofl_aggregator_client *client;
    model global;         /* the aggregated model of `global_round` */
    int32_t global_round; /* -1: none fetched yet */
    model local;          /* the model trained this round */
    int32_t local_round;  /* -1: none trained yet */
} collaborator;

/* Progress of a transfer as a host would show it: one line per report
 * (every 4 MiB and at the end; the demo's tensors are small, so only the
 * end). Returning false would abort the transfer with OFL_CODE_CANCELLED. */
static bool print_progress(void *user_data, uint64_t done, uint64_t total) {
    printf("  progress: %s: %llu of %llu bytes\n", (const char *)user_data, (unsigned long long)done,
           (unsigned long long)total);
    fflush(stdout);
    return true;
}

/* Call settings showing progress for col1's transfers of the last round
 * (NULL otherwise: the client's defaults). Free with ofl_call_options_free. */
static ofl_call_options *progress_options(const collaborator *c, int32_t round, const char *what) {
    if (c->index != 0 || round != ROUNDS - 1) return NULL;
    ofl_call_options *call = NULL;
    TRY(ofl_call_options_new(&call));
    TRY(ofl_call_options_set_progress(call, print_progress, (void *)what));
    return call;
}

/* GetAggregatedTensor for a model tensor of `round`, decoded into `out`
 * after checking the encoding: `len` values, a vector or a scalar. */
static void fetch_tensor(collaborator *c, const char *name, int32_t round, float *out, size_t len,
                         bool vector) {
    ofl_tensor *t = NULL;
    const char *what = vector ? "col1 downloads the global weights" : "col1 downloads the global bias";
    ofl_call_options *call = progress_options(c, round, what);
    TRY(ofl_aggregator_client_get_aggregated_tensor(c->client, c->name, name, round, false, TAGS_MODEL,
                                         NTAGS(TAGS_MODEL), true, call, &t));
    ofl_call_options_free(call);
    uintptr_t ndim = 0;
    const int32_t *shape = ofl_tensor_metadata_len(t) == 1 ? ofl_tensor_metadata_int_list(t, 0, &ndim) : NULL;
    bool compressed = false;
    for (uintptr_t k = 0; k < ofl_tensor_tags_len(t); k++) {
        compressed |= strcmp(ofl_tensor_tag(t, k), "compressed") == 0;
    }
    bool shape_ok = shape && (vector ? ndim == 1 && shape[0] == (int32_t)len : ndim == 0);
    if (!shape_ok || !compressed || ofl_tensor_data_len(t) != 4 * len) {
        fail(c->name, "the aggregator sent a tensor in an unexpected encoding");
    }
    const uint8_t *data = ofl_tensor_data(t);
    for (size_t k = 0; k < len; k++) out[k] = get_f32_le(data + 4 * k);
    ofl_tensor_free(t);
}

static void fetch_global_model(collaborator *c, int32_t round) {
    if (c->global_round == round) return; /* OpenFL caches it for the round too */
    fetch_tensor(c, TENSOR_WEIGHTS, round, c->global.w, NFEAT, true);
    fetch_tensor(c, TENSOR_BIAS, round, &c->global.b, 1, false);
    c->global_round = round;
}

static uint64_t train_seed(int collaborator, int32_t round) {
    return 0x5eedull + 1000ull * (uint64_t)round + (uint64_t)collaborator;
}

/* Runs task `i` of the reply and uploads its results, as OpenFL's
 * collaborator does for its task runner's train_task / validate_task. */
static void run_task(collaborator *c, const ofl_tasks *tasks, uintptr_t i) {
    int32_t round = ofl_tasks_round_number(tasks);
    const char *task = ofl_tasks_name(tasks, i);
    const char *function = ofl_tasks_function_name(tasks, i);
    upload u = {0};
    int32_t data_size;
    if (strcmp(function, "train_task") == 0) {
        fetch_global_model(c, round);
        c->local = c->global;
        float loss = (float)train(&c->local, &g_train[c->index], EPOCHS_PER_ROUND, train_seed(c->index, round));
        c->local_round = round;
        upload_add(&u, round, TENSOR_WEIGHTS, false, TAGS_TRAINED, NTAGS(TAGS_TRAINED), true, c->local.w, NFEAT);
        upload_add(&u, round, TENSOR_BIAS, false, TAGS_TRAINED, NTAGS(TAGS_TRAINED), false, &c->local.b, 1);
        upload_add(&u, round, METRIC_TRAIN_LOSS, true, TAGS_TRAIN_METRIC, NTAGS(TAGS_TRAIN_METRIC), false, &loss, 1);
        data_size = g_train[c->index].n;
    } else if (strcmp(function, "validate_task") == 0) {
        bool apply_local = ofl_tasks_apply_local(tasks, i);
        if (apply_local && c->local_round != round) fail(c->name, "local validation before training");
        if (!apply_local) fetch_global_model(c, round);
        double loss, acc;
        evaluate(apply_local ? &c->local : &c->global, &g_valid[c->index], &loss, &acc);
        float values[2] = {(float)loss, (float)acc};
        const char *const *tags = apply_local ? TAGS_VALIDATE_LOCAL : TAGS_VALIDATE_AGG;
        upload_add(&u, round, METRIC_LOSS, true, tags, NTAGS(TAGS_VALIDATE_AGG), false, &values[0], 1);
        upload_add(&u, round, METRIC_ACCURACY, true, tags, NTAGS(TAGS_VALIDATE_AGG), false, &values[1], 1);
        data_size = g_valid[c->index].n;
    } else {
        fail(c->name, "the aggregator asked for an unknown task function");
    }
    bool trained = strcmp(function, "train_task") == 0;
    ofl_call_options *call = trained ? progress_options(c, round, "col1 uploads its trained model") : NULL;
    TRY(ofl_aggregator_client_send_local_task_results(c->client, c->name, round, task, data_size, u.views, u.n, call));
    ofl_call_options_free(call);
}

static void *collaborator_main(void *arg) {
    collaborator *c = arg;
    char ca[1024], crt[1024], key[1024], file[64];
    cert_path(ca, sizeof ca, "ca.crt");
    snprintf(file, sizeof file, "%s.crt", c->name);
    cert_path(crt, sizeof crt, file);
    snprintf(file, sizeof file, "%s.key", c->name);
    cert_path(key, sizeof key, file);

    ofl_aggregator_client_options *options = NULL;
    TRY(ofl_aggregator_client_options_new("127.0.0.1", g_port, &options));
    ofl_tls_config *tls = NULL; /* mutual TLS: the CA, and this collaborator's identity */
    TRY(ofl_tls_config_new(&tls));
    TRY(ofl_tls_config_set_root_certificate_file(tls, ca));
    TRY(ofl_tls_config_set_identity_files(tls, crt, key));
    TRY(ofl_aggregator_client_options_set_tls(options, tls));
    ofl_tls_config_free(tls); /* copied */
    TRY(ofl_aggregator_client_options_set_federation(options, AGGREGATOR_UUID, FEDERATION_UUID, NULL));
    ofl_connect_options *connect = NULL; /* give up after 10 s without the aggregator */
    TRY(ofl_connect_options_new(&connect));
    TRY(ofl_connect_options_set_retry(connect, 100, 1000, 10000));
    TRY(ofl_aggregator_client_options_set_connect(options, connect));
    ofl_connect_options_free(connect);
    TRY(ofl_aggregator_client_new(options, &c->client));
    ofl_aggregator_client_options_free(options);

    for (;;) {
        ofl_tasks *tasks = NULL;
        TRY(ofl_aggregator_client_get_tasks(c->client, c->name, NULL, &tasks));
        if (ofl_tasks_quit(tasks)) {
            ofl_tasks_free(tasks);
            break;
        }
        uintptr_t n = ofl_tasks_len(tasks);
        if (n == 0) {
            sleep_ms(1000L * ofl_tasks_sleep_time(tasks)); /* the others are still at work */
        }
        for (uintptr_t i = 0; i < n; i++) run_task(c, tasks, i);
        ofl_tasks_free(tasks);
    }
    ofl_aggregator_client_free(c->client);
    c->client = NULL;
    return NULL;
}

/* ---- the aggregator's view ------------------------------------------------------ */

typedef struct round_metrics {
    double loss[NSHARDS + 1]; /* per collaborator, then the aggregate */
    double acc[NSHARDS + 1];
} round_metrics;

/* Collects the aggregated-model validation metrics of every round. */
static void collect_metrics(const ofl_fedavg *fedavg, round_metrics *rows) {
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k <= NSHARDS; k++) rows[r].loss[k] = rows[r].acc[k] = NAN;
    }
    uintptr_t n = ofl_fedavg_metrics_len(fedavg);
    for (uintptr_t i = 0; i < n; i++) {
        ofl_fedavg_metric m;
        TRY(ofl_fedavg_get_metric(fedavg, i, &m));
        if (strcmp(m.task, TASK_VALIDATE_GLOBAL) != 0 || m.round < 0 || m.round >= ROUNDS) continue;
        int k = -1;
        if (m.aggregated) {
            k = NSHARDS;
        } else {
            for (int j = 0; j < NSHARDS; j++) {
                if (strcmp(m.origin, COLLABORATORS[j]) == 0) k = j;
            }
        }
        if (k < 0) continue;
        if (strcmp(m.name, METRIC_LOSS) == 0) rows[m.round].loss[k] = m.value;
        if (strcmp(m.name, METRIC_ACCURACY) == 0) rows[m.round].acc[k] = m.value;
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k <= NSHARDS; k++) {
            if (isnan(rows[r].loss[k]) || isnan(rows[r].acc[k])) fail("metrics", "a round's validation metric is missing");
        }
    }
}

/* An ofl_model (weights + bias) as a logreg.h model. */
static model to_model(const ofl_model *m) {
    model out;
    uintptr_t iw, ib, nw = 0, nb = 0, dims = 0;
    if (!ofl_model_find(m, TENSOR_WEIGHTS, &iw) || !ofl_model_find(m, TENSOR_BIAS, &ib)) {
        fail("model", "a model tensor is missing");
    }
    const float *w = ofl_model_tensor_values(m, iw, &nw);
    const float *b = ofl_model_tensor_values(m, ib, &nb);
    ofl_model_tensor_shape(m, ib, &dims);
    if (nw != NFEAT || nb != 1 || dims != 0) fail("model", "a model tensor has the wrong shape");
    memcpy(out.w, w, sizeof out.w);
    out.b = b[0];
    return out;
}

static void print_separator(void) {
    printf("------+");
    for (int c = 0; c < NSHARDS; c++) printf("-------------------+");
    printf("----------------------+\n");
}

static void watchdog_stop(void) { atomic_store(&g_done, true); }

static void *watchdog_main(void *arg) {
    (void)arg;
    for (int i = 0; i < TIMEOUT_S * 10; i++) {
        if (atomic_load(&g_done)) return NULL;
        sleep_ms(100);
    }
    fprintf(stderr, "demo_federation: timed out after %d s\n", TIMEOUT_S);
    _Exit(2);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR   (certificates from tests/certs/make_certs.sh)\n", argv[0]);
        return 2;
    }
    g_cert_dir = argv[1];
    double start = now_seconds();
    pthread_t watchdog;
    pthread_create(&watchdog, NULL, watchdog_main, NULL);

    /* Each collaborator's private data. */
    for (int c = 0; c < NSHARDS; c++) {
        make_shard(&g_train[c], c, TRAIN_SIZE[c], 1000 + (uint64_t)c);
        make_shard(&g_valid[c], c, VALID_SIZE, 2000 + (uint64_t)c);
    }
    dataset union_valid;
    dataset_concat(&union_valid, g_valid, NSHARDS);

    /* The aggregator: built-in FedAvg over mTLS. */
    ofl_fedavg_options *fo = NULL;
    TRY(ofl_fedavg_options_new(&fo));
    TRY(ofl_fedavg_options_set_federation(fo, AGGREGATOR_UUID, FEDERATION_UUID, NULL));
    for (int c = 0; c < NSHARDS; c++) TRY(ofl_fedavg_options_add_collaborator(fo, COLLABORATORS[c]));
    TRY(ofl_fedavg_options_set_rounds_to_train(fo, ROUNDS));
    const model initial = {{0}, 0.0f};
    const uintptr_t weights_shape[1] = {NFEAT};
    TRY(ofl_fedavg_options_add_model_tensor(fo, TENSOR_WEIGHTS, weights_shape, 1, initial.w, NFEAT));
    TRY(ofl_fedavg_options_add_model_tensor(fo, TENSOR_BIAS, NULL, 0, &initial.b, 1));
    TRY(ofl_fedavg_options_set_best_model_metric(fo, METRIC_ACCURACY));
    TRY(ofl_fedavg_options_set_sleep_time(fo, SLEEP_TIME_S));
    ofl_fedavg *fedavg = NULL;
    TRY(ofl_fedavg_new(fo, &fedavg));
    ofl_fedavg_options_free(fo);

    char ca[1024], server_crt[1024], server_key[1024];
    cert_path(ca, sizeof ca, "ca.crt");
    cert_path(server_crt, sizeof server_crt, "server.crt");
    cert_path(server_key, sizeof server_key, "server.key");
    ofl_aggregator_server_options *so = NULL;
    TRY(ofl_aggregator_server_options_new(&so));
    TRY(ofl_aggregator_server_options_set_listen(so, "127.0.0.1", 0));
    ofl_tls_config *tls = NULL;
    TRY(ofl_tls_config_new(&tls));
    TRY(ofl_tls_config_set_root_certificate_file(tls, ca));
    TRY(ofl_tls_config_set_identity_files(tls, server_crt, server_key));
    TRY(ofl_aggregator_server_options_set_tls(so, tls));
    ofl_tls_config_free(tls);
    ofl_aggregator_server *server = NULL;
    TRY(ofl_aggregator_server_start_fedavg(so, fedavg, &server));
    ofl_aggregator_server_options_free(so);
    g_port = ofl_aggregator_server_port(server);

    printf("openfl-transport %s: FedAvg aggregator on 127.0.0.1:%u (mTLS), %d collaborators, "
           "%d rounds of %d epochs\n",
           ofl_version(), (unsigned)g_port, NSHARDS, ROUNDS, EPOCHS_PER_ROUND);
    for (int c = 0; c < NSHARDS; c++) {
        int positives = 0;
        for (int i = 0; i < g_train[c].n; i++) positives += g_train[c].y[i] > 0.5f;
        printf("  %s: %d training samples (%2.0f%% positive), %d validation samples, "
               "features %d-%d vary\n",
               COLLABORATORS[c], g_train[c].n, 100.0 * positives / g_train[c].n, g_valid[c].n,
               2 * c, 2 * c + 1);
    }
    fflush(stdout);

    /* The collaborators. */
    collaborator cols[NSHARDS];
    pthread_t threads[NSHARDS];
    for (int c = 0; c < NSHARDS; c++) {
        cols[c] = (collaborator){.index = c, .name = COLLABORATORS[c], .global_round = -1, .local_round = -1};
        if (pthread_create(&threads[c], NULL, collaborator_main, &cols[c]) != 0) fail("main", "pthread_create");
    }
    TRY(ofl_aggregator_server_serve(server)); /* returns once every collaborator was told to quit */
    for (int c = 0; c < NSHARDS; c++) pthread_join(threads[c], NULL);
    ofl_aggregator_server_free(server);
    double federation_seconds = now_seconds() - start;

    /* Per round: each collaborator's validation of the global model on its
     * own shard, and the aggregator's data-size weighted average (with equal
     * validation shards, the accuracy on their union). */
    round_metrics rows[ROUNDS];
    collect_metrics(fedavg, rows);
    ofl_model *last = NULL;
    TRY(ofl_fedavg_last_model(fedavg, &last));
    model federated = to_model(last);
    ofl_model_free(last);

    printf("\nValidation of the global model at the start of each round (loss, accuracy):\n");
    printf("round |");
    for (int c = 0; c < NSHARDS; c++) printf("   %-4s loss   acc |", COLLABORATORS[c]);
    printf(" aggregated loss   acc |\n");
    print_separator();
    for (int r = 0; r < ROUNDS; r++) {
        printf("%5d |", r);
        for (int c = 0; c < NSHARDS; c++) printf("   %8.4f %6.3f |", rows[r].loss[c], rows[r].acc[c]);
        printf("       %8.4f %6.3f |\n", rows[r].loss[NSHARDS], rows[r].acc[NSHARDS]);
    }
    double final_loss, final_acc;
    printf("final |");
    for (int c = 0; c < NSHARDS; c++) {
        evaluate(&federated, &g_valid[c], &final_loss, &final_acc);
        printf("   %8.4f %6.3f |", final_loss, final_acc);
    }
    evaluate(&federated, &union_valid, &final_loss, &final_acc);
    printf("       %8.4f %6.3f |\n", final_loss, final_acc);
    printf("(round r: the model aggregated after r rounds, as validated by each collaborator on its\n"
           " shard; aggregated: the data-size weighted average computed by the aggregator, here the\n"
           " accuracy on the union. final: the model after round %d, evaluated here.)\n",
           ROUNDS - 1);

    int32_t best_round = -1;
    double best_score = NAN;
    ofl_fedavg_best_model_score(fedavg, &best_round, &best_score);
    ofl_model *best = NULL;
    TRY(ofl_fedavg_best_model(fedavg, &best));
    model best_model = to_model(best);
    ofl_model_free(best);
    double best_loss, best_acc;
    evaluate(&best_model, &union_valid, &best_loss, &best_acc);

    /* The alternative: each collaborator alone, for as many epochs. */
    printf("\nAccuracy on the union of the validation shards (%d samples):\n", union_valid.n);
    char label[64];
    printf("  %-32s %6.3f  (loss %.4f)\n", "federated, final model", final_acc, final_loss);
    snprintf(label, sizeof label, "federated, best model (round %d)", best_round);
    printf("  %-32s %6.3f  (loss %.4f)\n", label, best_acc, best_loss);
    bool beats_all = true;
    for (int c = 0; c < NSHARDS; c++) {
        model local = initial;
        train(&local, &g_train[c], ROUNDS * EPOCHS_PER_ROUND, 3000 + (uint64_t)c);
        double loss, acc, own_loss, own_acc;
        evaluate(&local, &union_valid, &loss, &acc);
        evaluate(&local, &g_valid[c], &own_loss, &own_acc);
        snprintf(label, sizeof label, "%s alone, %d epochs", COLLABORATORS[c], ROUNDS * EPOCHS_PER_ROUND);
        printf("  %-32s %6.3f  (loss %.4f; %.3f on its own shard)\n", label, acc, loss, own_acc);
        beats_all &= final_acc > acc;
    }
    printf("\nFederation: %d rounds, %zu metrics, %.1f s. ", ofl_fedavg_current_round(fedavg),
           (size_t)ofl_fedavg_metrics_len(fedavg), federation_seconds);
    printf(beats_all ? "The federated model beats every local-only model.\n"
                     : "FAILED: a local-only model is as good as the federated one.\n");

    ofl_fedavg_free(fedavg);
    for (int c = 0; c < NSHARDS; c++) {
        dataset_free(&g_train[c]);
        dataset_free(&g_valid[c]);
    }
    dataset_free(&union_valid);
    watchdog_stop();
    pthread_join(watchdog, NULL);
    return beats_all ? 0 : 1;
}
