//! Atomic file writes: a temp file in the same folder, fsync'd, renamed over the target, and the
//! folder fsync'd so that the rename itself survives a power loss.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Readers never see a half-written file, and a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = replace_file(path, bytes, true)?;
    sync_dir(dir)
}

/// Like [`write_atomic`] (readers never see half a file) but without making it durable: for
/// writers of many files from a source they can read again (an import file), which make a
/// whole chunk durable at once with [`make_durable`] instead of paying two fsyncs per file.
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    replace_file(path, bytes, false).map(|_| ())
}

/// Writes a temp file beside `path` (synced if asked) and renames it over `path`; returns the
/// folder.
fn replace_file<'a>(path: &'a Path, bytes: &[u8], sync: bool) -> anyhow::Result<&'a Path> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent folder", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            if sync {
                tmp.as_file().sync_data()
            } else {
                Ok(())
            }
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the new file into place at {}", path.display()))?;
    Ok(dir)
}

/// Makes files written with [`write_unsynced`] into `dir` durable, with their names: on Linux
/// one `syncfs` of the file system (one flush instead of one per file), elsewhere an fsync per
/// file; then the folder itself.
pub fn make_durable(dir: &Path, files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let d = std::fs::File::open(dir)
            .with_context(|| format!("cannot open folder {}", dir.display()))?;
        // SAFETY: syncfs only reads the descriptor, which `d` keeps open for the call.
        if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot sync the file system of {}", dir.display()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    for f in files {
        std::fs::File::open(f)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", f.display()))?;
    }
    sync_dir(dir)
}

/// Makes the entries of a folder (renames, new files) durable. Where folders cannot be opened
/// for syncing (not Unix), the rename's own ordering is all there is.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync folder {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
