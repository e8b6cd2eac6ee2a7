//! The collaborators a federation authorizes: a list in the order given,
//! with a set beside it, because every request checks its sender (twice)
//! and a scan of 1000 names cost more than the rest of a GetTasks.

use std::collections::HashSet;
use std::ops::Deref;

/// Authorized collaborator names, in the order given; membership is a
/// hash lookup. Reads like a slice of `String` (`iter`, `len`, indexing).
#[derive(Clone, Debug, Default)]
pub struct Collaborators {
    names: Vec<String>,
    index: HashSet<String>,
}

impl Collaborators {
    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains(name)
    }

    /// Adds `name` at the end.
    pub fn push(&mut self, name: String) {
        self.index.insert(name.clone());
        self.names.push(name);
    }
}

impl Deref for Collaborators {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.names
    }
}

impl PartialEq for Collaborators {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl Eq for Collaborators {}

impl FromIterator<String> for Collaborators {
    fn from_iter<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut collaborators = Self::default();
        names.into_iter().for_each(|name| collaborators.push(name));
        collaborators
    }
}

impl From<Vec<String>> for Collaborators {
    fn from(names: Vec<String>) -> Self {
        names.into_iter().collect()
    }
}

impl IntoIterator for Collaborators {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;

    fn into_iter(self) -> Self::IntoIter {
        self.names.into_iter()
    }
}

impl<'a> IntoIterator for &'a Collaborators {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.names.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_order_and_equality() {
        let mut names: Collaborators = vec!["col2".to_string(), "col1".to_string()].into();
        names.push("col3".into());
        assert!(names.contains("col1") && names.contains("col3") && !names.contains("col"));
        assert_eq!(names.iter().map(String::as_str).collect::<Vec<_>>(), ["col2", "col1", "col3"]);
        assert_eq!(names.len(), 3);
        let same: Collaborators = ["col2", "col1", "col3"].into_iter().map(String::from).collect();
        assert_eq!(names, same);
    }
}
