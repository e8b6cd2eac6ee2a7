/*
 * Received tensor data starts on a 64-byte boundary, so a host may read it in
 * place as `const float *` (issue 9 item 4). Run under UBSan (tests/c/run.sh's
 * second build: -fsanitize=undefined includes -fsanitize=alignment), a
 * misaligned float load would also stop the test.
 *
 * 1. Download: a collaborator gets tensors of odd float counts with odd names
 *    and tags (so their data sits at varying offsets of the encoding) and
 *    reads each through `const float *`.
 * 2. Upload: the server's send_local_task_results callback receives such
 *    tensors in one upload and reads them the same way.
 * 3. FedAvg: ofl_model_tensor_values of a model with odd-sized tensors.
 * Before: data sat at whatever offset the encoding gave (seen: 33 and 35
 * modulo 64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define NTENSORS 9
/* Float counts: each remainder modulo 16 (64 bytes) appears, up to 3 MiB. */
static const size_t COUNTS[NTENSORS] = {1, 3, 17, 250, 1, 4099, 786433, 33, 7};

static void tensor_name(int i, char *buf, size_t len) {
    snprintf(buf, len, "t%d_%.*s", i, i % 6, "xxxxxx");
}

/* Value k of tensor i: exact in float. */
static float value(int i, size_t k) { return (float)(i * 1000) + (float)(k % 997); }

static float *make_values(int i) {
    float *v = malloc(COUNTS[i] * sizeof *v);
    REQUIRE(v != NULL);
    for (size_t k = 0; k < COUNTS[i]; k++) v[k] = value(i, k);
    return v;
}

static const char *const TAGS[3] = {"model", "trained", "odd_tag_"};

static ofl_tensor_view make_view(int i, char *name, float *values) {
    tensor_name(i, name, 32);
    return (ofl_tensor_view){.name = name, .round_number = i, .lossless = true,
                             .tags = TAGS, .tags_len = (size_t)(1 + i % 3),
                             .data = (const uint8_t *)values,
                             .data_len = COUNTS[i] * sizeof(float)};
}

/* Checks alignment, then reads the data as floats (UBSan checks each load).
 * Returns whether tensor `t` is tensor i, aligned and intact. */
static bool check_tensor(const char *where, const ofl_tensor *t, int i) {
    char name[32];
    tensor_name(i, name, sizeof name);
    const uint8_t *data = ofl_tensor_data(t);
    size_t len = ofl_tensor_data_len(t);
    if (strcmp(ofl_tensor_name(t), name) != 0 || len != COUNTS[i] * sizeof(float) || data == NULL) {
        test_fail_at(__FILE__, __LINE__, "%s: tensor %d is not %s of %zu floats", where, i, name,
                     COUNTS[i]);
        return false;
    }
    uintptr_t offset = (uintptr_t)data % 64;
    if (offset != 0) {
        test_fail_at(__FILE__, __LINE__, "%s: tensor %s data at offset %u modulo 64", where, name,
                     (unsigned)offset);
        return false;
    }
    const float *f = (const float *)data;
    for (size_t k = 0; k < COUNTS[i]; k++) {
        if (f[k] != value(i, k)) {
            test_fail_at(__FILE__, __LINE__, "%s: tensor %s differs at value %zu", where, name, k);
            return false;
        }
    }
    return true;
}

typedef struct server_state {
    atomic_int uploads_ok;
    atomic_int uploads;
} server_state;

static ofl_error *get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud;
    (void)collaborator;
    return ofl_reply_set_round_number(reply, 1);
}

static ofl_error *get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                             ofl_reply *reply) {
    (void)ud;
    (void)collaborator;
    int i = atoi(req->tensor_name + 1);
    if (i < 0 || i >= NTENSORS) return ofl_error_new(OFL_CODE_NOT_FOUND, req->tensor_name);
    char name[32];
    float *values = make_values(i);
    ofl_tensor_view view = make_view(i, name, values);
    ofl_error *err = ofl_reply_set_tensor(reply, &view); /* copies */
    free(values);
    return err;
}

static ofl_error *send_results(void *ud, const char *collaborator, const ofl_task_results *r) {
    (void)collaborator;
    server_state *s = ud;
    atomic_fetch_add(&s->uploads, 1);
    bool ok = ofl_task_results_tensors_len(r) == NTENSORS;
    CHECK_MSG(ok, "upload holds %zu tensors", (size_t)ofl_task_results_tensors_len(r));
    for (int i = 0; ok && i < NTENSORS; i++) ok = check_tensor("upload", ofl_task_results_tensor(r, i), i);
    if (ok) atomic_fetch_add(&s->uploads_ok, 1);
    return NULL;
}

static bool all_quit(void *ud) {
    (void)ud;
    return false;
}

static void test_download_and_upload(const cert_paths *certs) {
    server_state state = {0};
    ofl_aggregator_server_options *o = make_server_options(certs, TLS_MUTUAL);
    callback_fns cb = {.user_data = &state, .get_tasks = get_tasks, .get_aggregated_tensor = get_tensor,
                       .send_local_task_results = send_results, .all_quit_jobs_sent = all_quit};
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &cb, &server));
    ofl_aggregator_server_options_free(o);
    ofl_aggregator_client *client =
        make_client(certs, ofl_aggregator_server_port(server), TLS_MUTUAL, certs->col1_crt, certs->col1_key);

    test_note("download: %d tensors of odd sizes, names and tags", NTENSORS);
    for (int i = 0; i < NTENSORS; i++) {
        char name[32];
        tensor_name(i, name, sizeof name);
        ofl_tensor *t = NULL;
        if (EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(client, "col1", name, 1, false, NULL, 0,
                                                                  false, NULL, &t)))
            check_tensor("download", t, i);
        ofl_tensor_free(t);
    }

    test_note("upload: %d tensors of odd sizes, names and tags in one upload", NTENSORS);
    ofl_tensor_view views[NTENSORS];
    char names[NTENSORS][32];
    float *values[NTENSORS];
    for (int i = 0; i < NTENSORS; i++) {
        values[i] = make_values(i);
        views[i] = make_view(i, names[i], values[i]);
    }
    EXPECT_OK(ofl_aggregator_client_send_local_task_results(client, "col1", 1, "train", 10, views, NTENSORS, NULL));
    for (int i = 0; i < NTENSORS; i++) free(values[i]);
    CHECK(atomic_load(&state.uploads) == 1);
    CHECK(atomic_load(&state.uploads_ok) == 1);

    ofl_aggregator_client_free(client);
    EXPECT_OK(ofl_aggregator_server_stop(server));
    ofl_aggregator_server_free(server);
}

static void test_fedavg_model_values(void) {
    test_note("FedAvg: ofl_model_tensor_values of odd-sized tensors");
    ofl_fedavg_options *o = NULL;
    REQUIRE_OK(ofl_fedavg_options_new(&o));
    REQUIRE_OK(ofl_fedavg_options_add_collaborator(o, "col1"));
    for (int i = 0; i < NTENSORS; i++) {
        char name[32];
        tensor_name(i, name, sizeof name);
        float *v = make_values(i);
        size_t shape[1] = {COUNTS[i]};
        REQUIRE_OK(ofl_fedavg_options_add_model_tensor(o, name, shape, 1, v, COUNTS[i]));
        free(v);
    }
    ofl_fedavg *fa = NULL;
    REQUIRE_OK(ofl_fedavg_new(o, &fa));
    ofl_fedavg_options_free(o);
    ofl_model *model = NULL;
    REQUIRE_OK(ofl_fedavg_last_model(fa, &model));
    CHECK(ofl_model_len(model) == NTENSORS);
    for (int i = 0; i < NTENSORS; i++) {
        char name[32];
        tensor_name(i, name, sizeof name);
        size_t index = 0;
        if (!ofl_model_find(model, name, &index)) {
            test_fail_at(__FILE__, __LINE__, "model has no %s", name);
            continue;
        }
        size_t n = 0;
        const float *f = ofl_model_tensor_values(model, index, &n);
        CHECK_MSG(f != NULL && (uintptr_t)f % 64 == 0, "%s values at offset %u modulo 64", name,
                  (unsigned)((uintptr_t)f % 64));
        CHECK(n == COUNTS[i]);
        for (size_t k = 0; f != NULL && k < n; k++) {
            if (f[k] != value(i, k)) {
                test_fail_at(__FILE__, __LINE__, "%s differs at value %zu", name, k);
                break;
            }
        }
    }
    ofl_model_free(model);
    ofl_fedavg_free(fa);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths certs;
    cert_paths_init(&certs, argv[1]);
    test_download_and_upload(&certs);
    test_fedavg_model_values();
    return test_finish("test_aligned");
}
