//! Test helpers shared by every crate: free ports, moto server, ffmpeg test clips, ffprobe,
//! and `spherecast up` started on free ports.
