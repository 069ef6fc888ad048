//! A small tmpfs to fill: what a full disk does, for tests that run as root.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A tmpfs of `mib` MiB mounted on a fresh folder, unmounted when dropped.
pub struct SmallDisk {
    pub mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(mib: u32) -> Option<SmallDisk> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: cannot mount a small tmpfs, full-disk behaviour not checked here");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap()
            .success();
        assert!(ok, "root can mount a tmpfs");
        Some(SmallDisk { mount, _dir: dir })
    }

    /// Fills the disk to the last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.mount.join("filler")).unwrap();
        let chunk = vec![0xA5u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        // The last partial block too.
        while file.write_all(&[0xA5]).is_ok() {}
    }

    pub fn free(&self) {
        std::fs::remove_file(self.mount.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
