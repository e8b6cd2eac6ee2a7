#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_failures;

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    char buf[2048];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d: FAIL: %s\n", file, line, buf);
    fflush(stderr);
    atomic_fetch_add(&g_failures, 1);
}

int test_failures(void) { return atomic_load(&g_failures); }

int test_finish(const char *name) {
    int n = test_failures();
    if (n == 0) {
        printf("%s: PASS\n", name);
    } else {
        printf("%s: FAIL (%d failed check%s)\n", name, n, n == 1 ? "" : "s");
    }
    fflush(stdout);
    return n == 0 ? 0 : 1;
}

void test_note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("-- ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

_Noreturn void test_abort(const char *file, int line) {
    fprintf(stderr, "%s:%d: fatal: stopping the test\n", file, line);
    fflush(stderr);
    exit(1);
}

bool expect_ok_at(const char *file, int line, const char *expr, ofl_error *err) {
    if (err == NULL) return true;
    test_fail_at(file, line, "%s: expected success, got %s: %s", expr,
                 ofl_code_name((int32_t)ofl_error_code(err)), ofl_error_message(err));
    ofl_error_free(err);
    return false;
}

bool expect_code_at(const char *file, int line, const char *expr, ofl_error *err,
                    ofl_code code, const char *needle) {
    if (err == NULL) {
        test_fail_at(file, line, "%s: expected %s, got success", expr,
                     ofl_code_name((int32_t)code));
        return false;
    }
    bool ok = true;
    ofl_code got = ofl_error_code(err);
    const char *msg = ofl_error_message(err);
    if (got != code) {
        test_fail_at(file, line, "%s: expected %s, got %s: %s", expr,
                     ofl_code_name((int32_t)code), ofl_code_name((int32_t)got), msg);
        ok = false;
    } else if (needle != NULL && strstr(msg, needle) == NULL) {
        test_fail_at(file, line, "%s: %s message \"%s\" does not mention \"%s\"", expr,
                     ofl_code_name((int32_t)code), msg, needle);
        ok = false;
    }
    ofl_error_free(err);
    return ok;
}

bool check_str_at(const char *file, int line, const char *expr, const char *actual,
                  const char *expected) {
    if (actual != NULL && expected != NULL && strcmp(actual, expected) == 0) return true;
    if (actual == NULL && expected == NULL) return true;
    test_fail_at(file, line, "%s is %s%s%s, expected %s%s%s", expr, actual ? "\"" : "",
                 actual ? actual : "NULL", actual ? "\"" : "", expected ? "\"" : "",
                 expected ? expected : "NULL", expected ? "\"" : "");
    return false;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int wait_for_count(atomic_int *counter, int want, unsigned timeout_ms) {
    double deadline = now_seconds() + timeout_ms / 1000.0;
    int seen = atomic_load(counter);
    while (seen != want && now_seconds() < deadline) {
        sleep_ms(5);
        seen = atomic_load(counter);
    }
    return seen;
}

static void join_path(char *out, size_t cap, const char *dir, const char *file) {
    int n = snprintf(out, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "certificate path too long: %s/%s\n", dir, file);
        exit(1);
    }
    if (access(out, R_OK) != 0) {
        fprintf(stderr, "missing %s (did the certs fixture run?)\n", out);
        exit(1);
    }
}

void cert_paths_init(cert_paths *p, const char *dir) {
    join_path(p->ca, sizeof p->ca, dir, "ca.crt");
    join_path(p->server_crt, sizeof p->server_crt, dir, "server.crt");
    join_path(p->server_key, sizeof p->server_key, dir, "server.key");
    join_path(p->col1_crt, sizeof p->col1_crt, dir, "col1.crt");
    join_path(p->col1_key, sizeof p->col1_key, dir, "col1.key");
    join_path(p->col2_crt, sizeof p->col2_crt, dir, "col2.crt");
    join_path(p->col2_key, sizeof p->col2_key, dir, "col2.key");
    join_path(p->foreign_ca, sizeof p->foreign_ca, dir, "foreign-ca.crt");
    join_path(p->foreign_crt, sizeof p->foreign_crt, dir, "foreign.crt");
    join_path(p->foreign_key, sizeof p->foreign_key, dir, "foreign.key");
    join_path(p->revoked_crt, sizeof p->revoked_crt, dir, "revoked.crt");
    join_path(p->revoked_key, sizeof p->revoked_key, dir, "revoked.key");
    join_path(p->crl, sizeof p->crl, dir, "crl.pem");
}

uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, used = 0;
    for (;;) {
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *nbuf = realloc(buf, ncap);
            if (nbuf == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (n == 0) break;
    }
    fclose(f);
    *len = used;
    return buf;
}

ofl_tls_config *make_tls_config(const cert_paths *certs, tls_mode mode, const char *root,
                                const char *crt, const char *key) {
    if (mode == TLS_INSECURE) return NULL;
    ofl_tls_config *tls = NULL;
    REQUIRE_OK(ofl_tls_config_new(&tls));
    REQUIRE_OK(ofl_tls_config_set_root_certificate_file(tls, root ? root : certs->ca));
    if (crt != NULL && key != NULL) REQUIRE_OK(ofl_tls_config_set_identity_files(tls, crt, key));
    if (mode == TLS_ONE_WAY) REQUIRE_OK(ofl_tls_config_set_client_auth(tls, OFL_CLIENT_AUTH_NONE));
    return tls;
}

ofl_aggregator_server_options *make_server_options(const cert_paths *certs, tls_mode mode) {
    ofl_aggregator_server_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_server_options_new(&o));
    REQUIRE_OK(ofl_aggregator_server_options_set_listen(o, "127.0.0.1", 0));
    REQUIRE_OK(ofl_aggregator_server_options_set_federation(o, TEST_AGGREGATOR_UUID,
                                                            TEST_FEDERATION_UUID, NULL));
    REQUIRE_OK(ofl_aggregator_server_options_add_collaborator(o, "col1"));
    REQUIRE_OK(ofl_aggregator_server_options_add_collaborator(o, "col2"));
    REQUIRE_OK(ofl_aggregator_server_options_set_auth_failure_max_delay_ms(o, 0));
    ofl_tls_config *tls = make_tls_config(certs, mode, NULL, certs->server_crt, certs->server_key);
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
    return o;
}

ofl_aggregator_client_options *make_client_options(const cert_paths *certs, uint16_t port,
                                                   tls_mode mode, const char *root,
                                                   const char *crt, const char *key) {
    ofl_aggregator_client_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_client_options_new("127.0.0.1", port, &o));
    REQUIRE_OK(ofl_aggregator_client_options_set_federation(o, TEST_AGGREGATOR_UUID,
                                                            TEST_FEDERATION_UUID, NULL));
    /* Bounded retries: a test that goes wrong fails instead of hanging. */
    ofl_connect_options *connect = NULL;
    REQUIRE_OK(ofl_connect_options_new(&connect));
    REQUIRE_OK(ofl_connect_options_set_retry(connect, 50, 500, 5000));
    REQUIRE_OK(ofl_connect_options_set_connect_timeout_ms(connect, 5000));
    REQUIRE_OK(ofl_aggregator_client_options_set_connect(o, connect));
    ofl_connect_options_free(connect);
    ofl_tls_config *tls = make_tls_config(certs, mode, root, mode == TLS_MUTUAL ? crt : NULL,
                                          mode == TLS_MUTUAL ? key : NULL);
    REQUIRE_OK(ofl_aggregator_client_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
    return o;
}

ofl_aggregator_client *make_client(const cert_paths *certs, uint16_t port, tls_mode mode,
                                   const char *crt, const char *key) {
    ofl_aggregator_client_options *o = make_client_options(certs, port, mode, NULL, crt, key);
    ofl_aggregator_client *c = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &c));
    ofl_aggregator_client_options_free(o);
    return c;
}

ofl_aggregator_callbacks *make_callbacks(const callback_fns *fns) {
    ofl_aggregator_callbacks *cb = NULL;
    REQUIRE_OK(ofl_aggregator_callbacks_new(&cb));
    REQUIRE_OK(ofl_aggregator_callbacks_set_user_data(cb, fns->user_data, fns->free_user_data));
    REQUIRE_OK(ofl_aggregator_callbacks_set_get_tasks(cb, fns->get_tasks));
    REQUIRE_OK(ofl_aggregator_callbacks_set_get_aggregated_tensor(cb, fns->get_aggregated_tensor));
    REQUIRE_OK(ofl_aggregator_callbacks_set_send_local_task_results(cb, fns->send_local_task_results));
    REQUIRE_OK(ofl_aggregator_callbacks_set_all_quit_jobs_sent(cb, fns->all_quit_jobs_sent));
    REQUIRE_OK(ofl_aggregator_callbacks_set_valid_collaborator_cn_and_id(
        cb, fns->valid_collaborator_cn_and_id));
    return cb;
}

ofl_error *start_with_callbacks(const ofl_aggregator_server_options *options,
                                const callback_fns *fns, ofl_aggregator_server **out) {
    ofl_aggregator_callbacks *cb = make_callbacks(fns);
    ofl_error *err = ofl_aggregator_server_start(options, cb, out);
    ofl_aggregator_callbacks_free(cb);
    return err;
}

void fill_pattern(uint8_t *buf, size_t len, unsigned mul, unsigned add) {
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)((i * mul + add) % 256u);
}

size_t check_pattern(const uint8_t *buf, size_t len, unsigned mul, unsigned add) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != (uint8_t)((i * mul + add) % 256u)) return i;
    }
    return len;
}
