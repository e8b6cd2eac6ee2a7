// C trampolines of the Go binding (see shim.h). The library calls these on
// its own threads; each forwards to an exported Go function with the
// cgo.Handle that was stored, as an integer, in user_data.
#include "shim.h"

#include "_cgo_export.h"

static uintptr_t handle_of(void *user_data) { return (uintptr_t)user_data; }

static ofl_error *tramp_get_tasks(void *user_data, const char *collaborator, ofl_reply *reply) {
    return oflGoGetTasks(handle_of(user_data), (char *)collaborator, reply);
}

static ofl_error *tramp_get_aggregated_tensor(void *user_data, const char *collaborator,
                                              const ofl_tensor_request *request, ofl_reply *reply) {
    return oflGoGetAggregatedTensor(handle_of(user_data), (char *)collaborator,
                                    (ofl_tensor_request *)request, reply);
}

static ofl_error *tramp_send_local_task_results(void *user_data, const char *collaborator,
                                                const ofl_task_results *results) {
    return oflGoSendLocalTaskResults(handle_of(user_data), (char *)collaborator,
                                     (ofl_task_results *)results);
}

static bool tramp_all_quit_jobs_sent(void *user_data) {
    return oflGoAllQuitJobsSent(handle_of(user_data)) != 0;
}

static bool tramp_valid_collaborator(void *user_data, const char *cn, const char *sender) {
    return oflGoValidCollaborator(handle_of(user_data), (char *)cn, (char *)sender) != 0;
}

static void tramp_free_user_data(void *user_data) { oflGoReleaseHandle(handle_of(user_data)); }

static bool tramp_review_experiment(void *user_data, const ofl_experiment *experiment) {
    return oflGoReviewExperiment(handle_of(user_data), (ofl_experiment *)experiment) != 0;
}

static ofl_error *tramp_start_experiment(void *user_data, const ofl_experiment *experiment) {
    return oflGoStartExperiment(handle_of(user_data), (ofl_experiment *)experiment);
}

static void tramp_experiment_failed(void *user_data, const ofl_experiment *experiment,
                                    const char *collaborator, uint32_t error_code,
                                    const char *description) {
    oflGoExperimentFailed(handle_of(user_data), (ofl_experiment *)experiment, (char *)collaborator,
                          error_code, (char *)description);
}

ofl_error *ofl_go_director_server_start(const ofl_director_server_options *options, uintptr_t handle,
                                        ofl_director_server **out) {
    ofl_director_hooks *hooks = NULL;
    ofl_error *err = ofl_director_hooks_new(&hooks);
    if (err != NULL) {
        tramp_free_user_data((void *)handle); /* never handed over */
        return err;
    }
    /* From here the library owns the handle: it is released exactly once,
     * when neither the hooks object nor the server holds it. */
    err = ofl_director_hooks_set_user_data(hooks, (void *)handle, tramp_free_user_data);
    if (err == NULL) err = ofl_director_hooks_set_review_experiment(hooks, tramp_review_experiment);
    if (err == NULL) err = ofl_director_hooks_set_start_experiment(hooks, tramp_start_experiment);
    if (err == NULL) err = ofl_director_hooks_set_experiment_failed(hooks, tramp_experiment_failed);
    if (err == NULL) err = ofl_director_server_start(options, hooks, out);
    ofl_director_hooks_free(hooks);
    return err;
}

static bool tramp_metric(void *user_data, const ofl_director_metric *metric) {
    return oflGoMetric(handle_of(user_data), (ofl_director_metric *)metric) != 0;
}

ofl_error *ofl_go_frontend_stream_metrics(const ofl_frontend_client *client, const char *name,
                                          uintptr_t handle, const ofl_call_options *call) {
    return ofl_frontend_client_stream_metrics(client, name, tramp_metric, (void *)handle, call);
}

static bool tramp_progress(void *user_data, uint64_t bytes_done, uint64_t bytes_total) {
    return oflGoProgress(handle_of(user_data), bytes_done, bytes_total);
}

ofl_error *ofl_go_call_options_set_progress(ofl_call_options *call, uintptr_t handle) {
    return ofl_call_options_set_progress(call, tramp_progress, (void *)handle);
}

ofl_error *ofl_go_server_start(const ofl_aggregator_server_options *options, uintptr_t handle,
                               bool validator, uint32_t non_blocking, ofl_aggregator_server **out) {
    ofl_aggregator_callbacks *cb = NULL;
    ofl_error *err = ofl_aggregator_callbacks_new(&cb);
    if (err != NULL) {
        oflGoReleaseHandle(handle); /* nobody else will */
        return err;
    }
    /* From here the library owns the handle: released exactly once, when
     * the callbacks object and the server (if started) are both gone. */
    err = ofl_aggregator_callbacks_set_user_data(cb, (void *)handle, tramp_free_user_data);
    if (!err) err = ofl_aggregator_callbacks_set_get_tasks(cb, tramp_get_tasks);
    if (!err) err = ofl_aggregator_callbacks_set_get_aggregated_tensor(cb, tramp_get_aggregated_tensor);
    if (!err) err = ofl_aggregator_callbacks_set_send_local_task_results(cb, tramp_send_local_task_results);
    if (!err) err = ofl_aggregator_callbacks_set_all_quit_jobs_sent(cb, tramp_all_quit_jobs_sent);
    if (!err && validator)
        err = ofl_aggregator_callbacks_set_valid_collaborator_cn_and_id(cb, tramp_valid_collaborator);
    for (int32_t call = OFL_LOGIC_CALL_GET_TASKS; !err && call <= OFL_LOGIC_CALL_ALL_QUIT_JOBS_SENT; call++)
        if (non_blocking & (1u << call)) err = ofl_aggregator_callbacks_set_may_block(cb, call, false);
    if (!err) err = ofl_aggregator_server_start(options, cb, out);
    ofl_aggregator_callbacks_free(cb);
    return err;
}

static void tramp_log(void *user_data, ofl_log_level level, const char *target,
                      const char *message) {
    oflGoLog(handle_of(user_data), (int32_t)level, (char *)target, (char *)message);
}

ofl_error *ofl_go_set_log_callback(int32_t max_level, uintptr_t handle) {
    if (handle == 0) return ofl_set_log_callback(max_level, NULL, NULL);
    return ofl_set_log_callback(max_level, tramp_log, (void *)handle);
}

ofl_error *ofl_go_reply_set_tensor(ofl_reply *reply, ofl_tensor_view *view, const void *data,
                                   size_t data_len) {
    view->data = (const uint8_t *)data;
    view->data_len = data_len;
    ofl_error *err = ofl_reply_set_tensor(reply, view); /* copies */
    view->data = NULL;
    return err;
}

void ofl_go_send_step(ofl_go_send *s, size_t first, size_t count, const void *p0, const void *p1,
                      const void *p2, const void *p3, const void *p4, const void *p5,
                      const void *p6, const void *p7, const void *p8, const void *p9,
                      const void *p10, const void *p11, const void *p12, const void *p13,
                      const void *p14, const void *p15) {
    const void *p[OFL_GO_SEND_BATCH] = {p0, p1, p2,  p3,  p4,  p5,  p6,  p7,
                                        p8, p9, p10, p11, p12, p13, p14, p15};
    if (count > OFL_GO_SEND_BATCH || first + count > s->borrowed_len) {
        s->error = NULL; /* unreachable: Go computes the batches */
        abort();
    }
    for (size_t i = 0; i < count; i++) s->views[s->borrowed[first + i]].data = p[i];
    size_t next = first + count;
    if (next < s->borrowed_len) {
        oflGoSendNext(s, next);
    } else {
        switch (s->kind) {
        case OFL_GO_SEND_TASK_RESULTS:
            s->error = ofl_aggregator_client_send_local_task_results(s->client, s->collaborator,
                                                          s->round_number, s->task_name,
                                                          s->data_size, s->views, s->len, s->call);
            break;
        case OFL_GO_SET_BEST_MODEL:
            s->error = ofl_director_server_set_best_model(s->director, s->collaborator, s->views,
                                                          s->len);
            break;
        case OFL_GO_SET_LAST_MODEL:
            s->error = ofl_director_server_set_last_model(s->director, s->collaborator, s->views,
                                                          s->len);
            break;
        case OFL_GO_SET_NEW_EXPERIMENT:
            s->error = ofl_frontend_client_set_new_experiment(
                s->frontend, s->collaborator, s->collaborators, s->collaborators_len,
                s->archive_path, s->views, s->len, s->call);
            break;
        default:
            abort(); /* unreachable: Go sets the kind */
        }
    }
    /* The Go pointers were lent for this call only. */
    for (size_t i = 0; i < count; i++) s->views[s->borrowed[first + i]].data = NULL;
}
