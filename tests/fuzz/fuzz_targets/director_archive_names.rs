//! SetNewExperiment's archive handling in the director state: the experiment
//! name of the first `ExperimentInfo` (a gRPC body of them, as OpenFL's
//! `DirectorClient.set_new_experiment` sends) becomes a file name in the
//! archive directory.
//!
//! Oracles: a name that passes the checks maps to exactly one file directly
//! inside the archive directory, named `<name>.archive`, which the file
//! system can create; registering such an experiment (with valid
//! collaborators) succeeds and stores the uploaded bytes there; a refused
//! name creates nothing; nothing is ever written outside the archive
//! directory.
#![no_main]

use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use openfl_transport::director::state::{DirectorState, StateConfig};
use openfl_transport::director::validate_experiment_name;
use openfl_transport::error::ofl_code;
use openfl_transport::proto::director::ExperimentInfo;
use openfl_transport_fuzz::grpc_frames;
use prost::Message;

/// Longest file name Linux file systems take (NAME_MAX).
const NAME_MAX: usize = 255;

fuzz_target!(|body: &[u8]| {
    let messages: Vec<ExperimentInfo> = grpc_frames(body).into_iter().map_while(|m| ExperimentInfo::decode(m).ok()).collect();
    let (name, collaborators) = match messages.first() {
        Some(first) => (first.name.clone(), first.collaborator_names.clone()),
        // Not a SetNewExperiment body: the raw bytes as a name.
        None => (String::from_utf8_lossy(body).into_owned(), vec!["one".to_string()]),
    };
    let archive: Vec<u8> = messages.iter().filter_map(|m| m.experiment_data.as_ref()).flat_map(|d| d.npbytes.to_vec()).collect();
    store(&name, &collaborators, &archive);
});

fn store(name: &str, collaborators: &[String], archive: &[u8]) {
    let sandbox = tempfile::tempdir().expect("temporary directory");
    let archive_dir = sandbox.path().join("archives");
    let state = DirectorState::new(StateConfig { archive_dir: archive_dir.clone(), ..Default::default() }).unwrap();

    let valid = validate_experiment_name(name).is_ok();
    assert_eq!(state.check_new_name(name).is_ok(), valid);
    if valid {
        check_path(&state.archive_path(name), &archive_dir, name);
    }

    let upload = state.upload_path();
    assert_eq!(upload.parent(), Some(archive_dir.as_path()), "uploads go to the archive directory");
    std::fs::write(&upload, archive).unwrap();
    let collaborators_ok = !collaborators.is_empty() && collaborators.iter().all(|c| !c.is_empty());
    let result = state.register_experiment(name, "__default__", collaborators, &upload, archive.len() as u64, None);
    match result {
        Ok(()) => {
            assert!(valid && collaborators_ok, "{name:?} {collaborators:?} was registered");
            assert_eq!(std::fs::read(state.archive_path(name)).unwrap(), archive);
            assert_eq!(files_under(sandbox.path()), vec![state.archive_path(name)]);
        }
        Err(e) => {
            assert!(!valid || !collaborators_ok, "{name:?} {collaborators:?} refused: {e:?}");
            assert_eq!(e.code(), ofl_code::InvalidArgument, "{e:?}");
            assert_eq!(files_under(sandbox.path()), vec![upload], "a refused experiment stores nothing");
        }
    }
}

/// `path` must be `<archive_dir>/<name>.archive`, one plain component.
fn check_path(path: &Path, archive_dir: &Path, name: &str) {
    let file = path.strip_prefix(archive_dir).expect("inside the archive directory");
    let components: Vec<Component> = file.components().collect();
    assert_eq!(components.len(), 1, "{name:?} → {file:?}");
    assert!(matches!(components[0], Component::Normal(n) if n.to_str() == Some(&format!("{name}.archive"))));
    assert!(file.as_os_str().len() <= NAME_MAX, "{name:?}: file name too long for the file system");
}

/// Every file under `root` (recursively), sorted.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}
