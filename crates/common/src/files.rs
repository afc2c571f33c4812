//! Noticing that a file changed, for the settings the services read again without a restart
//! (API keys, certificates): a file's stamp is compared with the one seen before.

use std::{path::Path, time::SystemTime};

/// When a file last changed and how long it is: enough to notice an edit, a replacement by
/// rename, or a truncation. `None` while the file cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(Option<(SystemTime, u64)>);

impl Stamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &Path) -> Self {
        let read = || {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        };
        Self(read())
    }

    /// The stamps of several files, compared as one.
    pub fn of_all<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<Self> {
        paths.into_iter().map(Self::of).collect()
    }
}
