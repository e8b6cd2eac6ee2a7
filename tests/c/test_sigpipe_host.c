/*
 * test_sigpipe_host: a C host with the default SIGPIPE disposition survives
 * peers that hang up.
 *
 * A cdylib gets no Rust start-up code ignoring SIGPIPE, and rustls writes
 * with writev: a write to a socket whose peer is gone raises SIGPIPE, which
 * kills a host that did not ignore it. The library must never do socket I/O
 * on the caller's thread (its runtime threads block SIGPIPE) and must not
 * change the host's signal dispositions. This host changes nothing: SIGPIPE
 * stays fatal, so a regression kills this process (ctest reports the signal).
 *
 * The test first proves SIGPIPE is fatal here (a forked child writing to a
 * closed socket must die by it), then, against an mTLS and a plain-text
 * server whose callback serves a 4 MiB tensor, opens and drops 200 peers:
 *   - 100 ofl_aggregator_clients that start get_aggregated_tensor and are freed from the
 *     main thread mid-call (after the server callback has started);
 *   -  70 raw TCP sockets sending a partial or bogus TLS / HTTP/2 preface and
 *         closing abruptly (half with RST);
 *   -  10 raw sockets that connect and send nothing (open until the end);
 *   -  10 ofl_aggregator_clients uploading 4 MiB to a hostile server that resets every
 *         connection;
 *   -  10 ofl_aggregator_clients uploading 4 MiB through a relay that hangs up on them
 *         mid-upload (their next writes hit a closed peer: EPIPE).
 * Both servers are served by ofl_aggregator_server_serve on host threads
 * (signal state untouched) until ofl_aggregator_server_stop.
 * It then asserts the process is alive, SIGPIPE is still fatal and unblocked
 * on this thread, the servers still answer a normal call byte for byte, and
 * every borrowed tensor and user data was released exactly once.
 *
 * usage: test_sigpipe_host CERT_DIR      (OFL_SEED=<n> replays a run)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define TENSOR_SIZE ((size_t)4 << 20)
#define FREED_TLS 60
#define FREED_PLAIN 40
#define RAW_PEERS 70
#define IDLE_PEERS 10
#define HOSTILE_UPLOADS 10
#define RELAY_UPLOADS 10
#define MAX_PAIRS 32
#define BATCH 10
#define NSLOTS (FREED_TLS + FREED_PLAIN)

static cert_paths g_certs;
static uint8_t *g_model; /* (i*7+1)%256, served borrowed by both servers */
static uint8_t *g_update;

/* ---- a small deterministic PRNG (seed printed for replays) -------------- */

static unsigned long long g_rng;
static pthread_mutex_t g_rng_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned rnd(unsigned bound) {
    pthread_mutex_lock(&g_rng_lock);
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    unsigned r = (unsigned)(g_rng % bound);
    pthread_mutex_unlock(&g_rng_lock);
    return r;
}

/* ---- SIGPIPE state of this host ---------------------------------------- */

/* Whether SIGPIPE has its default (fatal) action and is unblocked on the
 * calling thread. */
static bool sigpipe_is_fatal_here(const char **why) {
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    if (sa.sa_handler != SIG_DFL) {
        *why = sa.sa_handler == SIG_IGN ? "SIGPIPE is ignored" : "SIGPIPE has a handler";
        return false;
    }
    if (sigismember(&mask, SIGPIPE)) {
        *why = "SIGPIPE is blocked on this thread";
        return false;
    }
    return true;
}

/* A parent process (a shell's `trap '' PIPE`, a test runner) may pass on an
 * ignored or blocked SIGPIPE; a real host has the default. Restore exactly
 * that default (never ignore it), or the test could not catch anything. */
static void ensure_default_sigpipe(void) {
    const char *why = NULL;
    if (sigpipe_is_fatal_here(&why)) return;
    test_note("inherited state: %s; restoring the default disposition", why);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_UNBLOCK, &pipe_only, NULL);
}

/* Control: in this host, a write on the calling thread to a socket whose
 * peer is gone kills the process by SIGPIPE. Runs in a forked child before
 * any library call (no threads exist yet). */
static void check_sigpipe_kills(void) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) _exit(3);
        close(sv[1]);
        ssize_t n = write(sv[0], "x", 1); /* raises SIGPIPE */
        (void)n;
        _exit(0); /* survived: SIGPIPE is not fatal */
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE) {
        test_note("control: a host write to a closed socket dies by SIGPIPE, as it should");
    } else {
        test_fail_at(__FILE__, __LINE__,
                     "control: writing to a closed socket did not kill the child by SIGPIPE "
                     "(status 0x%x): this test could not detect a regression",
                     (unsigned)status);
    }
}

/* ---- the servers ------------------------------------------------------- */

typedef struct slot {
    ofl_aggregator_client *client;
    pthread_t thread;
    char tensor_name[32];
    atomic_int entered; /* set by the server callback */
    bool joined;
    ofl_code result;
} slot;

static slot g_slots[NSLOTS];

typedef struct server_state {
    atomic_int sets;     /* borrowed tensors handed to the library */
    atomic_int releases; /* release callbacks run */
    atomic_int calls;
    atomic_int free_calls;
} server_state;

static void count_release(void *context) {
    server_state *s = context;
    atomic_fetch_add(&s->releases, 1);
}

static ofl_error *cb_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)ud, (void)collaborator;
    EXPECT_OK(ofl_reply_set_sleep_time(reply, 1));
    return NULL;
}

static ofl_error *cb_get_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                             ofl_reply *reply) {
    server_state *s = ud;
    (void)collaborator;
    atomic_fetch_add(&s->calls, 1);
    int index = -1;
    if (sscanf(req->tensor_name, "slot-%d", &index) == 1 && index >= 0 && index < NSLOTS) {
        atomic_store(&g_slots[index].entered, 1);
        sleep_ms(rnd(5)); /* let the client be freed during the callback or the transfer */
    }
    ofl_tensor_view view = {.name = req->tensor_name, .round_number = req->round_number,
                            .lossless = true, .data = g_model, .data_len = TENSOR_SIZE};
    atomic_fetch_add(&s->sets, 1);
    if (!EXPECT_OK(ofl_reply_set_tensor_borrowed(reply, &view, count_release, s)))
        return ofl_error_new(OFL_CODE_INTERNAL, NULL);
    return NULL;
}

static ofl_error *cb_send_results(void *ud, const char *collaborator,
                               const ofl_task_results *results) {
    (void)ud, (void)collaborator, (void)results;
    return NULL;
}

static void cb_free(void *ud) {
    server_state *s = ud;
    atomic_fetch_add(&s->free_calls, 1);
}

static ofl_aggregator_server *start_server(server_state *s, tls_mode mode) {
    callback_fns cb = {
        .user_data = s,
        .free_user_data = cb_free,
        .get_tasks = cb_get_tasks,
        .get_aggregated_tensor = cb_get_tensor,
        .send_local_task_results = cb_send_results,
    };
    ofl_aggregator_server_options *o = make_server_options(&g_certs, mode);
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &cb, &server));
    ofl_aggregator_server_options_free(o);
    return server;
}

/* ---- serving on host threads -------------------------------------------- */

typedef struct serving {
    ofl_aggregator_server *server;
    pthread_t thread;
    atomic_int done;
    ofl_error *error;
} serving;

/* A host thread blocked in serve, as a real aggregator's main thread is. */
static void *serve_main(void *p) {
    serving *sv = p;
    sv->error = ofl_aggregator_server_serve(sv->server);
    atomic_store(&sv->done, 1);
    return NULL;
}

static void serving_start(serving *sv, ofl_aggregator_server *server) {
    memset(sv, 0, sizeof *sv);
    sv->server = server;
    REQUIRE(pthread_create(&sv->thread, NULL, serve_main, sv) == 0);
}

static void serving_stop(serving *sv, const char *what) {
    CHECK_MSG(atomic_load(&sv->done) == 0, "%s: serve returned before stop", what);
    EXPECT_OK(ofl_aggregator_server_stop(sv->server));
    if (wait_for_count(&sv->done, 1, 20000) != 1) {
        test_fail_at(__FILE__, __LINE__, "%s: serve did not return after stop", what);
        test_abort(__FILE__, __LINE__);
    }
    pthread_join(sv->thread, NULL);
    expect_ok_at(__FILE__, __LINE__, "ofl_aggregator_server_serve", sv->error);
}

/* ---- ofl_aggregator_clients freed mid-call ---------------------------------------- */

static void *slot_call(void *p) {
    slot *sl = p;
    ofl_tensor *t = NULL;
    ofl_error *e = ofl_aggregator_client_get_aggregated_tensor(sl->client, "col1", sl->tensor_name, 0, false,
                                                    NULL, 0, false, NULL, &t);
    sl->result = ofl_error_code(e);
    if (e == NULL) {
        /* Finished before the free: the data must be whole. */
        CHECK(ofl_tensor_data_len(t) == TENSOR_SIZE &&
              check_pattern(ofl_tensor_data(t), TENSOR_SIZE, 7, 1) == TENSOR_SIZE);
        ofl_tensor_free(t);
    } else if (sl->result != OFL_CODE_CANCELLED) {
        test_fail_at(__FILE__, __LINE__, "%s: call on a client freed mid-call gave %s: %s",
                     sl->tensor_name, ofl_code_name((int32_t)sl->result), ofl_error_message(e));
    }
    ofl_error_free(e);
    return NULL;
}

/* Starts calls on slots [first, first+n), frees each client from this thread
 * once the server is inside its callback, then joins. */
static void free_clients_mid_call(int first, int n, uint16_t port, tls_mode mode, int *ok,
                                  int *cancelled) {
    for (int i = first; i < first + n; i++) {
        slot *sl = &g_slots[i];
        snprintf(sl->tensor_name, sizeof sl->tensor_name, "slot-%d", i);
        atomic_store(&sl->entered, 0);
        sl->joined = false;
        sl->client = make_client(&g_certs, port, mode, g_certs.col1_crt, g_certs.col1_key);
        REQUIRE(pthread_create(&sl->thread, NULL, slot_call, sl) == 0);
    }
    for (int i = first; i < first + n; i++) {
        slot *sl = &g_slots[i];
        /* Freeing before the call holds the client would be the caller's
         * use-after-free: wait until the server sees the request. */
        if (wait_for_count(&sl->entered, 1, 10000) != 1) {
            test_fail_at(__FILE__, __LINE__, "%s never reached the server", sl->tensor_name);
            pthread_join(sl->thread, NULL);
            sl->joined = true;
            ofl_aggregator_client_free(sl->client);
            sl->client = NULL;
            continue;
        }
        sleep_ms(rnd(4));
        ofl_aggregator_client_free(sl->client);
        sl->client = NULL;
    }
    for (int i = first; i < first + n; i++) {
        if (!g_slots[i].joined) pthread_join(g_slots[i].thread, NULL);
        g_slots[i].joined = true;
        if (g_slots[i].result == OFL_CODE_OK) (*ok)++;
        if (g_slots[i].result == OFL_CODE_CANCELLED) (*cancelled)++;
    }
}

/* ---- raw sockets --------------------------------------------------------- */

static int connect_local(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        test_fail_at(__FILE__, __LINE__, "connect to 127.0.0.1:%u: %s", (unsigned)port,
                     strerror(errno));
        close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Our own writes never raise SIGPIPE (MSG_NOSIGNAL): only the library's may. */
static void send_bytes(int fd, const void *buf, size_t len) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    (void)n; /* the server may already have hung up */
}

static void close_abruptly(int fd, bool reset) {
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
}

static const uint8_t TLS_PARTIAL_HELLO[] = {
    0x16, 0x03, 0x01, 0x00, 0xf0,       /* handshake record, 240 bytes announced */
    0x01, 0x00, 0x00, 0xec, 0x03, 0x03, /* ClientHello, TLS 1.2, then 6 of 32 random */
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66};
static const uint8_t TLS_BOGUS_RECORD[] = {0x16, 0x03, 0x01, 0x00, 0x05, /* record */
                                           0xff, 0xff, 0xff, 0xff, 0xff}; /* no handshake */
static const char H2_PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const uint8_t H2_SETTINGS[] = {0, 0, 0, 4, 0, 0, 0, 0, 0}; /* empty SETTINGS */
static const char HTTP1_REQUEST[] = "POST /openfl.aggregator.Aggregator/GetTasks HTTP/1.1\r\n"
                                    "Host: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc";

/* One raw peer: variant k of a partial TLS (to the TLS server) or HTTP/2
 * (to the plain server) preface, then an abrupt close. */
static void raw_peer(int k, uint16_t tls_port, uint16_t plain_port) {
    bool to_tls = k % 2 == 0;
    bool reset = (k / 2) % 2 == 0;
    int variant = (k / 4) % 4;
    int fd = connect_local(to_tls ? tls_port : plain_port);
    if (fd < 0) return;
    char sink[4096];
    if (to_tls) {
        switch (variant) {
        case 0: break; /* connect, close */
        case 1: send_bytes(fd, TLS_PARTIAL_HELLO, sizeof TLS_PARTIAL_HELLO); break;
        case 2: /* a bogus record: the server answers with an alert */
            send_bytes(fd, TLS_BOGUS_RECORD, sizeof TLS_BOGUS_RECORD);
            break;
        case 3: send_bytes(fd, H2_PREFACE, 10); break; /* plain text to a TLS port */
        }
    } else {
        switch (variant) {
        case 0: send_bytes(fd, H2_PREFACE, 7); break; /* partial preface */
        case 1: /* full preface and SETTINGS: the server writes its SETTINGS */
            send_bytes(fd, H2_PREFACE, sizeof H2_PREFACE - 1);
            send_bytes(fd, H2_SETTINGS, sizeof H2_SETTINGS);
            break;
        case 2: /* as 1, and read part of the answer first */
            send_bytes(fd, H2_PREFACE, sizeof H2_PREFACE - 1);
            send_bytes(fd, H2_SETTINGS, sizeof H2_SETTINGS);
            if (recv(fd, sink, 5, 0) < 0) { /* timeout is fine */
            }
            break;
        case 3: send_bytes(fd, HTTP1_REQUEST, sizeof HTTP1_REQUEST - 1); break;
        }
    }
    if (rnd(2)) sleep_ms(rnd(3));
    close_abruptly(fd, reset);
}

/* ---- a hostile server: resets every connection ------------------------ */

typedef struct hostile {
    int listen_fd;
    uint16_t port;
    atomic_int stop;
    atomic_int accepted;
    pthread_t thread;
} hostile;

static void *hostile_main(void *p) {
    hostile *h = p;
    char buf[1024];
    for (int spins = 0; !atomic_load(&h->stop) && spins < 100000; spins++) {
        struct pollfd pfd = {.fd = h->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0) continue;
        int fd = accept(h->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&h->accepted, 1);
        struct timeval tv = {.tv_sec = 0, .tv_usec = 20000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (recv(fd, buf, sizeof buf, 0) < 0) { /* timeout is fine */
        }
        close_abruptly(fd, true);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1 with a free port. */
static int listen_local(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    REQUIRE(listen(fd, 64) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

static void hostile_start(hostile *h) {
    memset(h, 0, sizeof *h);
    h->listen_fd = listen_local(&h->port);
    REQUIRE(pthread_create(&h->thread, NULL, hostile_main, h) == 0);
}

static void hostile_stop(hostile *h) {
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    close(h->listen_fd);
}

/* ---- a relay that hangs up on clients mid-upload ---------------------- */

/* Forwards client <-> server; once a client has sent `cut` bytes, reads what
 * is pending and closes the client's side (FIN; any further data from the
 * client then gets a RST, and the client's next write fails with EPIPE).
 * The server's side stays open until the relay stops, so only the client
 * side of the library meets the dead peer here. */
typedef struct relay_pair {
    int c, s;
    size_t sent, cut;
} relay_pair;

typedef struct relay {
    int listen_fd;
    uint16_t port, target;
    atomic_int stop;
    atomic_int hangups;
    pthread_t thread;
    relay_pair pairs[MAX_PAIRS];
    int npairs;
} relay;

static void relay_hang_up(relay *r, relay_pair *p) {
    char buf[65536];
    int flags = MSG_DONTWAIT;
    for (int i = 0; i < 64 && recv(p->c, buf, sizeof buf, flags) > 0; i++) {
    }
    close(p->c); /* nothing unread: FIN, not RST */
    p->c = -1;
    atomic_fetch_add(&r->hangups, 1);
}

static void relay_accept(relay *r) {
    int c = accept(r->listen_fd, NULL, NULL);
    if (c < 0) return;
    if (r->npairs == MAX_PAIRS) {
        close(c);
        return;
    }
    int s = connect_local(r->target);
    if (s < 0) {
        close(c);
        return;
    }
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0}; /* the relay never blocks for long */
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    r->pairs[r->npairs++] =
        (relay_pair){.c = c, .s = s, .cut = (64u << 10) + rnd(2u << 20)};
}

static void relay_pump(relay *r, relay_pair *p, short c_events, short s_events) {
    char buf[65536];
    if (p->c >= 0 && (c_events & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = recv(p->c, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            send_bytes(p->s, buf, (size_t)n);
            p->sent += (size_t)n;
            if (p->sent >= p->cut) relay_hang_up(r, p);
        } else if (n == 0) {
            close(p->c);
            p->c = -1;
        }
    }
    if (p->s >= 0 && (s_events & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = recv(p->s, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0 && p->c >= 0) {
            send_bytes(p->c, buf, (size_t)n);
        } else if (n == 0) {
            close(p->s);
            p->s = -1;
        }
    }
}

static void *relay_main(void *arg) {
    relay *r = arg;
    struct pollfd pfds[1 + 2 * MAX_PAIRS];
    for (int spins = 0; !atomic_load(&r->stop) && spins < 1000000; spins++) {
        int n = 0;
        pfds[n++] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        for (int i = 0; i < r->npairs; i++) {
            pfds[n++] = (struct pollfd){.fd = r->pairs[i].c, .events = POLLIN}; /* -1: ignored */
            pfds[n++] = (struct pollfd){.fd = r->pairs[i].s, .events = POLLIN};
        }
        if (poll(pfds, (nfds_t)n, 20) <= 0) continue;
        for (int i = 0; i < r->npairs; i++)
            relay_pump(r, &r->pairs[i], pfds[1 + 2 * i].revents, pfds[2 + 2 * i].revents);
        if (pfds[0].revents & POLLIN) relay_accept(r);
    }
    for (int i = 0; i < r->npairs; i++) {
        if (r->pairs[i].c >= 0) close(r->pairs[i].c);
        if (r->pairs[i].s >= 0) close(r->pairs[i].s);
    }
    return NULL;
}

static void relay_start(relay *r, uint16_t target) {
    memset(r, 0, sizeof *r);
    r->target = target;
    r->listen_fd = listen_local(&r->port);
    REQUIRE(pthread_create(&r->thread, NULL, relay_main, r) == 0);
}

static void relay_stop(relay *r) {
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
}

typedef struct upload {
    uint16_t port;
    tls_mode mode;
    pthread_t thread;
} upload;

static void *upload_main(void *p) {
    upload *u = p;
    ofl_aggregator_client_options *o = make_client_options(&g_certs, u->port, u->mode, NULL,
                                                g_certs.col1_crt, g_certs.col1_key);
    ofl_connect_options *connect = NULL;
    REQUIRE_OK(ofl_connect_options_new(&connect));
    REQUIRE_OK(ofl_connect_options_set_retry(connect, 20, 100, 400));
    REQUIRE_OK(ofl_connect_options_set_connect_timeout_ms(connect, 5000));
    REQUIRE_OK(ofl_aggregator_client_options_set_connect(o, connect));
    ofl_connect_options_free(connect);
    ofl_aggregator_client *client = NULL;
    REQUIRE_OK(ofl_aggregator_client_new(o, &client));
    ofl_aggregator_client_options_free(o);
    ofl_tensor_view v = {.name = "update", .data = g_update, .data_len = TENSOR_SIZE};
    ofl_error *e = ofl_aggregator_client_send_local_task_results(client, "col1", 0, "train", 1, &v, 1, NULL);
    if (e == NULL) {
        test_fail_at(__FILE__, __LINE__, "an upload through a peer that hangs up succeeded");
    } else if (ofl_error_code(e) == OFL_CODE_PANIC) {
        test_fail_at(__FILE__, __LINE__, "upload through a peer that hangs up: PANIC: %s",
                     ofl_error_message(e));
    }
    ofl_error_free(e);
    ofl_aggregator_client_free(client);
    return NULL;
}

/* ---- a normal call after it all ---------------------------------------- */

static void normal_call(uint16_t port, tls_mode mode, const char *what) {
    ofl_aggregator_client *client = make_client(&g_certs, port, mode, g_certs.col1_crt, g_certs.col1_key);
    ofl_tensor *t = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_aggregated_tensor(client, "col1", "final", 3, false, NULL, 0,
                                                   true, NULL, &t))) {
        CHECK_STR(ofl_tensor_name(t), "final");
        CHECK(ofl_tensor_round_number(t) == 3);
        CHECK_MSG(ofl_tensor_data_len(t) == TENSOR_SIZE &&
                      check_pattern(ofl_tensor_data(t), TENSOR_SIZE, 7, 1) == TENSOR_SIZE,
                  "%s: the final tensor is not byte-exact", what);
        ofl_tensor_free(t);
    }
    ofl_tasks *tasks = NULL;
    if (EXPECT_OK(ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks))) {
        CHECK(ofl_tasks_sleep_time(tasks) == 1);
        ofl_tasks_free(tasks);
    }
    ofl_aggregator_client_free(client);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);
    const char *seed = getenv("OFL_SEED");
    g_rng = seed ? strtoull(seed, NULL, 10) : (unsigned long long)(now_seconds() * 1e6);
    if (g_rng == 0) g_rng = 1;
    test_note("OFL_SEED=%llu", g_rng);
    double t0 = now_seconds();

    ensure_default_sigpipe();
    check_sigpipe_kills();
    /* Quiet: 100+ plain-text clients would each warn about running without TLS. */
    REQUIRE_OK(ofl_set_log_callback(OFL_LOG_LEVEL_ERROR, NULL, NULL));

    g_model = malloc(TENSOR_SIZE);
    g_update = malloc(TENSOR_SIZE);
    REQUIRE(g_model && g_update);
    fill_pattern(g_model, TENSOR_SIZE, 7, 1);
    fill_pattern(g_update, TENSOR_SIZE, 7, 2);

    server_state tls_state = {0}, plain_state = {0};
    ofl_aggregator_server *tls_server = start_server(&tls_state, TLS_MUTUAL);
    ofl_aggregator_server *plain_server = start_server(&plain_state, TLS_INSECURE);
    uint16_t tls_port = ofl_aggregator_server_port(tls_server);
    uint16_t plain_port = ofl_aggregator_server_port(plain_server);
    test_note("mTLS server on %u, plain server on %u", (unsigned)tls_port, (unsigned)plain_port);
    serving tls_serving, plain_serving;
    serving_start(&tls_serving, tls_server);
    serving_start(&plain_serving, plain_server);
    int peers = 0;

    /* Peers that connect and complete nothing, open for the whole test. */
    int idle[IDLE_PEERS];
    for (int i = 0; i < IDLE_PEERS; i++) {
        idle[i] = connect_local(i % 2 ? plain_port : tls_port);
        peers++;
    }

    /* Clients freed mid-call, in batches of concurrent calls. */
    int ok = 0, cancelled = 0;
    for (int first = 0; first < NSLOTS; first += BATCH) {
        bool tls = first < FREED_TLS;
        free_clients_mid_call(first, BATCH, tls ? tls_port : plain_port,
                              tls ? TLS_MUTUAL : TLS_INSECURE, &ok, &cancelled);
        peers += BATCH;
    }
    test_note("%d clients freed mid-call: %d cancelled, %d finished first", NSLOTS, cancelled, ok);

    /* Raw peers with partial prefaces, closed abruptly. */
    for (int k = 0; k < RAW_PEERS; k++) {
        raw_peer(k, tls_port, plain_port);
        peers++;
    }
    test_note("%d raw peers hung up", RAW_PEERS);

    /* Our clients writing to a server that resets every connection. */
    hostile h;
    hostile_start(&h);
    upload uploads[HOSTILE_UPLOADS];
    for (int i = 0; i < HOSTILE_UPLOADS; i++) {
        uploads[i] = (upload){.port = h.port, .mode = i % 2 ? TLS_MUTUAL : TLS_INSECURE};
        REQUIRE(pthread_create(&uploads[i].thread, NULL, upload_main, &uploads[i]) == 0);
        peers++;
    }
    for (int i = 0; i < HOSTILE_UPLOADS; i++) pthread_join(uploads[i].thread, NULL);
    hostile_stop(&h);
    test_note("%d uploads to a resetting server (%d connections reset)", HOSTILE_UPLOADS,
              atomic_load(&h.accepted));

    /* Our clients hung up on mid-upload, over TLS and plain text. */
    relay tls_relay, plain_relay;
    relay_start(&tls_relay, tls_port);
    relay_start(&plain_relay, plain_port);
    upload relayed[RELAY_UPLOADS];
    for (int i = 0; i < RELAY_UPLOADS; i++) {
        bool tls = i % 2 == 0;
        relayed[i] = (upload){.port = tls ? tls_relay.port : plain_relay.port,
                              .mode = tls ? TLS_MUTUAL : TLS_INSECURE};
        REQUIRE(pthread_create(&relayed[i].thread, NULL, upload_main, &relayed[i]) == 0);
        peers++;
    }
    for (int i = 0; i < RELAY_UPLOADS; i++) pthread_join(relayed[i].thread, NULL);
    relay_stop(&tls_relay);
    relay_stop(&plain_relay);
    test_note("%d uploads hung up on mid-upload (%d hang-ups)", RELAY_UPLOADS,
              atomic_load(&tls_relay.hangups) + atomic_load(&plain_relay.hangups));
    CHECK(atomic_load(&tls_relay.hangups) > 0 && atomic_load(&plain_relay.hangups) > 0);

    /* Alive. The servers still answer, while the idle peers are still open. */
    test_note("process alive after %d peers hung up", peers);
    CHECK(peers == 200);
    normal_call(tls_port, TLS_MUTUAL, "mTLS");
    normal_call(plain_port, TLS_INSECURE, "plain");
    for (int i = 0; i < IDLE_PEERS; i++)
        if (idle[i] >= 0) close_abruptly(idle[i], i % 2 == 0);

    /* The library left this host's SIGPIPE alone. */
    const char *why = NULL;
    CHECK_MSG(sigpipe_is_fatal_here(&why), "after the library ran: %s", why ? why : "");

    serving_stop(&tls_serving, "mTLS");
    serving_stop(&plain_serving, "plain");
    ofl_aggregator_server_free(tls_server);
    ofl_aggregator_server_free(plain_server);
    server_state *states[2] = {&tls_state, &plain_state};
    for (int i = 0; i < 2; i++) {
        server_state *s = states[i];
        int sets = atomic_load(&s->sets);
        int released = wait_for_count(&s->releases, sets, 10000);
        CHECK_MSG(released == sets, "%s server: %d borrowed tensors, %d releases",
                  i ? "plain" : "mTLS", sets, released);
        CHECK(wait_for_count(&s->free_calls, 1, 10000) == 1);
    }
    free(g_model);
    free(g_update);
    test_note("%.2f s", now_seconds() - t0);
    return test_finish("test_sigpipe_host");
}
