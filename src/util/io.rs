//! File helpers every stage shares: transparent gzip reading, atomic writes
//! (temp file + rename, so a killed run never leaves a corrupt file) and sha256.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Opens `path` for buffered reading, decompressing it when it ends in `.gz`.
pub fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    if is_gz(path) {
        Ok(Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(BufReader::new(file)))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
    }
}

/// Reads a whole file (decompressing `.gz`) into memory.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    open_text(path)?
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {} (truncated or corrupt?)", path.display()))?;
    Ok(buf)
}

pub fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The temp-file name used for an atomic write of `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Test double (`testkit` feature only): with `ONEREC_TESTKIT_STALL_WRITE=NAME:MS`, every
/// atomic write of a file or directory named NAME sleeps MS milliseconds between writing
/// its temp copy and renaming it, so a test can kill -9 a process in the middle of a
/// checkpoint write.
#[cfg(feature = "testkit")]
fn testkit_stall(path: &Path) {
    let Ok(spec) = std::env::var("ONEREC_TESTKIT_STALL_WRITE") else { return };
    let Some((name, ms)) = spec.split_once(':') else { return };
    if path.file_name().is_some_and(|n| n == name) {
        std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
    }
}

/// Writes `path` atomically: the closure writes into a temp file beside it, which is
/// synced and renamed over `path` only when the closure succeeds.
pub fn atomic_write_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    let tmp = temp_path(path);
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 16, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        #[cfg(feature = "testkit")]
        testkit_stall(path);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Atomically writes bytes to `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |w| Ok(w.write_all(bytes)?))
}

/// Atomically writes a value as pretty JSON (with a trailing newline).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// Reads a JSON file into a value, naming the file on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: invalid JSON", path.display()))
}

/// Hex sha256 of a file's bytes (as stored, i.e. compressed bytes for `.gz`).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Builds a directory of outputs atomically: work happens in `DIR.tmpPID`, which
/// replaces `DIR` only when `build` succeeds. A failed or killed run leaves `DIR`
/// as it was. The old `DIR` is parked as `DIR.old` for the moment between the two
/// renames of the swap, so a kill there loses nothing: the next write or resume puts it
/// back ([`recover_dir`]). Temp dirs of killed processes are removed here.
pub fn atomic_dir<F>(dir: &Path, build: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    recover_dir(dir)?;
    remove_stale_temps(dir);
    let tmp = temp_path(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    match build(&tmp) {
        Ok(()) => {
            #[cfg(feature = "testkit")]
            testkit_stall(dir);
            let parked = parked_path(dir);
            let had_old = dir.exists();
            if had_old {
                std::fs::rename(dir, &parked)
                    .with_context(|| format!("cannot move {} aside to {}", dir.display(), parked.display()))?;
            }
            std::fs::rename(&tmp, dir)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))?;
            if had_old {
                std::fs::remove_dir_all(&parked)
                    .with_context(|| format!("cannot remove the replaced {}", parked.display()))?;
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// `DIR.old`: where [`atomic_dir`] parks the previous `DIR` while it swaps in the new one.
fn parked_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".old");
    dir.with_file_name(name)
}

/// Finishes a directory swap that a kill interrupted: with `DIR` gone and `DIR.old`
/// present, `DIR.old` is the last complete `DIR` and is put back; with both present, the
/// new `DIR` is complete (it was renamed whole) and `DIR.old` is removed.
pub fn recover_dir(dir: &Path) -> Result<()> {
    let parked = parked_path(dir);
    if !parked.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&parked).with_context(|| format!("cannot remove stale {}", parked.display()))?;
    } else {
        tracing::warn!("{} was being replaced when a run stopped; restoring it", dir.display());
        std::fs::rename(&parked, dir)
            .with_context(|| format!("cannot restore {} from {}", dir.display(), parked.display()))?;
    }
    Ok(())
}

/// Removes `NAME.tmp<pid>` beside `path` left by processes that no longer run (killed
/// mid-write; never read back). A live process's temp is never touched, and without
/// `/proc` (not Linux) nothing is removed.
fn remove_stale_temps(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let prefix = format!("{name}.tmp");
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let p = e.path();
        let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match removed {
            Ok(()) => tracing::info!("removed {} (left by a stopped process {pid})", p.display()),
            Err(err) => tracing::warn!("cannot remove stale {}: {err}", p.display()),
        }
    }
}

/// Whether a training run in `out` continues from its `last/` checkpoint (`resume` asked
/// and `last/<marker>` present) or starts fresh. Starting fresh over an existing `last/`
/// without `resume` is refused, so a reused `--out` never overwrites a run.
pub fn resume_from_last(out: &Path, marker: &str, resume: bool) -> Result<bool> {
    let last_dir = out.join("last");
    recover_dir(&last_dir)?;
    recover_dir(&out.join("best"))?;
    if resume && last_dir.join(marker).exists() {
        return Ok(true);
    }
    if resume {
        tracing::info!("--resume: no checkpoint in {}, starting fresh", last_dir.display());
    } else if last_dir.exists() {
        anyhow::bail!(
            "{} already holds a run (last/ exists); pass --resume to continue it or choose a new --out",
            out.display()
        );
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_dir(dir: &Path, text: &str) -> Result<()> {
        atomic_dir(dir, |tmp| atomic_write(&tmp.join("f"), text.as_bytes()))
    }

    #[test]
    fn atomic_dir_replaces_and_leaves_no_parked_copy() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("last");
        write_dir(&d, "one").unwrap();
        write_dir(&d, "two").unwrap();
        assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("last")]);
    }

    #[test]
    fn a_swap_killed_between_its_renames_is_recovered() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("last");
        write_dir(&d, "one").unwrap();
        // What a kill after the first rename leaves: no `last/`, the old one parked.
        std::fs::rename(&d, parked_path(&d)).unwrap();
        assert!(resume_from_last(t.path(), "f", true).unwrap(), "the restored last/ is resumed");
        assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "one");
        assert!(!parked_path(&d).exists());
        // Both present (killed after the second rename): the new one stays.
        std::fs::create_dir(parked_path(&d)).unwrap();
        write_dir(&d, "two").unwrap();
        assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "two");
        assert!(!parked_path(&d).exists());
    }

    #[test]
    fn temps_of_dead_processes_are_removed_and_live_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("last");
        // pid 1 is alive on Linux; a pid above pid_max can never be.
        let (live, dead) = (t.path().join("last.tmp1"), t.path().join("last.tmp4294967295"));
        std::fs::create_dir(&live).unwrap();
        std::fs::create_dir(&dead).unwrap();
        write_dir(&d, "one").unwrap();
        assert!(live.exists());
        assert_eq!(!dead.exists(), Path::new("/proc/self").exists());
    }
}
