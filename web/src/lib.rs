//! The player's files, embedded at build time: the origin serves them under `/player/` and the
//! worker publishes them to the egress bucket under `player/`, where they play VOD ladders.
//! They load each other by relative paths, so one copy works in both places.
#![forbid(unsafe_code)]

/// `player/index.html`.
pub const PLAYER_HTML: &str = include_str!("../player/index.html");
/// `player/player.js`.
pub const PLAYER_JS: &str = include_str!("../player/player.js");
/// `hls.min.js` from the npm package (a script that reports the missing install when
/// scripts/setup.sh has not run).
pub const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

/// The player's files as (name, bytes, Content-Type).
pub fn player_files() -> [(&'static str, &'static [u8], &'static str); 3] {
    [
        (
            "index.html",
            PLAYER_HTML.as_bytes(),
            "text/html; charset=utf-8",
        ),
        (
            "player.js",
            PLAYER_JS.as_bytes(),
            "text/javascript; charset=utf-8",
        ),
        ("hls.min.js", HLS_JS, "text/javascript; charset=utf-8"),
    ]
}
