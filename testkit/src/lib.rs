//! Test helpers shared by every crate: free ports, moto server, ffmpeg test clips, ffprobe,
//! a live stream that shows the wall clock (`clock`),
//! and `spherecast up` started on free ports.

pub mod browser;
pub mod clip;
pub mod clock;
pub mod hls;
pub mod http;
pub mod imds;
pub mod moto;
pub mod net;
pub mod nginx;
pub mod rtmp;
pub mod up;

/// The repository root (the workspace directory), for finding `.venv`, `web/` and binaries.
pub fn repo_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}
