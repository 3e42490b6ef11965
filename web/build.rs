//! Embeds hls.js (installed from npm by scripts/setup.sh) into the binary, so the origin serves
//! it and the worker publishes it beside the player, and no page depends on a CDN at run time.

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = manifest.join("node_modules/hls.js/dist/hls.min.js");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("hls.min.js");
    println!("cargo:rerun-if-changed={}", source.display());
    match std::fs::read(&source) {
        Ok(bytes) => std::fs::write(&out, bytes).expect("write hls.min.js into OUT_DIR"),
        Err(_) => {
            println!(
                "cargo:warning=web/node_modules/hls.js is missing: run scripts/setup.sh; the player page will not play"
            );
            std::fs::write(&out, b"console.error('hls.js was not installed when this origin was built: run scripts/setup.sh and rebuild');")
                .expect("write placeholder hls.min.js");
        }
    }
}
