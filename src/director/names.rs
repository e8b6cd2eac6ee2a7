//! Names the director checks before it trusts them: experiment names (they
//! become file names in the archive directory), collaborator (envoy) names
//! and the caller name of a peer that sends none.
//!
//! An experiment name has no path separator, no `..`, no NUL or control
//! character, no leading dot, and at most 200 bytes.

use std::collections::HashSet;

use crate::error::{ofl_code, Error, Result};

/// The caller name of a peer without TLS that sends no `client_id` metadata
/// (OpenFL's `CLIENT_ID_DEFAULT`: envoys).
pub fn default_caller() -> &'static str {
    "__default__"
}

/// Longest experiment name accepted, in bytes (it becomes a file name).
const MAX_NAME_LEN: usize = 200;
/// Most collaborator names one experiment may list (duplicates included):
/// SetNewExperiment beyond it is RESOURCE_EXHAUSTED. OpenFL 1.6 has no bound.
pub const MAX_COLLABORATORS: usize = 10_000;
/// Longest collaborator (envoy) name accepted, in bytes: beyond it
/// SetNewExperiment is INVALID_ARGUMENT. OpenFL 1.6 has no bound.
pub const MAX_COLLABORATOR_NAME_LEN: usize = 1024;

/// Checks an experiment name before it becomes a file name.
pub fn validate_experiment_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid_argument(format!("experiment name {name:?}: {why}")));
    if name.is_empty() {
        return Err(Error::invalid_argument("experiment name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("longer than {MAX_NAME_LEN} bytes"));
    }
    if name.contains('\0') {
        return bad("contains a NUL character");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator");
    }
    if name.contains("..") {
        return bad("contains '..'");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    Ok(())
}

/// An experiment's collaborator names checked and deduplicated, in order of
/// first appearance: at most [`MAX_COLLABORATORS`] names
/// (RESOURCE_EXHAUSTED), none empty or longer than
/// [`MAX_COLLABORATOR_NAME_LEN`] bytes (INVALID_ARGUMENT), at least one.
/// Linear time: a long list cannot hold a worker.
pub fn unique_collaborators(experiment: &str, names: &[String]) -> Result<Vec<String>> {
    if names.len() > MAX_COLLABORATORS {
        return Err(Error::new(
            ofl_code::ResourceExhausted,
            format!(
                "experiment {experiment:?} lists {} collaborator names; at most {MAX_COLLABORATORS} are accepted",
                names.len()
            ),
        ));
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
    let mut unique = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(Error::invalid_argument(format!("collaborator_names holds an empty name (at index {i})")));
        }
        if name.len() > MAX_COLLABORATOR_NAME_LEN {
            return Err(Error::invalid_argument(format!(
                "collaborator name at index {i} is {} bytes long; at most {MAX_COLLABORATOR_NAME_LEN} are accepted",
                name.len()
            )));
        }
        if seen.insert(name.as_str()) {
            unique.push(name.clone());
        }
    }
    if unique.is_empty() {
        return Err(Error::invalid_argument(format!("experiment {experiment:?} names no collaborators")));
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_the_archive_directory_are_rejected() {
        for bad in ["", "a/b", "../x", "..", ".", "a\\b", "x\0y", ".hidden", "tab\tname", &"n".repeat(201)] {
            let e = validate_experiment_name(bad).unwrap_err();
            assert_eq!(e.code(), ofl_code::InvalidArgument, "{bad:?}");
        }
        for good in ["mnist", "exp-1_2 (b)", "a.b", "données"] {
            validate_experiment_name(good).unwrap();
        }
    }

    #[test]
    fn collaborator_names_are_bounded_and_deduplicated_in_linear_time() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(unique_collaborators("e", &names(&["b", "a", "b", "c", "a"])).unwrap(), names(&["b", "a", "c"]));
        let code = |list: &[String]| unique_collaborators("e", list).unwrap_err().code();
        assert_eq!(code(&[]), ofl_code::InvalidArgument);
        assert_eq!(code(&names(&["a", ""])), ofl_code::InvalidArgument);
        assert_eq!(code(&["x".repeat(MAX_COLLABORATOR_NAME_LEN + 1)]), ofl_code::InvalidArgument);
        unique_collaborators("e", &["x".repeat(MAX_COLLABORATOR_NAME_LEN)]).unwrap();
        let many: Vec<String> = (0..MAX_COLLABORATORS).map(|i| format!("envoy-{i}")).collect();
        assert_eq!(unique_collaborators("e", &many).unwrap().len(), MAX_COLLABORATORS);
        let too_many: Vec<String> = (0..=MAX_COLLABORATORS).map(|i| format!("envoy-{}", i % 3)).collect();
        assert_eq!(code(&too_many), ofl_code::ResourceExhausted);
    }
}
