//! What the aggregator server asks of the aggregation logic behind it.
//!
//! The server does transport and checks; the logic decides tasks, serves
//! tensors and takes results. C callbacks are one implementation
//! (`src/ffi/aggregator_logic.rs`), the built-in FedAvg another.

use std::time::Instant;

use tokio::sync::watch;

use super::collaborators::Collaborators;
use crate::error::Result;
use crate::proto::aggregator::Task;
use crate::proto::NamedTensor;

/// Who the aggregator is and whom it serves (OpenFL's `Aggregator.uuid`,
/// `federation_uuid`, `single_col_cert_common_name`, `authorized_cols`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Federation {
    /// The aggregator's uuid: requests must name it as receiver.
    pub aggregator_uuid: String,
    /// The federation's uuid: requests must carry it.
    pub federation_uuid: String,
    /// When non-empty, every collaborator presents one shared certificate
    /// with this Common Name (OpenFL's test mode); empty otherwise.
    pub single_col_cert_common_name: String,
    /// Collaborator names allowed to call (`vec![...].into()`).
    pub authorized_collaborators: Collaborators,
}

impl Federation {
    /// Whether `name` is an authorized collaborator.
    pub fn is_authorized(&self, name: &str) -> bool {
        self.authorized_collaborators.contains(name)
    }

    /// Whether some sender could pass `valid_collaborator_cn_and_id` with
    /// this certificate CN.
    pub fn certificate_may_speak(&self, cert_common_name: &str) -> bool {
        if self.single_col_cert_common_name.is_empty() {
            self.is_authorized(cert_common_name)
        } else {
            cert_common_name == self.single_col_cert_common_name
        }
    }

    /// OpenFL's `valid_collaborator_cn_and_id`: the certificate CN equals the
    /// sender (or the shared single certificate CN) and the sender is
    /// authorized.
    pub fn valid_collaborator_cn_and_id(&self, cert_common_name: &str, sender: &str) -> bool {
        let expected_cn = if self.single_col_cert_common_name.is_empty() {
            sender
        } else {
            &self.single_col_cert_common_name
        };
        cert_common_name == expected_cn && self.is_authorized(sender)
    }

    /// Why `valid_collaborator_cn_and_id` refuses this CN and sender: every
    /// cause, each named ("certificate CN differs from header sender", "not
    /// among the authorized collaborators"), joined by "; ".
    pub fn refusal_cause(&self, cert_common_name: &str, sender: &str) -> String {
        let mut causes = Vec::new();
        if self.single_col_cert_common_name.is_empty() {
            if cert_common_name != sender {
                causes.push(format!("certificate CN |{cert_common_name}| differs from header sender |{sender}|"));
            }
        } else if cert_common_name != self.single_col_cert_common_name {
            causes.push(format!(
                "certificate CN |{cert_common_name}| is not the shared collaborator certificate CN |{}|",
                self.single_col_cert_common_name
            ));
        }
        if !self.is_authorized(sender) {
            causes.push(self.not_authorized(sender));
        }
        if causes.is_empty() {
            causes.push("refused by the aggregator logic".into());
        }
        causes.join("; ")
    }

    /// "`name` is not among the authorized collaborators", saying so when
    /// there are none at all.
    pub fn not_authorized(&self, name: &str) -> String {
        if self.authorized_collaborators.is_empty() {
            format!("|{name}| is not among the authorized collaborators (this aggregator authorizes none)")
        } else {
            format!("|{name}| is not among the authorized collaborators")
        }
    }
}

/// The answer to GetTasks. OpenFL treats `tasks`, `sleep_time` and `quit` as
/// exclusive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TasksReply {
    /// The round these tasks belong to.
    pub round_number: i32,
    /// Tasks to run now (empty when the collaborator must sleep or quit).
    pub tasks: Vec<Task>,
    /// Seconds to wait before asking again.
    pub sleep_time: i32,
    /// The federation is over for this collaborator.
    pub quit: bool,
}

/// What GetAggregatedTensor asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorRequest {
    /// Tensor name.
    pub tensor_name: String,
    /// Round the tensor belongs to.
    pub round_number: i32,
    /// Whether it is a report (metric) tensor.
    pub report: bool,
    /// Tags (OpenFL looks tensors up by name, round, report and tags).
    pub tags: Vec<String>,
    /// Whether the collaborator requires a lossless encoding.
    pub require_lossless: bool,
}

/// One SendLocalTaskResults upload, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskResults {
    /// Round the results belong to.
    pub round_number: i32,
    /// The task that produced them.
    pub task_name: String,
    /// Number of samples they were computed on (the FedAvg weight).
    pub data_size: i32,
    /// The result tensors (their bytes slice the received buffer).
    pub tensors: Vec<NamedTensor>,
}

/// The logic methods the server calls, to say which of them may block
/// (see [`AggregatorLogic::may_block`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogicCall {
    /// [`AggregatorLogic::get_tasks`].
    GetTasks,
    /// [`AggregatorLogic::poll_aggregated_tensor`] (and through its default,
    /// [`AggregatorLogic::get_aggregated_tensor`]).
    GetAggregatedTensor,
    /// [`AggregatorLogic::send_local_task_results`].
    SendLocalTaskResults,
    /// [`AggregatorLogic::certificate_may_speak`].
    CertificateMaySpeak,
    /// [`AggregatorLogic::all_quit_jobs_sent`].
    AllQuitJobsSent,
}

/// A GetAggregatedTensor answer that may be "not yet".
#[derive(Debug)]
pub enum TensorPoll {
    /// The tensor.
    Ready(NamedTensor),
    /// Not there yet, but it may still appear: the server waits (holding no
    /// thread) until `wait.changed` sees a new value or `wait.deadline`
    /// passes, then polls again with the same `started`.
    Pending(TensorWait),
}

/// What a pending tensor request waits on.
#[derive(Debug)]
pub struct TensorWait {
    /// Changes whenever the logic's state does (results arrive, a round
    /// ends). Subscribe before checking the state, so no change is missed.
    pub changed: watch::Receiver<u64>,
    /// When to poll one last time (the logic then answers or gives up).
    pub deadline: Instant,
}

/// The aggregation logic behind an aggregator server.
///
/// Methods may be called concurrently. By default the server runs every call
/// on Tokio's blocking pool, so methods may block (host code, disk I/O, even
/// waiting for a tensor), within a bound: at most 8 calls of one
/// collaborator and one kind at once, and 256 in all; further calls wait
/// their turn asynchronously (see `src/aggregator/blocking.rs`). Logic whose calls never block says so
/// with [`AggregatorLogic::may_block`] and is called on the async workers
/// directly (cheaper, unbounded). An error is returned to that call's peer
/// as a gRPC status; the server keeps serving.
pub trait AggregatorLogic: Send + Sync + 'static {
    /// The federation identity the server checks requests against.
    fn federation(&self) -> &Federation;

    /// OpenFL's `valid_collaborator_cn_and_id`; the default follows OpenFL 1.6.
    fn valid_collaborator_cn_and_id(&self, cert_common_name: &str, sender: &str) -> bool {
        self.federation().valid_collaborator_cn_and_id(cert_common_name, sender)
    }

    /// Why [`valid_collaborator_cn_and_id`](Self::valid_collaborator_cn_and_id)
    /// refused: the UNAUTHENTICATED answer carries it. The default names
    /// OpenFL 1.6's causes (see [`Federation::refusal_cause`]); overrides of
    /// that rule should override this too.
    fn refusal_cause(&self, cert_common_name: &str, sender: &str) -> String {
        self.federation().refusal_cause(cert_common_name, sender)
    }

    /// Whether a client certificate with this CN can be valid for some
    /// sender: the server asks before reading an upload, so an unknown peer
    /// cannot make it buffer a whole stream. The default follows OpenFL's
    /// rule (the single certificate CN, or an authorized collaborator);
    /// implementations that override `valid_collaborator_cn_and_id` with
    /// another rule should override this too (returning true is always safe).
    fn certificate_may_speak(&self, cert_common_name: &str) -> bool {
        self.federation().certificate_may_speak(cert_common_name)
    }

    /// Tasks for `collaborator` (a checked, authorized name).
    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply>;

    /// An aggregated tensor for `collaborator`; may wait for it (holding
    /// the calling thread).
    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor>;

    /// GetAggregatedTensor as the server calls it: the tensor, or
    /// [`TensorPoll::Pending`] when it is not there yet, so that a waiting
    /// call holds no thread. `started` is when the call began (the same on
    /// every poll of one call): the logic decides when to stop waiting. The
    /// default calls [`get_aggregated_tensor`](Self::get_aggregated_tensor)
    /// (which may block) and is never pending.
    fn poll_aggregated_tensor(
        &self,
        collaborator: &str,
        request: &TensorRequest,
        started: Instant,
    ) -> Result<TensorPoll> {
        let _ = started;
        self.get_aggregated_tensor(collaborator, request).map(TensorPoll::Ready)
    }

    /// Whether `call` may block its thread (wait, run host code, write to
    /// disk). `true` (the default): the server runs it on the blocking pool,
    /// within the bounds above. `false`: the server calls it on an async
    /// worker, so it must return promptly (brief locks and computation only).
    fn may_block(&self, call: LogicCall) -> bool {
        let _ = call;
        true
    }

    /// Results of a task run by `collaborator`.
    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()>;

    /// True once every collaborator was told to quit: `serve` then returns.
    fn all_quit_jobs_sent(&self) -> bool;
}
