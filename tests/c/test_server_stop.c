/*
 * test_server_stop: a hard stop with a grace (issue 9, item 3), from C.
 *
 * - ofl_server_limits_set_shutdown_grace_ms and
 *   ofl_aggregator_server_options_set_quit_poll_interval_ms check their
 *   values (INVALID_ARGUMENT naming the setting).
 * - An aggregator server with two stalled clients (raw sockets speaking
 *   HTTP/2: an upload that sends part of a message then nothing, and a
 *   unary request whose body never comes) and an all_quit_jobs_sent callback
 *   that is still running: after ofl_aggregator_server_stop,
 *   ofl_aggregator_server_serve returns within grace + 1 s (not before the
 *   grace), the stalled connections are closed, free returns at once, the
 *   upload never reaches send_local_task_results, and free_user_data runs
 *   only after the abandoned callback returned (ASan would see a use after
 *   free otherwise).
 * - With a grace of 0 the same stop takes well under a second.
 *
 * usage: test_server_stop CERT_DIR
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common.h"

#define YEAR_MS (365ull * 24 * 3600 * 1000)

/* ---- a raw HTTP/2 client ------------------------------------------------- */

static void put_frame(uint8_t *out, size_t *at, uint8_t type, uint8_t flags, uint32_t stream,
                      const uint8_t *payload, size_t len) {
    uint8_t *p = out + *at;
    p[0] = (uint8_t)(len >> 16), p[1] = (uint8_t)(len >> 8), p[2] = (uint8_t)len;
    p[3] = type, p[4] = flags;
    p[5] = (uint8_t)(stream >> 24), p[6] = (uint8_t)(stream >> 16), p[7] = (uint8_t)(stream >> 8),
    p[8] = (uint8_t)stream;
    if (len > 0) memcpy(p + 9, payload, len);
    *at += 9 + len;
}

/* HPACK literal (no indexing) of a string of at most 126 bytes. */
static void put_str(uint8_t *out, size_t *at, const char *s) {
    size_t len = strlen(s);
    out[(*at)++] = (uint8_t)len;
    memcpy(out + *at, s, len);
    *at += len;
}

/* The request head of a gRPC call to `path` (HPACK, no Huffman). */
static size_t grpc_head(uint8_t *out, const char *path) {
    size_t at = 0;
    out[at++] = 0x83; /* :method POST */
    out[at++] = 0x86; /* :scheme http */
    out[at++] = 0x04; /* :path, literal value */
    put_str(out, &at, path);
    out[at++] = 0x01; /* :authority */
    put_str(out, &at, "127.0.0.1");
    out[at++] = 0x0f, out[at++] = 0x10; /* content-type (static index 31) */
    put_str(out, &at, "application/grpc");
    out[at++] = 0x00;
    put_str(out, &at, "te");
    put_str(out, &at, "trailers");
    return at;
}

/* Connects to 127.0.0.1:port, opens stream 1 to `path` and sends `body`
 * (gRPC framed bytes) without ending the stream: a client that stalls. */
static int stalled_call(uint16_t port, const char *path, const uint8_t *body, size_t body_len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    static uint8_t out[8192];
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t at = 0;
    memcpy(out, preface, sizeof preface - 1);
    at += sizeof preface - 1;
    put_frame(out, &at, 0x4 /* SETTINGS */, 0, 0, NULL, 0);
    uint8_t head[512];
    size_t head_len = grpc_head(head, path);
    put_frame(out, &at, 0x1 /* HEADERS */, 0x4 /* END_HEADERS */, 1, head, head_len);
    if (body_len > 0) put_frame(out, &at, 0x0 /* DATA */, 0, 1, body, body_len);
    REQUIRE(send(fd, out, at, MSG_NOSIGNAL) == (ssize_t)at);
    return fd;
}

/* Reads what the server sends until it closes or resets the connection;
 * false when it is still open after `timeout_s`. */
static bool closed_by_server(int fd, int timeout_s) {
    struct timeval tv = {.tv_sec = timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) return false; /* EAGAIN: still open */
    }
}

/* ---- the server's logic ------------------------------------------------- */

typedef struct host {
    atomic_int uploads;           /* send_local_task_results calls */
    atomic_int quit_checks;       /* all_quit_jobs_sent calls */
    atomic_int quit_check_done;   /* the first (slow) one returned */
    atomic_int freed;             /* free_user_data ran */
    atomic_int freed_too_early;   /* ... while a callback still ran */
    unsigned slow_quit_check_ms;  /* how long the first all_quit_jobs_sent blocks */
} host;

static ofl_error *get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)reply;
    return NULL;
}

static ofl_error *get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                             ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)req, (void)reply;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

static ofl_error *send_results(void *ud, const char *collaborator, const ofl_task_results *results) {
    (void)collaborator, (void)results;
    atomic_fetch_add(&((host *)ud)->uploads, 1);
    return NULL;
}

/* The first call blocks (host code still running when the grace ends). */
static bool all_quit_jobs_sent(void *ud) {
    host *h = ud;
    if (atomic_fetch_add(&h->quit_checks, 1) == 0) {
        sleep_ms(h->slow_quit_check_ms);
        atomic_store(&h->quit_check_done, 1);
    }
    return false;
}

static void free_host(void *ud) {
    host *h = ud;
    if (h->slow_quit_check_ms > 0 && !atomic_load(&h->quit_check_done)) atomic_store(&h->freed_too_early, 1);
    atomic_store(&h->freed, 1);
}

static void *serve_thread(void *server) {
    ofl_error *err = ofl_aggregator_server_serve(server);
    if (err) {
        test_fail_at(__FILE__, __LINE__, "serve: %s", ofl_error_message(err));
        ofl_error_free(err);
    }
    return NULL;
}

/* ---- the tests ------------------------------------------------------------ */

static void test_setters(void) {
    ofl_server_limits *l = NULL;
    REQUIRE_OK(ofl_server_limits_new(&l));
    EXPECT_CODE(ofl_server_limits_set_shutdown_grace_ms(NULL, 1000), OFL_CODE_INVALID_ARGUMENT, "limits");
    EXPECT_CODE(ofl_server_limits_set_shutdown_grace_ms(l, YEAR_MS + 1), OFL_CODE_INVALID_ARGUMENT,
                "shutdown_grace");
    EXPECT_CODE(ofl_server_limits_set_shutdown_grace_ms(l, UINT64_MAX), OFL_CODE_INVALID_ARGUMENT,
                "shutdown_grace");
    EXPECT_OK(ofl_server_limits_set_shutdown_grace_ms(l, 0));
    EXPECT_OK(ofl_server_limits_set_shutdown_grace_ms(l, YEAR_MS));
    ofl_server_limits_free(l);

    ofl_aggregator_server_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_server_options_new(&o));
    EXPECT_CODE(ofl_aggregator_server_options_set_quit_poll_interval_ms(NULL, 100),
                OFL_CODE_INVALID_ARGUMENT, "options");
    EXPECT_CODE(ofl_aggregator_server_options_set_quit_poll_interval_ms(o, 0), OFL_CODE_INVALID_ARGUMENT,
                "quit_poll_interval");
    EXPECT_CODE(ofl_aggregator_server_options_set_quit_poll_interval_ms(o, YEAR_MS + 1),
                OFL_CODE_INVALID_ARGUMENT, "quit_poll_interval");
    EXPECT_OK(ofl_aggregator_server_options_set_quit_poll_interval_ms(o, 50));
    ofl_aggregator_server_options_free(o);
}

/* Starts a server with `grace_ms`, two stalled clients and a slow quit
 * check, stops it, and checks how long serve took. */
static void stop_with_stalled_clients(uint64_t grace_ms, unsigned slow_quit_check_ms) {
    test_note("stop with stalled clients, grace %llu ms", (unsigned long long)grace_ms);
    static host h;
    memset(&h, 0, sizeof h);
    h.slow_quit_check_ms = slow_quit_check_ms;

    ofl_aggregator_server_options *o = NULL;
    REQUIRE_OK(ofl_aggregator_server_options_new(&o));
    REQUIRE_OK(ofl_aggregator_server_options_set_listen(o, "127.0.0.1", 0));
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, NULL));
    REQUIRE_OK(ofl_aggregator_server_options_set_federation(o, "agg", "fed", NULL));
    REQUIRE_OK(ofl_aggregator_server_options_add_collaborator(o, "col1"));
    REQUIRE_OK(ofl_aggregator_server_options_set_quit_poll_interval_ms(o, 50));
    ofl_server_limits *l = NULL;
    REQUIRE_OK(ofl_server_limits_new(&l));
    REQUIRE_OK(ofl_server_limits_set_shutdown_grace_ms(l, grace_ms));
    REQUIRE_OK(ofl_aggregator_server_options_set_limits(o, l));
    ofl_server_limits_free(l);
    callback_fns cb = {
        .user_data = &h,
        .free_user_data = free_host,
        .get_tasks = get_tasks,
        .get_aggregated_tensor = get_tensor,
        .send_local_task_results = send_results,
        .all_quit_jobs_sent = all_quit_jobs_sent,
    };
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &cb, &server));
    ofl_aggregator_server_options_free(o);
    uint16_t port = ofl_aggregator_server_port(server);

    pthread_t serving;
    REQUIRE(pthread_create(&serving, NULL, serve_thread, server) == 0);
    /* An upload: a gRPC message announced as 4096 bytes, 100 of them sent. */
    uint8_t body[105] = {0, 0, 0, 0x10, 0x00};
    memset(body + 5, 0x0a, 100);
    int upload = stalled_call(port, "/openfl.aggregator.Aggregator/SendLocalTaskResults", body, sizeof body);
    /* A unary call whose request body never comes. */
    int unary = stalled_call(port, "/openfl.aggregator.Aggregator/GetTasks", NULL, 0);
    sleep_ms(300);
    CHECK(atomic_load(&h.quit_checks) >= 1);

    double started = now_seconds();
    EXPECT_OK(ofl_aggregator_server_stop(server));
    REQUIRE(pthread_join(serving, NULL) == 0);
    double took = now_seconds() - started;
    double grace = (double)grace_ms / 1000.0;
    test_note("serve returned %.3f s after stop (grace %.3f s)", took, grace);
    CHECK_MSG(took <= grace + 1.0, "serve returned %.3f s after stop: over the grace %.3f s + 1 s", took, grace);
    CHECK_MSG(took >= grace - 0.05, "serve returned %.3f s after stop: before the grace %.3f s", took, grace);
    CHECK_MSG(closed_by_server(upload, 3), "the stalled upload's connection is still open");
    CHECK_MSG(closed_by_server(unary, 3), "the stalled call's connection is still open");
    close(upload);
    close(unary);

    started = now_seconds();
    ofl_aggregator_server_free(server);
    took = now_seconds() - started;
    CHECK_MSG(took < 1.0, "free took %.3f s after serve returned", took);
    CHECK_MSG(atomic_load(&h.uploads) == 0, "the cut upload reached send_local_task_results");
    /* The abandoned callback returns later; only then is the user data freed. */
    wait_for_count(&h.freed, 1, slow_quit_check_ms + 5000);
    CHECK_MSG(atomic_load(&h.freed) == 1, "free_user_data never ran");
    CHECK_MSG(!atomic_load(&h.freed_too_early), "free_user_data ran while a callback still used it");
}

int main(int argc, char **argv) {
    (void)argc, (void)argv;
    test_setters();
    stop_with_stalled_clients(1000, 3000);
    stop_with_stalled_clients(0, 0);
    return test_finish("test_server_stop");
}
