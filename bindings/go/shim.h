/*
 * C side of the Go binding: trampolines from library threads into Go, and
 * the helpers that hand Go memory to the library without Go ever storing a
 * Go pointer in C memory (the cgo pointer rules). Declarations only: this
 * header is included by cgo-generated files too.
 */
#ifndef OFL_GO_SHIM_H
#define OFL_GO_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "openfl_transport.h"

/* Starts a server whose callbacks are the Go trampolines, with the cgo.Handle
 * `handle` as user_data (released through oflGoReleaseServerState).
 * `validator`: install valid_collaborator_cn_and_id. `non_blocking`: bit c
 * set declares the callback of ofl_logic_call c non-blocking. */
ofl_error *ofl_go_server_start(const ofl_aggregator_server_options *options, uintptr_t handle,
                               bool validator, uint32_t non_blocking, ofl_aggregator_server **out);

/* Routes log records to the Go logger behind `handle`; 0 means stderr. */
ofl_error *ofl_go_set_log_callback(int32_t max_level, uintptr_t handle);

/* ofl_reply_set_tensor with the data pointer passed as an argument: `view`
 * is C memory; C stores `data` (Go memory) in it for this call only. */
ofl_error *ofl_go_reply_set_tensor(ofl_reply *reply, ofl_tensor_view *view, const void *data,
                                   size_t data_len);

/* Routes director hooks to the Go hooks behind the cgo.Handle `handle`
 * (released through oflGoReleaseHandle, also when the start fails). */
ofl_error *ofl_go_director_server_start(const ofl_director_server_options *options, uintptr_t handle,
                                        ofl_director_server **out);

/* ofl_frontend_client_stream_metrics with the Go callback behind `handle`. */
ofl_error *ofl_go_frontend_stream_metrics(const ofl_frontend_client *client, const char *name,
                                          uintptr_t handle, const ofl_call_options *call);

/* ofl_call_options_set_progress with the Go progress state behind the
 * cgo.Handle `handle` (borrowed for the calls that use `call`). */
ofl_error *ofl_go_call_options_set_progress(ofl_call_options *call, uintptr_t handle);

/* The library call an ofl_go_send chain ends with. */
enum {
    OFL_GO_SEND_TASK_RESULTS = 0, /* ofl_aggregator_client_send_local_task_results */
    OFL_GO_SET_BEST_MODEL = 1,    /* ofl_director_server_set_best_model */
    OFL_GO_SET_LAST_MODEL = 2,    /* ofl_director_server_set_last_model */
    OFL_GO_SET_NEW_EXPERIMENT = 3 /* ofl_frontend_client_set_new_experiment */
};

/* One call that lends Go tensor data in progress (C memory). */
typedef struct ofl_go_send {
    int32_t kind; /* OFL_GO_SEND_TASK_RESULTS (0) and so on */
    const ofl_aggregator_client *client;
    const ofl_director_server *director;
    const ofl_frontend_client *frontend;
    const char *collaborator; /* the collaborator; the experiment for the other kinds */
    int32_t round_number;
    const char *task_name;
    int32_t data_size;
    const char *const *collaborators; /* OFL_GO_SET_NEW_EXPERIMENT */
    size_t collaborators_len;
    const char *archive_path;
    const ofl_call_options *call; /* the client call's options (NULL: defaults) */
    ofl_tensor_view *views; /* `len` views; data of the Go-borrowed ones set during the chain */
    size_t len;
    const size_t *borrowed; /* indices into `views` whose data is Go memory */
    size_t borrowed_len;
    uintptr_t handle;       /* cgo.Handle of the Go-side state */
    ofl_error *error;       /* result */
} ofl_go_send;

#define OFL_GO_SEND_BATCH 16

/* Stores `count` (at most OFL_GO_SEND_BATCH) Go data pointers for
 * borrowed[first .. first+count), then either asks Go for the next batch
 * (oflGoSendNext, which calls this again: the pointers stay valid because
 * this call has not returned) or, with all pointers in place, makes the
 * library call `kind` names. Clears the stored pointers before returning. */
void ofl_go_send_step(ofl_go_send *s, size_t first, size_t count, const void *p0, const void *p1,
                      const void *p2, const void *p3, const void *p4, const void *p5,
                      const void *p6, const void *p7, const void *p8, const void *p9,
                      const void *p10, const void *p11, const void *p12, const void *p13,
                      const void *p14, const void *p15);

#endif /* OFL_GO_SHIM_H */
