//! The metric queues: metrics the host pushes for an experiment, kept until
//! a frontend streams them (GetMetricStream), one stream per experiment.

use super::DirectorState;
use crate::director::types::DirectorMetric;
use crate::error::Result;

/// What the next step of a metric stream is.
#[derive(Debug, PartialEq)]
pub(crate) enum MetricPoll {
    /// Send this metric.
    Metric(DirectorMetric),
    /// Nothing queued yet: wait for a change.
    Wait,
    /// The experiment is over and every metric was sent (or it was removed).
    End,
}

impl DirectorState {
    /// Queues a metric for the experiment's metric streams.
    pub fn push_metric(&self, name: &str, metric: DirectorMetric) -> Result<()> {
        let max = self.config.max_queued_metrics.max(1);
        self.host_update(name, |e| {
            if e.metrics.len() >= max {
                e.metrics.pop_front();
                e.dropped_metrics += 1;
            }
            e.metrics.push_back(metric);
            Ok(())
        })
    }

    /// GetMetricStream, first call: checks that `caller` may stream `name`
    /// and makes this stream the experiment's only one. A cancelled stream
    /// is noticed by the server only a moment later; ending older streams
    /// keeps such a dead stream from taking metrics meant for its successor.
    pub(crate) fn open_metric_stream(&self, caller: &str, name: &str) -> Result<u64> {
        let generation = {
            let mut inner = self.lock();
            let e = inner.visible_mut(caller, name)?;
            e.metric_stream += 1;
            e.metric_stream
        };
        self.bump();
        Ok(generation)
    }

    /// GetMetricStream, each step of stream `generation`: the next queued
    /// metric (consumed, as OpenFL's queue), wait, or end once the experiment
    /// is over and drained, or a newer stream was opened.
    pub(crate) fn poll_metric(&self, name: &str, generation: u64) -> MetricPoll {
        let mut inner = self.lock();
        let Some(e) = inner.experiments.get_mut(name) else {
            return MetricPoll::End;
        };
        if e.metric_stream != generation {
            return MetricPoll::End;
        }
        if let Some(metric) = e.metrics.pop_front() {
            return MetricPoll::Metric(metric);
        }
        if e.status.is_terminal() {
            MetricPoll::End
        } else {
            MetricPoll::Wait
        }
    }
}
