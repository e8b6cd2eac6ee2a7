/* Consumer of an installed openfl-transport (C header; linked statically
 * or through pkg-config): an insecure server on 127.0.0.1 and a client
 * asking it for tasks. */
#include <openfl_transport.h>

#include <stdio.h>
#include <string.h>

static ofl_error *get_tasks(void *ud, const char *col, ofl_reply *reply) {
    (void)ud, (void)col;
    return ofl_reply_add_task(reply, "train", "train_task", "train", false);
}
static ofl_error *get_tensor(void *ud, const char *col, const ofl_tensor_request *r, ofl_reply *reply) {
    (void)ud, (void)col, (void)r, (void)reply;
    return ofl_error_new(OFL_CODE_NOT_FOUND, "no tensors");
}
static ofl_error *send_results(void *ud, const char *col, const ofl_task_results *r) {
    (void)ud, (void)col, (void)r;
    return NULL;
}

static int fail(const char *what, ofl_error *e) {
    fprintf(stderr, "consumer_c: %s: %s: %s\n", what, ofl_code_name(ofl_error_code(e)), ofl_error_message(e));
    ofl_error_free(e);
    return 1;
}

int main(void) {
    ofl_aggregator_server_options *so = NULL;
    ofl_aggregator_server *server = NULL;
    ofl_aggregator_callbacks *cb = NULL;
    ofl_aggregator_client_options *co = NULL;
    ofl_connect_options *connect = NULL;
    ofl_aggregator_client *client = NULL;
    ofl_tasks *tasks = NULL;
    ofl_error *e = ofl_aggregator_callbacks_new(&cb);
    if (!e) e = ofl_aggregator_callbacks_set_get_tasks(cb, get_tasks);
    if (!e) e = ofl_aggregator_callbacks_set_get_aggregated_tensor(cb, get_tensor);
    if (!e) e = ofl_aggregator_callbacks_set_send_local_task_results(cb, send_results);
    if (!e) e = ofl_aggregator_server_options_new(&so);
    if (!e) e = ofl_aggregator_server_options_set_listen(so, "127.0.0.1", 0);
    if (!e) e = ofl_aggregator_server_options_set_tls(so, NULL);
    if (!e) e = ofl_aggregator_server_options_set_federation(so, "a", "f", NULL);
    if (!e) e = ofl_aggregator_server_options_add_collaborator(so, "col1");
    if (!e) e = ofl_aggregator_server_start(so, cb, &server);
    ofl_aggregator_server_options_free(so);
    ofl_aggregator_callbacks_free(cb);
    if (e) return fail("server", e);
    e = ofl_aggregator_client_options_new("127.0.0.1", ofl_aggregator_server_port(server), &co);
    if (!e) e = ofl_aggregator_client_options_set_tls(co, NULL);
    if (!e) e = ofl_aggregator_client_options_set_federation(co, "a", "f", NULL);
    if (!e) e = ofl_connect_options_new(&connect);
    if (!e) e = ofl_connect_options_set_retry(connect, 50, 200, 5000);
    if (!e) e = ofl_aggregator_client_options_set_connect(co, connect);
    ofl_connect_options_free(connect);
    if (!e) e = ofl_aggregator_client_new(co, &client);
    ofl_aggregator_client_options_free(co);
    if (!e) e = ofl_aggregator_client_get_tasks(client, "col1", NULL, &tasks);
    if (e) {
        ofl_aggregator_client_free(client);
        ofl_aggregator_server_free(server);
        return fail("client", e);
    }
    int ok = ofl_tasks_len(tasks) == 1 && strcmp(ofl_tasks_name(tasks, 0), "train") == 0;
    printf("consumer_c: openfl_transport %s: %s\n", ofl_version(), ok ? "ok" : "MISMATCH");
    ofl_tasks_free(tasks);
    ofl_aggregator_client_free(client);
    ofl_aggregator_server_free(server);
    return ok ? 0 : 1;
}
