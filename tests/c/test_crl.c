/*
 * test_crl: certificate revocation through ofl_tls_config. An aggregator
 * server whose TLS settings carry the CA's CRL (generated at test time by
 * tests/certs/make_certs.sh: crl.pem revokes revoked.crt, a CN=col2
 * certificate of the test CA) refuses the revoked collaborator certificate
 * at the handshake (OFL_CODE_TLS, not retried, no callback runs) and serves
 * the others. Without the CRL the same certificate is served, so the
 * refusal is the CRL's doing. The CRL is given as a file and as PEM bytes.
 *
 * usage: test_crl CERT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static cert_paths g_certs;

static ofl_error *count_get_tasks(void *ud, const char *collaborator, ofl_reply *reply) {
    (void)collaborator, (void)reply;
    atomic_fetch_add((atomic_int *)ud, 1);
    return NULL;
}

static ofl_error *no_tensor(void *ud, const char *collaborator, const ofl_tensor_request *req,
                            ofl_reply *reply) {
    (void)ud, (void)collaborator, (void)req, (void)reply;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

static ofl_error *no_results(void *ud, const char *collaborator, const ofl_task_results *r) {
    (void)ud, (void)collaborator, (void)r;
    return ofl_error_new(OFL_CODE_UNIMPLEMENTED, NULL);
}

typedef enum crl_source { CRL_NONE, CRL_FILE, CRL_PEM } crl_source;

/* A mutual-TLS server (col1, col2 authorized) with the CRL from `source`. */
static ofl_aggregator_server *start_server(crl_source source, atomic_int *calls) {
    ofl_aggregator_server_options *o = make_server_options(&g_certs, TLS_INSECURE);
    ofl_tls_config *tls =
        make_tls_config(&g_certs, TLS_MUTUAL, NULL, g_certs.server_crt, g_certs.server_key);
    if (source == CRL_FILE) REQUIRE_OK(ofl_tls_config_add_crl_file(tls, g_certs.crl));
    if (source == CRL_PEM) {
        size_t len = 0;
        uint8_t *pem = read_file(g_certs.crl, &len);
        REQUIRE(pem != NULL);
        REQUIRE_OK(ofl_tls_config_add_crl_pem(tls, pem, len));
        free(pem);
    }
    REQUIRE_OK(ofl_aggregator_server_options_set_tls(o, tls));
    ofl_tls_config_free(tls);
    callback_fns fns = {.user_data = calls,
                        .get_tasks = count_get_tasks,
                        .get_aggregated_tensor = no_tensor,
                        .send_local_task_results = no_results};
    ofl_aggregator_server *server = NULL;
    REQUIRE_OK(start_with_callbacks(o, &fns, &server));
    ofl_aggregator_server_options_free(o);
    return server;
}

/* GetTasks as `sender` with the given certificate: the error or NULL. */
static ofl_error *get_tasks_as(uint16_t port, const char *crt, const char *key,
                               const char *sender) {
    ofl_aggregator_client *client = make_client(&g_certs, port, TLS_MUTUAL, crt, key);
    ofl_tasks *tasks = NULL;
    ofl_error *err = ofl_aggregator_client_get_tasks(client, sender, NULL, &tasks);
    ofl_tasks_free(tasks);
    ofl_aggregator_client_free(client);
    return err;
}

static void check_revoked_refused(crl_source source, const char *what) {
    atomic_int calls = 0;
    ofl_aggregator_server *server = start_server(source, &calls);
    uint16_t port = ofl_aggregator_server_port(server);
    double t0 = now_seconds();
    EXPECT_CODE(get_tasks_as(port, g_certs.revoked_crt, g_certs.revoked_key, "col2"),
                OFL_CODE_TLS, "Revoked");
    double took = now_seconds() - t0;
    /* make_client's retry deadline is 5 s: a retried refusal would take that. */
    CHECK_MSG(took < 4.0, "%s: the refusal took %.2f s (retried?)", what, took);
    CHECK_MSG(atomic_load(&calls) == 0, "%s: get_tasks ran for a revoked certificate", what);
    /* The CA's other certificates are served. */
    EXPECT_OK(get_tasks_as(port, g_certs.col1_crt, g_certs.col1_key, "col1"));
    EXPECT_OK(get_tasks_as(port, g_certs.col2_crt, g_certs.col2_key, "col2"));
    CHECK_MSG(atomic_load(&calls) == 2, "%s: get_tasks ran %d times, expected 2", what,
              atomic_load(&calls));
    ofl_aggregator_server_free(server);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERT_DIR\n", argv[0]);
        return 2;
    }
    cert_paths_init(&g_certs, argv[1]);

    test_note("without a CRL the certificate is served");
    {
        atomic_int calls = 0;
        ofl_aggregator_server *server = start_server(CRL_NONE, &calls);
        EXPECT_OK(get_tasks_as(ofl_aggregator_server_port(server), g_certs.revoked_crt,
                               g_certs.revoked_key, "col2"));
        CHECK(atomic_load(&calls) == 1);
        ofl_aggregator_server_free(server);
    }
    test_note("CRL file: the revoked certificate is refused at the handshake");
    check_revoked_refused(CRL_FILE, "CRL file");
    test_note("CRL PEM bytes: the same");
    check_revoked_refused(CRL_PEM, "CRL PEM");
    return test_finish("test_crl");
}
