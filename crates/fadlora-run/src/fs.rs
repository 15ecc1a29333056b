//! Writing run files so that a reader (or a run killed mid-write) never sees half of one.

use std::io::Write;
use std::path::Path;

use crate::RunError;

/// The prefix and suffix of [`write_atomic`]'s temporary files: `.<name>.<random>.tmp` beside
/// the file they will replace, so a folder can be cleaned of those a killed process left.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` all at once: into a temporary file beside it, flushed to disk,
/// then renamed over it (atomic on POSIX file systems), and the folder synced so the rename
/// survives a crash. A reader sees the old file or the new one, never a part; on any error
/// the old file is untouched, the temporary file is removed, and the error names the path
/// that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| RunError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| RunError::io(dir, e))?;
    // The error names the destination: the temporary name means nothing to a user (and
    // NamedTempFile's own writer appends it to errors: write through the plain file).
    tmp.as_file_mut()
        .write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| RunError::io(path, e))?;
    tmp.persist(path).map_err(|e| RunError::io(path, e.error))?;
    // Where the platform allows opening a folder, make the rename itself durable.
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// Removes the temporary files of [`write_atomic`] directly in `dir` that a killed process
/// left behind (a finished write renames its temporary away, a failed one deletes it). Call it
/// only where no other process is writing: a sweep holding its experiment's lock, a trainer
/// resuming its own run folder.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) && entry.path().is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
    }

    #[test]
    fn a_failed_write_names_the_path_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.txt");
        write_atomic(&path, b"good").unwrap();
        // A folder where the file should be: the rename fails however privileged the user.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inner")).unwrap();
        let err = write_atomic(&blocked, b"x").unwrap_err().to_string();
        assert!(err.contains("blocked"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"good");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(TEMP_SUFFIX)
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
