/*
 * Helpers shared by the C tests of openfl-transport: failure accounting
 * (thread-safe, callbacks run on library threads), error assertions that
 * print file:line and the library's message, certificate paths, and option
 * builders for the three TLS modes.
 */
#ifndef OFL_TEST_COMMON_H
#define OFL_TEST_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "openfl_transport.h"

/* ---- failure accounting ------------------------------------------------ */

/* Records a failure (thread-safe) after printing "file:line: message". */
void test_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Number of failures recorded so far. */
int test_failures(void);

/* Prints the verdict and returns the process exit status. */
int test_finish(const char *name);

/* Prints a progress line (flushed, so ctest logs show where a hang was). */
void test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, "CHECK(%s)", #cond); \
    } while (0)

#define CHECK_MSG(cond, ...)                                   \
    do {                                                       \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define CHECK_STR(actual, expected) \
    check_str_at(__FILE__, __LINE__, #actual, (actual), (expected))

/* ---- ofl_error assertions ---------------------------------------------- */

/* Passes when `err` is NULL; otherwise prints it and records a failure.
 * Frees `err`. Returns whether it was NULL. */
bool expect_ok_at(const char *file, int line, const char *expr, ofl_error *err);

/* Passes when `err` is non-NULL with `code` and (if `needle` is non-NULL) a
 * message containing `needle`. Frees `err`. Returns whether it passed. */
bool expect_code_at(const char *file, int line, const char *expr, ofl_error *err,
                    ofl_code code, const char *needle);

bool check_str_at(const char *file, int line, const char *expr, const char *actual,
                  const char *expected);

#define EXPECT_OK(expr) expect_ok_at(__FILE__, __LINE__, #expr, (expr))
#define EXPECT_CODE(expr, code, needle) \
    expect_code_at(__FILE__, __LINE__, #expr, (expr), (code), (needle))

/* Like EXPECT_OK, but a failure ends the test at once (exit status 1). */
#define REQUIRE_OK(expr)                                             \
    do {                                                             \
        if (!expect_ok_at(__FILE__, __LINE__, #expr, (expr))) {      \
            test_abort(__FILE__, __LINE__);                          \
        }                                                            \
    } while (0)

#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            test_fail_at(__FILE__, __LINE__, "REQUIRE(%s)", #cond);         \
            test_abort(__FILE__, __LINE__);                                 \
        }                                                                   \
    } while (0)

_Noreturn void test_abort(const char *file, int line);

/* ---- time ---------------------------------------------------------------- */

double now_seconds(void);          /* CLOCK_MONOTONIC seconds */
void sleep_ms(unsigned ms);

/* Polls `*counter` until it equals `want` or `timeout_ms` passes; returns the
 * last value seen. */
int wait_for_count(atomic_int *counter, int want, unsigned timeout_ms);

/* ---- certificates and options ----------------------------------------- */

typedef struct cert_paths {
    char ca[1024];
    char server_crt[1024];
    char server_key[1024];
    char col1_crt[1024];
    char col1_key[1024];
    char col2_crt[1024];
    char col2_key[1024];
    char foreign_ca[1024];
    char foreign_crt[1024];
    char foreign_key[1024];
    char revoked_crt[1024]; /* CN=col2, issued by ca.crt, revoked by crl.pem */
    char revoked_key[1024];
    char crl[1024];         /* CRL of ca.crt revoking revoked.crt only */
} cert_paths;

/* Fills `paths` for the directory make_certs.sh wrote; exits when a file is
 * missing (the ctest fixture did not run). */
void cert_paths_init(cert_paths *paths, const char *dir);

/* Reads a whole file; returns a malloc'd buffer (caller frees) or NULL. */
uint8_t *read_file(const char *path, size_t *len);

typedef enum tls_mode {
    TLS_MUTUAL,   /* mTLS: server requires, client presents a certificate */
    TLS_ONE_WAY,  /* server authenticated only (disable_client_auth) */
    TLS_INSECURE, /* plain text */
} tls_mode;

#define TEST_AGGREGATOR_UUID "agg-uuid-1"
#define TEST_FEDERATION_UUID "fed-uuid-1"

/* TLS settings for `mode`: NULL for TLS_INSECURE; else root `root` (NULL
 * means ca.crt), the identity `crt`/`key` when both are non-NULL, and
 * one-way client auth for TLS_ONE_WAY. Exits on error. Caller frees. */
ofl_tls_config *make_tls_config(const cert_paths *certs, tls_mode mode, const char *root,
                                const char *crt, const char *key);

/* Server options: 127.0.0.1, port 0, federation TEST_*_UUID, collaborators
 * col1 and col2, no authentication-failure delay, the given TLS mode with
 * server.crt/key. Exits on error. Caller frees. */
ofl_aggregator_server_options *make_server_options(const cert_paths *certs, tls_mode mode);

/* Client options for 127.0.0.1:`port` with the federation above, a 5 s retry
 * deadline (nothing can hang), and the given TLS mode: mTLS presents
 * `crt`/`key`; one-way presents nothing; `root` NULL means ca.crt. Exits on
 * error. Caller frees. */
ofl_aggregator_client_options *make_client_options(const cert_paths *certs, uint16_t port,
                                                   tls_mode mode, const char *root,
                                                   const char *crt, const char *key);

/* make_client_options + ofl_aggregator_client_new. Exits on error. */
ofl_aggregator_client *make_client(const cert_paths *certs, uint16_t port, tls_mode mode,
                                   const char *crt, const char *key);

/* ---- callbacks ------------------------------------------------------------ */

/* The callbacks of a server as one struct literal (the C API registers
 * them one setter at a time on an opaque ofl_aggregator_callbacks). */
typedef struct callback_fns {
    void *user_data;
    ofl_free_fn free_user_data;
    ofl_get_tasks_fn get_tasks;
    ofl_get_aggregated_tensor_fn get_aggregated_tensor;
    ofl_send_local_task_results_fn send_local_task_results;
    ofl_all_quit_jobs_sent_fn all_quit_jobs_sent;
    ofl_valid_collaborator_fn valid_collaborator_cn_and_id;
} callback_fns;

/* An ofl_aggregator_callbacks with every field of `fns` set (NULL ones
 * unset); it owns fns->user_data from here. Exits on error. Caller frees. */
ofl_aggregator_callbacks *make_callbacks(const callback_fns *fns);

/* make_callbacks + ofl_aggregator_server_start + ofl_aggregator_callbacks_free:
 * the server alone holds the user data afterwards (or nobody, when the
 * start failed: free_user_data has then run). */
ofl_error *start_with_callbacks(const ofl_aggregator_server_options *options,
                                const callback_fns *fns, ofl_aggregator_server **out);

/* ---- test data ---------------------------------------------------------- */

/* Fills buf[i] = (i * mul + add) % 256. */
void fill_pattern(uint8_t *buf, size_t len, unsigned mul, unsigned add);

/* Index of the first byte that differs from the pattern, or `len`. */
size_t check_pattern(const uint8_t *buf, size_t len, unsigned mul, unsigned add);

#endif /* OFL_TEST_COMMON_H */
