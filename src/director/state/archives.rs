//! The archive store: where experiment archives are uploaded and kept
//! (`<archive_dir>/<experiment name>.archive`), which envoy may download
//! which, and who downloaded what.

use std::path::{Path, PathBuf};

use rand::Rng;

use super::DirectorState;
use crate::director::names::validate_experiment_name;
use crate::director::types::ExperimentStatus;
use crate::error::{ofl_code, Error, Result};

/// Extension of stored archives: `<archive_dir>/<experiment name>.archive`.
const ARCHIVE_EXTENSION: &str = "archive";
/// Prefix of archives being uploaded (a leading dot: no experiment name has one).
const UPLOAD_PREFIX: &str = ".upload-";

impl DirectorState {
    /// The file an experiment's archive is stored in.
    pub fn archive_path(&self, name: &str) -> PathBuf {
        self.config.archive_dir.join(format!("{name}.{ARCHIVE_EXTENSION}"))
    }

    /// A fresh file name for an upload in progress.
    pub fn upload_path(&self) -> PathBuf {
        let tag: u64 = rand::thread_rng().gen();
        self.config.archive_dir.join(format!("{UPLOAD_PREFIX}{}-{tag:016x}", std::process::id()))
    }

    /// Checks a new experiment's name early: valid and not taken.
    pub fn check_new_name(&self, name: &str) -> Result<()> {
        validate_experiment_name(name)?;
        if self.lock().experiments.contains_key(name) {
            return Err(Error::new(ofl_code::AlreadyExists, format!("an experiment named {name:?} exists")));
        }
        Ok(())
    }

    /// GetExperimentData: the archive `collaborator` may download.
    pub(crate) fn archive_for_envoy(&self, name: &str, collaborator: &str) -> Result<PathBuf> {
        let inner = self.lock();
        let e = inner.experiment(name)?;
        if !e.info.collaborators.iter().any(|c| c == collaborator) {
            return Err(Error::new(
                ofl_code::PermissionDenied,
                format!("{collaborator:?} is not a collaborator of experiment {name:?}"),
            ));
        }
        if e.status != ExperimentStatus::InProgress || !e.archive_present {
            return Err(Error::new(
                ofl_code::FailedPrecondition,
                format!("experiment {name:?} is {}, not in_progress: its archive is not served", e.status),
            ));
        }
        Ok(e.info.archive_path.clone())
    }

    /// Records that `collaborator` received the whole archive of `name`.
    pub(crate) fn record_download(&self, name: &str, collaborator: &str) {
        if let Some(e) = self.lock().experiments.get_mut(name) {
            e.downloads.insert(collaborator.to_string());
        }
        self.bump();
    }
}

/// Deletes a stored archive (a missing one is not an error).
pub(super) fn remove_archive(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("cannot delete the archive {}: {e}", path.display());
        }
    }
}
